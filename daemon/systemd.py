"""sd_notify, written against the protocol (sd_notify(3)) rather than libsystemd.

The protocol is one datagram of newline-separated ``KEY=VALUE`` assignments sent to the
``AF_UNIX`` socket named in ``$NOTIFY_SOCKET``: a filesystem path, or an abstract socket when
it starts with ``@``. Outside systemd the variable is unset and every call is a cheap no-op, so
the daemon calls these unconditionally. Notification failures are never fatal: they are
logged once and reported as ``False``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from core.aio import cancel_and_wait

log = logging.getLogger(__name__)

_failed = False  # log the first failure, not every watchdog tick


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # Abstract namespace: the leading '@' stands for a NUL byte.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd only ever sets a path or an abstract name


def notify(state: str) -> bool:
    """Send one notification (e.g. ``"READY=1\\nSTATUS=polling 12 devices"``).

    Returns True when the datagram was sent, False when ``$NOTIFY_SOCKET`` is unset or the
    send failed.
    """
    global _failed
    raw = os.environ.get("NOTIFY_SOCKET")
    if not raw:
        return False
    address = _address(raw)
    if address is None:
        if not _failed:
            log.error("NOTIFY_SOCKET=%r is neither a path nor an @abstract name", raw)
            _failed = True
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Non-blocking: a stuck manager must never stall the event loop.
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        if not _failed:
            log.error("sd_notify to %s failed: %s", raw, exc)
            _failed = True
        return False
    if _failed:
        log.info("sd_notify to %s works again", raw)
        _failed = False
    return True


def ready(status: str | None = None) -> bool:
    """Startup is complete (``Type=notify`` units leave 'activating' now)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> bool:
    """Free-form one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text.replace(chr(10), ' ')}")


def stopping() -> bool:
    """Shutdown has begun."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """A config reload has begun; send ``ready()`` when done.

    ``MONOTONIC_USEC`` is required by ``Type=notify-reload`` (systemd 253+) and harmless before.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def watchdog_ping() -> bool:
    """Keep-alive for ``WatchdogSec=``."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between keep-alives (half of ``$WATCHDOG_USEC``), or None when not watched.

    None also when ``$WATCHDOG_PID`` names another process (the variables were inherited).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


class Watchdog:
    """Sends ``WATCHDOG=1`` every ``interval`` seconds from a task on the running loop.

    Because the pings come from the event loop itself, a loop that stalls (a blocking call,
    a busy coroutine) stops pinging and systemd restarts the service; that is the point.
    ``healthy`` (optional) is asked before each ping; returning False withholds the ping so
    a wedged component can trigger the restart too. Does nothing when not watched.
    """

    def __init__(self, *, interval: float | None = None,
                 healthy: Callable[[], bool] | None = None) -> None:
        self.interval = interval if interval is not None else watchdog_interval()
        self._healthy = healthy
        self._task: asyncio.Task[None] | None = None
        self.pings = 0

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Self:
        if self.interval is not None and self.interval > 0:
            self._task = asyncio.create_task(self._run(self.interval), name="sd-watchdog")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self, interval: float) -> None:
        unhealthy = False
        while True:
            healthy = self._healthy() if self._healthy is not None else True
            if healthy:
                if watchdog_ping():
                    self.pings += 1
                if unhealthy:
                    log.info("watchdog pings resumed")
            elif not unhealthy:
                log.error("unhealthy: withholding watchdog pings")
            unhealthy = not healthy
            await asyncio.sleep(interval)
