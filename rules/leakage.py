"""Leakage: residual current per detector channel, with a pre-alarm and a rising-trend warning.

Residual (leakage) current is what leaves a circuit through damaged or damp insulation instead of
returning through the neutral; about 300 mA through a carbonising path can start a fire, so
GB 50116-2013 §9.2.3 sets the alarm at 300-500 mA (natural leakage of a healthy installation is
typically 100-200 mA; detectors are commonly set anywhere in 20-1000 mA). The rule raises
``leakage`` (critical) at ``alarm_ma`` and ``leakage-prealarm`` (warning) at ``prealarm_pct`` %
of it, each after an on-delay that rides through switch-on surges (appliance EMI filters) yet
stays inside GB 14287's "alarm shown within 10 s" and GB 50166's 30 s acceptance test, and each
clearing only below ``clear_pct`` % of its limit (deadband). Insulation that is getting wet or
tracking shows as a slow, steady climb: ``leakage-rising`` (warning) fits a least-squares line to
per-bucket means over ``trend_window`` and warns when it rises ``trend_rise_ma`` or more with a
good fit (r² ≥ ``trend_fit``) and mostly rising steps (a single load step is neither) while
still below the pre-alarm. Pure; time is the reading's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le, Lt

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.hysteresis import hold, minutes
from rules.model import Condition, Severity

NAME = "leakage"
PREALARM_RULE = "leakage-prealarm"
RISING_RULE = "leakage-rising"
# The trend window is cut into this many buckets; a fit needs MIN_BUCKETS of them, spanning at
# least MIN_SPAN of the window (a detector that was silent for a while gets no verdict).
BUCKETS = 15
MIN_BUCKETS = 12
MIN_SPAN = 0.7
# "Steadily": besides the fit, at least this share of bucket-to-bucket steps must go up, which a
# single load step (flat, jump, flat) never gives.
STEADY = 2 / 3


@dataclass(frozen=True, slots=True)
class LeakageState:
    alarm: bool | None = None
    alarm_since: float | None = None
    pre: bool | None = None
    pre_since: float | None = None
    bucket: int = -1  # index of the open bucket: floor(ts / bucket length)
    total: float = 0.0  # sum and count of the open bucket's readings
    count: int = 0
    means: tuple[tuple[float, float], ...] = ()  # (mid time, mean mA) of closed buckets
    rising: bool | None = None


_EMPTY = LeakageState()


@dataclass(frozen=True, slots=True)
class Leakage:
    """``[rules.leakage]``, validated from config and run as it is: one detector's
    residual-current rule, for every device that measures residual current; state per
    channel."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # "leakage" (critical): GB 50116-2013 §9.2.3 sets 300-500 mA; detectors take 20-1000 mA.
    alarm_ma: Annotated[float, Ge(20), Le(1000)] = 300.0
    # "leakage-prealarm" (warning) at this % of alarm_ma (about 70 %).
    prealarm_pct: Annotated[float, Gt(0), Lt(100)] = 70.0
    # Deadband: each level clears below clear_pct % of its own limit.
    clear_pct: Annotated[float, Gt(0), Le(100)] = 90.0
    # On-delays (s): short enough for GB 14287's 10 s display and GB 50166's 30 s test, long
    # enough to ride through switch-on surges; the pre-alarm waits longer (it is a warning).
    on_delay: Annotated[Duration, Ge(0), Le(600)] = 5.0
    prealarm_on_delay: Annotated[Duration, Ge(0), Le(3600)] = 30.0
    # "leakage-rising" (warning): a fitted rise of trend_rise_ma or more over trend_window with
    # r² at least trend_fit, while below the pre-alarm (firewarden default, not a standard).
    trend_window: Annotated[Duration, Ge(300), Le(86400)] = 1800.0
    trend_rise_ma: Annotated[float, Gt(0), Le(1000)] = 30.0
    trend_fit: Annotated[float, Ge(0), Le(1)] = 0.8

    @property
    def prealarm_ma(self) -> float:
        return self.alarm_ma * self.prealarm_pct / 100

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: LeakageState | None,
             reading: Reading) -> tuple[LeakageState | None, list[Condition]]:
        if reading.quantity is not Quantity.RESIDUAL_CURRENT or not reading.good:
            return state, []
        s = state or _EMPTY
        now, ma = reading.ts, reading.value
        out: list[Condition] = []
        clear = self.clear_pct / 100
        alarm, alarm_since, changed = hold(s.alarm, s.alarm_since, now, ma >= self.alarm_ma,
                                           ma >= self.alarm_ma * clear, self.on_delay)
        if changed:
            out.append(self._level(reading, NAME, Severity.CRITICAL, self.alarm_ma, self.on_delay,
                                   bool(alarm)))
        pre_ma = self.prealarm_ma
        pre, pre_since, changed = hold(s.pre, s.pre_since, now, ma >= pre_ma,
                                       ma >= pre_ma * clear, self.prealarm_on_delay)
        if changed:
            out.append(self._level(reading, PREALARM_RULE, Severity.WARNING, pre_ma,
                                   self.prealarm_on_delay, bool(pre)))
        step = self.trend_window / BUCKETS
        bucket = math.floor(now / step)
        if bucket <= s.bucket:  # same bucket (or a late reading): accumulate
            return LeakageState(alarm, alarm_since, pre, pre_since, s.bucket, s.total + ma,
                                s.count + 1, s.means, s.rising), out
        means, rising = s.means, s.rising
        if s.count:
            oldest = now - self.trend_window
            means = (*(m for m in means if m[0] >= oldest),
                     ((s.bucket + 0.5) * step, s.total / s.count))
            rising, cond = self._trend(means, rising, reading)
            if cond is not None:
                out.append(cond)
        return LeakageState(alarm, alarm_since, pre, pre_since, bucket, ma, 1, means,
                            rising), out

    def _trend(self, means: tuple[tuple[float, float], ...], rising: bool | None,
               reading: Reading) -> tuple[bool | None, Condition | None]:
        """Least-squares fit of the bucket means; a verdict once the window is covered."""
        n = len(means)
        if n < MIN_BUCKETS or means[-1][0] - means[0][0] < MIN_SPAN * self.trend_window:
            return rising, None
        t0 = means[0][0]
        mt = sum(t - t0 for t, _ in means) / n
        my = sum(y for _, y in means) / n
        sxx = sum((t - t0 - mt) ** 2 for t, _ in means)
        syy = sum((y - my) ** 2 for _, y in means)
        sxy = sum((t - t0 - mt) * (y - my) for t, y in means)
        slope = sxy / sxx if sxx > 0 else 0.0
        fit = sxy * sxy / (sxx * syy) if sxx > 0 and syy > 0 else 0.0
        rise = slope * self.trend_window
        latest = means[-1][1]
        below = latest < self.prealarm_ma
        ups = sum(1 for a, b in itertools.pairwise(means) if b[1] > a[1])
        steady = fit >= self.trend_fit and ups >= STEADY * (n - 1)
        rising, _, changed = hold(rising, None, reading.ts,
                                  below and rise >= self.trend_rise_ma and steady,
                                  below and rise >= self.trend_rise_ma / 2, 0.0)
        if not changed:
            return rising, None
        where = _where(reading)
        if rising:
            message = (f"{where} rising steadily: +{rise:.0f} mA in "
                       f"{minutes(self.trend_window)} (warning at +{self.trend_rise_ma:g} mA), "
                       f"now {latest:.0f} mA, pre-alarm at {self.prealarm_ma:.0f} mA")
        elif not below:
            message = (f"{where} rose into the pre-alarm range: now {latest:.0f} mA "
                       f"(pre-alarm at {self.prealarm_ma:.0f} mA)")
        else:
            message = (f"{where} no longer rising: {rise:+.0f} mA in "
                       f"{minutes(self.trend_window)}, now {latest:.0f} mA")
        return rising, Condition(rule=RISING_RULE, device=reading.device,
                                 channel=reading.channel, active=bool(rising),
                                 severity=Severity.WARNING, ts=reading.ts, value=round(rise, 1),
                                 limit=self.trend_rise_ma, message=message)

    def _level(self, reading: Reading, rule: str, severity: Severity, limit: float,
               delay: float, active: bool) -> Condition:
        where, ma = _where(reading), reading.value
        what = "alarm" if rule == NAME else "pre-alarm"
        if active:
            message = (f"{where} {ma:.0f} mA at or above the {limit:.0f} mA {what} for "
                       f"{minutes(delay)} (alarm setting {self.alarm_ma:g} mA, GB 50116 §9.2.3)")
        else:
            message = (f"{where} back to {ma:.0f} mA (the {what} clears below "
                       f"{limit * self.clear_pct / 100:.0f} mA)")
        return Condition(rule=rule, device=reading.device, channel=reading.channel,
                         active=active, severity=severity, ts=reading.ts, value=round(ma, 1),
                         limit=round(limit, 1), message=message)


def _where(reading: Reading) -> str:
    return f"residual current ch {reading.channel}" if reading.channel else "residual current"


_QUANTITIES = frozenset({Quantity.RESIDUAL_CURRENT})


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    return {d.name: [c] for d, c in devices if d.serves(Quantity.RESIDUAL_CURRENT)}


SPEC = RuleSpec(
    name=NAME, params=Leakage, build=_build,
    summary="residual current per channel: alarm, pre-alarm and a steadily rising trend",
    alarms={NAME: "critical: residual current at or above alarm_ma (GB 50116: 300 mA)",
            PREALARM_RULE: "warning: residual current at prealarm_pct % of alarm_ma",
            RISING_RULE: "warning: residual current rising steadily below the pre-alarm"})
