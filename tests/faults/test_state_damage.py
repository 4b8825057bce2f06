"""A damaged or unwritable state dir must not stop the daemon: the power cut that truncates
``alarms.db`` on an SD card must not also switch off the fire listener.

- a damaged ``alarms.db`` or ``influx-spool.db`` (random bytes, cut half-way, zero bytes, a
  directory in its place) is kept as ``<name>.corrupt-<UTC>``, a fresh one is made, a
  ``state-store`` alarm goes out on MQTT, and fires and readings flow as ever;
- a state dir that cannot be written (a read-only mount, a path that cannot be created) runs
  with its state in memory, with the same alarm;
- a state filesystem the spool filled to the last byte drains once InfluxDB is back (SQLite
  needs free space to delete: the daemon's full-disk reserve gives it that).

The read-only state dir is a real read-only bind mount in a private mount namespace made for
the daemon alone (``unshare -m``; ``unshare -rm``, a user namespace, when not root): root
ignores ``chmod 0555``, so only a mount makes it read-only for root. The uncreatable state dir
is a path under ``/proc``, where nobody, root included, can make a directory. The full disk is
a real one: a 24 MB tmpfs mounted on the state dir in the daemon's private namespace, filled by
the test (through ``/proc/<pid>/root``) and by the spool; the test reads the spool with
``nsenter`` into that namespace.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.sinks.spool import SCHEMA as SPOOL_SCHEMA
from daemon.store import SCHEMA as STORE_SCHEMA
from daemon.store import AlarmStore
from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto, free_port
from tests.faults.harness import (
    PROFILE,
    Daemon,
    fire_alarm,
    is_event,
    meters,
    send_fire,
    stamps,
    stored_alarms,
    write_config,
)
from tests.services import MqttCollector, eventually

pytestmark = pytest.mark.faults


def state_alarm(file: str) -> str:
    return f"state-store:firewarden:{file}"


class MountedDaemon(Daemon):
    """The daemon in a private mount namespace, after ``setup`` (shell) has run in it: the
    mounts are the daemon's alone and vanish with it."""

    def __init__(self, conf: Path, tmp: Path, *, setup: str) -> None:
        super().__init__(conf, tmp)
        self.setup = setup

    def command(self) -> list[str]:
        user = [] if os.geteuid() == 0 else ["-r"]  # a user namespace lets non-root mount
        return ["unshare", *user, "-m", "--propagation", "private", "sh", "-c",
                f'{self.setup} && exec "$@"', "sh", *super().command()]


def make_db(path: Path, schema: str) -> None:
    """A state file of a few hundred KB, checkpointed (no -wal left), to be damaged."""
    db = sqlite3.connect(path)
    db.executescript(schema)
    if "outbox" in schema:
        db.executemany("INSERT INTO outbox (sink, priority, event_id, payload, created) "
                       "VALUES ('mqtt', 1, ?, ?, 0)", [(f"e{i}", "x" * 500) for i in range(400)])
    else:
        db.executemany("INSERT INTO batches (alarms, points, bytes, body, created) "
                       "VALUES (0, 1, 500, ?, 0)", [(b"x" * 500,) for _ in range(400)])
    db.commit()
    db.close()


def garbage(path: Path) -> bytes:
    return os.urandom(64 * 1024)


def truncated(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


def zero_length(path: Path) -> bytes:
    return b""


DAMAGE: dict[str, Callable[[Path], bytes]] = {
    "garbage": garbage, "truncated": truncated, "zero-length": zero_length}


def config(tmp: Path, state: Path, *, mqtt: int, panel: int, influx: str, modbus: int,
           db: str) -> Path:
    return write_config(tmp, {
        "site": {"id": db},  # one site (MQTT topics) and database per test
        "daemon": {"state_dir": str(state)},
        "influxdb": {"url": influx, "database": db, "flush_interval": "200ms",
                     "timeout": "1s"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt},
        "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": modbus}],
        "device": meters("gw", [1], poll="200ms"),
        "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel}],
    })


async def run_and_check(daemon: Daemon, mosquitto: Mosquitto, panel: int,
                        broken: list[str], influx: InfluxDB, db: str) -> None:
    """READY, a fire from the panel on MQTT, a ``state-store`` alarm per file in ``broken``,
    readings in InfluxDB, still running, and a clean stop."""
    base = f"firewarden/{db}"
    async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                             topics=[f"{base}/#"]) as mqtt:
        await daemon.start()
        await send_fire(panel, 1, 3)
        await mqtt.wait_for(is_event(base, fire_alarm("p1", 3), "raised"), timeout=15)
        for file in broken:
            await mqtt.wait_for(is_event(base, state_alarm(file), "raised"), timeout=15)
        await eventually(lambda: stamps(influx, db, "power", "voltage_v", "m1"), within=15,
                         what="readings in InfluxDB")
        assert daemon.running, daemon.tail()
        assert await daemon.stop() == 0, daemon.tail()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", [*DAMAGE, "directory"])
@pytest.mark.parametrize("file", ["alarms.db", "influx-spool.db"])
async def test_damaged_state_file_is_moved_aside_and_the_daemon_runs(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, file: str,
        damage: str) -> None:
    """A damaged state file: kept aside, replaced, alarmed; fires reach MQTT, readings
    reach InfluxDB."""
    state = tmp_path / "state"
    state.mkdir()
    path = state / file
    if damage == "directory":
        path.mkdir()
        (path / "something").write_text("not a database")
        bad: bytes | None = None
    else:
        make_db(path, STORE_SCHEMA if file == "alarms.db" else SPOOL_SCHEMA)
        bad = DAMAGE[damage](path)
        path.write_bytes(bad)
    db = f"damage_{file.split('.')[0].replace('-', '_')}_{damage.replace('-', '_')}"
    panel = free_port()
    async with ModbusTcpSimulator(devices=[SimulatedDevice(load_profile(str(PROFILE)),
                                                           1)]) as sim:
        conf = config(tmp_path, state, mqtt=mosquitto.port, panel=panel, influx=influxdb.url,
                      modbus=sim.port, db=db)
        daemon = Daemon(conf, tmp_path)
        try:
            await run_and_check(daemon, mosquitto, panel, [file], influxdb, db)
        finally:
            daemon.ensure_dead()
    kept = sorted(state.glob(f"{file}.corrupt-*"))
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))], sorted(
        p.name for p in state.iterdir())
    if bad is not None:
        assert kept[0].read_bytes() == bad  # kept as it was, for whoever wants to look
    else:
        assert (kept[0] / "something").exists()
    if file == "alarms.db":  # the fresh store works: the fire is in it
        assert fire_alarm("p1", 3) in stored_alarms(path)
    assert daemon.grep("damaged"), daemon.tail()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["read-only-mount", "cannot-create"])
async def test_unwritable_state_dir_runs_in_memory(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, how: str) -> None:
    """A state dir that cannot be written: state in memory, a ``state-store`` alarm per
    file, fires on MQTT and readings in InfluxDB all the same."""
    panel = free_port()
    db = f"unwritable_{how.replace('-', '_')}"
    async with ModbusTcpSimulator(devices=[SimulatedDevice(load_profile(str(PROFILE)),
                                                           1)]) as sim:
        if how == "read-only-mount":
            state = tmp_path / "state"
            state.mkdir()
            with AlarmStore(state / "alarms.db", sinks=["mqtt"]):  # readable, not writable
                pass
            conf = config(tmp_path, state, mqtt=mosquitto.port, panel=panel,
                          influx=influxdb.url, modbus=sim.port, db=db)
            quoted = shlex.quote(str(state))
            daemon: Daemon = MountedDaemon(conf, tmp_path, setup=(
                f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}"))
        else:
            state = Path(f"/proc/firewarden-{os.getpid()}/state")
            conf = config(tmp_path, state, mqtt=mosquitto.port, panel=panel,
                          influx=influxdb.url, modbus=sim.port, db=db)
            daemon = Daemon(conf, tmp_path)
        try:
            await run_and_check(daemon, mosquitto, panel, ["alarms.db", "influx-spool.db"],
                                influxdb, db)
        finally:
            daemon.ensure_dead()
    assert daemon.grep("in memory only"), daemon.tail()
    if how == "read-only-mount":  # untouched: nothing was written, nothing moved aside
        assert sorted(p.name for p in state.iterdir()) == ["alarms.db"]


FULL_TMPFS = "24m"  # the state filesystem: the 8 MB reserve, schemas, then a filler
LEFT_FREE = 128 * 1024  # bytes the filler leaves: the spool fills them within seconds
SPOOLED_FIRST = 1500  # points in the spool before the filler comes
DISK_FULL = ("disk full", "is full")


_COUNT = ("import sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True, "
          "timeout=5); print(db.execute('SELECT COALESCE(SUM(points), 0) FROM batches')"
          ".fetchone()[0])")


def spooled_in(daemon: MountedDaemon, path: Path) -> int:
    """Points in the spool ``path`` as the daemon sees it, read from inside its mount
    namespace (SQLite resolves ``/proc/<pid>/root`` back into ours)."""
    assert daemon.proc is not None
    user = [] if os.geteuid() == 0 else ["-U", "--preserve-credentials"]
    out = subprocess.run(["nsenter", "-t", str(daemon.proc.pid), *user, "-m", sys.executable,
                          "-c", _COUNT, str(path)], capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise AssertionError(f"reading the spool failed: {out.stderr}")
    return int(out.stdout)


def fill(directory: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of ``directory``'s filesystem with one file."""
    size = shutil.disk_usage(directory).free - leave
    with (directory / "filler").open("wb") as out:
        chunk = b"\xa5" * (1 << 20)
        while size > 0:
            size -= out.write(chunk[:size])


@pytest.mark.timeout(200)
async def test_spool_drains_on_a_full_disk_once_influxdb_is_back(
        tmp_path: Path, mosquitto: Mosquitto,
        influxdb_factory: Callable[[], InfluxDB]) -> None:
    """The state filesystem full (a small tmpfs, the spool took the last of it) while
    InfluxDB is away; once it is back, the spool drains (SQLite needs free space to delete)
    and fires reach MQTT throughout."""
    influx = influxdb_factory()  # not started: the daemon spools
    db = "fulldisk"
    base = f"firewarden/{db}"
    state = tmp_path / "state"
    state.mkdir()
    panel = free_port()
    profile = load_profile(str(PROFILE))
    async with ModbusTcpSimulator(devices=[SimulatedDevice(profile, u)
                                           for u in (1, 2, 3)]) as sim:
        conf = write_config(tmp_path, {
            "site": {"id": db},
            "daemon": {"state_dir": str(state)},
            "influxdb": {"url": influx.url, "database": db, "flush_interval": "200ms",
                         "timeout": "500ms"},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
            "device": meters("gw", [1, 2, 3], poll="100ms"),
            "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                            "port": panel}],
        })
        quoted = shlex.quote(str(state))
        daemon = MountedDaemon(conf, tmp_path, setup=(
            f"mount -t tmpfs -o size={FULL_TMPFS} tmpfs {quoted}"))
        try:
            async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                     topics=[f"{base}/#"]) as mqtt:
                await daemon.start()
                assert daemon.proc is not None
                view = Path(f"/proc/{daemon.proc.pid}/root{state}")  # the daemon's tmpfs
                spool = state / "influx-spool.db"

                def spooled() -> int:  # blocks the loop ~0.1 s: the collector keeps up
                    return spooled_in(daemon, spool)

                await eventually(lambda: spooled() >= SPOOLED_FIRST, every=0.5, within=30,
                                 what=f"{SPOOLED_FIRST} points spooled")
                await asyncio.to_thread(fill, view, LEFT_FREE)
                await daemon.wait_log(*DISK_FULL, within=60)
                await send_fire(panel, 1, 5)  # the disk is full: fires still go out
                await mqtt.wait_for(is_event(base, fire_alarm("p1", 5), "raised"), timeout=15)
                await asyncio.sleep(2)
                points = spooled()
                assert points > 0

                await asyncio.to_thread(influx.start)
                back_at = time.monotonic()
                up_ns = time.time_ns()
                await eventually(lambda: spooled() == 0, every=0.5, within=120,
                                 what="the spool drained")
                drained_in = time.monotonic() - back_at
                drained_at = time.time()
                await send_fire(panel, 2, 6)
                await mqtt.wait_for(is_event(base, fire_alarm("p1", 6), "raised"), timeout=15)
                assert daemon.running, daemon.tail()
                assert await daemon.stop() == 0, daemon.tail()
        finally:
            daemon.ensure_dead()
    # what was spooled before InfluxDB came back is in it now
    before = stamps(influx, db, "device_health", "online", "m1", where=f" AND time < {up_ns}")
    assert len(before) * 3 * 6 >= points // 2, (len(before), points)
    assert not daemon.grep("Traceback", "CRITICAL"), daemon.grep("Traceback", "CRITICAL")
    recovered = daemon.grep("InfluxDB writes recovered")[0]  # the writer's backoff ended
    first_write = (time.mktime(time.strptime(recovered[:19], "%Y-%m-%d %H:%M:%S"))
                   + int(recovered[20:23]) / 1000)
    print(f"\n{points} points spooled on a full disk; the spool drained {drained_in:.1f} s "
          f"after InfluxDB came back, {drained_at - first_write:.1f} s after the first write "
          f"it took (the rest is the writer's retry backoff)")
