"""Request planning (points -> read requests), its bus cost model and the baselines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.modbus.planner import (
    BusCost,
    ReadRequest,
    plan_max_insert,
    plan_per_point,
    plan_requests,
    response_bytes,
    wire_time_ms,
)
from drivers.modbus.poller import plan_points
from drivers.profile import Hole, Point, Profile, RegisterType, load_profile, shipped_profiles

SLOW_TURNAROUND = BusCost(turnaround_ms=100.0)  # merging is almost always worth it
TYPES = {1: "uint16", 2: "float32", 4: "float64"}


def pt(address: int, type_: str = "uint16", register: str = "holding", **extra: Any) -> Point:
    return Point.model_validate({"quantity": "voltage", "channel": f"c{address}-{extra}",
                                 "address": address, "register": register, "type": type_,
                                 **extra})


def numbered(specs: Sequence[tuple[int, int]], register: str = "holding") -> list[Point]:
    """Points from (address, width) pairs with unique keys, overlaps and duplicates allowed."""
    bits = register in ("coil", "discrete")
    return [Point.model_validate({"quantity": "voltage", "channel": f"p{i}", "address": a,
                                  "register": register,
                                  "type": "bool" if bits else TYPES[w]})
            for i, (a, w) in enumerate(specs)]


def hole(start: int, end: int, register: str = "holding") -> Hole:
    return Hole.model_validate({"register": register, "start": start, "end": end})


def spans(requests: list[ReadRequest]) -> list[tuple[str, int, int]]:
    return [(r.table.value, r.address, r.count) for r in requests]


def check_valid(requests: list[ReadRequest], points: Sequence[Point], *, max_registers: int = 125,
                max_bits: int = 2000, holes: Sequence[Hole] = ()) -> None:
    """Every point read exactly once, inside its request; limits and holes respected."""
    planned = [p.key for r in requests for p in r.points]
    assert sorted(planned) == sorted(p.key for p in points)
    for r in requests:
        for p in r.points:
            assert p.table is r.table
            assert r.address <= p.address
            assert p.address + p.width <= r.end
        if len(r.points) > 1:
            assert r.count <= (max_bits if r.table.is_bit else max_registers)
            assert not any(h.table is r.table and h.start < r.end and r.address <= h.end
                           for h in holes)
    order = [(list(RegisterType).index(r.table), r.address) for r in requests]
    assert order == sorted(order)


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of ``items`` into non-empty blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1:]]


def brute_force_ms(points: list[Point], cost: BusCost, limit: int,
                   holes: Sequence[Hole]) -> float:
    """Least bus time over all partitions of the points (not just runs in address order)."""
    best = float("inf")
    for partition in set_partitions(list(range(len(points)))):
        total = 0.0
        for block in partition:
            start = min(points[i].address for i in block)
            end = max(points[i].address + points[i].width for i in block)
            if len(block) > 1 and (end - start > limit or any(
                    h.start < end and start <= h.end for h in holes)):
                break
            total += cost.request_ms(points[0].table, end - start)
        else:
            best = min(best, total)
    return best


costs = st.builds(lambda baud, turn: BusCost(baudrate=baud, turnaround_ms=turn),
                  st.sampled_from([1200, 9600, 19200, 115200]),
                  st.sampled_from([0.0, 2.0, 20.0, 100.0]))
specs = st.lists(st.tuples(st.integers(0, 300), st.sampled_from([1, 2, 4])), max_size=40)


def test_sdm630_plan() -> None:
    """At 9600 baud the SDM630 map splits where a gap costs more than another request."""
    profile = load_profile("eastron-sdm630")
    requests = plan_requests(profile.points)
    assert spans(requests) == [("input", 0x0000, 18), ("input", 0x001E, 6),
                               ("input", 0x0034, 24), ("input", 0x00EA, 6),
                               ("input", 0x0156, 2)]
    check_valid(requests, profile.points)


def test_break_even_gap_at_9600() -> None:
    """With no turnaround a 10-register gap costs exactly one request at 9600 8N1: merged."""
    assert spans(plan_requests([pt(0), pt(11)])) == [("holding", 0, 12)]
    assert spans(plan_requests([pt(0), pt(12)])) == [("holding", 0, 1), ("holding", 12, 1)]


def test_slow_device_bridges_more() -> None:
    """A long turnaround makes bridging wide gaps worth it; without it they are split."""
    assert len(plan_requests([pt(0), pt(50)])) == 2
    assert len(plan_requests([pt(0), pt(50)], cost=SLOW_TURNAROUND)) == 1


def largest_bridged_gap(cost: BusCost) -> int:
    return max(g for g in range(0, 124) if len(plan_requests([pt(0), pt(g + 1)], cost=cost)) == 1)


def test_bridged_gap_depends_on_the_line() -> None:
    """The gap worth bridging follows the line: a fixed turnaround is cheap in slow characters."""
    turnaround = 20.0
    gaps = {baud: largest_bridged_gap(BusCost(baudrate=baud, turnaround_ms=turnaround))
            for baud in (1200, 9600, 115200)}
    assert gaps[1200] < gaps[9600] < gaps[115200]
    # break-even: 2 g chars = 13 chars + 2 silences + turnaround
    assert gaps[1200] == int(13 / 2 + 3.5 + turnaround / (2 * 10_000 / 1200))
    # with no turnaround, fast lines still bridge more: t3.5 is floored at 1.75 ms
    assert largest_bridged_gap(BusCost(baudrate=1200)) == 10
    assert largest_bridged_gap(BusCost(baudrate=115200)) > 10


def test_max_gap_caps_bridging() -> None:
    """An explicit max_gap forbids bridging wider gaps, whatever the cost says."""
    points = [pt(0), pt(30)]
    assert len(plan_requests(points, cost=SLOW_TURNAROUND)) == 1
    assert len(plan_requests(points, cost=SLOW_TURNAROUND, max_gap=28)) == 2
    assert len(plan_requests(points, cost=SLOW_TURNAROUND, max_gap=29)) == 1


@pytest.mark.parametrize(
    ("addresses", "max_fill", "expected"),
    [([0, 1, 2], 0, [(0, 3)]),  # adjacent points merge even without a fill allowance
     ([0, 2], 0, [(0, 1), (2, 1)]),  # a one-register gap is too much at max_fill 0
     ([0, 2], 1, [(0, 3)]),
     ([0, 51], 50, [(0, 52)]),  # a gap of exactly max_fill merges
     ([0, 52], 50, [(0, 1), (52, 1)]),
     ([5, 0, 3], 10, [(0, 6)])],  # input order does not matter
)
def test_max_insert_gap_rule(addresses: list[int], max_fill: int,
                             expected: list[tuple[int, int]]) -> None:
    """Telegraf max_insert merges neighbours while the gap between them is at most max_fill."""
    requests = plan_max_insert([pt(a) for a in addresses], max_fill=max_fill)
    assert [(r.address, r.count) for r in requests] == expected


def test_max_insert_limit_counts_like_telegraf() -> None:
    """max_insert splits when length + gap + width would pass the limit."""
    requests = plan_max_insert([pt(2 * i, "float32") for i in range(100)], max_registers=125)
    assert [(r.address, r.count) for r in requests] == [(0, 124), (124, 76)]
    requests = plan_max_insert([pt(0), pt(5), pt(9)], max_registers=9)
    assert [(r.address, r.count) for r in requests] == [(0, 6), (9, 1)]


def test_max_insert_overlap_keeps_wide_field() -> None:
    """An overlapped wide field stays inside its request (Telegraf would cut it off)."""
    points = numbered([(0, 4), (1, 1)])
    (request,) = plan_max_insert(points)
    assert (request.address, request.count) == (0, 4)


def test_per_point_plan() -> None:
    """plan_per_point reads every quantity on its own, ordered by table and address."""
    points = [pt(5, "float32"), pt(0, "bool", register="coil"), pt(1)]
    assert spans(plan_per_point(points)) == [("coil", 0, 1), ("holding", 1, 1),
                                             ("holding", 5, 2)]


def test_max_registers_splits() -> None:
    """A request never exceeds max_registers, even when the points are contiguous."""
    points = [pt(2 * i, "float32") for i in range(100)]  # 200 registers
    requests = plan_requests(points, max_registers=125)
    assert len(requests) == 2
    assert all(r.count <= 125 for r in requests)
    check_valid(requests, points, max_registers=125)


def test_small_device_limit() -> None:
    """A device-specific limit (workarounds.max_registers) is honoured."""
    points = [pt(a) for a in range(10)]
    requests = plan_requests(points, max_registers=4)
    assert len(requests) == 3
    check_valid(requests, points, max_registers=4)


def test_workarounds_limit_via_profile() -> None:
    """The poller's plan honours a profile's workarounds.max_registers and its holes."""
    profile = Profile.model_validate({
        "profile": {"name": "t", "manufacturer": "m", "model": "x", "source": "s"},
        "point": [{"quantity": "voltage", "channel": f"c{a}", "address": a} for a in range(12)],
        "hole": [{"register": "holding", "start": 6, "end": 6}],
        "workarounds": {"max_registers": 3}})
    points = [p for p in profile.points if p.address != 6]
    requests = plan_points(profile, points)
    check_valid(requests, points, max_registers=3, holes=profile.holes)
    assert len(requests) == 4  # 0-5 in two reads of three, 7-11 in two, nothing across 6


def test_hole_blocks_merge() -> None:
    """Points on either side of a declared hole are read separately, however cheap merging."""
    requests = plan_requests([pt(0), pt(20)], holes=(hole(10, 12),), cost=SLOW_TURNAROUND)
    assert [(r.address, r.count) for r in requests] == [(0, 1), (20, 1)]


def test_hole_in_other_table_is_ignored() -> None:
    """A hole only affects its own register table."""
    requests = plan_requests([pt(0), pt(20)], holes=(hole(10, 12, "input"),),
                             cost=SLOW_TURNAROUND)
    assert [(r.address, r.count) for r in requests] == [(0, 21)]


def test_hole_end_is_inclusive() -> None:
    """A hole ending right before a point still blocks the read that would include it."""
    assert len(plan_requests([pt(0), pt(10)], holes=(hole(5, 9),), cost=SLOW_TURNAROUND)) == 2
    assert len(plan_requests([pt(0), pt(9), pt(10)], holes=(hole(5, 8),),
                             cost=SLOW_TURNAROUND)) == 2


def test_point_inside_a_hole_is_read_alone() -> None:
    """A point the profile puts inside a hole is still read, on its own."""
    requests = plan_requests([pt(0), pt(1), pt(2)], holes=(hole(1, 1),), cost=SLOW_TURNAROUND)
    assert spans(requests) == [("holding", 0, 1), ("holding", 1, 1), ("holding", 2, 1)]


def test_tables_are_planned_separately() -> None:
    """Points of different tables never share a request; output order is by table."""
    points = [pt(0, register="input"), pt(1, register="holding"),
              pt(0, "bool", register="coil"), pt(1, "bool", register="discrete")]
    assert spans(plan_requests(points)) == [("coil", 0, 1), ("discrete", 1, 1),
                                            ("holding", 1, 1), ("input", 0, 1)]


def test_bits_use_max_bits() -> None:
    """Coils merge up to max_bits, not max_registers; unread bits cost an eighth of a byte."""
    points = [pt(a, "bool", register="coil") for a in range(0, 300, 10)]
    requests = plan_requests(points, max_registers=10, max_bits=2000)
    assert spans(requests) == [("coil", 0, 291)]
    requests = plan_requests(points, max_bits=100)
    assert spans(requests) == [("coil", 0, 91), ("coil", 100, 91), ("coil", 200, 91)]


def test_bits_points_share_a_register() -> None:
    """Several 'bits' points of one word are one single-register read."""
    points = [pt(7, "bits", bit=b) for b in (0, 3, 15)]
    (request,) = plan_requests(points)
    assert (request.address, request.count, len(request.points)) == (7, 1, 3)
    assert all(request.slice_of(p) == slice(0, 1) for p in points)


def test_wide_point_over_the_limit_is_read_alone() -> None:
    """A point wider than a tiny device limit is still read, in one request of its own."""
    points = [pt(0, "float64"), pt(4)]
    requests = plan_requests(points, max_registers=2)
    assert spans(requests) == [("holding", 0, 4), ("holding", 4, 1)]


def test_slice_of_points() -> None:
    """slice_of locates each point's registers in the response."""
    a, b = pt(10, "float32"), pt(14, "float64")
    (request,) = plan_requests([a, b])
    assert request.slice_of(a) == slice(0, 2)
    assert request.slice_of(b) == slice(4, 8)
    assert request.end == 18


def test_empty() -> None:
    """No points, no requests, from every planner."""
    assert plan_requests([]) == plan_max_insert([]) == plan_per_point([]) == []


@settings(max_examples=150, deadline=None)
# Found by hypothesis: a point that can only be read alone (too wide, over a hole) sorted
# between two that can share a request.
@example([(13, 1), (13, 4), (14, 1)], BusCost(baudrate=1200), 2, [], False)
@example([(0, 1), (0, 4), (1, 1)], BusCost(baudrate=1200), 4, [(2, 0)], False)
@given(st.lists(st.tuples(st.integers(0, 24), st.sampled_from([1, 2, 4])), min_size=1,
                max_size=7),
       costs, st.integers(1, 16),
       st.lists(st.tuples(st.integers(0, 28), st.integers(0, 3)), max_size=2),
       st.booleans())
def test_dp_equals_brute_force(pairs: list[tuple[int, int]], cost: BusCost, limit: int,
                               hole_specs: list[tuple[int, int]], bits: bool) -> None:
    """The DP finds the cheapest of all partitions of the points, overlaps included."""
    register = "coil" if bits else "holding"
    points = numbered([(a, 1 if bits else w) for a, w in pairs], register)
    holes = [hole(s, s + n, register) for s, n in hole_specs]
    requests = plan_requests(points, max_registers=limit, max_bits=limit, holes=holes,
                             cost=cost)
    check_valid(requests, points, max_registers=limit, max_bits=limit, holes=holes)
    assert cost.cycle_ms(requests) == pytest.approx(brute_force_ms(points, cost, limit, holes))


@settings(max_examples=150, deadline=None)
@given(specs, costs, st.integers(1, 125), st.integers(0, 60),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=3))
def test_dp_never_worse_than_baselines(pairs: list[tuple[int, int]], cost: BusCost,
                                       max_registers: int, max_fill: int,
                                       hole_specs: list[tuple[int, int]]) -> None:
    """On random maps the DP costs at most Telegraf max_insert (any fill) and per-point."""
    points = numbered(pairs)
    holes = [hole(s, s + n) for s, n in hole_specs]
    ours = plan_requests(points, max_registers=max_registers, holes=holes, cost=cost)
    check_valid(ours, points, max_registers=max_registers, holes=holes)
    greedy = plan_max_insert(points, max_fill=max_fill, max_registers=max_registers,
                             holes=holes)
    check_valid(greedy, points, max_registers=max_registers, holes=holes)
    single = plan_per_point(points)
    assert cost.cycle_ms(ours) <= cost.cycle_ms(greedy) + 1e-9
    assert cost.cycle_ms(ours) <= cost.cycle_ms(single) + 1e-9


@pytest.mark.parametrize("name", shipped_profiles())
@pytest.mark.parametrize("cost", [BusCost(baudrate=1200), BusCost(), BusCost(baudrate=115200),
                                  BusCost(baudrate=9600, turnaround_ms=20.0), BusCost.tcp()],
                         ids=["1200", "9600", "115200", "9600+20ms", "tcp"])
def test_shipped_profiles_never_worse(name: str, cost: BusCost) -> None:
    """Every shipped profile plans validly and no worse than max_insert(50) or per-point."""
    profile = load_profile(name)
    quirks = profile.workarounds
    limits: dict[str, Any] = {"max_registers": quirks.max_registers,
                              "max_bits": quirks.max_bits, "holes": profile.holes}
    ours = plan_requests(profile.points, cost=cost, **limits)
    check_valid(ours, profile.points, **limits)
    greedy = plan_max_insert(profile.points, max_fill=50, **limits)
    assert cost.cycle_ms(ours) <= cost.cycle_ms(greedy) + 1e-9
    assert cost.cycle_ms(ours) <= cost.cycle_ms(plan_per_point(profile.points)) + 1e-9


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["holding", "input", "coil"])),
                max_size=40),
       st.integers(1, 125), st.integers(1, 2000))
def test_plan_invariants(specs_: list[tuple[int, str]], max_registers: int,
                         max_bits: int) -> None:
    """Mixed tables: every point read exactly once, inside its request, within the limits."""
    points = [Point.model_validate({"quantity": "voltage", "channel": f"p{i}", "address": a,
                                    "register": reg,
                                    "type": "bool" if reg == "coil" else "float32"})
              for i, (a, reg) in enumerate(specs_)]
    requests = plan_requests(points, max_registers=max_registers, max_bits=max_bits)
    check_valid(requests, points, max_registers=max_registers, max_bits=max_bits)


def test_request_ms_formula() -> None:
    """request_ms is (8 + 5 + payload) chars + two silences + turnaround."""
    cost = BusCost(baudrate=9600, turnaround_ms=3.0)
    char = 10 / 9.6
    assert cost.request_ms(RegisterType.INPUT, 2) == pytest.approx((13 + 4 + 7) * char + 3.0)
    assert cost.request_ms(RegisterType.COIL, 9) == pytest.approx((13 + 2 + 7) * char + 3.0)
    eleven = BusCost(baudrate=9600, bits_per_char=11)
    assert eleven.char_ms == pytest.approx(11 / 9.6)


def test_tcp_cost() -> None:
    """Modbus TCP: MBAP framing, no silent interval; the per-request latency dominates."""
    cost = BusCost.tcp(latency_ms=2.0)
    assert cost.silent_ms == 0.0
    assert cost.request_ms(RegisterType.HOLDING, 1) == pytest.approx(2.0 + 23 * 8 / 10_000)
    # with latency in charge, one 125-register read beats two short ones
    assert len(plan_requests([pt(0), pt(124)], cost=cost)) == 1


def test_cost_rejects_nonsense() -> None:
    """A zero baud rate or a negative turnaround is refused."""
    with pytest.raises(ValueError, match="positive"):
        BusCost(baudrate=0)
    with pytest.raises(ValueError, match="negative"):
        BusCost(turnaround_ms=-1.0)


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
    """Planned requests cost less than one per point; slower lines cost proportionally more."""
    profile = load_profile("eastron-sdm630")
    merged = plan_requests(profile.points)
    single = plan_per_point(profile.points)
    assert wire_time_ms(merged, baudrate=9600) < wire_time_ms(single, baudrate=9600)
    assert wire_time_ms(merged, baudrate=1200) == pytest.approx(
        8 * wire_time_ms(merged, baudrate=9600))
    assert wire_time_ms([], baudrate=9600) == 0.0
    assert wire_time_ms(merged, baudrate=9600) == pytest.approx(BusCost().cycle_ms(merged))
