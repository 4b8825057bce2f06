"""Every shipped profile's request plan is accepted by the simulator serving that profile.

The simulator refuses what the real device refuses (``simulator.modbus.refusal``): reads longer
than the profile's ``max_registers``, reads over its holes, and split 32-bit values on
``register_pairs`` devices. So a plan that a real meter would answer with an exception fails
here, before it reaches a site.
"""

from __future__ import annotations

import pytest

from daemon.config import DeviceConfig
from drivers.modbus.planner import BusCost, ReadRequest, plan_requests
from drivers.modbus.poller import PolledDevice, device_plan, plan_points
from drivers.profile import Hole, RegisterType, Workarounds, load_profile, shipped_profiles
from simulator.modbus import SimulatedDevice, refusal

COSTS = {"rtu-9600": BusCost(), "rtu-1200": BusCost(baudrate=1200), "tcp": BusCost.tcp()}


def plans(name: str) -> list[tuple[str, list[ReadRequest]]]:
    """Every way the daemon and ``scan`` plan a profile: per poll group at a fast and a slow
    device poll (at 60 s the energy counters join the fast points), on RTU and TCP costs, and
    scan's all-points plan."""
    profile = load_profile(name)
    out: list[tuple[str, list[ReadRequest]]] = [("scan", plan_points(profile, profile.points))]
    for poll in (1.0, 60.0):
        config = DeviceConfig(name="d", bus="b", unit=1, profile=name, poll=poll)
        device = PolledDevice(config=config, profile=profile)
        for label, cost in COSTS.items():
            for interval, requests in device_plan(device, cost):
                out.append((f"poll {poll:g}s, {label}, group {interval:g}s", requests))
    return out


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_planned_request_is_accepted_by_the_simulated_device(name: str) -> None:
    """No request of any plan of a shipped profile gets an exception from its simulator."""
    device = SimulatedDevice(load_profile(name), 1)
    checked = 0
    for label, requests in plans(name):
        for r in requests:
            answer = device.answer(r.table.function_code, r.address, r.count)
            assert isinstance(answer, list), (
                f"{name} ({label}): FC{r.table.function_code:02d} {r.address:#06x} x{r.count} "
                f"refused with exception {answer}")
            assert len(answer) == r.count
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", ["eastron-sdm630", "eastron-sdm120"])
def test_eastron_limits_come_from_the_manual(name: str) -> None:
    """Eastron meters: at most 40 floats (80 registers) per request, floats read in pairs."""
    quirks = load_profile(name).workarounds
    assert quirks.max_registers == 80
    assert quirks.register_pairs


def test_sdm630_plan_without_its_limit_would_be_refused() -> None:
    """The regression this guards: on Modbus TCP (cheap gaps) with all points in one poll group
    the unlimited planner joins the THD and total-energy registers into one 110-register read,
    which an SDM630 answers with an exception."""
    profile = load_profile("eastron-sdm630")
    device = SimulatedDevice(profile, 1)
    unlimited = plan_requests(profile.points, holes=profile.holes, cost=BusCost.tcp())
    codes = [device.answer(r.table.function_code, r.address, r.count) for r in unlimited]
    assert max(r.count for r in unlimited) > 80
    assert 3 in codes  # ILLEGAL DATA VALUE for the over-long read


@pytest.mark.parametrize(("table", "address", "count", "quirks", "holes", "expected"), [
    (RegisterType.INPUT, 0, 80, Workarounds(max_registers=80), (), None),
    (RegisterType.INPUT, 0, 82, Workarounds(max_registers=80), (), 3),
    (RegisterType.COIL, 0, 9, Workarounds(max_bits=8), (), 3),
    (RegisterType.INPUT, 1, 2, Workarounds(register_pairs=True), (), 2),
    (RegisterType.INPUT, 0, 3, Workarounds(register_pairs=True), (), 2),
    (RegisterType.INPUT, 1, 1, Workarounds(register_pairs=True), (), None),  # single: answered
    (RegisterType.COIL, 1, 3, Workarounds(register_pairs=True), (), None),  # bits: no pairs
    (RegisterType.HOLDING, 0, 10, Workarounds(),
     (Hole(register="holding", start=5, end=6),), 2),
    (RegisterType.INPUT, 0, 10, Workarounds(),
     (Hole(register="holding", start=5, end=6),), None),  # a hole of another table
])
def test_refusal(table: RegisterType, address: int, count: int, quirks: Workarounds,
                 holes: tuple[Hole, ...], expected: int | None) -> None:
    """What the simulated device answers a read with, as its manual says the device does."""
    got = refusal(table, address, count, holes, quirks)
    assert (None if got is None else int(got)) == expected
