"""InfluxDB down for a minute under steady polling: every poll the daemon made is in InfluxDB
afterwards, complete, once.

What is provable, and how: the simulated meters record when they served each poll's one read
request (``PollWitness``): an independent list of the polls the daemon made and got answers
to. The poller stamps a poll before sending its request, one transaction at a time, so poll
i's timestamp lies between served[i-1] and served[i]. After the outage, InfluxDB must hold,
per meter, exactly one ``device_health.online`` point per served poll (the last one may be
missing only if it was served after SIGTERM, when the poller is cancelled mid-poll), each in
its slot, and ``voltage_v`` and ``current_a`` at exactly those timestamps: every reading of
every poll, through the spool for the minute InfluxDB was away, and none twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto
from tests.faults.harness import (
    PROFILE,
    Daemon,
    PollWitness,
    meters,
    query,
    spool_points,
    stamps,
    write_config,
)
from tests.services import eventually

pytestmark = pytest.mark.faults
OUTAGE = 60.0  # s InfluxDB is down (the issue says minutes; a minute keeps CI sane)
POLL = 0.2
DB = "outage"


@pytest.mark.timeout(300)
async def test_influxdb_down_a_minute_under_load_loses_nothing(
        tmp_path: Path, mosquitto: Mosquitto,
        influxdb_factory: Callable[[], InfluxDB]) -> None:
    influx = influxdb_factory()
    await asyncio.to_thread(influx.start)
    profile = load_profile(str(PROFILE))
    devices = [SimulatedDevice(profile, unit) for unit in (1, 2, 3)]
    witnesses = {f"m{d.unit}": PollWitness(d) for d in devices}
    state = tmp_path / "state"
    spool = state / "influx-spool.db"
    async with ModbusTcpSimulator(devices=devices) as sim:
        conf = write_config(tmp_path, {
            "site": {"id": "outage"},
            "daemon": {"state_dir": str(state)},
            "influxdb": {"url": influx.url, "database": DB, "flush_interval": "200ms",
                         "timeout": "1s"},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port,
                     "timeout": "500ms"}],
            "device": meters("gw", [1, 2, 3], poll=f"{int(POLL * 1000)}ms"),
        })
        daemon = Daemon(conf, tmp_path)
        try:
            await daemon.start()
            await eventually(lambda: stamps(influx, DB, "device_health", "online", "m3"),
                             within=15, what="first points in InfluxDB")
            await asyncio.sleep(2)

            await asyncio.to_thread(influx.stop)
            down_at = time.time()
            await eventually(lambda: spool_points(spool) > 0, within=15, what="spooling")
            await asyncio.sleep(OUTAGE - (time.time() - down_at))
            spooled = spool_points(spool)
            assert spooled >= 0.5 * OUTAGE / POLL * 3 * 6, spooled  # 3 meters x 6 points
            assert any("points spooled" in s for s in daemon.notify.statuses())
            await asyncio.to_thread(influx.start)
            up_at = time.time()

            # The sink retries with capped backoff (30 s): within that, plus the replay.
            await eventually(lambda: spool_points(spool) == 0, within=60,
                             what="the spool replayed")
            replayed_in = time.time() - up_at
            await asyncio.sleep(1)
            stop_at = time.time()
            assert await daemon.stop() == 0, daemon.tail()
        finally:
            daemon.ensure_dead()

    assert daemon.grep("InfluxDB write to", "spooling to disk")
    assert daemon.grep("InfluxDB writes recovered")
    assert not daemon.grep("Traceback", "CRITICAL")
    assert spool_points(spool) == 0  # the clean stop found nothing left to spool
    in_outage = 0
    for name, witness in witnesses.items():
        served = witness.served
        online = stamps(influx, DB, "device_health", "online", name)
        # one point per answered poll; the poll served last may have been cut by SIGTERM
        missing = len(served) - len(online)
        assert missing == 0 or (missing == 1 and served[-1] >= stop_at), (
            name, len(served), len(online))
        for i, ts in enumerate(online):  # each in its own poll's slot
            assert ts <= served[i] * 1e9 + 1e6, (name, i)
            assert i == 0 or ts > served[i - 1] * 1e9 - 1e6, (name, i)
        for field in ("voltage_v", "current_a"):
            assert stamps(influx, DB, "power", field, name) == online, (name, field)
        errors = query(influx, DB, f"SELECT max(errors) FROM device_health "
                                   f"WHERE device = '{name}'")
        assert errors[0]["max"] == 0
        in_outage += sum(down_at * 1e9 <= ts <= up_at * 1e9 for ts in online)
    assert in_outage >= 0.8 * OUTAGE / POLL * 3, in_outage
    metrics = query(influx, DB, "SELECT max(spool_dropped), max(readings_refused) "
                                "FROM firewarden")
    assert (metrics[0]["max"], metrics[0]["max_1"]) == (0, 0)
    print(f"\n{in_outage} polls made while InfluxDB was down {OUTAGE:.0f} s, {spooled} points "
          f"spooled; replayed {replayed_in:.1f} s after it came back; every poll of "
          f"{sum(len(w.served) for w in witnesses.values())} in InfluxDB once")
