"""Unmetered taps: a box's energy balance.

Every box with an incomer and metered sub-circuits (same building and box) is balanced over
``tap_window``: the energy the incomer's counter advanced, less what its sub-circuits' counters
advanced, as an average power. A flat pulling current upstream of every sub-meter (飞线, 偷电)
shows as that gap. Energy counters, not instantaneous powers, because a poller reads a box's
meters seconds to a minute apart and loads move in between (a lift, a kettle, a compressor):
counters integrate everything, so the balance is exact up to the counters' resolution and the
meters' accuracy class, whatever the read times. Each counter is interpolated linearly to the
two ends of a window all of them cover; a silent meter holds the balance back instead of
guessing.

The gap, less ``box_own_w`` (the box's own unmetered draw), raises ``unmetered-tap`` when it
exceeds ``tap_tolerance_w`` + ``tap_tolerance_pct`` of the incomer's average power for
``tap_delay``; it clears once below 70 % of that for ``tap_clear_after`` (a tapped flat's
load falls to a fridge at night: one page per tap, not one per evening). Tolerance: class 1
meters (IEC 62053-21: ±1 %) on both sides of the balance, plus float32 counters (a 50 000 kWh
reading resolves 4 Wh: 8 W over 30 min per meter). Pure: state in, state and conditions out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, SiteInfo
from rules.model import Condition
from rules.wiring_config import SEVERITIES, TAP, WiringConfig, clock

KWH_TO_J = 3.6e6
COUNTERS = (Quantity.ENERGY_IMPORT, Quantity.ENERGY)  # import first: export is not a load
Sample = tuple[float, float]  # (ts, kWh)


@dataclass(frozen=True, slots=True)
class TapState:
    series: Mapping[str, tuple[Sample, ...]]  # device -> its counter's recent samples
    evaluated: float | None = None  # end of the last window balanced
    above_since: float | None = None
    below_since: float | None = None  # within tolerance since (clearing)
    active: bool | None = None


@dataclass(frozen=True, slots=True)
class TapRule:
    """One box: its incomer's energy against the sum of its metered sub-circuits'."""

    site: SiteInfo
    params: WiringConfig
    incomer: str
    subs: frozenset[str]
    counters: Mapping[str, tuple[Quantity, str | None]]  # device -> its counter point
    where: str  # "b12 box 1"

    @property
    def quantities(self) -> frozenset[Quantity]:
        return frozenset(q for q, _ in self.counters.values())

    def key(self, reading: Reading) -> Hashable:
        return TAP, self.incomer

    def step(self, state: TapState | None,
             reading: Reading) -> tuple[TapState, list[Condition]]:
        return evaluate_tap(state or TapState(series={}), reading, self)


def evaluate_tap(state: TapState, reading: Reading,
                 rule: TapRule) -> tuple[TapState, list[Condition]]:
    """Feed one energy-counter reading of the box's incomer or one of its sub-circuits."""
    point = rule.counters.get(reading.device)
    if point is None or (reading.quantity, reading.channel) != point or not reading.good or \
            not math.isfinite(reading.value) or reading.value < 0:
        return state, []
    samples = state.series.get(reading.device, ())
    if samples and reading.ts <= samples[-1][0]:
        return state, []
    if samples and reading.value < samples[-1][1]:
        samples = ()  # a counter that went back: a replaced or reset meter starts over
    keep = rule.params.tap_window * 1.5 + 600
    samples = (*(s for s in samples if reading.ts - s[0] <= keep), (reading.ts, reading.value))
    state = replace(state, series={**state.series, reading.device: samples})
    return _balance(state, rule)


def _at(samples: Sequence[Sample], t: float) -> float | None:
    """The counter at ``t``, linear between the samples around it (None: not covered)."""
    for (t0, e0), (t1, e1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return e0 + (e1 - e0) * (t - t0) / (t1 - t0)
    return None


def _balance(state: TapState, rule: TapRule) -> tuple[TapState, list[Condition]]:
    names = (rule.incomer, *sorted(rule.subs))
    if any(len(state.series.get(n, ())) < 2 for n in names):
        return state, []
    p = rule.params
    t_b = min(state.series[n][-1][0] for n in names)
    if state.evaluated is not None and t_b - state.evaluated < 30.0:
        return state, []
    t_a = t_b - p.tap_window
    advanced: dict[str, float] = {}
    for n in names:
        e_a, e_b = _at(state.series[n], t_a), _at(state.series[n], t_b)
        if e_a is None or e_b is None:
            return state, []  # the window is not covered yet (start, a meter back online)
        advanced[n] = e_b - e_a
    scale = KWH_TO_J / p.tap_window
    incomer_w = advanced[rule.incomer] * scale
    metered_w = sum(advanced[n] for n in rule.subs) * scale
    gap = incomer_w - metered_w - p.box_own_w
    limit = p.tap_tolerance_w + p.tap_tolerance_pct / 100 * abs(incomer_w)
    since = state.above_since
    if gap > limit or (state.active and gap > 0.7 * limit):
        since = since if since is not None else t_b
        below = None
    else:
        since = None
        below = state.below_since if state.below_since is not None else t_b
    active = since is not None and (bool(state.active) or t_b - since >= p.tap_delay)
    if state.active and not active and below is not None and t_b - below < p.tap_clear_after:
        active = True  # a tapped flat sleeps too: hold through its quiet hours
    state = replace(state, evaluated=t_b, above_since=since, below_since=below)
    if active == state.active:
        return state, []
    state = replace(state, active=active)
    text = (f"{rule.where}: incomer averaged {incomer_w:.0f} W over "
            f"{p.tap_window / 60:.0f} min, {gap:.0f} W more than its metered sub-circuits "
            f"({metered_w:.0f} W; tolerance {limit:.0f} W)")
    if active:
        assert since is not None
        window_start = since - p.tap_window
        text += f" since about {clock(window_start, rule.site.timezone)}: unmetered tap or " \
                f"unmetered circuit"
    else:
        text += ": unmetered-tap cleared"
    return state, [Condition(rule=TAP, device=rule.incomer, channel=None, active=active,
                             severity=SEVERITIES[TAP], ts=t_b, value=round(gap, 1),
                             limit=round(limit, 1), message=text,
                             evidence=(("incomer_w", round(incomer_w, 1)),
                                       ("metered_w", round(metered_w, 1)),
                                       ("gap_w", round(gap, 1)),
                                       ("window_min", round(p.tap_window / 60, 1))))]


def counter_point(device: DeviceInfo) -> tuple[Quantity, str | None] | None:
    """The device's total import counter: a "total" channel on a 3-phase meter, its only
    channel on a single-phase one."""
    for quantity in COUNTERS:
        channels = [c for q, c in device.points if q is quantity]
        if not channels:
            continue
        for wanted in ("total", None, "L1"):
            if wanted in channels:
                return quantity, wanted
    return None


def tap_rules(site: SiteInfo,
              meters: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    """One TapRule per box whose incomer and sub-circuits all count energy."""
    out: dict[str, list[Rule]] = {}
    for device, config in meters:
        if device.kind != "incomer" or not device.box:
            continue
        subs = [d for d, _ in meters if d.kind != "incomer" and d.building == device.building
                and d.box == device.box]
        counters = {d.name: counter_point(d) for d in (device, *subs)}
        if not subs or any(c is None for c in counters.values()):
            continue  # no balance without every counter (README: what a box needs)
        where = f"b{device.building} box {device.box}" if device.building else \
            f"box {device.box}"
        tap = TapRule(site=site, params=config, incomer=device.name,
                      subs=frozenset(d.name for d in subs),
                      counters={n: c for n, c in counters.items() if c is not None},
                      where=where)
        for name in (device.name, *sorted(tap.subs)):
            out.setdefault(name, []).append(tap)
    return out
