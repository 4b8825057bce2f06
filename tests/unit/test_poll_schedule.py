"""The poller's pure parts: the non-drifting grid, backoff, poll groups and decoding responses."""

from __future__ import annotations

import math

import pytest

from core.measurements import Quality, Quantity
from daemon.config import DeviceConfig
from drivers.modbus.decode import encode_point
from drivers.modbus.planner import plan_requests
from drivers.modbus.poller import (
    Backoff,
    PolledDevice,
    decode_responses,
    device_plan,
    next_slot,
    point_interval,
    stagger_groups,
)
from drivers.profile import Point, load_profile


@pytest.mark.parametrize(
    ("slot", "interval", "now", "expected"),
    [(10.0, 2.0, 10.3, 12.0),  # a short poll: the next slot on the grid
     (10.0, 2.0, 12.0, 14.0),  # finishing exactly on a slot moves past it
     (10.0, 2.0, 15.1, 16.0),  # an overrun skips missed slots instead of bursting
     (10.0, 2.0, 9.0, 12.0)],  # early (clock jitter): still one interval on
)
def test_next_slot_stays_on_grid(slot: float, interval: float, now: float,
                                 expected: float) -> None:
    """Slots are anchored to the grid, so poll durations never accumulate as drift."""
    assert next_slot(slot, interval, now) == pytest.approx(expected)


def test_grid_does_not_drift_over_many_polls() -> None:
    """After 1000 polls that each take 0.3 s, the schedule is still on the 2 s grid."""
    slot = 0.0
    for _ in range(1000):
        slot = next_slot(slot, 2.0, slot + 0.3)
    assert slot == pytest.approx(2000.0)


def test_backoff_doubles_and_caps() -> None:
    """Without jitter the delay doubles from base and stops at cap."""
    policy = Backoff(base=1.0, cap=60.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 32, 60, 60]


def test_backoff_jitter_bounds() -> None:
    """Jitter spreads the delay by +-jitter and never passes the cap."""
    policy = Backoff(base=1.0, cap=60.0, jitter=0.2)
    assert policy.delay(3, rand=lambda: 0.0) == pytest.approx(3.2)
    assert policy.delay(3, rand=lambda: 1.0) == pytest.approx(4.8)
    assert policy.delay(30, rand=lambda: 1.0) == 60.0


def test_point_interval() -> None:
    """A point's own poll overrides the device's; the formats match the config's durations."""
    base = {"quantity": "energy", "address": 0}
    assert point_interval(Point.model_validate(base), 2.0) == 2.0
    assert point_interval(Point.model_validate({**base, "poll": "60s"}), 2.0) == 60.0
    assert point_interval(Point.model_validate({**base, "poll": "500ms"}), 2.0) == 0.5
    assert point_interval(Point.model_validate({**base, "poll": "5m"}), 2.0) == 300.0
    with pytest.raises(ValueError, match="not a duration"):
        Point.model_validate({**base, "poll": "soon"})  # refused when the profile loads


def test_sdm630_poll_groups() -> None:
    """Energy counters (poll = 60s) form their own group beside the 2 s group."""
    profile = load_profile("eastron-sdm630")
    config = DeviceConfig(name="m", bus="b", unit=1, profile="eastron-sdm630", poll=2.0)
    groups = device_plan(PolledDevice(config=config, profile=profile))
    assert [interval for interval, _ in groups] == [2.0, 60.0]
    slow = {p.key for r in groups[1][1] for p in r.points}
    assert slow == {"energy_import/total", "energy_export/total", "energy/total"}
    fast = {p.key for r in groups[0][1] for p in r.points}
    assert len(fast) + len(slow) == len(profile.points)


def test_decode_responses_marks_bad_values() -> None:
    """Responses decode into one Reading per point; NaN comes out with BAD quality."""
    profile = load_profile("eastron-sdm630")
    points = [p for p in profile.points if p.quantity is Quantity.VOLTAGE]
    requests = plan_requests(points)
    words = encode_point(points[0], 231.0) + encode_point(points[1], math.nan) + \
        encode_point(points[2], 229.5)
    readings = decode_responses(requests, [words], device="m1", ts=123.0)
    assert [(r.channel, r.value, r.quality) for r in readings][::2] == [
        ("L1", 231.0, Quality.GOOD), ("L3", 229.5, Quality.GOOD)]
    assert readings[1].quality is Quality.BAD
    assert {r.ts for r in readings} == {123.0}
    assert {r.device for r in readings} == {"m1"}


def test_devices_of_one_box_share_a_stagger_slot() -> None:
    """Same building and box: one slot; no box, or the same box number in another building:
    a slot of its own; slots are numbered in order of first appearance."""
    def cfg(name: str, building: str = "", box: str = "") -> DeviceConfig:
        return DeviceConfig(name=name, bus="b", unit=1, profile="eastron-sdm630",
                            building=building, box=box)
    devices = [cfg("a", "12", "1"), cfg("b"), cfg("c", "12", "1"), cfg("d", "13", "1"),
               cfg("e", "12", "2"), cfg("f"), cfg("g", "12", "2"), cfg("h", "12")]
    assert stagger_groups(devices) == [0, 1, 0, 2, 3, 4, 3, 5]
    assert stagger_groups([]) == []
