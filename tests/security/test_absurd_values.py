"""A glitching meter and a garbling gateway against the daemon as a real process, with real
mosquitto and influxd.

- A meter that reports 1.7e38 A (a float32 glitch) must not raise an overcurrent alarm, must
  not put the value into InfluxDB, and must be counted (``device_health.implausible``). The
  same meter then reporting a real 100 A overload on a 63 A breaker must alarm: the positive
  control that the pipeline was alive all along.
- A Modbus TCP gateway that answers every other request with an undecodable PDU must cost a
  bounded number of log lines and no traceback, while the garbled answers are counted
  (``device_health.crc_errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto
from tests.faults.harness import (
    PROFILE,
    Daemon,
    PollWitness,
    events,
    is_event,
    meters,
    query,
    values,
    write_config,
)
from tests.services import MqttCollector, eventually

GLITCH = 1.7e38


def config(tmp: Path, *, site: str, port: int, influx: InfluxDB,
           mosquitto: Mosquitto) -> Path:
    return write_config(tmp, {
        "site": {"id": site},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": site, "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": port,
                 "timeout": "500ms"}],
        "device": meters("gw", [1], poll="200ms", rated_current=63),
        "rules": {"overcurrent": {"on_delay": "0s"}},
    })


def implausible(influx: InfluxDB, db: str) -> float:
    counts = values(influx, db, "device_health", "implausible", "m1")
    return counts[-1][1] if counts else 0.0


@pytest.mark.timeout(120)
async def test_absurd_current_is_dropped_counted_and_never_alarms(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    site = "absurd"
    base = f"firewarden/{site}"
    meter = SimulatedDevice(load_profile(str(PROFILE)), 1)
    meter.set("current", GLITCH, "L1")
    witness = PollWitness(meter)
    async with ModbusTcpSimulator(devices=[meter]) as sim, \
            MqttCollector(host="127.0.0.1", port=mosquitto.port, topics=[f"{base}/#"]) as mqtt:
        daemon = Daemon(config(tmp_path, site=site, port=sim.port, influx=influxdb,
                               mosquitto=mosquitto), tmp_path)
        try:
            await daemon.start()
            # ten polls served with the glitch, and their voltages written: the pipeline ran
            await eventually(lambda: len(witness.served) >= 10, within=30, what="10 polls")
            await eventually(lambda: len(values(influxdb, site, "power", "voltage_v", "m1"))
                             >= 5, within=10, what="voltages in InfluxDB")
            assert events(mqtt.messages, base) == []  # no overcurrent, no alarm of any kind
            assert query(influxdb, site, "SELECT current_a FROM power WHERE device = 'm1'") == []
            assert [v for _, v in values(influxdb, site, "power", "voltage_v", "m1")][-1] == 230
            # counted, and the count written as device health
            await eventually(lambda: implausible(influxdb, site) >= 10, within=10,
                             what="the implausible counter in InfluxDB")

            meter.set("current", 100.0, "L1")  # a real overload on a 63 A breaker
            await mqtt.wait_for(is_event(base, "overcurrent:m1:L1", "raised"), timeout=20)
            await eventually(lambda: values(influxdb, site, "power", "current_a", "m1"),
                             within=10, what="the real current in InfluxDB")
            assert await daemon.stop() == 0, daemon.tail()
        finally:
            daemon.ensure_dead()
    currents = [v for _, v in values(influxdb, site, "power", "current_a", "m1")]
    assert currents
    assert max(currents) == 100.0
    assert not daemon.grep("Traceback")
    warnings = daemon.grep("plausible range")
    assert len(warnings) == 1, warnings  # one line a minute, however often it glitches
    assert "current/L1 = 1.7e+38 A is outside its plausible range -10000..10000" in warnings[0]


# -- a gateway that garbles every other answer ----------------------------------------------

class GarblingGateway:
    """A raw Modbus TCP server: every other answer is an undecodable PDU (an unknown function
    code, then a byte count longer than the frame), the others a valid all-zero answer."""

    GARBAGE = (b"\x01\x63\x02\x00\x01", b"\x01\x03\x09\x00\x01")  # unit, fc, payload

    def __init__(self) -> None:
        self.garbled = 0
        self.answered = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> GarblingGateway:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request = await reader.readexactly(12)
                tid, unit, function, count = request[:2], request[6], request[7], \
                    struct.unpack(">H", request[10:12])[0]
                if (self.garbled + self.answered) % 2 == 0:
                    pdu = self.GARBAGE[self.garbled % 2]
                    self.garbled += 1
                else:
                    pdu = bytes((unit, function, 2 * count)) + bytes(2 * count)
                    self.answered += 1
                writer.write(tid + b"\x00\x00" + struct.pack(">H", len(pdu)) + pdu)
                await writer.drain()
        writer.close()


@pytest.mark.timeout(120)
async def test_garbled_answers_log_a_bounded_number_of_lines_and_no_traceback(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    site = "garbled"
    async with GarblingGateway() as gateway:
        daemon = Daemon(config(tmp_path, site=site, port=gateway.port, influx=influxdb,
                               mosquitto=mosquitto), tmp_path)
        try:
            await daemon.start()
            started = len(daemon.lines)
            await eventually(lambda: gateway.garbled >= 30 and gateway.answered >= 30,
                             within=60, what="30 garbled and 30 good answers")
            so_far = daemon.lines[started:]
            assert not [line for line in so_far if "Traceback" in line], "\n".join(so_far)
            await eventually(lambda: (values(influxdb, site, "device_health", "crc_errors",
                                             "m1") or [(0, 0.0)])[-1][1] >= 10,
                             within=10, what="garbled answers counted in device_health")
            assert await daemon.stop() == 0, daemon.tail()
        finally:
            daemon.ensure_dead()
    during = daemon.lines[started:]
    assert not [line for line in during if "Traceback" in line or "Fatal error" in line], \
        daemon.tail()
    about_m1 = [line for line in during if "m1" in line]
    # one ERROR for the garbled answers and one INFO for the recovery, per minute
    assert len(about_m1) <= 2, about_m1
    assert len(during) <= 15, "\n".join(during)  # the log stays quiet while the device flaps
