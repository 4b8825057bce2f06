"""The Modbus TCP driver against a real pymodbus server (our simulator) and mbpoll."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from core.measurements import Quality, Quantity, Reading
from daemon.config import BusConfig, DeviceConfig
from drivers.modbus.errors import ModbusDeviceError, ModbusLinkError
from drivers.modbus.poller import Backoff, BusPoller, PolledDevice, read_once
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profile import Profile, RegisterType, load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from tests.integration.test_profiles_tcp import distinct_value
from tests.services import missing

pytestmark = pytest.mark.integration

FAST = Backoff(base=0.1, cap=0.5, jitter=0.1)  # keeps recovery tests short
WAIT = 20.0  # s; generous deadline for conditions on a loaded machine


@pytest.fixture
def sdm630() -> Profile:
    return load_profile("eastron-sdm630")


@pytest.fixture
async def sim(sdm630: Profile) -> AsyncIterator[ModbusTcpSimulator]:
    async with ModbusTcpSimulator([SimulatedDevice(sdm630, 1), SimulatedDevice(sdm630, 2)]) as s:
        yield s


def bus_for(sim: ModbusTcpSimulator, **extra: object) -> BusConfig:
    return BusConfig.model_validate({"name": "lab", "type": "tcp", "host": "127.0.0.1",
                                     "port": sim.port, "timeout": 1.0, **extra})


def device(profile: Profile, unit: int, poll: float = 0.2, name: str | None = None
           ) -> PolledDevice:
    config = DeviceConfig(name=name or f"m{unit}", bus="lab", unit=unit,
                          profile="eastron-sdm630", poll=poll)
    return PolledDevice(config=config, profile=profile)


class Collector:
    """An ``emit`` that records readings and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)

    def of(self, device: str, quantity: Quantity, channel: str | None = None,
           since: float = 0.0) -> list[Reading]:
        return [r for r in self.readings if r.device == device and r.quantity is quantity
                and r.channel == channel and r.ts > since]

    async def wait(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)


async def test_every_sdm630_point_reads_what_was_set(sim: ModbusTcpSimulator,
                                                     sdm630: Profile) -> None:
    """Each SDM630 point, set to its own value, reads back with that value and GOOD quality."""
    meter = sim.device(1)
    expected = {}
    for i, point in enumerate(sdm630.points):
        value = distinct_value(point, i)  # exact in float32, distinct, plausible
        meter.set(point.quantity.value, value, point.channel)
        expected[point.key] = value
    readings = await read_once(bus_for(sim), device(sdm630, 1))
    got = {f"{r.quantity.value}/{r.channel}": (r.value, r.quality) for r in readings}
    assert got == {key: (value, Quality.GOOD) for key, value in expected.items()}


async def test_fresh_simulator_reads_sensible_defaults(sim: ModbusTcpSimulator,
                                                       sdm630: Profile) -> None:
    """An untouched simulated meter shows mains-like values."""
    readings = {(r.quantity, r.channel): r.value
                for r in await read_once(bus_for(sim), device(sdm630, 2))}
    assert readings[(Quantity.VOLTAGE, "L1")] == 230.0
    assert readings[(Quantity.FREQUENCY, "total")] == 50.0
    assert readings[(Quantity.POWER_FACTOR, "L2")] == pytest.approx(0.95)


async def test_value_change_shows_in_next_poll(sim: ModbusTcpSimulator,
                                               sdm630: Profile) -> None:
    """A value set while the poller runs is in the first poll that starts afterwards."""
    got = Collector()
    async with BusPoller(bus=bus_for(sim), devices=[device(sdm630, 1)], emit=got):
        await got.wait(lambda: got.of("m1", Quantity.VOLTAGE, "L1"), "a first poll")
        assert got.of("m1", Quantity.VOLTAGE, "L1")[0].value == 230.0
        sim.device(1).set("voltage", 241.5, "L1")
        changed_at = time.time()
        await got.wait(lambda: got.of("m1", Quantity.VOLTAGE, "L1", since=changed_at),
                       "a poll after the change")
    after = got.of("m1", Quantity.VOLTAGE, "L1", since=changed_at)
    assert after[0].value == 241.5


async def test_missing_unit_backs_off_alone(sim: ModbusTcpSimulator, sdm630: Profile) -> None:
    """A unit that does not exist is ONLINE=0 with errors counted; its neighbour keeps polling."""
    got = Collector()
    devices = [device(sdm630, 1, poll=0.2), device(sdm630, 7, poll=0.2)]
    async with BusPoller(bus=bus_for(sim), devices=devices, emit=got,
                         backoff=Backoff(base=0.4, cap=0.8, jitter=0.0)):
        await got.wait(lambda: len(got.of("m7", Quantity.ERRORS)) >= 5, "5 failed polls of m7")
    missing = got.of("m7", Quantity.ONLINE)
    assert missing
    assert all(r.value == 0.0 for r in missing)
    errors = [r.value for r in got.of("m7", Quantity.ERRORS)]
    assert errors == sorted(errors)
    assert errors[-1] >= 5
    assert not got.of("m7", Quantity.VOLTAGE, "L1")  # no values from a device that is not there
    present = got.of("m1", Quantity.ONLINE)
    assert all(r.value == 1.0 for r in present)
    assert [r.value for r in got.of("m1", Quantity.ERRORS)][-1] == 0.0
    # m7 tries again at its next slot once, then waits 0.4-0.8 s between tries; m1 keeps its
    # 0.2 s grid, so it polls far more often
    assert len(got.of("m1", Quantity.VOLTAGE, "L1")) > 2 * (len(missing) - 1)
    assert got.of("m1", Quantity.LATENCY)


async def test_silent_unit_times_out_alone(sdm630: Profile) -> None:
    """A unit that never answers times out and is offline; its neighbour still gets read."""
    async with ModbusTcpSimulator([SimulatedDevice(sdm630, 1)], silent_unknown=True) as sim:
        got = Collector()
        devices = [device(sdm630, 1, poll=0.2), device(sdm630, 7, poll=0.2)]
        async with BusPoller(bus=bus_for(sim, timeout=0.3), devices=devices, emit=got,
                             backoff=FAST):
            await got.wait(lambda: len(got.of("m7", Quantity.ERRORS)) >= 3, "3 timeouts of m7")
            after = time.time()
            await got.wait(lambda: got.of("m1", Quantity.VOLTAGE, "L1", since=after),
                           "m1 read after m7's timeouts")
    assert all(r.value == 0.0 for r in got.of("m7", Quantity.ONLINE))
    assert got.of("m1", Quantity.VOLTAGE, "L1", since=after)[0].value == 230.0


async def test_restarted_server_is_reconnected(sim: ModbusTcpSimulator,
                                               sdm630: Profile) -> None:
    """After the server dies the device goes offline; when it is back, polling resumes."""
    got = Collector()
    async with BusPoller(bus=bus_for(sim), devices=[device(sdm630, 1)], emit=got, backoff=FAST):
        await got.wait(lambda: got.of("m1", Quantity.ONLINE), "a first poll")
        await sim.stop()
        stopped_at = time.time()
        await got.wait(lambda: any(r.value == 0.0 for r in got.of("m1", Quantity.ONLINE,
                                                                   since=stopped_at)),
                       "ONLINE=0 while the server is down")
        sim.device(1).set("current", 12.5, "L3")
        await sim.start()
        restarted_at = time.time()
        await got.wait(lambda: got.of("m1", Quantity.CURRENT, "L3", since=restarted_at),
                       "a reading after the restart")
    assert got.of("m1", Quantity.CURRENT, "L3", since=restarted_at)[0].value == 12.5
    assert got.of("m1", Quantity.ONLINE)[-1].value == 1.0
    assert got.of("m1", Quantity.ERRORS)[-1].value >= 1


async def test_logs_transitions_not_repetitions(sim: ModbusTcpSimulator, sdm630: Profile,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A failing device logs one ERROR, repeats at DEBUG, and one INFO line on recovery."""
    caplog.set_level(logging.DEBUG, logger="drivers.modbus.poller")
    got = Collector()
    async with BusPoller(bus=bus_for(sim), devices=[device(sdm630, 1)], emit=got, backoff=FAST):
        await got.wait(lambda: got.of("m1", Quantity.ONLINE), "a first poll")
        sim.device(1).fail = True
        await got.wait(lambda: [r.value for r in got.of("m1", Quantity.ERRORS)][-1] >= 4,
                       "4 failed polls")
        sim.device(1).fail = False
        healed = time.time()
        await got.wait(lambda: got.of("m1", Quantity.VOLTAGE, "L1", since=healed), "recovery")
    ours = [r for r in caplog.records if r.name == "drivers.modbus.poller"]
    errors = [r for r in ours if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "device failure" in errors[0].getMessage()
    assert len([r for r in ours if r.levelno == logging.DEBUG and "m1" in r.getMessage()]) >= 3
    infos = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "m1" in infos[0]
    assert "back" in infos[0]


async def test_busy_is_retried_without_reconnecting(sim: ModbusTcpSimulator,
                                                    sdm630: Profile) -> None:
    """Exception 6 surfaces as busy, the link stays up, and the poller's retry gets the value."""
    meter = sim.device(1)
    async with ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0) as transport:
        meter.busy_next = 1
        with pytest.raises(ModbusDeviceError) as info:
            await transport.read(RegisterType.INPUT, 0, 2, 1)
        assert info.value.busy
        assert info.value.code == 6
        assert transport.connected
        assert await transport.read(RegisterType.INPUT, 0, 2, 1) == [0x4366, 0x0000]
    meter.busy_next = 2
    readings = await read_once(bus_for(sim, retries=2), device(sdm630, 1))
    assert len(readings) == len(sdm630.points)
    meter.busy_next = 1
    with pytest.raises(ModbusDeviceError, match="busy"):
        await read_once(bus_for(sim, retries=0), device(sdm630, 1))


async def test_transport_error_kinds(sim: ModbusTcpSimulator) -> None:
    """Missing unit and bad address are device errors; a closed port is a link error."""
    async with ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0) as transport:
        with pytest.raises(ModbusDeviceError) as missing:
            await transport.read(RegisterType.INPUT, 0, 2, 42)
        assert missing.value.code == 11
        assert not missing.value.busy
        with pytest.raises(ModbusDeviceError) as bad_address:
            await transport.read(RegisterType.INPUT, 0x0400, 2, 1)
        assert bad_address.value.code == 2
        assert transport.connected
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    with pytest.raises(ModbusLinkError):
        async with ModbusTcpTransport(host="127.0.0.1", port=free_port, timeout=1.0):
            pass
    transport = ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0)
    with pytest.raises(ModbusLinkError, match="not connected"):
        await transport.read(RegisterType.INPUT, 0, 2, 1)


async def test_values_set_when_read_and_a_silent_device_behind_the_gateway(
        sim: ModbusTcpSimulator) -> None:
    """``on_read`` runs before each read is answered (values computed at read time), and
    ``no_response`` answers exception 11 at once, the link staying up."""
    meter = sim.device(1)
    reads: list[int] = []

    def fresh() -> None:
        reads.append(1)
        meter.set("voltage", 200.0 + len(reads), "L1")

    meter.on_read = fresh
    async with ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0) as transport:
        first = await transport.read(RegisterType.INPUT, 0, 2, 1)
        second = await transport.read(RegisterType.INPUT, 0, 2, 1)
        assert (first, second) == ([0x4349, 0x0000], [0x434A, 0x0000])  # 201.0, 202.0
        meter.no_response = True
        with pytest.raises(ModbusDeviceError) as silent:
            await transport.read(RegisterType.INPUT, 0, 2, 1)
        assert silent.value.code == 11
        assert transport.connected
        meter.no_response = False
        meter.on_read = None
        assert await transport.read(RegisterType.INPUT, 0, 2, 1) == [0x434B, 0x0000]
    assert len(reads) == 3


GENERIC = Profile.model_validate({
    "profile": {"name": "lab-detector", "manufacturer": "test", "model": "t", "source": "test"},
    "hole": [{"register": "holding", "start": 10, "end": 12}],
    "point": [
        {"quantity": "relay", "channel": "1", "address": 0, "register": "coil", "type": "bool"},
        {"quantity": "relay", "channel": "2", "address": 1, "register": "coil", "type": "bool"},
        {"quantity": "fire", "address": 3, "register": "discrete", "type": "bool"},
        {"quantity": "detector_alarm", "channel": "1", "address": 0, "register": "holding",
         "type": "bits", "bit": 0},
        {"quantity": "detector_alarm", "channel": "2", "address": 0, "register": "holding",
         "type": "bits", "bit": 9},
        {"quantity": "temperature", "channel": "1", "address": 1, "register": "holding",
         "type": "int16", "scale": 0.1, "sentinels": [-32768]},
        {"quantity": "residual_current", "address": 20, "register": "holding",
         "type": "uint32", "order": "CDAB"},
        {"quantity": "lux", "address": 0, "register": "input", "type": "float32",
         "order": "DCBA"},
    ],
})


async def test_bits_coils_and_holes() -> None:
    """Coils, discrete inputs, shared bit words and word orders survive the real server."""
    detector = SimulatedDevice(GENERIC, 3)
    detector.set("relay", 1.0, "2")
    detector.set("fire", 1.0)
    detector.set("detector_alarm", 1.0, "2")
    detector.set("temperature", -12.3, "1")
    detector.set("residual_current", 70000.0)
    detector.set("lux", 12.5)
    async with ModbusTcpSimulator([detector]) as sim:
        config = DeviceConfig(name="d3", bus="lab", unit=3, profile="x", poll=1.0)
        readings = await read_once(bus_for(sim), PolledDevice(config=config, profile=GENERIC))
        values = {(r.quantity.value, r.channel): r.value for r in readings}
        assert values == {
            ("relay", "1"): 0.0, ("relay", "2"): 1.0, ("fire", None): 1.0,
            ("detector_alarm", "1"): 0.0, ("detector_alarm", "2"): 1.0,
            ("temperature", "1"): pytest.approx(-12.3), ("residual_current", None): 70000.0,
            ("lux", None): 12.5,
        }
        async with ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0) as t:
            with pytest.raises(ModbusDeviceError) as hole:  # the simulator honours holes
                await t.read(RegisterType.HOLDING, 0, 22, 3)
            assert hole.value.code == 2


async def test_broken_emit_does_not_stop_polling(sim: ModbusTcpSimulator,
                                                 sdm630: Profile) -> None:
    """A consumer that raises loses those readings, but polling goes on."""
    got = Collector()
    calls = 0

    def flaky(reading: Reading) -> None:
        nonlocal calls
        calls += 1
        if calls <= 40:
            raise RuntimeError("consumer bug")
        got(reading)

    async with BusPoller(bus=bus_for(sim), devices=[device(sdm630, 1)], emit=flaky):
        await got.wait(lambda: got.of("m1", Quantity.ONLINE), "a reading after the failures")
    assert calls > 40
    assert got.of("m1", Quantity.ONLINE)[-1].value == 1.0


async def test_mbpoll_reads_simulated_voltage(sim: ModbusTcpSimulator) -> None:
    """A third-party client (mbpoll) reads the simulated SDM630 voltages as set."""
    if shutil.which("mbpoll") is None:
        missing("mbpoll")  # a failure under CI=true, a skip elsewhere
    sim.device(1).set("voltage", 231.25, "L1")
    sim.device(1).set("voltage", 228.5, "L2")
    # -B: the SDM630 sends the high word first; -r is 1-based, so register 0 is -r 1
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-a", "1", "-r", "1", "-c", "2", "-t", "3:float", "-B", "-1",
        "-p", str(sim.port), "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=WAIT)
    text = out.decode()
    assert proc.returncode == 0, text
    values = {int(ref): float(v) for ref, v in re.findall(r"^\[(\d+)\]:\s+(\S+)", text, re.M)}
    assert values == {1: 231.25, 3: 228.5}


async def _gaps_of_a_healthy_meter_beside_silent_ones(sdm630: Profile, concurrency: int
                                                      ) -> tuple[list[float], int]:
    """Poll unit 1 (answers) and units 7-9 (never answer) at 0.2 s for ~3 s; the gaps
    between unit 1's successful polls and how many timeouts the silent units had."""
    async with ModbusTcpSimulator([SimulatedDevice(sdm630, 1)], silent_unknown=True) as sim:
        got = Collector()
        devices = [device(sdm630, u, poll=0.2) for u in (1, 7, 8, 9)]
        bus = bus_for(sim, timeout=0.5, concurrency=concurrency)
        async with BusPoller(bus=bus, devices=devices, emit=got,
                             backoff=Backoff(base=0.2, cap=0.4, jitter=0.0)):
            await asyncio.sleep(3.0)
    stamps = [r.ts for r in got.of("m1", Quantity.ONLINE) if r.value == 1.0]
    silent = sum(1 for u in (7, 8, 9) for r in got.of(f"m{u}", Quantity.ONLINE)
                 if r.value == 0.0)
    return [b - a for a, b in itertools.pairwise(stamps)], silent


async def test_silent_units_do_not_hold_up_a_neighbour_with_concurrency(
        sdm630: Profile) -> None:
    """With ``concurrency = 4`` a gateway's silent units time out in parallel with the healthy
    unit's reads on the same connection, so it keeps its 0.2 s grid; with 1 (the serial
    default) each silent unit's 0.5 s timeout stalls it (the contrast shows the test can
    fail)."""
    parallel, timeouts = await _gaps_of_a_healthy_meter_beside_silent_ones(sdm630, 4)
    assert timeouts >= 6  # the silent units were tried and timed out meanwhile
    assert max(parallel) < 0.4, parallel
    serial, _ = await _gaps_of_a_healthy_meter_beside_silent_ones(sdm630, 1)
    assert max(serial) >= 0.45, serial


async def test_transport_keeps_several_reads_in_flight(sim: ModbusTcpSimulator) -> None:
    """Reads of two units sent together on one connection each get their own answer (matched
    by transaction id), and a timed-out unit does not take the connection down."""
    sim.device(1).set("voltage", 231.0, "L1")
    sim.device(2).set("voltage", 232.0, "L1")
    async with ModbusTcpTransport(host="127.0.0.1", port=sim.port, timeout=1.0) as transport:
        first, second = await asyncio.gather(
            transport.read(RegisterType.INPUT, 0, 2, 1), transport.read(RegisterType.INPUT, 0,
                                                                         2, 2))
        assert (first, second) == ([0x4367, 0x0000], [0x4368, 0x0000])  # 231.0, 232.0
        assert transport.connected
