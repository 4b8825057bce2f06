"""Modbus RTU over real socat ptys (and RTU over TCP through socat) against the RTU simulator.

The simulator paces its answers to the bus's baud rate, so timings are those of a real line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from core.measurements import Quality, Quantity
from daemon.config import BusConfig, DeviceConfig
from drivers.modbus.errors import (
    CrcError,
    FrameError,
    ModbusDeviceError,
    ModbusLinkError,
    ModbusTimeoutError,
)
from drivers.modbus.poller import Backoff, BusPoller, PolledDevice, read_once
from drivers.modbus.registry import make_transport
from drivers.modbus.serial import ModbusRtuOverTcpTransport, ModbusRtuTransport
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profile import Profile, RegisterType, load_profile, shipped_profiles
from simulator.modbus import SimulatedDevice
from simulator.pty import SocatPair
from simulator.rtu import RtuSimulator
from simulator.services import free_port
from tests.integration.test_modbus_tcp import Collector
from tests.integration.test_profiles_tcp import by_key, polled, set_distinct_values
from tests.services import missing

pytestmark = pytest.mark.integration

FAST = Backoff(base=0.1, cap=0.5, jitter=0.1)
BAUD = 9600


@pytest.fixture
def pair() -> Iterator[SocatPair]:
    if not SocatPair.available():
        missing("socat")
    with SocatPair() as p:
        yield p


@pytest.fixture
def sdm630() -> Profile:
    return load_profile("eastron-sdm630")


@pytest.fixture
def detector() -> Profile:
    return load_profile("residual-current-temperature")


@pytest.fixture
async def sim(pair: SocatPair, sdm630: Profile, detector: Profile) -> AsyncIterator[RtuSimulator]:
    devices = [SimulatedDevice(sdm630, 1), SimulatedDevice(sdm630, 2),
               SimulatedDevice(detector, 3)]
    async with RtuSimulator(pair.b, devices, baudrate=BAUD) as s:
        yield s


def rtu_bus(pair: SocatPair, **extra: object) -> BusConfig:
    return BusConfig.model_validate({"name": "b1", "type": "rtu", "port": str(pair.a),
                                     "baudrate": BAUD, "timeout": 0.5, **extra})


def device(profile: Profile, unit: int, poll: float = 0.5, name: str | None = None
           ) -> PolledDevice:
    config = DeviceConfig(name=name or f"d{unit}", bus="b1", unit=unit, profile=profile.name,
                          poll=poll)
    return PolledDevice(config=config, profile=profile)


def transport(pair: SocatPair, timeout: float = 0.5) -> ModbusRtuTransport:
    return ModbusRtuTransport(port=str(pair.a), baudrate=BAUD, timeout=timeout)


@pytest.mark.parametrize("name", shipped_profiles())
async def test_every_profile_reads_in_full_over_rtu(pair: SocatPair, name: str) -> None:
    """Each point of each shipped profile reads back over RTU as set, with GOOD quality."""
    target = polled(name, 7)
    simulated = SimulatedDevice(target.profile, 7)
    expected = set_distinct_values(simulated)
    async with RtuSimulator(pair.b, [simulated], baudrate=BAUD):
        readings = await read_once(rtu_bus(pair), target)
    got = by_key(readings)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key][0] == pytest.approx(value), key
        assert got[key][1] is Quality.GOOD, key


async def test_several_units_share_one_bus(pair: SocatPair, sim: RtuSimulator, sdm630: Profile,
                                           detector: Profile) -> None:
    """Three units on one line are polled in turn and each reports its own values."""
    sim.device(1).set("voltage", 231.5, "L1")
    sim.device(2).set("voltage", 219.25, "L1")
    sim.device(3).set("temperature", 41.5, "2")
    got = Collector()
    devices = [device(sdm630, 1), device(sdm630, 2), device(detector, 3)]
    async with BusPoller(bus=rtu_bus(pair), devices=devices, emit=got):
        await got.wait(lambda: all(got.of(f"d{u}", Quantity.ONLINE) for u in (1, 2, 3)),
                       "a poll of every unit")
    assert got.of("d1", Quantity.VOLTAGE, "L1")[0].value == 231.5
    assert got.of("d2", Quantity.VOLTAGE, "L1")[0].value == 219.25
    assert got.of("d3", Quantity.TEMPERATURE, "2")[0].value == pytest.approx(41.5)
    for unit in (1, 2, 3):
        assert got.of(f"d{unit}", Quantity.ONLINE)[0].value == 1.0
        assert got.of(f"d{unit}", Quantity.CRC_ERRORS)[0].value == 0.0
        assert got.of(f"d{unit}", Quantity.LATENCY)[0].value > 0


async def test_silent_unit_delays_others_by_at_most_one_timeout(
        pair: SocatPair, sim: RtuSimulator, detector: Profile,
        caplog: pytest.LogCaptureFixture) -> None:
    """A dead unit costs its neighbours at most one timeout per cycle and no reconnects."""
    caplog.set_level(logging.INFO, logger="drivers.modbus.poller")
    sim.fault(1).silent = True
    poll, timeout = 0.25, 0.6
    got = Collector()
    devices = [device(detector, 3, poll=poll), device(detector, 1, poll=poll, name="dead")]
    async with BusPoller(bus=rtu_bus(pair, timeout=timeout), devices=devices, emit=got,
                         backoff=Backoff(base=0.1, cap=0.2, jitter=0.0)):
        await got.wait(lambda: len(got.of("dead", Quantity.ERRORS)) >= 6, "6 timeouts")
    starts = [r.ts for r in got.of("d3", Quantity.ONLINE)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 5
    # one timeout: at most poll + timeout + a read (0.9 s); two would be >= poll + 2*timeout
    assert max(gaps) < poll + timeout + 0.35, gaps
    assert all(r.value == 1.0 for r in got.of("d3", Quantity.ONLINE))
    assert all(r.value == 0.0 for r in got.of("dead", Quantity.ONLINE))
    assert not [r for r in caplog.records if "reconnect" in r.getMessage()]
    assert sim.requests[1] >= 6


async def test_busy_is_retried_without_reconnecting(pair: SocatPair, sim: RtuSimulator,
                                                    sdm630: Profile) -> None:
    """Exception 6 surfaces as busy with the port still open; the poller's retry succeeds."""
    async with transport(pair) as link:
        sim.device(1).busy_next = 1
        with pytest.raises(ModbusDeviceError) as info:
            await link.read(RegisterType.INPUT, 0, 2, 1)
        assert info.value.busy
        assert link.connected
        assert await link.read(RegisterType.INPUT, 0, 2, 1) == [0x4366, 0x0000]
    sim.device(1).busy_next = 2
    readings = await read_once(rtu_bus(pair, retries=2), device(sdm630, 1))
    assert len(readings) == len(sdm630.points)
    assert sim.device(1).busy_next == 0


async def test_error_kinds_and_counters(pair: SocatPair, sim: RtuSimulator) -> None:
    """Garbage, short frames and silence raise their own errors, are counted per unit and
    leave the port open for the next good read."""
    async with transport(pair, timeout=0.3) as link:
        sim.fault(1).crc_garbage = 1
        with pytest.raises(CrcError, match="unit 1"):
            await link.read(RegisterType.INPUT, 0, 2, 1)
        sim.fault(1).wrong_byte_count = 1
        with pytest.raises(FrameError, match="byte count"):
            await link.read(RegisterType.INPUT, 0, 2, 1)
        with pytest.raises(ModbusTimeoutError, match="unit 9"):
            await link.read(RegisterType.INPUT, 0, 2, 9)
        with pytest.raises(ModbusDeviceError) as bad_address:
            await link.read(RegisterType.INPUT, 0x0400, 2, 1)
        assert bad_address.value.code == 2
        assert link.connected
        assert await link.read(RegisterType.INPUT, 0, 2, 1) == [0x4366, 0x0000]
        stats = link.stats(1)
        assert (stats.crc_errors, stats.frame_errors, stats.timeouts) == (1, 1, 0)
        assert link.stats(9).timeouts == 1
        assert link.stats(2).garbled == 0


async def test_slow_unit_and_late_answers(pair: SocatPair, sim: RtuSimulator) -> None:
    """A slow answer within the timeout is taken; a late one is skipped, not misread as the
    next unit's answer."""
    async with transport(pair, timeout=0.3) as link:
        sim.fault(1).slow = 0.15
        started = time.monotonic()
        assert await link.read(RegisterType.INPUT, 0, 2, 1) == [0x4366, 0x0000]
        assert time.monotonic() - started >= 0.15
        sim.fault(1).slow = 0.5
        with pytest.raises(ModbusTimeoutError):
            await link.read(RegisterType.INPUT, 0, 2, 1)
        sim.device(2).set("voltage", 240.0, "L1")
        assert await link.read(RegisterType.INPUT, 0, 2, 2) == [0x4370, 0x0000]
        assert link.stray_frames + link.discarded_bytes > 0
        assert link.stats(2).garbled == 0


async def test_garbled_answers_are_counted_and_survived(pair: SocatPair, sim: RtuSimulator,
                                                        sdm630: Profile) -> None:
    """CRC garbage and wrong byte counts show in CRC_ERRORS and the next good poll succeeds."""
    got = Collector()
    async with BusPoller(bus=rtu_bus(pair), devices=[device(sdm630, 1, poll=0.3)], emit=got,
                         backoff=FAST):
        await got.wait(lambda: got.of("d1", Quantity.ONLINE), "a first poll")
        sim.fault(1).crc_garbage = 2
        sim.fault(1).wrong_byte_count = 1
        await got.wait(lambda: got.of("d1", Quantity.CRC_ERRORS)[-1].value >= 3,
                       "3 garbled answers counted")
        sim.device(1).set("current", 7.5, "L2")
        healed = time.time()
        await got.wait(lambda: got.of("d1", Quantity.CURRENT, "L2", since=healed),
                       "a good poll afterwards")
    assert got.of("d1", Quantity.CURRENT, "L2", since=healed)[0].value == 7.5
    assert got.of("d1", Quantity.ONLINE)[-1].value == 1.0
    assert got.of("d1", Quantity.ERRORS)[-1].value >= 2


async def test_line_noise_between_frames_is_discarded(pair: SocatPair, sdm630: Profile) -> None:
    """Random bytes on the line after answers are thrown away before the next request."""
    async with (RtuSimulator(pair.b, [SimulatedDevice(sdm630, 1)], baudrate=BAUD, noise=1.0,
                             seed=7),
                transport(pair) as link):
        values = [await link.read(RegisterType.INPUT, 0, 2, 1) for _ in range(5)]
        assert link.discarded_bytes > 0
    assert values.count([0x4366, 0x0000]) >= 4  # noise racing a request may cost one read


async def test_unplugged_cable_is_reconnected(pair: SocatPair, sim: RtuSimulator,
                                              sdm630: Profile) -> None:
    """socat killed and restarted: the device goes offline, then the poller reconnects."""
    got = Collector()
    async with BusPoller(bus=rtu_bus(pair), devices=[device(sdm630, 1, poll=0.3)], emit=got,
                         backoff=FAST):
        await got.wait(lambda: got.of("d1", Quantity.ONLINE), "a first poll")
        await asyncio.to_thread(pair.stop)
        unplugged = time.time()
        await got.wait(lambda: any(r.value == 0.0 for r in got.of("d1", Quantity.ONLINE,
                                                                   since=unplugged)),
                       "ONLINE=0 while unplugged")
        sim.device(1).set("current", 12.5, "L3")
        await asyncio.to_thread(pair.start)
        replugged = time.time()
        await got.wait(lambda: got.of("d1", Quantity.CURRENT, "L3", since=replugged),
                       "a reading after replugging")
    assert got.of("d1", Quantity.CURRENT, "L3", since=replugged)[0].value == 12.5
    assert got.of("d1", Quantity.ONLINE)[-1].value == 1.0
    assert sim.opened >= 2


async def test_missing_port_is_a_link_error(pair: SocatPair) -> None:
    """Opening a serial port that does not exist fails as a link error."""
    with pytest.raises(ModbusLinkError, match="cannot open"):
        async with ModbusRtuTransport(port=str(pair.directory / "nope"), timeout=0.2):
            pass
    with pytest.raises(ModbusLinkError, match="not connected"):
        await transport(pair).read(RegisterType.INPUT, 0, 2, 1)


class Bridge(NamedTuple):
    port: int
    log: Path

    async def idle(self, connections: int) -> None:
        """Wait until the first ``connections`` forked children have exited: until then an
        old child still reads the pty and would steal the next connection's answers."""
        deadline = time.monotonic() + 10
        while self.log.read_text().count("exiting with status") < connections:
            assert time.monotonic() < deadline, self.log.read_text()
            await asyncio.sleep(0.01)


@pytest.fixture
def tcp_bridge(pair: SocatPair) -> Iterator[Bridge]:
    """A transparent serial server: ``socat TCP-LISTEN`` forwarding to the master's pty end."""
    port = free_port()
    log_path = pair.directory / "bridge.log"
    # readiness from socat's own log: a probing connection would fork a second reader of the
    # pty, which steals answers
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            ["socat", "-d", "-d", "-t", "0.05", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
             f"FILE:{pair.a},raw,echo=0"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        deadline = time.monotonic() + 10
        while b"listening on" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "socat TCP bridge did not start"
            time.sleep(0.02)
        yield Bridge(port, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def test_rtu_over_tcp(sim: RtuSimulator, tcp_bridge: Bridge, sdm630: Profile) -> None:
    """RTU frames over TCP, through socat to the simulator's line, read a full SDM630."""
    sim.device(2).set("frequency", 49.75, "total")
    bus = BusConfig(name="b1", type="rtu-over-tcp", host="127.0.0.1", port=tcp_bridge.port,
                    timeout=1.0)
    readings = await read_once(bus, device(sdm630, 2))
    values = {(r.quantity, r.channel): r.value for r in readings}
    assert len(values) == len(sdm630.points)
    assert values[(Quantity.FREQUENCY, "total")] == 49.75
    await tcp_bridge.idle(1)
    async with ModbusRtuOverTcpTransport(host="127.0.0.1", port=tcp_bridge.port,
                                         timeout=0.3) as link:
        with pytest.raises(ModbusTimeoutError):
            await link.read(RegisterType.INPUT, 0, 2, 9)
        assert link.connected
        assert await link.read(RegisterType.INPUT, 0, 2, 1) == [0x4366, 0x0000]


async def test_rtu_over_tcp_refused_is_a_link_error() -> None:
    """Nobody listening on the gateway's port is a link error."""
    with pytest.raises(ModbusLinkError, match="cannot open"):
        async with ModbusRtuOverTcpTransport(host="127.0.0.1", port=free_port(), timeout=0.5):
            pass


def test_make_transport_builds_each_bus_type() -> None:
    """Each bus type gets its transport, with the serial settings passed on."""
    rtu = make_transport(BusConfig(name="b", type="rtu", port="/dev/ttyUSB0", baudrate=1200,
                                   parity="E"))
    assert isinstance(rtu, ModbusRtuTransport)
    assert rtu.endpoint == "/dev/ttyUSB0"
    assert rtu.silent == pytest.approx(3.5 * 11 / 1200)
    over_tcp = make_transport(BusConfig(name="b", type="rtu-over-tcp", host="10.0.0.5",
                                        port=4001))
    assert isinstance(over_tcp, ModbusRtuOverTcpTransport)
    assert over_tcp.endpoint == "10.0.0.5:4001"
    tcp = make_transport(BusConfig(name="b", type="tcp", host="10.0.0.5", port=502))
    assert isinstance(tcp, ModbusTcpTransport)


async def test_mbpoll_reads_the_rtu_simulator(pair: SocatPair, detector: Profile) -> None:
    """A third-party RTU master (mbpoll) reads the simulated detector's residual current
    (holding register 0 is mbpoll's -t 4 -r 1; its -t 3 is the input-register table)."""
    if shutil.which("mbpoll") is None:
        missing("mbpoll")
    simulated = SimulatedDevice(detector, 1)
    simulated.set("residual_current", 287.0, "1")
    async with RtuSimulator(pair.b, [simulated], baudrate=BAUD):
        proc = await asyncio.create_subprocess_exec(
            "mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-r", "1", "-c", "1",
            "-t", "4", "-1", "-o", "2", str(pair.a),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    text = out.decode()
    assert proc.returncode == 0, text
    assert re.findall(r"^\[(\d+)\]:\s+(\S+)", text, re.M) == [("1", "287")], text
