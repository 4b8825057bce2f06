"""An RS-485 line on a socat pty pair with the RTU simulator on the far end, polled by the daemon
as a process: the cable pulled and plugged back, and units answering garbage, exceptions,
"busy" and nothing at all. The daemon reports what is wrong (device_health, comms alarms) and
reads everything again by itself, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import SimulatedDevice
from simulator.pty import SocatPair
from simulator.rtu import RtuSimulator
from simulator.services import InfluxDB, Mosquitto
from tests.faults.harness import (
    PROFILE,
    Daemon,
    events,
    is_event,
    meters,
    stamps,
    values,
    write_config,
)
from tests.services import MqttCollector, eventually, missing

pytestmark = pytest.mark.faults
BAUD = 9600
POLL = 0.25
TIMEOUT = 0.3


@pytest.fixture
def pair() -> Iterator[SocatPair]:
    if not SocatPair.available():
        missing("socat")
    with SocatPair() as p:
        yield p


@pytest.fixture
async def line(pair: SocatPair) -> AsyncIterator[RtuSimulator]:
    profile = load_profile(str(PROFILE))
    devices = [SimulatedDevice(profile, unit) for unit in (1, 2, 3, 4, 5)]
    async with RtuSimulator(pair.b, devices, baudrate=BAUD) as sim:
        yield sim


def _config(tmp: Path, site: str, pair: SocatPair, mqtt: Mosquitto, influx: InfluxDB,
            units: list[int]) -> Path:
    return write_config(tmp, {
        "site": {"id": site},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": site, "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt.port},
        "bus": [{"name": "rs485-1", "type": "rtu", "port": str(pair.a), "baudrate": BAUD,
                 "timeout": f"{int(TIMEOUT * 1000)}ms"}],
        "device": meters("rs485-1", units, poll=f"{int(POLL * 1000)}ms"),
    })


async def test_serial_line_unplugged_and_plugged_back(
        tmp_path: Path, pair: SocatPair, line: RtuSimulator, mosquitto: Mosquitto,
        influxdb: InfluxDB) -> None:
    site = "unplug"
    base = f"firewarden/{site}"
    conf = _config(tmp_path, site, pair, mosquitto, influxdb, [1, 2])
    daemon = Daemon(conf, tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            await eventually(lambda: all(stamps(influxdb, site, "power", "voltage_v", m)
                                         for m in ("m1", "m2")), within=15, what="readings")
            opened = line.opened
            await asyncio.to_thread(pair.stop)  # the USB adapter pulled out
            unplugged = time.time()
            for name in ("m1", "m2"):
                await mqtt.wait_for(is_event(base, f"comms:{name}", "raised"),
                                    timeout=15)
            await asyncio.sleep(max(0.0, 4 - (time.time() - unplugged)))
            await asyncio.to_thread(pair.start)  # plugged back: the same paths, new ptys
            replugged = time.time()
            await eventually(lambda: line.opened > opened, within=10,
                             what="the simulator on the new pty")
            for name in ("m1", "m2"):
                await mqtt.wait_for(is_event(base, f"comms:{name}", "cleared"),
                                    timeout=30)
            recovered_in = time.time() - replugged
            await asyncio.sleep(1)
            assert daemon.running
            assert daemon.notify.count("READY=1") == 1  # never restarted
            assert await daemon.stop() == 0, daemon.tail()
    finally:
        daemon.ensure_dead()

    assert daemon.grep("bus rs485-1"), daemon.tail()
    assert daemon.grep("reconnected", "is back"), daemon.tail()
    assert not daemon.grep("Traceback")
    for name in ("m1", "m2"):
        online = values(influxdb, site, "device_health", "online", name)
        offline = [ts for ts, v in online if v == 0.0]
        assert offline, f"{name}: no online=0 while unplugged"
        # A poll is stamped when it starts: one begun just before the pull fails too.
        since = (unplugged - POLL - 2 * TIMEOUT) * 1e9
        assert all(since <= ts <= replugged * 1e9 + 30e9 for ts in offline), offline
        assert any(v == 1.0 and ts > replugged * 1e9 for ts, v in online), name
        assert stamps(influxdb, site, "power", "voltage_v", name,
                      f" AND time > {int(replugged * 1e9)}"), name
    print(f"\nunplugged {replugged - unplugged:.1f} s; both units read again "
          f"{recovered_in:.1f} s after the replug, daemon never restarted")


async def test_garbage_exceptions_and_silence_on_a_shared_line(
        tmp_path: Path, pair: SocatPair, line: RtuSimulator, mosquitto: Mosquitto,
        influxdb: InfluxDB) -> None:
    """m1 healthy, m2 garbled answers (bad CRC), m3 exception 4 (device failure), m4 silent,
    m5 "busy" now and then (retried, never a failure)."""
    site = "badunits"
    base = f"firewarden/{site}"
    conf = _config(tmp_path, site, pair, mosquitto, influxdb, [1, 2, 3, 4, 5])
    daemon = Daemon(conf, tmp_path)
    bad = ("m2", "m3", "m4")

    async def busy_now_and_then() -> None:
        while True:
            line.device(5).busy_next = 1
            await asyncio.sleep(0.7)

    busy: asyncio.Task[None] | None = None
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            await asyncio.sleep(2)
            faulty = time.time()
            line.fault(2).crc_garbage = 10**6
            line.device(3).fail = True
            line.fault(4).silent = True
            busy = asyncio.create_task(busy_now_and_then())
            for name in bad:
                await mqtt.wait_for(is_event(base, f"comms:{name}", "raised"),
                                    timeout=15)
            await asyncio.sleep(max(0.0, 6 - (time.time() - faulty)))
            line.fault(2).crc_garbage = 0
            line.device(3).fail = False
            line.fault(4).silent = False
            healed = time.time()
            for name in bad:
                await mqtt.wait_for(is_event(base, f"comms:{name}", "cleared"),
                                    timeout=30)
            recovered_in = time.time() - healed
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy
            await asyncio.sleep(1)
            assert await daemon.stop() == 0, daemon.tail()
            raised = {e["alarm_id"] for e in events(mqtt.messages, base)
                      if e["event"] == "raised"}
    finally:
        if busy is not None:
            busy.cancel()
        daemon.ensure_dead()

    assert raised == {f"comms:{n}" for n in bad}, raised  # none for m1 or the busy m5
    assert not daemon.grep("Traceback")
    # the healthy units kept their schedule: every poll good, at most one timeout late
    for name in ("m1", "m5"):
        health = values(influxdb, site, "device_health", "online", name)
        assert all(v == 1.0 for _, v in health), name
        during = [ts / 1e9 for ts, _ in health if faulty <= ts / 1e9 <= healed]
        gaps = [b - a for a, b in itertools.pairwise(during)]
        assert len(during) >= 0.7 * (healed - faulty) / POLL, (name, len(during))
        assert max(gaps) < POLL + TIMEOUT + 0.35, (name, max(gaps))
        assert values(influxdb, site, "device_health", "errors", name)[-1][1] == 0.0
        assert values(influxdb, site, "device_health", "crc_errors", name)[-1][1] == 0.0
    assert line.device(5).busy_next in (0, 1)
    for name in bad:
        assert values(influxdb, site, "device_health", "errors", name)[-1][1] > 0, name
        online = values(influxdb, site, "device_health", "online", name)
        assert any(v == 0.0 for _, v in online), name
        assert online[-1][1] == 1.0, name  # read again
    assert values(influxdb, site, "device_health", "crc_errors", "m2")[-1][1] > 0
    print(f"\nbad units alarmed and counted, healthy ones on schedule; all read again "
          f"{recovered_in:.1f} s after they healed")
