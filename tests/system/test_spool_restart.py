"""The daemon killed (-9) while its InfluxDB spool holds data: restarted with the server back,
it replays the spool; every spooled point arrives exactly once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto
from simulator.toml_writer import dump_toml
from tests.services import NotifySocket, eventually

pytestmark = pytest.mark.system
ROOT = Path(__file__).parents[2]


def _spooled_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        bodies = [bytes(b).decode() for (b,) in db.execute("SELECT body FROM batches")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [line for body in bodies for line in body.split("\n")]


async def test_kill_9_with_a_full_spool_replays_it(tmp_path: Path, mosquitto: Mosquitto) -> None:
    influx = InfluxDB(workdir=tmp_path / "influxd")  # not started: the daemon spools
    meter = SimulatedDevice(profile=load_profile("eastron-sdm120"), unit=1)
    state = tmp_path / "state"
    async with ModbusTcpSimulator(devices=[meter]) as sim:
        conf = tmp_path / "fw.toml"
        conf.write_text(dump_toml({
            "site": {"id": "spool"},
            "daemon": {"state_dir": str(state)},
            "influxdb": {"url": influx.url, "database": "spool", "flush_interval": "200ms",
                         "timeout": "1s"},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
            "device": [{"name": "m1", "bus": "gw", "unit": 1, "profile": "eastron-sdm120",
                        "poll": "200ms"}],
        }), encoding="utf-8")

        def start(tag: str) -> tuple[subprocess.Popen[bytes], NotifySocket]:
            notify = NotifySocket(tmp_path / f"notify-{tag}.sock")
            log = (tmp_path / f"daemon-{tag}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
                                    env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            return proc, notify

        first, notify = start("first")
        try:
            await notify.wait_for("READY=1", within=20)
            spool = state / "influx-spool.db"
            await eventually(lambda: len(_spooled_lines(spool)) >= 100, within=30,
                             what="100 points spooled")
            snapshot = [line for line in _spooled_lines(spool) if " current_a=" in line]
        finally:
            first.kill()  # SIGKILL: no shutdown, no final flush
            first.wait()
        assert snapshot
        last_ts = max(int(line.rsplit(" ", 1)[1]) for line in snapshot)

        await asyncio.to_thread(influx.start)
        second, notify = start("second")
        try:
            await notify.wait_for("READY=1", within=20)

            def replayed() -> int:
                try:
                    rows = influx.query("spool", f"SELECT count(current_a) FROM power "
                                                 f"WHERE time <= {last_ts}")
                except Exception:
                    return 0
                return int(rows[0]["count"]) if rows else 0

            await eventually(lambda: replayed() >= len(snapshot), within=30,
                             what=f"{len(snapshot)} spooled currents")
            await asyncio.sleep(1.0)
            assert replayed() == len(snapshot)  # each exactly once, nothing lost
            stamps = {int(line.rsplit(" ", 1)[1]) for line in snapshot}
            rows = influx.query("spool", f"SELECT current_a FROM power WHERE time <= {last_ts}")
            assert {int(r["time"]) for r in rows} == stamps
        finally:
            second.terminate()
            second.wait(20)
            await asyncio.to_thread(influx.stop)
    assert second.returncode == 0
