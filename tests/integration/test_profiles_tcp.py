"""Every shipped profile read in full over Modbus TCP from the simulator."""

from __future__ import annotations

import math

import pytest

from core.measurements import Quality, Reading
from daemon.config import BusConfig, DeviceConfig
from drivers.modbus.decode import point_range
from drivers.modbus.poller import PolledDevice, read_once
from drivers.profile import DataType, Point, load_profile, shipped_profiles
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice

pytestmark = pytest.mark.integration


def distinct_value(point: Point, index: int) -> float:
    """A value for ``point`` that its encoding holds exactly and that differs per point."""
    if point.type in (DataType.BOOL, DataType.BITS):
        return float(index % 2)
    if point.type in (DataType.FLOAT32, DataType.FLOAT64):
        low, high = point_range(point)
        if low <= 100.0 + 1.25 * index <= high:
            return 100.0 + 1.25 * index  # exact in float32
        return (index % 64 + 1) / 128  # a power factor: exact in float32, plausible
    value = (index + 1) * point.scale + point.offset  # raw 1, 2, 3, ...: never a sentinel
    low, high = point_range(point)
    if not low <= value <= high and point.scale > 0:  # an offset span (4-20 mA): start inside
        value = (math.ceil((low - point.offset) / point.scale) + index + 1) * point.scale \
            + point.offset
    return value


def set_distinct_values(device: SimulatedDevice) -> dict[str, float]:
    """Set every point of the device to its own value; the expected readings by point key.

    Points that read the same registers another way (a 4-20 mA loop's current and its
    engineering value) expect what the registers hold once all are set.
    """
    aliased = {p.key for p in device.profile.points for o in device.profile.points
               if o is not p and o.table is p.table and o.address == p.address
               and not p.table.is_bit and p.type is not DataType.BITS}
    for i, point in enumerate(device.profile.points):
        value = distinct_value(point, i)
        device.set(point.quantity.value, value, point.channel)
        if point.key not in aliased:
            assert device.read_back(point.quantity.value, point.channel) == pytest.approx(value)
    expected = {p.key: device.read_back(p.quantity.value, p.channel)
                for p in device.profile.points}
    for key in aliased:
        assert expected[key] == pytest.approx(device.get(*key.split("/")))
    return expected


def by_key(readings: list[Reading]) -> dict[str, tuple[float, Quality]]:
    return {f"{r.quantity.value}/{r.channel}" if r.channel else r.quantity.value:
            (r.value, r.quality) for r in readings}


def polled(profile_name: str, unit: int) -> PolledDevice:
    config = DeviceConfig(name=f"{profile_name}-{unit}", bus="lab", unit=unit,
                          profile=profile_name, poll=1.0)
    return PolledDevice(config=config, profile=load_profile(profile_name))


@pytest.mark.parametrize("name", shipped_profiles())
async def test_every_profile_reads_in_full_over_tcp(name: str) -> None:
    """Each point of each shipped profile reads back over TCP as set, with GOOD quality."""
    device = polled(name, 5)
    simulated = SimulatedDevice(device.profile, 5)
    expected = set_distinct_values(simulated)
    async with ModbusTcpSimulator([simulated]) as sim:
        bus = BusConfig(name="lab", type="tcp", host="127.0.0.1", port=sim.port, timeout=2.0)
        readings = await read_once(bus, device)
    got = by_key(readings)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key][0] == pytest.approx(value), key
        assert got[key][1] is Quality.GOOD, key
