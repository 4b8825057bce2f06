"""Illegal wiring and load signatures (domain.md §5), from power steps, duration, PF and time.

Per watched sub-circuit (``circuit_kinds``: stairwell lighting and public circuits by default)
and phase, a step tracker follows the active power: a jump of at least ``step_w`` above the
median of the last polls opens a *session* with that median as its baseline; the session
lasts while the excess stays above ``end_fraction`` of the step. On lighting circuits, jumps
within ``switch_window`` of civil dusk and dawn are the lamps switching: they move the
baseline instead. A session becomes:

* ``resistive-load``: a step of at least ``resistive_w`` with step PF >= ``resistive_pf``,
  held ``resistive_delay`` (a heater where none belongs);
* ``ebike-charging``: a step of ``ebike_min_w``..``ebike_max_w`` held ``ebike_min_duration``
  with a confidence >= ``ebike_confidence``; the confidence (0-1, the condition's value) adds
  up the charger's low PF (no PFC), the night hours (``night_from``..``night_to``, local),
  a typical CC size and a steady or tapering level;
* ``unexpected-load``: any other step held ``unexpected_delay`` (on public circuits only at
  night, where daytime loads are legitimate).

``unmetered-tap`` compares each box's incomer (three phases) with the sum of its metered
sub-circuits (same building and box): the gap, less ``box_own_w``, above ``tap_tolerance_w``
+ ``tap_tolerance_pct`` of the incomer's power (median of 5 polls) for ``tap_delay``.
Powers, not currents, are compared: currents add as phasors, powers add.

Pure: state in, state and conditions out; time and time of day come from the readings.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from annotated_types import Ge, Gt, Le

from drivers.durations import Duration
from drivers.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.lighting import SunDay, day_of
from rules.model import Condition, Severity

NAME = "wiring"
EBIKE, RESISTIVE, UNEXPECTED, TAP = "ebike-charging", "resistive-load", "unexpected-load", \
    "unmetered-tap"
# Signatures are suspicions someone has to look at; a tap is a measured fact (current that
# bypasses every sub-breaker and meter), hence critical.
SEVERITIES = {EBIKE: Severity.WARNING, RESISTIVE: Severity.WARNING,
              UNEXPECTED: Severity.WARNING, TAP: Severity.CRITICAL}
PHASES = ("L1", "L2", "L3")
BASELINE_POLLS = 5
MAX_PHASE_W = 250_000.0  # anything above on one phase is a garbled reading, not a load


@dataclass(frozen=True, slots=True)
class WiringConfig:
    """``[rules.wiring]`` / ``[device.rules.wiring]``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # circuits watched for e-bikes, heaters and unexpected load (device kinds)
    circuit_kinds: tuple[str, ...] = ("lighting", "public")
    step_w: Annotated[float, Gt(0)] = 60.0  # W: smallest step tracked
    end_fraction: Annotated[float, Gt(0), Le(1)] = 0.3  # session ends below this x the step
    switch_window: Annotated[Duration, Ge(0), Le(7200)] = 900.0  # lamps switch near dusk/dawn
    ebike_min_w: Annotated[float, Ge(0)] = 60.0
    ebike_max_w: Annotated[float, Gt(0)] = 400.0
    ebike_min_duration: Annotated[Duration, Ge(0), Le(86400)] = 1200.0
    ebike_confidence: Annotated[float, Ge(0), Le(1)] = 0.6
    night_from: Annotated[float, Ge(0), Le(24)] = 20.0  # local hour
    night_to: Annotated[float, Ge(0), Le(24)] = 5.0
    resistive_w: Annotated[float, Gt(0)] = 1000.0
    resistive_pf: Annotated[float, Gt(0), Le(1)] = 0.97
    resistive_delay: Annotated[Duration, Ge(0), Le(86400)] = 120.0
    unexpected_delay: Annotated[Duration, Ge(0), Le(86400)] = 1800.0
    box_own_w: Annotated[float, Ge(0)] = 0.0  # W the box itself draws, unmetered
    tap_tolerance_w: Annotated[float, Ge(0)] = 250.0
    tap_tolerance_pct: Annotated[float, Ge(0), Le(100)] = 3.0
    tap_delay: Annotated[Duration, Ge(0), Le(86400)] = 300.0

    def __post_init__(self) -> None:
        if self.ebike_min_w >= self.ebike_max_w:
            raise ValueError(f"ebike_min_w {self.ebike_min_w} is not below ebike_max_w "
                             f"{self.ebike_max_w}")

    def night(self, hour: float) -> bool:
        if self.night_from <= self.night_to:
            return self.night_from <= hour < self.night_to
        return hour >= self.night_from or hour < self.night_to


def _clock(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%H:%M")


# -- circuits ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Session:
    """A step up being followed: since when, above which baseline, and what it looks like."""

    start: float
    base_p: float
    base_q: float | None
    last_p: float  # the latest power (for baseline moves at dusk and dawn)
    polls: int = 0
    step: float = 0.0  # median excess of the first three polls
    first: tuple[float, ...] = ()  # those excesses
    recent: tuple[float, ...] = ()  # the last three excesses
    peak: float = 0.0  # highest 3-poll median
    sum_dp: float = 0.0  # paired active and reactive excess, for the step's PF
    sum_dq: float = 0.0
    raised: frozenset[str] = frozenset()
    confidence: float = 0.0

    @property
    def level(self) -> float:
        return statistics.median(self.recent) if self.recent else 0.0

    @property
    def pf(self) -> float | None:
        if self.sum_dq == 0.0 and self.sum_dp == 0.0:
            return None
        s = math.hypot(self.sum_dp, self.sum_dq)
        return abs(self.sum_dp) / s if s > 0 else None


@dataclass(frozen=True, slots=True)
class CircuitState:
    recent: tuple[float, ...] = ()  # last powers outside sessions (the baseline)
    recent_q: tuple[float, ...] = ()
    last: tuple[float, float] | None = None  # (ts, W) of the latest power
    session: Session | None = None
    day: SunDay | None = None
    verdicts: bool = False  # first (healthy) verdicts emitted


@dataclass(frozen=True, slots=True)
class CircuitRule:
    """Step signatures on one sub-circuit meter (``rules.base.Rule``); a state per phase."""

    site: SiteInfo
    params: WiringConfig
    lighting: bool  # a lighting circuit: lamps switch at dusk and dawn; any time is odd
    q_from: Quantity | None  # REACTIVE_POWER, POWER_FACTOR, or None: PF unknown
    max_w: float = MAX_PHASE_W

    @property
    def quantities(self) -> frozenset[Quantity]:
        return frozenset({Quantity.POWER} | ({self.q_from} if self.q_from else set()))

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: CircuitState | None,
             reading: Reading) -> tuple[CircuitState, list[Condition]]:
        return evaluate_circuit(state or CircuitState(), reading, self)


def evaluate_circuit(state: CircuitState, reading: Reading,
                     rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    """Feed one power, reactive power or PF reading of a watched circuit."""
    if not reading.good or reading.channel not in PHASES or not math.isfinite(reading.value):
        return state, []
    if reading.quantity is Quantity.POWER:
        if abs(reading.value) > rule.max_w:
            return state, []
        return _power(state, reading, rule)
    if reading.quantity is rule.q_from:
        return _reactive(state, reading), []
    return state, []


def _reactive(state: CircuitState, reading: Reading) -> CircuitState:
    if state.last is None or state.last[0] != reading.ts:
        return state  # no power of the same poll to pair it with
    p = state.last[1]
    if reading.quantity is Quantity.POWER_FACTOR:
        pf = min(1.0, abs(reading.value))
        if pf <= 0.0:
            return state
        q = abs(p) * math.tan(math.acos(pf))
    else:
        q = abs(reading.value)
    s = state.session
    if s is None:
        return replace(state, recent_q=(*state.recent_q, q)[-BASELINE_POLLS:])
    if s.base_q is None:
        return state
    dp, dq = p - s.base_p, q - s.base_q
    if dp <= 0:
        return state
    return replace(state, session=replace(s, sum_dp=s.sum_dp + dp, sum_dq=s.sum_dq + dq))


def _power(state: CircuitState, reading: Reading,
           rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    p, ts = reading.value, reading.ts
    params = rule.params
    day = day_of(rule.site, state.day, ts)
    previous = state.last[1] if state.last is not None else None
    state = replace(state, last=(ts, p), day=day)
    out: list[Condition] = []
    if not state.verdicts and len(state.recent) >= BASELINE_POLLS - 1:
        state = replace(state, verdicts=True)
        out += [_condition(name, reading, False, 0.0, "no step load")
                for name in (EBIKE, RESISTIVE, UNEXPECTED)]
    switching = rule.lighting and _near_switch(day, ts, params.switch_window)
    s = state.session
    if s is None:
        if len(state.recent) >= 3 and previous is not None and not switching:
            base = statistics.median(state.recent)
            rise = p - base
            if rise >= params.step_w and p - previous >= 0.5 * rise:
                base_q = statistics.median(state.recent_q) if state.recent_q else None
                session = Session(start=ts, base_p=base, base_q=base_q, last_p=p)
                return _follow(replace(state, session=session), reading, rule, day, out)
        return replace(state, recent=(*state.recent, p)[-BASELINE_POLLS:]), out
    if switching and previous is not None and abs(p - s.last_p) >= params.step_w:
        s = replace(s, base_p=s.base_p + p - s.last_p)  # the lamps switched: move the baseline
    return _follow(replace(state, session=replace(s, last_p=p)), reading, rule, day, out)


def _near_switch(day: SunDay, ts: float, window: float) -> bool:
    return abs(ts - day.dusk) <= window or abs(ts - day.dawn) <= window


def _follow(state: CircuitState, reading: Reading, rule: CircuitRule, day: SunDay,
            out: list[Condition]) -> tuple[CircuitState, list[Condition]]:
    s = state.session
    assert s is not None
    params, ts, p = rule.params, reading.ts, reading.value
    excess = p - s.base_p
    first = s.first if len(s.first) >= 3 else (*s.first, excess)
    recent = (*s.recent, excess)[-3:]
    step = statistics.median(first)
    s = replace(s, polls=s.polls + 1, first=first, recent=recent, step=step)
    level = s.level
    s = replace(s, peak=max(s.peak, level))
    duration = ts - s.start
    if s.polls >= 3 and level < max(params.step_w / 2, params.end_fraction * step):
        cleared = [_condition(name, reading, False, level,
                              f"step gone after {duration / 60:.0f} min "
                              f"(now {level:+.0f} W over {s.base_p:.0f} W)")
                   for name in sorted(s.raised)]
        return replace(state, session=None, recent=(p,), recent_q=()), out + cleared
    pf = s.pf
    raised = set(s.raised)
    since = _clock(s.start, rule.site.timezone)
    pf_text = f", PF {pf:.2f}" if pf is not None else ""
    if RESISTIVE not in raised and s.polls >= 3 and duration >= params.resistive_delay and \
            step >= params.resistive_w and pf is not None and pf >= params.resistive_pf:
        raised.add(RESISTIVE)
        out.append(_condition(RESISTIVE, reading, True, level,
                              f"{step:+.0f} W resistive step{pf_text} for "
                              f"{duration / 60:.0f} min since {since}: heater or similar "
                              f"on a circuit not rated for it", limit=params.resistive_w))
    if EBIKE not in raised and RESISTIVE not in raised and \
            duration >= params.ebike_min_duration and \
            params.ebike_min_w <= step <= params.ebike_max_w:
        hour = day.hour(ts)
        confidence = _confidence(s, params, rule, day.hour(s.start), hour)
        s = replace(s, confidence=confidence)
        if confidence >= params.ebike_confidence:
            raised.add(EBIKE)
            shape = "tapering" if level < 0.85 * s.peak else "steady"
            out.append(_condition(
                EBIKE, reading, True, round(confidence, 2),
                f"{step:+.0f} W for {duration / 60:.0f} min since {since}, {shape}{pf_text}: "
                f"likely e-bike charging (confidence {confidence:.2f})",
                limit=params.ebike_confidence))
            if UNEXPECTED in raised:
                raised.discard(UNEXPECTED)
                out.append(_condition(UNEXPECTED, reading, False, level,
                                      "identified as e-bike charging"))
    night = params.night(day.hour(ts))
    if not raised & {EBIKE, RESISTIVE, UNEXPECTED} and duration >= params.unexpected_delay \
            and (rule.lighting or night) and level >= params.step_w:
        raised.add(UNEXPECTED)
        kind = "lighting" if rule.lighting else "public"
        out.append(_condition(UNEXPECTED, reading, True, level,
                              f"{level:+.0f} W above its usual {s.base_p:.0f} W for "
                              f"{duration / 60:.0f} min since {since}{pf_text}: unexpected "
                              f"load on a {kind} circuit", limit=params.step_w))
    return replace(state, session=replace(s, raised=frozenset(raised))), out


def _confidence(s: Session, params: WiringConfig, rule: CircuitRule, start_hour: float,
                hour: float) -> float:
    """How much a held step looks like an e-bike charger (domain.md §5)."""
    c = 0.35
    pf = s.pf
    if pf is None:
        c += 0.1  # not measured: neither for nor against
    elif pf <= 0.75:
        c += 0.3  # switched-mode charger without PFC
    elif pf <= 0.85:
        c += 0.15
    elif pf <= 0.95:
        c -= 0.15
    else:
        c -= 0.3  # resistive: not a charger
    c += 0.15 if params.night(start_hour) or params.night(hour) else -0.1
    if 100.0 <= s.step <= 300.0:
        c += 0.1  # 48 V packs at 2-5 A
    level = s.level
    if 0.5 * s.step <= level <= 1.2 * s.step:
        c += 0.05  # CC: steady, creeping up; CV: tapering
        if level < 0.85 * s.peak:
            c += 0.05
    return max(0.0, min(1.0, c))


def _condition(rule: str, reading: Reading, active: bool, value: float, what: str,
               limit: float | None = None) -> Condition:
    where = reading.device if reading.channel in (None, "L1") else \
        f"{reading.device} {reading.channel}"
    message = f"{where}: {what}" if active else f"{where}: {rule} cleared ({what})"
    return Condition(rule=rule, device=reading.device, channel=reading.channel, active=active,
                     severity=SEVERITIES[rule], ts=reading.ts, value=round(value, 3),
                     limit=limit, message=message)


# -- unmetered taps ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TapState:
    incomer: Mapping[str, tuple[float, float]]  # phase -> (ts, W)
    subs: Mapping[tuple[str, str | None], tuple[float, float]]  # (device, phase) -> (ts, W)
    evaluated: float | None = None
    gaps: tuple[float, ...] = ()
    above_since: float | None = None
    active: bool | None = None


@dataclass(frozen=True, slots=True)
class TapRule:
    """One box: its incomer's power against the sum of its metered sub-circuits."""

    site: SiteInfo
    params: WiringConfig
    incomer: str
    subs: frozenset[str]
    where: str  # "b12 box 1"
    skew: float  # s: how far apart in time readings may be to be compared

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _POWER

    def key(self, reading: Reading) -> Hashable:
        return TAP, self.incomer

    def step(self, state: TapState | None,
             reading: Reading) -> tuple[TapState, list[Condition]]:
        return evaluate_tap(state or TapState(incomer={}, subs={}), reading, self)


_POWER = frozenset({Quantity.POWER})


def evaluate_tap(state: TapState, reading: Reading,
                 rule: TapRule) -> tuple[TapState, list[Condition]]:
    """Feed one power reading of the box's incomer or one of its sub-circuits."""
    if reading.quantity is not Quantity.POWER or not reading.good or \
            reading.channel not in PHASES or not math.isfinite(reading.value) or \
            abs(reading.value) > MAX_PHASE_W:
        return state, []
    ts = reading.ts
    if reading.device == rule.incomer:
        state = replace(state, incomer={**state.incomer, str(reading.channel): (ts, reading.value)})
    elif reading.device in rule.subs:
        state = replace(state, subs={**state.subs, (reading.device, reading.channel):
                                     (ts, reading.value)})
    else:
        return state, []
    phases = [state.incomer.get(p) for p in PHASES]
    if any(v is None for v in phases):
        return state, []
    t_in = max(v[0] for v in phases if v is not None)
    if min(v[0] for v in phases if v is not None) != t_in or \
            (state.evaluated is not None and t_in <= state.evaluated):
        return state, []
    subs_seen = {d for d, _ in state.subs}
    if subs_seen != rule.subs or any(abs(t - t_in) > rule.skew for t, _ in state.subs.values()):
        return state, []
    return _tap(state, reading, rule, t_in, sum(v[1] for v in phases if v is not None))


def _tap(state: TapState, reading: Reading, rule: TapRule, t_in: float,
         incomer_w: float) -> tuple[TapState, list[Condition]]:
    p = rule.params
    metered = sum(w for _, w in state.subs.values())
    gaps = (*state.gaps, incomer_w - metered - p.box_own_w)[-5:]
    state = replace(state, evaluated=t_in, gaps=gaps)
    if len(gaps) < 3:
        return state, []
    gap = statistics.median(gaps)
    limit = p.tap_tolerance_w + p.tap_tolerance_pct / 100 * abs(incomer_w)
    above = gap > limit
    since = state.above_since
    if above:
        since = since if since is not None else t_in
    elif state.active and gap > 0.7 * limit:
        since = since if since is not None else t_in  # deadband: stay active
    else:
        since = None
    state = replace(state, above_since=since)
    active = since is not None and (bool(state.active) or t_in - since >= p.tap_delay)
    if active == state.active:
        return state, []
    state = replace(state, active=active)
    text = (f"{rule.where}: incomer {incomer_w:.0f} W is {gap:.0f} W above its metered "
            f"sub-circuits ({metered:.0f} W; tolerance {limit:.0f} W)")
    if active:
        assert since is not None
        text += f" for {(t_in - since) / 60:.0f} min since {_clock(since, rule.site.timezone)}:" \
                f" unmetered tap or unmetered circuit"
    else:
        text += ": unmetered-tap cleared"
    return state, [Condition(rule=TAP, device=rule.incomer, channel=None, active=active,
                             severity=SEVERITIES[TAP], ts=t_in, value=round(gap, 1),
                             limit=round(limit, 1), message=text)]


# -- building from config ---------------------------------------------------------------------

def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, list[Rule]] = {}
    meters = [(d, c) for d, c in devices if d.serves(Quantity.POWER) and d.kind != "fire-panel"]
    for device, config in meters:
        if device.kind in config.circuit_kinds:
            q_from = Quantity.REACTIVE_POWER if device.serves(Quantity.REACTIVE_POWER) else \
                Quantity.POWER_FACTOR if device.serves(Quantity.POWER_FACTOR) else None
            max_w = MAX_PHASE_W if device.rated_current is None else \
                max(1000.0, 3 * 250.0 * device.rated_current)
            out.setdefault(device.name, []).append(CircuitRule(
                site=site, params=config, lighting=device.kind == "lighting", q_from=q_from,
                max_w=max_w))
    for device, config in meters:
        if device.kind != "incomer" or not device.box:
            continue
        subs = frozenset(d.name for d, _ in meters if d.kind != "incomer"
                         and d.building == device.building and d.box == device.box)
        if not subs or not all(device.serves(Quantity.POWER) and
                               (Quantity.POWER, ph) in device.points for ph in PHASES):
            continue
        where = f"b{device.building} box {device.box}" if device.building else \
            f"box {device.box}"
        tap = TapRule(site=site, params=config, incomer=device.name, subs=subs, where=where,
                      skew=max(10.0, 1.5 * device.poll))
        for name in (device.name, *sorted(subs)):
            out.setdefault(name, []).append(tap)
    return out


SPEC = RuleSpec(
    name=NAME, params=WiringConfig, build=_build,
    summary="illegal wiring: e-bike charging, resistive loads and unexpected load on "
            "lighting/public circuits; unmetered taps (incomer above its sub-circuits)",
    alarms={EBIKE: "warning: an e-bike charger's signature (confidence 0-1 as the value)",
            RESISTIVE: "warning: a large PF~1 step (heater) on a circuit not meant for it",
            UNEXPECTED: "warning: sustained extra load on a lighting or public circuit",
            TAP: "critical: a box's incomer draws more than its metered sub-circuits"})
