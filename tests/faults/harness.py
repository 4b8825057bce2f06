"""Helpers for the fault-injection suite: the daemon as a process (NOTIFY_SOCKET, READY, its
log read live from a pipe), config and profile, MQTT event filters, InfluxDB and SQLite
readers, and a witness of the polls a simulated Modbus device really answered.

Everything here is real: ``firewarden run`` in its own process (or, for the clock, the
Supervisor in-process), real mosquitto/influxd, real sockets and ptys.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from simulator.modbus import SimulatedDevice
from simulator.services import InfluxDB, ServiceError
from simulator.toml_writer import dump_toml
from simulator.uitd import UitdPeer, fire_frame
from tests.services import NotifySocket, Received, eventually

ROOT = Path(__file__).parents[2]
PROFILE = Path(__file__).with_name("fault-meter.toml")  # voltage + current: one request a poll


def write_config(tmp: Path, raw: Mapping[str, Any], name: str = "fw.toml") -> Path:
    path = tmp / name
    path.write_text(dump_toml(dict(raw)), encoding="utf-8")
    return path


def meters(bus: str, units: range | list[int], *, poll: str = "200ms",
           **extra: object) -> list[dict[str, object]]:
    """``[[device]]`` entries: fault-meters named ``m<unit>`` on ``bus``."""
    return [{"name": f"m{u}", "bus": bus, "unit": u, "profile": str(PROFILE), "poll": poll,
             **extra} for u in units]


# -- the daemon as a process ------------------------------------------------------------------

class Daemon:
    """``firewarden run -c conf`` as a child process; its output is read live from a pipe
    (a log *file* would itself be subject to an RLIMIT_FSIZE given to the daemon).

    ``fsize`` sets RLIMIT_FSIZE (bytes) for the daemon only: a tiny exec wrapper sets it and
    execs the daemon, so no ``preexec_fn`` runs in this multi-threaded test process. Python
    ignores SIGXFSZ, so an oversized write fails with EFBIG instead of killing the process.
    """

    def __init__(self, conf: Path, tmp: Path, *, fsize: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.conf = conf
        self.tmp = tmp
        self.fsize = fsize
        self.args = args
        self.notify = NotifySocket(tmp / f"notify-{os.getpid()}-{id(self)}.sock")
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.readies = 0
        self._reader: threading.Thread | None = None
        self._log = tmp / "daemon.log"

    def command(self) -> list[str]:
        run = ["-m", "daemon.cli", "run", "-c", str(self.conf), *self.args]
        if self.fsize is None:
            return [sys.executable, *run]
        wrapper = ("import os, resource, sys; "
                   f"resource.setrlimit(resource.RLIMIT_FSIZE, ({self.fsize}, {self.fsize})); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
        return [sys.executable, "-c", wrapper, *run]

    async def start(self, within: float = 30.0) -> None:
        """Start and wait for READY=1 (of this start)."""
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_USEC", None)
        self.lines.append(f"---- start {time.strftime('%H:%M:%S')} ----")
        self.proc = subprocess.Popen(self.command(), env=env, cwd=ROOT, text=True,
                                     errors="replace", stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        daemon=True)
        self._reader.start()
        self.readies += 1
        want = self.readies
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode}:\n{self.tail()}")
            return self.notify.count("READY=1") >= want

        await eventually(ready, within=within, what="READY=1")

    def _read(self, stream: IO[str]) -> None:
        with self._log.open("a", encoding="utf-8") as log:
            for line in stream:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (a crash, the OOM killer, a power cut of the
        process)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._join()

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the daemon did not exit within {within:.0f} s of SIGTERM "
                                 f"(killed); its log ends:\n{self.tail()}") from None
        self._join()
        return code

    def ensure_dead(self) -> None:
        if self.running:
            self.kill()
        self.notify.close()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def grep(self, *needles: str) -> list[str]:
        return [line for line in self.lines if any(n in line for n in needles)]

    async def wait_log(self, *needles: str, within: float = 20.0) -> list[str]:
        """Lines containing any of ``needles``, once there is one."""
        return await eventually(lambda: self.grep(*needles), within=within,
                                what=f"a log line with one of {needles}")


# -- MQTT events ------------------------------------------------------------------------------

def payload(m: Received) -> dict[str, Any]:
    return dict(json.loads(m.payload)) if m.payload else {}


def events(messages: list[Received], base: str) -> list[dict[str, Any]]:
    """The alarm events (``<base>/events``) among ``messages``, in arrival order."""
    return [payload(m) for m in messages if m.topic == f"{base}/events"]


def is_event(base: str, alarm_id: str, kind: str | None = None) -> Callable[[Received], bool]:
    """A ``MqttCollector.wait_for`` predicate: an event of ``alarm_id`` (of ``kind``)."""

    def match(m: Received) -> bool:
        if m.topic != f"{base}/events":
            return False
        event = payload(m)
        return event.get("alarm_id") == alarm_id and kind in (None, event.get("event"))

    return match


def logged_events(lines: list[str]) -> list[tuple[str, str]]:
    """(alarm_id, event kind) of every alarm event the daemon logged (``AlarmDesk.publish``
    logs each event it accepts, before storing it), in order."""
    return [(m[1], m[2]) for line in lines if (m := _EVENT_LINE.search(line))]


_EVENT_LINE = re.compile(r"firewarden: alarm (\S+) ([a-z_]+): ")


# -- fire panel -------------------------------------------------------------------------------

async def send_fire(port: int, serial: int, zone: int, *, fire: bool = True,
                    within: float = 5.0) -> None:
    """One send-data frame from a UITD over TCP; returns once the daemon ACKed it."""
    uitd = await UitdPeer.tcp("127.0.0.1", port)
    try:
        await uitd.write(fire_frame(serial, zone=zone, fire=fire))
        assert (await uitd.reply(within=within)).header.serial == serial
    finally:
        await uitd.close()


def fire_alarm(panel: str, zone: int) -> str:
    return f"fire:{panel}:2-{zone}-25"


# -- InfluxDB ---------------------------------------------------------------------------------

def query(influx: InfluxDB, db: str, q: str) -> list[dict[str, Any]]:
    """Rows, or [] while the server or database is not there."""
    try:
        return influx.query(db, q)
    except (OSError, ServiceError):
        return []


def stamps(influx: InfluxDB, db: str, measurement: str, field: str, device: str,
           where: str = "") -> list[int]:
    """Timestamps (ns) of ``field`` for ``device``, oldest first."""
    rows = query(influx, db, f"SELECT \"{field}\" FROM \"{measurement}\" "
                             f"WHERE device = '{device}'{where}")
    return sorted(int(r["time"]) for r in rows)


def values(influx: InfluxDB, db: str, measurement: str, field: str,
           device: str) -> list[tuple[int, float]]:
    rows = query(influx, db, f"SELECT \"{field}\" FROM \"{measurement}\" "
                             f"WHERE device = '{device}'")
    return sorted((int(r["time"]), float(r[field])) for r in rows)


# -- SQLite state (read-only, while the daemon runs or after it died) -------------------------

def spool_lines(path: Path) -> list[str]:
    """Every line protocol line waiting in the InfluxDB spool."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        bodies = [bytes(b).decode() for (b,) in db.execute("SELECT body FROM batches")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [line for body in bodies for line in body.split("\n") if line]


def spool_points(path: Path) -> int:
    return len(spool_lines(path))


def outbox(path: Path, sink: str = "mqtt") -> list[str]:
    """Event ids waiting in the alarm store's outbox for ``sink``."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [str(e) for (e,) in db.execute(
            "SELECT event_id FROM outbox WHERE sink = ? ORDER BY seq", (sink,))]
    finally:
        db.close()


def stored_alarms(path: Path) -> dict[str, dict[str, Any]]:
    """alarm_id -> stored alarm (as JSON) from the alarm store."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {str(i): dict(json.loads(d)) for i, d in
                db.execute("SELECT alarm_id, data FROM alarms")}
    finally:
        db.close()


# -- a witness of the polls a device answered -------------------------------------------------

class PollWitness:
    """Records when a simulated (TCP) device served the first register read of a poll.

    The fault-meter's poll is one request (input registers 0..7), so each served request is
    one poll the daemon made and got an answer to: an independent count of what the daemon
    must have accepted. The poller takes a poll's timestamp before sending its request and
    polls a bus one transaction at a time, so poll i's timestamp lies in (served[i-1],
    served[i]].
    """

    def __init__(self, device: SimulatedDevice, *, function: int = 4, address: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.served: list[float] = []
        context = device.context
        original = context.getValues

        def get_values(func_code: int, addr: int, count: int = 1) -> Any:
            result = original(func_code, addr, count)
            if func_code == function and addr == address and not isinstance(result, int):
                self.served.append(clock())
            return result

        setattr(context, "getValues", get_values)  # noqa: B010 - an instance override
