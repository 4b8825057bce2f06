"""Temperature: cable and terminal probes of electrical fire detectors (GB 14287.3).

A loose or corroded terminal, an undersized cable or a failing breaker shows up as heat long before
it burns. General-purpose PVC insulation is rated for a 70 °C conductor temperature (IEC 60364-5-52
/ GB 50054), so a probe on a cable or terminal above 60 °C deserves a look (``overtemperature-
warning``) and one above 80 °C is past the insulation's rating (``overtemperature``, critical);
GB 14287.3 detectors take alarm settings of 55-140 °C. Each level has a short on-delay (GB 50166
expects an alarm within 40 s of the set point) and a deadband of ``deadband_c``. Heat that climbs
fast is a connection going bad even below the limits: ``temperature-rise`` warns at ``rise_c``
within ``rise_window`` (a firewarden default). The four probes of one box usually sit on L1, L2, L3
and N of the same feeder; thermography practice (NETA MTS) calls a difference above 15 °C between
similar components under similar load a major discrepancy: ``temperature-spread``. Readings of bad
quality (the 0x7FFF open-probe sentinel) are ignored, and an open probe drops out of the spread.
Pure; time is the reading's.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.hysteresis import hold, minutes
from rules.model import Condition, Severity

NAME = "temperature"
ALARM_RULE = "overtemperature"
WARNING_RULE = "overtemperature-warning"
RISE_RULE = "temperature-rise"
SPREAD_RULE = "temperature-spread"
RISE_BUCKETS = 10  # the rise window is kept as this many per-bucket minimums


@dataclass(frozen=True, slots=True)
class TemperatureState:
    alarm: bool | None = None
    alarm_since: float | None = None
    warn: bool | None = None
    warn_since: float | None = None
    bucket: int = -1  # the open bucket's index (floor(ts / bucket length)) and minimum
    low: float = math.inf
    lows: tuple[tuple[int, float], ...] = ()  # closed buckets in the window: (index, minimum)
    rising: bool | None = None


_EMPTY = TemperatureState()


@dataclass(frozen=True, slots=True)
class Temperature:
    """``[rules.temperature]``, validated from config and run as it is: over-temperature and
    rate of rise of one probe, state per channel, for every device with temperature probes;
    its ``spread_*`` keys drive ``Spread`` where a device has two or more."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # "overtemperature-warning" below PVC's 70 °C conductor rating, "overtemperature" above it;
    # GB 14287.3 detectors take 55-140 °C. Both clear deadband_c below their limit.
    warn_c: Annotated[float, Ge(20), Le(200)] = 60.0
    alarm_c: Annotated[float, Ge(20), Le(200)] = 80.0
    deadband_c: Annotated[float, Ge(0), Le(50)] = 5.0
    # On-delay (s): GB 50166 wants an alarm within 40 s of reaching the set point.
    on_delay: Annotated[Duration, Ge(0), Le(600)] = 10.0
    # "temperature-rise": rise_c or more within rise_window (s); clears below half of it.
    rise_c: Annotated[float, Gt(0), Le(200)] = 8.0
    rise_window: Annotated[Duration, Ge(60), Le(86400)] = 600.0
    # "temperature-spread": hottest minus coldest probe of a device above spread_c for
    # spread_on_delay (NETA MTS: > 15 °C between similar components, similar load: major);
    # probes not heard from within spread_max_age (s) are left out.
    spread_c: Annotated[float, Gt(0), Le(200)] = 15.0
    spread_on_delay: Annotated[Duration, Ge(0), Le(86400)] = 300.0
    spread_max_age: Annotated[Duration, Gt(0), Le(86400)] = 60.0

    def __post_init__(self) -> None:
        if self.alarm_c < self.warn_c:
            raise ValueError(f"alarm_c {self.alarm_c:g} is below warn_c {self.warn_c:g}")

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: TemperatureState | None,
             reading: Reading) -> tuple[TemperatureState | None, list[Condition]]:
        if reading.quantity is not Quantity.TEMPERATURE or not reading.good:
            return state, []
        s = state or _EMPTY
        now, c = reading.ts, reading.value
        out: list[Condition] = []
        alarm, alarm_since, changed = hold(s.alarm, s.alarm_since, now, c >= self.alarm_c,
                                           c >= self.alarm_c - self.deadband_c, self.on_delay)
        if changed:
            out.append(self._level(reading, ALARM_RULE, Severity.CRITICAL, self.alarm_c,
                                   bool(alarm)))
        warn, warn_since, changed = hold(s.warn, s.warn_since, now, c >= self.warn_c,
                                         c >= self.warn_c - self.deadband_c, self.on_delay)
        if changed:
            out.append(self._level(reading, WARNING_RULE, Severity.WARNING, self.warn_c,
                                   bool(warn)))
        step = self.rise_window / RISE_BUCKETS
        bucket = math.floor(now / step)
        lows, low = s.lows, s.low
        if bucket > s.bucket:  # close the open bucket, forget those out of the window
            first = bucket - RISE_BUCKETS
            lows = tuple(b for b in lows if b[0] > first)
            if s.bucket > first and s.bucket >= 0:
                lows = (*lows, (s.bucket, s.low))
            low = c
        else:
            bucket, low = s.bucket, min(low, c)
        base = min(low, *(b[1] for b in lows)) if lows else low
        rise = c - base
        rising, _, changed = hold(s.rising, None, now, rise >= self.rise_c,
                                  rise >= self.rise_c / 2, 0.0)
        if changed:
            out.append(self._rise(reading, rise, bool(rising)))
        return TemperatureState(alarm, alarm_since, warn, warn_since, bucket, low, lows,
                                rising), out

    def _level(self, reading: Reading, rule: str, severity: Severity, limit: float,
               active: bool) -> Condition:
        where, c = _where(reading), reading.value
        what = "alarm" if rule == ALARM_RULE else "warning"
        if active:
            message = (f"{where} {c:.1f} °C at or above the {limit:g} °C {what} for "
                       f"{minutes(self.on_delay)} (PVC insulation is rated 70 °C)")
        else:
            message = (f"{where} back to {c:.1f} °C (the {what} clears below "
                       f"{limit - self.deadband_c:g} °C)")
        return Condition(rule=rule, device=reading.device, channel=reading.channel,
                         active=active, severity=severity, ts=reading.ts, value=round(c, 1),
                         limit=limit, message=message)

    def _rise(self, reading: Reading, rise: float, active: bool) -> Condition:
        where, c = _where(reading), reading.value
        window = minutes(self.rise_window)
        if active:
            message = (f"{where} rose {rise:.1f} °C within {window} to {c:.1f} °C (warning at "
                       f"{self.rise_c:g} °C): check the terminal and the load")
        else:
            message = f"{where} steady again at {c:.1f} °C (+{rise:.1f} °C within {window})"
        return Condition(rule=RISE_RULE, device=reading.device, channel=reading.channel,
                         active=active, severity=Severity.WARNING, ts=reading.ts,
                         value=round(rise, 1), limit=self.rise_c, message=message)


def _where(reading: Reading) -> str:
    return f"probe {reading.channel}" if reading.channel else "temperature"


_QUANTITIES = frozenset({Quantity.TEMPERATURE})


@dataclass(frozen=True, slots=True)
class SpreadState:
    probes: tuple[tuple[str, float, float], ...] = ()  # (channel, °C, ts), good readings only
    active: bool | None = None
    since: float | None = None


_NO_PROBES = SpreadState()


@dataclass(frozen=True, slots=True)
class Spread:
    """The spread between the probes of one device; state per device."""

    params: Temperature = Temperature()

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return SPREAD_RULE, reading.device

    def step(self, state: SpreadState | None,
             reading: Reading) -> tuple[SpreadState | None, list[Condition]]:
        if reading.quantity is not Quantity.TEMPERATURE:
            return state, []
        s, c = state or _NO_PROBES, self.params
        channel, now = reading.channel or "", reading.ts
        probes = tuple(p for p in s.probes if p[0] != channel and now - p[2] <= c.spread_max_age)
        if reading.good:  # an open probe (bad quality) leaves the comparison
            probes = (*probes, (channel, reading.value, now))
        if len(probes) < 2:
            return SpreadState(probes, s.active, None), []
        hot = max(probes, key=lambda p: (p[1], p[0]))
        cold = min(probes, key=lambda p: (p[1], p[0]))  # ties: the lowest channel, stably
        spread = hot[1] - cold[1]
        active, since, changed = hold(s.active, s.since, now, spread > c.spread_c,
                                      spread > c.spread_c - c.deadband_c, c.spread_on_delay)
        out: list[Condition] = []
        if changed:
            if active:
                message = (f"probe {hot[0]} {hot[1]:.1f} °C is {spread:.1f} °C hotter than "
                           f"probe {cold[0]} {cold[1]:.1f} °C for {minutes(c.spread_on_delay)} "
                           f"(limit {c.spread_c:g} °C): check that terminal")
            else:
                message = (f"probe temperatures within {spread:.1f} °C again (probe {hot[0]} "
                           f"{hot[1]:.1f} °C, probe {cold[0]} {cold[1]:.1f} °C)")
            out.append(Condition(rule=SPREAD_RULE, device=reading.device, active=bool(active),
                                 severity=Severity.WARNING, ts=now, value=round(spread, 1),
                                 limit=c.spread_c, message=message))
        return SpreadState(probes, active, since), out


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, Sequence[Rule]] = {}
    for d, c in devices:
        if not d.serves(Quantity.TEMPERATURE):
            continue
        rules: list[Rule] = [c]
        if len(d.channels(Quantity.TEMPERATURE)) >= 2:
            rules.append(Spread(c))
        out[d.name] = rules
    return out


SPEC = RuleSpec(
    name=NAME, params=Temperature, build=_build,
    summary="probe temperature: over-temperature, fast rise, spread between a box's probes",
    alarms={ALARM_RULE: "critical: a probe at or above alarm_c (default 80 °C)",
            WARNING_RULE: "warning: a probe at or above warn_c (default 60 °C)",
            RISE_RULE: "warning: a probe rose rise_c within rise_window",
            SPREAD_RULE: "warning: hottest minus coldest probe of a device above spread_c"})
