"""sd_notify against real unix datagram sockets (path and abstract), and the watchdog."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import systemd


class Receiver:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def recv(self) -> str:
        return self.sock.recv(4096).decode()

    async def arecv(self) -> str:
        """Wait on the event loop for the next datagram."""
        self.sock.setblocking(False)
        try:
            async with asyncio.timeout(10):
                return (await asyncio.get_running_loop().sock_recv(self.sock, 4096)).decode()
        finally:
            self.sock.settimeout(5)

    def pending(self) -> list[str]:
        self.sock.setblocking(False)
        out: list[str] = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """NOTIFY_SOCKET as a filesystem path."""
    path = tmp_path / "notify"
    receiver = Receiver(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield receiver
    receiver.sock.close()


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """NOTIFY_SOCKET as an abstract name (``@...``)."""
    name = f"firewarden-test-{uuid.uuid4().hex}"
    receiver = Receiver(b"\0" + name.encode())
    monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
    yield receiver
    receiver.sock.close()


def test_notify_unset_is_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET nothing is sent and the call says so."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_path_socket(path_socket: Receiver) -> None:
    """A path socket receives the datagram verbatim."""
    assert systemd.ready("polling 3 devices") is True
    assert path_socket.recv() == "READY=1\nSTATUS=polling 3 devices"


def test_notify_abstract_socket(abstract_socket: Receiver) -> None:
    """An '@' name addresses the abstract namespace."""
    assert systemd.status("江畔人家: 12 devices") is True
    assert abstract_socket.recv() == "STATUS=江畔人家: 12 devices"


def test_helpers_send_protocol_assignments(path_socket: Receiver) -> None:
    """STOPPING, WATCHDOG and RELOADING with a plausible MONOTONIC_USEC."""
    assert systemd.stopping()
    assert systemd.watchdog_ping()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert path_socket.recv() == "STOPPING=1"
    assert path_socket.recv() == "WATCHDOG=1"
    reload_lines = path_socket.recv().split("\n")
    assert reload_lines[0] == "RELOADING=1"
    key, value = reload_lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_status_stays_one_line(path_socket: Receiver) -> None:
    """A newline in a status cannot smuggle in another assignment."""
    systemd.status("ok\nREADY=1")
    assert path_socket.recv() == "STATUS=ok READY=1"


def test_notify_missing_socket_returns_false(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket path nobody listens on is reported, not raised."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert systemd.notify("READY=1") is False


def test_notify_rejects_relative_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only absolute paths and @names are valid NOTIFY_SOCKET values."""
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
    assert systemd.notify("READY=1") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),
    ("2000000", None, 1.0),
    ("2000000", "self", 1.0),
    ("2000000", "other", None),
    ("0", None, None),
    ("junk", None, None),
    ("500000", None, 0.25),
])
def test_watchdog_interval(usec: str | None, pid: str | None, expected: float | None,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Half of WATCHDOG_USEC, and only for the process WATCHDOG_PID names."""
    for name, value in (("WATCHDOG_USEC", usec),
                        ("WATCHDOG_PID", {"self": str(os.getpid()),
                                          "other": str(os.getpid() + 1)}.get(pid or ""))):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval() == expected


async def test_watchdog_pings_from_loop(path_socket: Receiver,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog pings repeatedly while the loop runs and stops when it exits."""
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    async with systemd.Watchdog() as watchdog:
        assert watchdog.interval == pytest.approx(0.05)
        received = [await path_socket.arecv() for _ in range(3)]
    assert received == ["WATCHDOG=1"] * 3
    assert not watchdog.active
    path_socket.pending()
    await asyncio.sleep(0.15)
    assert path_socket.pending() == []


async def test_watchdog_stalled_loop_stops_pings(path_socket: Receiver) -> None:
    """A blocked event loop sends no pings: that is what lets systemd restart us."""
    async with systemd.Watchdog(interval=0.02) as watchdog:
        await asyncio.sleep(0)  # first ping
        path_socket.pending()
        first = watchdog.pings
        time.sleep(0.3)  # noqa: ASYNC251 - the point: block the loop, so nothing may be sent
        assert path_socket.pending() == []
        assert watchdog.pings == first


async def test_watchdog_withholds_pings_when_unhealthy(path_socket: Receiver) -> None:
    """An unhealthy check stops the pings; recovery resumes them."""
    healthy = False
    async with systemd.Watchdog(interval=0.01, healthy=lambda: healthy) as watchdog:
        await asyncio.sleep(0.1)
        assert watchdog.pings == 0
        assert path_socket.pending() == []
        healthy = True
        assert await path_socket.arecv() == "WATCHDOG=1"
    assert watchdog.pings >= 1


async def test_watchdog_inactive_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not watched: no task at all."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    async with systemd.Watchdog() as watchdog:
        assert watchdog.interval is None
        assert not watchdog.active
