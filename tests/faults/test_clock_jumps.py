"""The wall clock jumps (NTP after a long offline spell, an RTC reset, an operator's ``date``):
forward by hours, then backward by minutes with an overcurrent pending its on-delay.

The system clock cannot be changed here, so the Supervisor runs in-process with an injected
wall clock (``time.time() + offset``, the offset under the test's control) against real
sockets: a Modbus TCP simulator, mosquitto and influxd. Waits, timeouts and the poll schedule
stay on the monotonic clock, as in the daemon; readings, rules and alarms use the wall clock.

Expected: polling and writing go on with the jumped timestamps, nothing crashes, no alarm is
raised by a jump alone, and alarms still raise and clear. On a backward jump a pending on-delay
restarts at worst (it must not wait for the clock to catch up with the old timestamps).
m2 is polled every 5 s (like an energy meter), so after the forward jump the engine's 1 s tick
certainly looks at it before its next poll: the deterministic form of the race between the
tick and the first readings after a jump.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from daemon.app import Supervisor
from daemon.config import load_config
from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto
from tests.faults.harness import PROFILE, events, meters, query, write_config
from tests.services import MqttCollector, eventually

pytestmark = pytest.mark.faults
SITE = "clockjump"
BASE = f"firewarden/{SITE}"
DB = "clockjump"
FORWARD = 2 * 3600.0
BACKWARD = 5 * 60.0
ON_DELAY = 3.0


async def test_wall_clock_jumps(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    profile = load_profile(str(PROFILE))
    m1, m2 = SimulatedDevice(profile, 1), SimulatedDevice(profile, 2)
    m1.set("current", 5.0, "L1")
    problems: list[str] = []
    async with ModbusTcpSimulator(devices=[m1, m2]) as sim, \
            MqttCollector(host="127.0.0.1", port=mosquitto.port, topics=[f"{BASE}/#"]) as mqtt:
        conf = write_config(tmp_path, {
            "site": {"id": SITE},
            "daemon": {"state_dir": str(tmp_path / "state")},
            "influxdb": {"url": influxdb.url, "database": DB, "flush_interval": "200ms"},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
            "device": [*meters("gw", [1], kind="incomer", rated_current=10),
                       *meters("gw", [2], poll="5s")],
            "rules": {"overcurrent": {"on_delay": f"{ON_DELAY:g}s"}},
        })
        stop = asyncio.Event()
        runner = asyncio.create_task(Supervisor(loaded=load_config(conf), clock=clock).run(stop))

        def seen(since: int) -> list[tuple[str, str]]:
            return [(e["alarm_id"], e["event"]) for e in events(mqtt.messages[since:], BASE)]

        def newest(device: str) -> float:
            rows = query(influxdb, DB, f"SELECT last(voltage_v) FROM power "
                                       f"WHERE device = '{device}'")
            return int(rows[0]["time"]) / 1e9 if rows else 0.0

        def between(device: str, start: float, end: float) -> int:
            rows = query(influxdb, DB, f"SELECT count(voltage_v) FROM power "
                                       f"WHERE device = '{device}' AND time >= "
                                       f"{int(start * 1e9)} AND time <= {int(end * 1e9)}")
            return int(rows[0]["count"]) if rows else 0

        try:
            await eventually(lambda: newest("m1") > 0 and newest("m2") > 0, within=20,
                             what="first readings")
            await asyncio.sleep(2)
            assert not seen(0), seen(0)

            # 1. forward by hours, nothing wrong: no alarm, readings carry the new time
            mark = len(mqtt.messages)
            offset[0] += FORWARD
            jumped = clock()
            await eventually(lambda: newest("m1") >= jumped, within=10,
                             what="readings stamped after the forward jump")
            await asyncio.sleep(4)
            if seen(mark):
                problems.append(f"forward jump of {FORWARD / 3600:g} h alone raised: "
                                f"{seen(mark)}")
            # let any alarm the jump raised clear again before the next phase
            await asyncio.sleep(4)

            # 2. an overcurrent starts, and 1 s into its on-delay the clock goes back
            mark = len(mqtt.messages)
            m1.set("current", 15.0, "L1")
            await asyncio.sleep(1.0)
            offset[0] -= BACKWARD
            back = clock()
            await eventually(lambda: between("m1", back - 1, back + 60), within=10,
                             what="readings stamped after the backward jump")
            raised_at = None
            try:
                await mqtt.wait_for(lambda m: ("overcurrent:m1:L1", "raised") in seen(mark),
                                    timeout=ON_DELAY + 5)
                raised_at = clock()
            except AssertionError:
                problems.append(f"overcurrent pending its {ON_DELAY:g} s on-delay was not "
                                f"raised within {ON_DELAY + 5:g} s after a {BACKWARD:g} s "
                                f"backward jump (the on-delay waits for the clock to catch up)")
            others = [e for e in seen(mark) if e[0] != "overcurrent:m1:L1"]
            if others:
                problems.append(f"backward jump alone raised: {others}")

            # 3. and it clears
            m1.set("current", 5.0, "L1")
            if raised_at is not None:
                try:
                    await mqtt.wait_for(
                        lambda m: ("overcurrent:m1:L1", "cleared") in seen(mark), timeout=10)
                except AssertionError:
                    problems.append("overcurrent did not clear after the backward jump")
            assert not runner.done(), runner
        finally:
            stop.set()
            done, _ = await asyncio.wait({runner}, timeout=30)
            if not done:
                runner.cancel()
                problems.append("the Supervisor did not stop within 30 s of stop.set()")
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            problems.append(f"the Supervisor died: {runner.exception()!r}")

    crashes = [r for r in caplog.records if r.exc_info or r.levelno >= logging.CRITICAL]
    assert not crashes, [r.getMessage() for r in crashes]
    # polling and writing went on through both jumps
    for name, every in (("m1", 0.2), ("m2", 5.0)):
        rows = query(influxdb, DB, f"SELECT count(voltage_v) FROM power WHERE device = '{name}' "
                                   f"AND time >= {int(jumped * 1e9)}")
        assert rows, name
        assert int(rows[0]["count"]) >= 8 / every / 2, (name, rows)
    assert not problems, "\n".join(problems)
