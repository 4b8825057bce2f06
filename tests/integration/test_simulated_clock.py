"""Schedules on a simulated clock, against a real pymodbus server: a poller's intervals (the
device's, the points' own, the stagger) and a fire panel's health samples are in the clock's
time, and the devices of one distribution box are read back to back."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from core.measurements import Quantity, Reading
from daemon.app import simulated_clock
from daemon.config import BusConfig, DeviceConfig, FirePanelConfig
from daemon.panels import FirePanels
from drivers.modbus.poller import BusPoller, PolledDevice
from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import free_port

pytestmark = pytest.mark.integration

SDM630 = load_profile("eastron-sdm630")
SDM120 = load_profile("eastron-sdm120")
START = 1_790_000_000.0  # simulated epoch s


@pytest.fixture
async def sim() -> AsyncIterator[ModbusTcpSimulator]:
    devices = [SimulatedDevice(SDM630, 1)] + [SimulatedDevice(SDM120, u) for u in range(2, 7)]
    async with ModbusTcpSimulator(devices) as server:
        yield server


def bus_for(sim: ModbusTcpSimulator) -> BusConfig:
    return BusConfig.model_validate({"name": "gw", "type": "tcp", "host": "127.0.0.1",
                                     "port": sim.port, "timeout": 1.0})


def device(unit: int, poll: float, box: str = "") -> PolledDevice:
    profile = SDM630 if unit == 1 else SDM120
    config = DeviceConfig(name=f"m{unit}", bus="gw", unit=unit, profile=profile.name,
                          poll=poll, building="7" if box else "", box=box)
    return PolledDevice(config=config, profile=profile)


def stamps(readings: Sequence[Reading], device: str, quantity: Quantity,
           channel: str | None = None) -> list[float]:
    return [r.ts for r in readings if r.device == device and r.quantity is quantity
            and r.channel == channel]


def gaps(ts: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(ts)]


async def test_poll_cadence_is_the_configured_interval_in_simulated_time(
        sim: ModbusTcpSimulator) -> None:
    """At clock rate 100 a device with poll = 20 s is read every 20 simulated seconds (0.2 s
    real), and its energy counters (the profile's own 60 s) every 60 simulated seconds."""
    rate = 100.0
    clock = simulated_clock(START, rate)
    got: list[Reading] = []
    async with BusPoller(bus=bus_for(sim), devices=[device(1, poll=20.0)], emit=got.append,
                         clock=clock, rate=rate):
        await asyncio.sleep(2.5)  # 250 simulated seconds
    # the first poll also connects the link (~0.1 s real here), which delays the one after it
    polls = gaps(stamps(got, "m1", Quantity.VOLTAGE, "L1"))[1:]
    energy = gaps(stamps(got, "m1", Quantity.ENERGY_IMPORT, "total"))[1:]
    assert len(polls) >= 8, polls
    assert statistics.median(polls) == pytest.approx(20.0, abs=1.0), polls
    assert all(15.0 < g < 25.0 for g in polls), polls  # on the grid, no skipped slot
    assert len(energy) >= 2, energy
    assert all(g == pytest.approx(60.0, abs=3.0) for g in energy), energy


async def test_rate_one_keeps_real_seconds(sim: ModbusTcpSimulator) -> None:
    """Without a simulated clock (rate 1) the interval is real seconds, as before."""
    got: list[Reading] = []
    async with BusPoller(bus=bus_for(sim), devices=[device(2, poll=0.25)], emit=got.append):
        await asyncio.sleep(1.4)
    polls = gaps(stamps(got, "m2", Quantity.ONLINE))
    assert len(polls) >= 4
    assert statistics.median(polls) == pytest.approx(0.25, abs=0.03)


async def test_devices_of_one_box_are_read_back_to_back(sim: ModbusTcpSimulator) -> None:
    """An incomer and its sub-circuit meters (one building and box) share a stagger slot and
    are read within milliseconds of each other every cycle; other devices keep their own
    slots, spread over the interval."""
    poll = 0.6
    devices = [device(1, poll, box="1"), device(2, poll, box="1"), device(3, poll, box="1"),
               device(4, poll), device(5, poll, box="2"), device(6, poll)]
    got: list[Reading] = []
    async with BusPoller(bus=bus_for(sim), devices=devices, emit=got.append, clock=time.time):
        await asyncio.sleep(2.0)
    online = {d.config.name: stamps(got, d.config.name, Quantity.VOLTAGE, "L1")
              for d in devices}
    cycles = min(len(ts) for ts in online.values())
    assert cycles >= 3, online
    for i in range(1, cycles):  # the first cycle also connects the link
        box = [online[name][i] for name in ("m1", "m2", "m3")]
        assert max(box) - min(box) < 0.1, box  # back to back: one poll's duration apart
        slots = sorted([min(box), online["m4"][i], online["m5"][i], online["m6"][i]])
        # four slots over 0.6 s: 0.15 s apart on the grid; allow for a loaded machine
        assert min(gaps(slots)) > 0.07, slots


async def test_fire_panel_health_is_sampled_on_the_clock() -> None:
    """A panel's ONLINE sample comes every 5 s of the clock's time: at rate 50 every 0.1 s
    real, stamped 5 simulated seconds apart (its heartbeat timeout stays real)."""
    rate = 50.0
    panel = FirePanelConfig(name="panel", transport="tcp-server", port=free_port(),
                            host="127.0.0.1")
    got: list[Reading] = []
    async with FirePanels(panels=[panel], emit=got.append, clock=simulated_clock(START, rate),
                          rate=rate):
        await asyncio.sleep(1.0)
    samples = gaps(stamps(got, "panel", Quantity.ONLINE))
    assert len(samples) >= 6, samples
    assert statistics.median(samples) == pytest.approx(5.0, abs=0.5), samples
