"""Request planning (points -> read requests) and the RTU wire-time estimate."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.planner import ReadRequest, plan_requests, response_bytes, wire_time_ms
from drivers.profile import Hole, Point, RegisterType, load_profile


def pt(address: int, type_: str = "uint16", register: str = "holding", **extra: Any) -> Point:
    return Point.model_validate({"quantity": "voltage", "channel": f"c{address}-{extra}",
                                 "address": address, "register": register, "type": type_,
                                 **extra})


def spans(requests: list[ReadRequest]) -> list[tuple[str, int, int]]:
    return [(r.table.value, r.address, r.count) for r in requests]


def test_sdm630_plan() -> None:
    """The SDM630 map becomes three input-register reads: 0-75, THD, total energy."""
    profile = load_profile("eastron-sdm630")
    requests = plan_requests(profile.points)
    assert spans(requests) == [("input", 0x0000, 0x4C), ("input", 0x00EA, 6),
                               ("input", 0x0156, 2)]
    assert sum(len(r.points) for r in requests) == len(profile.points)


@pytest.mark.parametrize(
    ("addresses", "max_gap", "expected"),
    [([0, 1, 2], 0, [(0, 3)]),  # adjacent points merge even without a gap allowance
     ([0, 2], 0, [(0, 1), (2, 1)]),  # a one-register hole is too much at max_gap 0
     ([0, 2], 1, [(0, 3)]),
     ([0, 51], 50, [(0, 52)]),  # gap of exactly max_gap merges
     ([0, 52], 50, [(0, 1), (52, 1)]),
     ([5, 0, 3], 10, [(0, 6)])],  # input order does not matter
)
def test_gap_rule(addresses: list[int], max_gap: int, expected: list[tuple[int, int]]) -> None:
    """Neighbours merge while the unread gap between them is at most max_gap."""
    requests = plan_requests([pt(a) for a in addresses], max_gap=max_gap)
    assert [(r.address, r.count) for r in requests] == expected


def test_max_registers_splits() -> None:
    """A request never exceeds max_registers, even when the points are contiguous."""
    points = [pt(2 * i, "float32") for i in range(100)]  # 200 registers
    requests = plan_requests(points, max_registers=125)
    assert [(r.address, r.count) for r in requests] == [(0, 124), (124, 76)]
    assert all(r.count <= 125 for r in requests)


def test_small_device_limit() -> None:
    """A device-specific limit (workarounds.max_registers) is honoured."""
    requests = plan_requests([pt(a) for a in range(10)], max_registers=4)
    assert [(r.address, r.count) for r in requests] == [(0, 4), (4, 4), (8, 2)]


def test_hole_blocks_merge() -> None:
    """Points on either side of a declared hole are read separately."""
    holes = (Hole.model_validate({"register": "holding", "start": 10, "end": 12}),)
    requests = plan_requests([pt(0), pt(20)], holes=holes)
    assert [(r.address, r.count) for r in requests] == [(0, 1), (20, 1)]


def test_hole_in_other_table_is_ignored() -> None:
    """A hole only affects its own register table."""
    holes = (Hole.model_validate({"register": "input", "start": 10, "end": 12}),)
    requests = plan_requests([pt(0), pt(20)], holes=holes)
    assert [(r.address, r.count) for r in requests] == [(0, 21)]


def test_hole_end_is_inclusive() -> None:
    """A hole ending right before a point still blocks the read that would include it."""
    holes = (Hole.model_validate({"register": "holding", "start": 5, "end": 9}),)
    assert len(plan_requests([pt(0), pt(10)], holes=holes)) == 2
    holes = (Hole.model_validate({"register": "holding", "start": 5, "end": 8}),)
    assert len(plan_requests([pt(0), pt(9), pt(10)], holes=holes)) == 2


def test_tables_are_planned_separately() -> None:
    """Points of different tables never share a request; output order is by table."""
    points = [pt(0, register="input"), pt(1, register="holding"),
              pt(0, "bool", register="coil"), pt(1, "bool", register="discrete")]
    assert spans(plan_requests(points)) == [("coil", 0, 1), ("discrete", 1, 1),
                                            ("holding", 1, 1), ("input", 0, 1)]


def test_bits_use_max_bits() -> None:
    """Coils merge up to max_bits, not max_registers."""
    points = [pt(a, "bool", register="coil") for a in range(0, 300, 10)]
    requests = plan_requests(points, max_registers=10, max_bits=2000)
    assert spans(requests) == [("coil", 0, 291)]
    requests = plan_requests(points, max_bits=100)
    assert all(r.count <= 100 for r in requests)
    assert len(requests) == 3


def test_bits_points_share_a_register() -> None:
    """Several 'bits' points of one word are one single-register read."""
    points = [pt(7, "bits", bit=b) for b in (0, 3, 15)]
    (request,) = plan_requests(points)
    assert (request.address, request.count, len(request.points)) == (7, 1, 3)
    assert all(request.slice_of(p) == slice(0, 1) for p in points)


def test_slice_of_points() -> None:
    """slice_of locates each point's registers in the response."""
    a, b = pt(10, "float32"), pt(14, "float64")
    (request,) = plan_requests([a, b])
    assert request.slice_of(a) == slice(0, 2)
    assert request.slice_of(b) == slice(4, 8)
    assert request.end == 18


def test_empty() -> None:
    """No points, no requests."""
    assert plan_requests([]) == []


point_strategy = st.builds(
    lambda a, t: pt(a, t),
    st.integers(0, 400), st.sampled_from(["uint16", "int32", "float32", "float64"]))


@given(st.lists(point_strategy, max_size=40, unique_by=lambda p: p.key),
       st.integers(1, 125), st.integers(0, 60))
def test_plan_invariants(points: list[Point], max_registers: int, max_gap: int) -> None:
    """Every point is read exactly once, inside its request, and requests respect the limit."""
    requests = plan_requests(points, max_registers=max_registers, max_gap=max_gap)
    planned = [p for r in requests for p in r.points]
    assert sorted(p.key for p in planned) == sorted(p.key for p in points)
    for r in requests:
        assert r.count <= max_registers or len(r.points) == 1
        for p in r.points:
            assert r.address <= p.address
            assert p.address + p.width <= r.end
    starts = [r.address for r in requests]
    assert starts == sorted(starts)


def test_wire_time_registers() -> None:
    """2 registers at 9600 baud: 8 + 9 bytes plus two 3.5-char gaps = 24 chars = 25 ms."""
    request = ReadRequest(RegisterType.INPUT, 0, 2, ())
    assert response_bytes(request) == 9
    assert wire_time_ms([request], baudrate=9600) == pytest.approx(25.0)


def test_wire_time_bits() -> None:
    """10 coils answer in 5 + 2 bytes."""
    request = ReadRequest(RegisterType.COIL, 0, 10, ())
    assert response_bytes(request) == 7
    assert wire_time_ms([request], baudrate=9600) == pytest.approx((8 + 7 + 7) * 10 / 9.6)


def test_wire_time_fast_line_uses_minimum_silence() -> None:
    """Above 19200 baud the silent interval is the fixed 1.75 ms."""
    request = ReadRequest(RegisterType.HOLDING, 0, 1, ())
    expected = (8 + 7) * 10 / 115.2 + 2 * 1.75
    assert wire_time_ms([request], baudrate=115200) == pytest.approx(expected)


def test_wire_time_adds_up_and_scales() -> None:
    """Fewer, larger requests cost less than many small ones; slower lines cost more."""
    profile = load_profile("eastron-sdm630")
    merged = plan_requests(profile.points)
    single = plan_requests(profile.points, max_gap=0, max_registers=2)
    assert wire_time_ms(merged, baudrate=9600) < wire_time_ms(single, baudrate=9600)
    assert wire_time_ms(merged, baudrate=1200) == pytest.approx(
        8 * wire_time_ms(merged, baudrate=9600))
    assert wire_time_ms([], baudrate=9600) == 0.0
