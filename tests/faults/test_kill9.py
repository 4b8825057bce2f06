"""kill -9 in the middle of everything, twice: first while InfluxDB is away (readings being
spooled, the writer backing off), then while the spool is being replayed into it; all the while
meters are polled, a fire panel reports new fires and MQTT delivers. After each restart the
daemon loses nothing it had accepted and shows nothing twice.

What "accepted" means at a kill -9, and what is checked against what:
- readings: the meters record when they served each poll (``PollWitness``). Every poll served
  more than ``flush_interval`` + 1 s before a kill must be in InfluxDB in the end (the README:
  a batch the server does not take goes to the spool at once, and the spool survives kill -9);
  only the last moment's readings, still in memory, may die with the process;
- the daemon's durable state right after each kill (the spool's lines, the alarm store's
  alarms and outbox): every spooled point is replayed, every stored alarm keeps its state
  (retained on MQTT), every event waiting in the outbox arrives; no event id arrives twice
  except those that were in the outbox at a kill (published, PUBACK's delete not committed:
  at least once), and InfluxDB has each point and each alarm transition once;
- every fire the panel got ACKed for is an alarm after the restart.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto, free_port
from tests.faults.harness import (
    PROFILE,
    Daemon,
    PollWitness,
    events,
    fire_alarm,
    meters,
    outbox,
    payload,
    query,
    send_fire,
    spool_lines,
    spool_points,
    stamps,
    stored_alarms,
    write_config,
)
from tests.services import MqttCollector, eventually

pytestmark = pytest.mark.faults
SITE = "kill9"
BASE = f"firewarden/{SITE}"
DB = "kill9"
FLUSH = 0.2
GRACE = FLUSH + 1.0  # readings younger than this at a kill may be lost (memory)


@dataclass
class Snapshot:
    """The daemon's durable state right after a kill."""

    killed_at: float
    spooled: list[str]
    waiting: list[str]
    alarms: dict[str, dict[str, object]]


@pytest.mark.timeout(180)
async def test_kill_9_mid_write_loses_nothing_accepted(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb_factory: Callable[[], InfluxDB]) -> None:
    broker = mosquitto_factory()
    await asyncio.to_thread(broker.start)
    influx = influxdb_factory()  # not started: the daemon spools first
    state = tmp_path / "state"
    spool, store = state / "influx-spool.db", state / "alarms.db"
    panel = free_port()
    profile = load_profile(str(PROFILE))
    devices = [SimulatedDevice(profile, u) for u in (1, 2)]
    witnesses = {f"m{d.unit}": PollWitness(d) for d in devices}
    acked: list[int] = []  # zones whose fire the daemon ACKed
    next_zone = [1]

    async def panel_reports() -> None:
        while True:
            zone = next_zone[0]
            next_zone[0] += 1
            with contextlib.suppress(OSError, TimeoutError, ConnectionError, AssertionError):
                await send_fire(panel, zone, zone, within=2)
                acked.append(zone)
            await asyncio.sleep(0.1)

    snapshots: list[Snapshot] = []
    daemons: list[Daemon] = []

    async def kill(daemon: Daemon) -> None:
        daemon.kill()
        snapshots.append(Snapshot(time.time(), spool_lines(spool), outbox(store),
                                  stored_alarms(store)))

    async with ModbusTcpSimulator(devices=devices) as sim:
        conf = write_config(tmp_path, {
            "site": {"id": SITE},
            "daemon": {"state_dir": str(state)},
            "influxdb": {"url": influx.url, "database": DB, "flush_interval": f"{FLUSH}s",
                         "timeout": "1s", "batch_size": 50},
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
            "device": meters("gw", [1, 2]),
            "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                            "port": panel}],
            "alarms": {"flood_count": 1000},
        })
        reports = asyncio.create_task(panel_reports())
        try:
            async with MqttCollector(host="127.0.0.1", port=broker.port,
                                     topics=[f"{BASE}/#"]) as mqtt:
                # run 1: InfluxDB away for 12 s, then kill -9 mid-outage
                daemons.append(Daemon(conf, tmp_path))
                await daemons[-1].start()
                await asyncio.sleep(12)
                assert spool_points(spool) > 0
                await kill(daemons[-1])

                # run 2: InfluxDB back, kill -9 mid-replay
                daemons.append(Daemon(conf, tmp_path))
                await daemons[-1].start()
                await asyncio.sleep(2)
                await asyncio.to_thread(influx.start)
                peak = spool_points(spool)
                await eventually(lambda: 0 < spool_points(spool) < peak - 20, within=40,
                                 every=0.01, what="the replay under way")
                await kill(daemons[-1])

                # run 3: to the end
                daemons.append(Daemon(conf, tmp_path))
                await daemons[-1].start()
                await asyncio.sleep(2)
                reports.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reports
                await eventually(lambda: spool_points(spool) == 0 and not outbox(store),
                                 within=60, what="spool and outbox drained")
                await asyncio.sleep(1)
                stopped_at = time.time()
                assert await daemons[-1].stop() == 0, daemons[-1].tail()
                got = events(mqtt.messages, BASE)
                retained = {m.topic.rsplit("/", 1)[1]: payload(m) for m in mqtt.messages
                            if m.topic.startswith(f"{BASE}/alarms/") and m.payload}
        finally:
            reports.cancel()
            for daemon in daemons:
                daemon.ensure_dead()

    problems: list[str] = []
    # 1. readings: every poll served before (kill - GRACE) is in InfluxDB, once, complete
    cutoffs = [s.killed_at for s in snapshots] + [stopped_at]
    for name, witness in witnesses.items():
        online = stamps(influx, DB, "device_health", "online", name)
        assert len(online) == len(set(online))
        served = witness.served
        lost: list[float] = []
        for i in range(1, len(served)):
            run_end = next(c for c in cutoffs if c >= served[i])
            if served[i] > run_end - GRACE:
                continue  # in memory at the kill (or cut by SIGTERM): may be lost
            lo = bisect.bisect_right(online, int(served[i - 1] * 1e9))
            if lo >= len(online) or online[lo] > served[i] * 1e9 + 1e6:
                lost.append(served[i])
        if lost:
            owner = [next(k for k, c in enumerate(cutoffs) if c >= w) for w in lost]
            by_kill = [owner.count(k) for k in range(len(snapshots))]
            ages = [min(c - w for c in cutoffs if c >= w) for w in lost]
            problems.append(
                f"{name}: {len(lost)} of {len(served)} answered polls missing from InfluxDB "
                f"(per kill: {by_kill}); they were {min(ages):.1f}-{max(ages):.1f} s old at "
                f"the kill, i.e. accepted but never spooled")
        voltage = set(stamps(influx, DB, "power", "voltage_v", name))
        torn = set(online) ^ voltage
        assert all(any(abs(ts / 1e9 - c) < 1.5 for c in cutoffs) for ts in torn), name
    for k, snap in enumerate(snapshots, 1):
        for name in witnesses:
            spooled = {int(line.rsplit(" ", 1)[1]) for line in snap.spooled
                       if line.startswith("device_health,") and f"device={name}," in line
                       and " online=" in line}
            missing = spooled - set(stamps(influx, DB, "device_health", "online", name))
            assert not missing, f"kill {k}: spooled points of {name} not replayed: {missing}"
    transitions = Counter((r["alarm_id"], r["event"]) for r in
                          query(influx, DB, 'SELECT alarm_id, "event" FROM alarms'))
    assert transitions
    assert max(transitions.values()) == 1, transitions.most_common(3)  # each fire raised once

    # 2. alarms: kept with their state, outboxes delivered, nothing paged twice
    waiting = {e for s in snapshots for e in s.waiting}
    ids = [e["event_id"] for e in got]
    for k, snap in enumerate(snapshots, 1):
        assert snap.alarms, f"kill {k}: no alarm stored"
        for alarm_id, alarm in snap.alarms.items():
            if alarm["state"] == "unacknowledged":
                assert retained[alarm_id]["state"] == "unacknowledged", (k, alarm_id)
        assert set(snap.waiting) <= set(ids), (k, set(snap.waiting) - set(ids))
    twice = {i for i in ids if ids.count(i) > 1}
    assert twice <= waiting, twice - waiting
    # 3. every fire ACKed to the panel is an alarm
    unalarmed = {fire_alarm("p1", z) for z in acked} - set(retained)
    if unalarmed:
        problems.append(f"fires ACKed to the panel but never alarmed: {sorted(unalarmed)}")
    assert not any("Traceback" in line for d in daemons for line in d.lines)
    assert not problems, "\n".join(problems)
    print(f"\nkills with {[len(s.spooled) for s in snapshots]} lines spooled and "
          f"{[len(s.waiting) for s in snapshots]} events waiting; {len(acked)} fires, "
          f"{sum(len(w.served) for w in witnesses.values())} polls, all in; "
          f"{len(twice)} events redelivered")
