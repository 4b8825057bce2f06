"""Smoke detector maintenance: low battery and a dirty sensing chamber (RS-485 smoke detectors).

Fire and fault flags are ``rules.fire``'s. This rule catches the two ways a detector quietly stops
protecting a stairwell. A battery below ``battery_low_pct`` is ``smoke-low-battery``; mains-powered
detectors report 0xFFFF, which the profile marks as bad quality, so they are never flagged. Dust,
insects and grease in a photoelectric chamber scatter light like smoke does, so a dirty chamber
reads a raised obscuration baseline with no fire: first false alarms, then (with drift
compensation used up) lost sensitivity. EN 54-7 lets a detector alarm from 0.05 dB/m and typical
ones alarm at 0.1-0.2 dB/m, while clean air reads close to 0. A baseline held at or above
``dirty_db_m`` for ``dirty_on_delay`` (1 h by default, so smoke from cooking or a real fire that
has gone does not count) is ``smoke-dirty-chamber``. While the detector reports fire, the timer
stops. Set ``dirty_db_m`` to about half of your detectors' alarm threshold if you know it.
Pure; time is the reading's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.hysteresis import ON_DELAY_SLACK, hold, minutes
from rules.model import Condition, Severity

NAME = "smoke"
BATTERY_RULE = "smoke-low-battery"
DIRTY_RULE = "smoke-dirty-chamber"


@dataclass(frozen=True, slots=True)
class SmokeState:
    fire: bool = False
    low: bool | None = None
    low_since: float | None = None
    dirty: bool | None = None
    dirty_since: float | None = None


_EMPTY = SmokeState()


@dataclass(frozen=True, slots=True)
class Smoke:
    """``[rules.smoke]``, validated from config and run as it is: one smoke detector's
    maintenance rule, for every device that reports a battery level or an obscuration; state
    per device."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # "smoke-low-battery" below battery_low_pct %, for battery_on_delay (s: two 60 s polls, so
    # one reading sagging under the radio's load does not page), ok again from battery_clear_pct.
    battery_low_pct: Annotated[float, Gt(0), Le(100)] = 20.0
    battery_clear_pct: Annotated[float, Gt(0), Le(100)] = 25.0
    battery_on_delay: Annotated[Duration, Ge(0), Le(86400)] = 120.0
    # "smoke-dirty-chamber": obscuration at or above dirty_db_m (dB/m) with no fire for
    # dirty_on_delay; below dirty_clear_pct % of it the chamber counts as clean again.
    dirty_db_m: Annotated[float, Gt(0), Le(20)] = 0.1
    dirty_clear_pct: Annotated[float, Gt(0), Le(100)] = 80.0
    dirty_on_delay: Annotated[Duration, Ge(0), Le(7 * 86400)] = 3600.0

    def __post_init__(self) -> None:
        if self.battery_clear_pct < self.battery_low_pct:
            raise ValueError(f"battery_clear_pct {self.battery_clear_pct:g} is below "
                             f"battery_low_pct {self.battery_low_pct:g}")

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device

    def step(self, state: SmokeState | None,
             reading: Reading) -> tuple[SmokeState | None, list[Condition]]:
        if not reading.good:
            return state, []
        s = state or _EMPTY
        q, now, value = reading.quantity, reading.ts, reading.value
        if q is Quantity.FIRE:
            fire = value >= 0.5
            # a fire's smoke is not dirt: the dirty-chamber timer starts again afterwards
            return SmokeState(fire, s.low, s.low_since, s.dirty,
                              None if fire else s.dirty_since), []
        if q is Quantity.BATTERY:
            low, since, changed = hold(s.low, s.low_since, now, value < self.battery_low_pct,
                                       value < self.battery_clear_pct, self.battery_on_delay)
            out = [self._battery(reading, bool(low))] if changed else []
            return SmokeState(s.fire, low, since, s.dirty, s.dirty_since), out
        if q is not Quantity.OBSCURATION or s.fire:
            return state, []
        dirty, since = s.dirty, s.dirty_since
        clear = self.dirty_db_m * self.dirty_clear_pct / 100
        if value >= self.dirty_db_m:
            since = now if since is None else since
            if dirty is not True and now - since >= self.dirty_on_delay - ON_DELAY_SLACK:
                return SmokeState(s.fire, s.low, s.low_since, True, since), [
                    self._dirty(reading, True, now - since)]
        elif value >= clear:
            pass  # inside the deadband: keep the verdict, and keep timing (baselines wobble)
        else:
            since = None
            if dirty is not False:
                return SmokeState(s.fire, s.low, s.low_since, False, None), [
                    self._dirty(reading, False, 0.0)]
        return SmokeState(s.fire, s.low, s.low_since, dirty, since), []

    def _battery(self, reading: Reading, active: bool) -> Condition:
        pct = reading.value
        if active:
            message = (f"smoke detector battery {pct:.0f} % (below {self.battery_low_pct:g} %): "
                       f"replace the battery")
        else:
            message = f"smoke detector battery {pct:.0f} % (ok from {self.battery_clear_pct:g} %)"
        return Condition(rule=BATTERY_RULE, device=reading.device, active=active,
                         severity=Severity.WARNING, ts=reading.ts, value=pct,
                         limit=self.battery_low_pct, message=message)

    def _dirty(self, reading: Reading, active: bool, held: float) -> Condition:
        db = reading.value
        if active:
            message = (f"smoke chamber reads {db:.2f} dB/m with no fire for {minutes(held)} "
                       f"(maintenance at {self.dirty_db_m:g} dB/m): clean or replace the "
                       f"detector")
        else:
            message = f"smoke chamber reads {db:.2f} dB/m: clean again"
        return Condition(rule=DIRTY_RULE, device=reading.device, active=active,
                         severity=Severity.WARNING, ts=reading.ts, value=round(db, 3),
                         limit=self.dirty_db_m, message=message)


_QUANTITIES = frozenset({Quantity.BATTERY, Quantity.OBSCURATION, Quantity.FIRE})


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    return {d.name: [c] for d, c in devices
            if d.serves(Quantity.BATTERY) or d.serves(Quantity.OBSCURATION)}


SPEC = RuleSpec(
    name=NAME, params=Smoke, build=_build,
    summary="smoke detector maintenance: low battery, dirty chamber",
    alarms={BATTERY_RULE: "warning: battery below battery_low_pct",
            DIRTY_RULE: "warning: obscuration at or above dirty_db_m with no fire, sustained"})
