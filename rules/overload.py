"""Overload: a thermal (I²t) model of each circuit's breaker, phase balance and the neutral.

**Model.** A miniature circuit breaker trips on overload when its bimetal gets hot enough, and
the bimetal heats like any first-order body: with ``r = I / (k·In)``, the normalised heat
``H`` follows ``dH/dt = (r² - H) / τ``, so a steady current settles at ``H = r²`` and ``H = 1``
(100 %) is the trip point (the thermal model of protective relays, IEC 60255-149). Between two
readings the rule applies the exact solution ``H' = r² + (H - r²)·exp(-Δt/τ)`` with the new
reading's current (conservative while the current rises). The derived ``thermal_load`` % is
``100·H``, stored in InfluxDB as ``power.thermal_load_pct``.

**Constants (IEC 60898-1, the same for B, C and D curves: the letter fixes only the magnetic
release at 3-5, 5-10 and 10-20·In).** ``k = 1.13``, the conventional non-tripping current: the
breaker may never trip below it, and may trip after an hour above it, so 100 % is the earliest
trip the standard allows; a circuit at In reads 78 %. ``τ = 270 s`` makes the model reach 100 %
no later than the standard's own checkpoints: 1.45·In (conventional tripping current, "trips
within 1 h") reads 100 % after 4.2 min and 2.55·In ("trips within 1-60 s", In ≤ 32 A) after
59 s. A τ fitted to the 1 h conventional time instead (64 min) would lag a real breaker ten- to
twenty-fold at 2-3·In and alarm after the trip. 1.13·In approaches 100 % but never reaches it.

**Alarms.** ``overload`` (critical) when the thermal load reaches ``alarm_pct``: the message says
how long the breaker has left at this current. ``overload-warning`` when a phase carries
``warn_pct`` % of In for ``warn_on_delay``. Per device, where L1-L3 are measured:
``phase-imbalance`` ((max - min) / mean of the three phases) and ``neutral-overload`` (the
measured neutral, else the fundamental-frequency vector sum of the phases at 120°, which
underestimates a neutral carrying third harmonics from chargers and LED drivers; the neutral of
a TN-S final circuit usually has no overcurrent release of its own).

The ``overcurrent`` rule (``rules.overcurrent``) stays the instantaneous threshold. Pure: state in,
state and outputs out; time is the reading's.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Output, Rule, RuleSpec, SiteInfo
from rules.hysteresis import ON_DELAY_SLACK, hold, minutes
from rules.model import Condition, Severity

NAME = "overload"
WARNING_RULE = "overload-warning"
IMBALANCE_RULE = "phase-imbalance"
NEUTRAL_RULE = "neutral-overload"
# IEC 60898-1 conventional non-tripping current (×In): 100 % thermal load at steady state.
NON_TRIPPING = 1.13
# The first reading starts the model at its steady state, but no higher than this: after a
# restart a circuit has most likely carried its current for a while, yet one sample is no
# proof of an overload.
START_CAP = 0.8
PHASES = ("L1", "L2", "L3")
_CHANNELS = frozenset({"L1", "L2", "L3", None})  # None: a single-phase meter's current


# -- per-phase thermal model ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ThermalState:
    ts: float
    heat: float  # H: 1.0 is the trip point
    alarm: bool | None = None
    warn: bool | None = None
    warn_since: float | None = None


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    """``[rules.overload]``: every device with a ``rated_current`` that measures phase (or
    single-phase) currents; imbalance and neutral where L1, L2 and L3 are all measured."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # τ of the breaker's thermal release (s): 270 s meets IEC 60898-1 at 1.45·In (< 1 h) and
    # 2.55·In (≤ 60 s); see the module docstring. Raise it for a slower (cable) model.
    time_constant: Annotated[Duration, Ge(10), Le(7200)] = 270.0
    # "overload" (critical) at this thermal load, clearing below alarm_clear_pct (deadband).
    alarm_pct: Annotated[float, Gt(0), Le(100)] = 90.0
    alarm_clear_pct: Annotated[float, Gt(0), Le(100)] = 80.0
    # "overload-warning" when a phase carries warn_pct % of In for warn_on_delay; a common
    # design limit for continuous load on a breaker (warn before it trips).
    warn_pct: Annotated[float, Gt(0), Le(1000)] = 80.0
    warn_clear_pct: Annotated[float, Gt(0), Le(1000)] = 75.0
    warn_on_delay: Annotated[Duration, Ge(0), Le(86400)] = 300.0
    # "phase-imbalance": (max - min) / mean above imbalance_pct % while the mean is at least
    # imbalance_min_load_pct % of In (light loads are naturally uneven), for the on-delay.
    imbalance_pct: Annotated[float, Gt(0), Le(300)] = 30.0
    imbalance_clear_pct: Annotated[float, Gt(0), Le(300)] = 25.0
    imbalance_min_load_pct: Annotated[float, Ge(0), Le(100)] = 20.0
    imbalance_on_delay: Annotated[Duration, Ge(0), Le(86400)] = 600.0
    # "neutral-overload": warning at neutral_warn_pct % of In (the neutral is sized like the
    # phases), critical at neutral_alarm_pct (the conventional tripping current 1.45·In, with
    # no breaker pole to trip); clears below neutral_clear_pct % of the level's limit.
    neutral_warn_pct: Annotated[float, Gt(0), Le(1000)] = 100.0
    neutral_alarm_pct: Annotated[float, Gt(0), Le(1000)] = 145.0
    neutral_clear_pct: Annotated[float, Gt(0), Le(100)] = 90.0
    neutral_on_delay: Annotated[Duration, Ge(0), Le(86400)] = 60.0
    # Phase values older than this (s) are not combined with a fresh one.
    max_age: Annotated[Duration, Gt(0), Le(3600)] = 30.0

    def __post_init__(self) -> None:
        for raise_, clear, what in ((self.alarm_pct, self.alarm_clear_pct, "alarm"),
                                    (self.warn_pct, self.warn_clear_pct, "warn"),
                                    (self.imbalance_pct, self.imbalance_clear_pct, "imbalance")):
            if clear > raise_:
                raise ValueError(f"{what}_clear_pct {clear:g} is above {what}_pct {raise_:g}")
        if self.neutral_alarm_pct < self.neutral_warn_pct:
            raise ValueError(f"neutral_alarm_pct {self.neutral_alarm_pct:g} is below "
                             f"neutral_warn_pct {self.neutral_warn_pct:g}")



@dataclass(frozen=True, slots=True)
class Thermal:
    """One circuit's per-phase thermal model; the ``rules.base.Rule`` for its phase currents."""

    rated_current: float
    curve: str = "C"
    params: OverloadConfig = OverloadConfig()

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _CURRENT

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: ThermalState | None,
             reading: Reading) -> tuple[ThermalState | None, list[Output]]:
        if (reading.quantity is not Quantity.CURRENT or not reading.good
                or reading.channel not in _CHANNELS):
            return state, []
        now, amps = reading.ts, abs(reading.value)
        ratio = amps / (self.rated_current * NON_TRIPPING)
        steady = ratio * ratio
        if state is None:
            heat = min(steady, START_CAP)
        elif now > state.ts:
            heat = steady + (state.heat - steady) * math.exp(
                (state.ts - now) / self.params.time_constant)
        else:  # a repeated or out-of-order timestamp: no time has passed
            heat, now = state.heat, state.ts
        pct = 100.0 * heat
        out: list[Output] = [Reading(ts=reading.ts, device=reading.device,
                                     quantity=Quantity.THERMAL_LOAD, value=round(pct, 1),
                                     channel=reading.channel)]
        prev_alarm = state.alarm if state else None
        alarm, _, changed = hold(prev_alarm, None, now, pct >= self.params.alarm_pct,
                                 pct >= self.params.alarm_clear_pct, 0.0)
        if changed:
            out.append(self._overload(reading, pct, steady, heat, bool(alarm)))
        load_pct = 100.0 * amps / self.rated_current
        warn, since, changed = hold(state.warn if state else None,
                                    state.warn_since if state else None, reading.ts,
                                    load_pct >= self.params.warn_pct,
                                    load_pct >= self.params.warn_clear_pct,
                                    self.params.warn_on_delay)
        if changed:
            out.append(self._warning(reading, load_pct, bool(warn)))
        return ThermalState(now, heat, alarm, warn, since), out

    def _breaker(self) -> str:
        return f"{self.rated_current:g} A {self.curve}-curve breaker"

    def _overload(self, reading: Reading, pct: float, steady: float, heat: float,
                  active: bool) -> Condition:
        where = reading.channel or "circuit"
        amps = abs(reading.value)
        trip_amps = self.rated_current * NON_TRIPPING
        if not active:
            message = (f"{where} thermal load {pct:.0f} % "
                       f"(below {self.params.alarm_clear_pct:g} %) "
                       f"at {amps:.1f} A on a {self._breaker()}")
        elif heat >= 1.0:
            message = (f"{where} thermal load {pct:.0f} % at {amps:.1f} A on a "
                       f"{self._breaker()}: at its trip point, may trip any time above "
                       f"{trip_amps:.0f} A")
        elif steady > 1.0:
            left = self.params.time_constant * math.log((steady - heat) / (steady - 1.0))
            message = (f"{where} thermal load {pct:.0f} % at {amps:.1f} A on a "
                       f"{self._breaker()}: may trip within {minutes(left)} at this current "
                       f"(trip limit {trip_amps:.0f} A)")
        else:
            message = (f"{where} thermal load {pct:.0f} % (alarm {self.params.alarm_pct:g} %) at "
                       f"{amps:.1f} A on a {self._breaker()}: near its {trip_amps:.0f} A "
                       f"trip limit")
        return Condition(rule=NAME, device=reading.device, channel=reading.channel,
                         active=active, severity=Severity.CRITICAL, ts=reading.ts,
                         value=round(pct, 1), limit=self.params.alarm_pct, message=message)

    def _warning(self, reading: Reading, load_pct: float, active: bool) -> Condition:
        where = reading.channel or "circuit"
        amps = abs(reading.value)
        limit = self.rated_current * self.params.warn_pct / 100
        if active:
            message = (f"{where} current {amps:.1f} A is {load_pct:.0f} % of the "
                       f"{self._breaker()} for {minutes(self.params.warn_on_delay)} "
                       f"(warning at {limit:.0f} A)")
        else:
            message = (f"{where} current {amps:.1f} A ({load_pct:.0f} % of the "
                       f"{self._breaker()}, below {self.params.warn_clear_pct:g} %)")
        return Condition(rule=WARNING_RULE, device=reading.device, channel=reading.channel,
                         active=active, severity=Severity.WARNING, ts=reading.ts,
                         value=round(amps, 2), limit=round(limit, 2), message=message)


_CURRENT = frozenset({Quantity.CURRENT})


# -- per-device: phase imbalance and neutral --------------------------------------------------

@dataclass(frozen=True, slots=True)
class BalanceState:
    i1: float | None = None
    i2: float | None = None
    i3: float | None = None
    t1: float = 0.0
    t2: float = 0.0
    t3: float = 0.0
    neutral: float | None = None  # measured neutral current, if the meter serves one
    tn: float = 0.0
    imbalance: bool | None = None
    imbalance_since: float | None = None
    level: int | None = None  # neutral verdict: 0 fine, 1 warning, 2 critical
    level_since: float | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """A three-phase circuit's phase balance and neutral current; state per device."""

    rated_current: float
    measured_neutral: bool = False
    params: OverloadConfig = OverloadConfig()

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _CURRENT

    def key(self, reading: Reading) -> Hashable:
        return IMBALANCE_RULE, reading.device

    def step(self, state: BalanceState | None,
             reading: Reading) -> tuple[BalanceState | None, list[Condition]]:
        if reading.quantity is not Quantity.CURRENT or not reading.good:
            return state, []
        s = state or _EMPTY
        now, amps, channel = reading.ts, abs(reading.value), reading.channel
        i1, i2, i3, t1, t2, t3, n, tn = s.i1, s.i2, s.i3, s.t1, s.t2, s.t3, s.neutral, s.tn
        if channel == "L1":
            i1, t1 = amps, now
        elif channel == "L2":
            i2, t2 = amps, now
        elif channel == "L3":
            i3, t3 = amps, now
        elif channel == "N" and self.measured_neutral:
            n, tn = amps, now
        else:
            return state, []
        out: list[Condition] = []
        imbalance, imb_since, level, level_since = (s.imbalance, s.imbalance_since, s.level,
                                                    s.level_since)
        if (i1 is not None and i2 is not None and i3 is not None
                and now - min(t1, t2, t3) <= self.params.max_age):
            mean = (i1 + i2 + i3) / 3
            loaded = 100 * mean / self.rated_current >= self.params.imbalance_min_load_pct
            spread = 100 * (max(i1, i2, i3) - min(i1, i2, i3)) / mean if mean > 0 else 0.0
            imbalance, imb_since, changed = hold(
                imbalance, imb_since, now, loaded and spread > self.params.imbalance_pct,
                loaded and spread >= self.params.imbalance_clear_pct,
                self.params.imbalance_on_delay)
            if changed:
                out.append(self._imbalance(reading, spread, (i1, i2, i3), bool(imbalance)))
            if self.measured_neutral:
                neutral = n if n is not None and now - tn <= self.params.max_age else None
            else:
                neutral = math.sqrt(max(0.0, i1 * i1 + i2 * i2 + i3 * i3
                                        - i1 * i2 - i2 * i3 - i3 * i1))
            if neutral is not None:
                level, level_since, cond = self._neutral(level, level_since, now, neutral,
                                                         reading, (i1, i2, i3))
                if cond is not None:
                    out.append(cond)
        return BalanceState(i1, i2, i3, t1, t2, t3, n, tn, imbalance, imb_since, level,
                            level_since), out

    def _neutral(self, level: int | None, since: float | None, now: float, amps: float,
                 reading: Reading, phases: tuple[float, float, float]
                 ) -> tuple[int | None, float | None, Condition | None]:
        pct = 100 * amps / self.rated_current
        current = level or 0
        clear = self.params.neutral_clear_pct / 100
        if pct >= self.params.neutral_alarm_pct or (
                current == 2 and pct >= self.params.neutral_alarm_pct * clear):
            target = 2
        elif pct >= self.params.neutral_warn_pct or (
                current >= 1 and pct >= self.params.neutral_warn_pct * clear):
            target = 1
        else:
            target = 0
        if level is not None and target == level:
            return level, None, None
        if level is not None and target > level:  # worse: only after the on-delay
            since = now if since is None else since
            if now - since < self.params.neutral_on_delay - ON_DELAY_SLACK:
                return level, since, None
        elif level is None and target > 0:  # first verdict is a fault: also wait
            since = now if since is None else since
            if now - since < self.params.neutral_on_delay - ON_DELAY_SLACK:
                return None, since, None
        return target, None, self._neutral_condition(reading, amps, pct, target, phases)

    def _neutral_condition(self, reading: Reading, amps: float, pct: float, level: int,
                           phases: tuple[float, float, float]) -> Condition:
        how = "measured" if self.measured_neutral else (
            f"estimated from L1 {phases[0]:.0f} A, L2 {phases[1]:.0f} A, L3 {phases[2]:.0f} A "
            f"at 120°, more with harmonics")
        limit = self.params.neutral_alarm_pct if level == 2 else self.params.neutral_warn_pct
        if level:
            message = (f"neutral current {amps:.0f} A ({how}) is {pct:.0f} % of the "
                       f"{self.rated_current:g} A rating (limit {limit:g} %); the neutral has "
                       f"no overcurrent trip")
        else:
            message = (f"neutral current back to {amps:.0f} A ({pct:.0f} % of the "
                       f"{self.rated_current:g} A rating)")
        return Condition(rule=NEUTRAL_RULE, device=reading.device, active=level > 0,
                         severity=Severity.CRITICAL if level == 2 else Severity.WARNING,
                         ts=reading.ts, value=round(amps, 2),
                         limit=round(self.rated_current * limit / 100, 2), message=message)

    def _imbalance(self, reading: Reading, spread: float,
                   phases: tuple[float, float, float], active: bool) -> Condition:
        amps = f"L1 {phases[0]:.0f} A, L2 {phases[1]:.0f} A, L3 {phases[2]:.0f} A"
        if active:
            message = (f"phase imbalance {spread:.0f} % ({amps}; limit "
                       f"{self.params.imbalance_pct:g} % for "
                       f"{minutes(self.params.imbalance_on_delay)}) on a "
                       f"{self.rated_current:g} A circuit")
        else:
            message = f"phase imbalance back to {spread:.0f} % ({amps})"
        return Condition(rule=IMBALANCE_RULE, device=reading.device, active=active,
                         severity=Severity.WARNING, ts=reading.ts, value=round(spread, 1),
                         limit=self.params.imbalance_pct, message=message)


_EMPTY = BalanceState()


# -- config and catalog -----------------------------------------------------------------------

def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, Sequence[Rule]] = {}
    for device, c in devices:
        channels = set(device.channels(Quantity.CURRENT))
        if device.rated_current is None or not channels & _CHANNELS:
            continue
        rules: list[Rule] = [Thermal(device.rated_current, device.breaker_curve, c)]
        if channels >= set(PHASES):
            rules.append(Balance(device.rated_current, "N" in channels, c))
        out[device.name] = rules
    return out


SPEC = RuleSpec(
    name=NAME, params=OverloadConfig, build=_build,
    summary="thermal (I²t) load per phase against the breaker, phase imbalance, neutral current",
    alarms={NAME: "critical: the breaker's thermal model reached alarm_pct: it trips soon",
            WARNING_RULE: "warning: a phase at warn_pct % of In for warn_on_delay",
            IMBALANCE_RULE: "warning: (max-min)/mean of L1-L3 above imbalance_pct, sustained",
            NEUTRAL_RULE: "warning/critical: neutral current (measured or estimated) above In"})
