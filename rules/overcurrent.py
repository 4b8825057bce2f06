"""Overload: per-phase overcurrent against the breaker rating, with on-delay and deadband.

This is the simple threshold form; the thermal (I²t) model of the circuit replaces it in the rules
issue. Pure: state in, state and conditions out; time is the reading's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.model import Condition, Severity

NAME = "overcurrent"
# Poll timestamps jitter by milliseconds: samples spanning on_delay less this count as held, so
# a 1 s on-delay at 0.5 s polls fires on the third sample, not the fourth.
ON_DELAY_SLACK = 0.05


@dataclass(frozen=True, slots=True)
class OvercurrentConfig:
    """``[rules.overcurrent]``: applies to every device with a ``rated_current`` that
    measures phase currents."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    factor: Annotated[float, Gt(0), Le(10)] = 1.0  # alarm above factor x rated_current ...
    on_delay: Annotated[Duration, Ge(0), Le(3600)] = 5.0  # ... held this long (s)
    clear_factor: Annotated[float, Gt(0), Le(10)] = 0.95  # deadband: clears below this x In

    def __post_init__(self) -> None:
        if self.clear_factor > self.factor:
            raise ValueError(f"clear_factor {self.clear_factor} is above factor {self.factor}")



@dataclass(frozen=True, slots=True)
class Overcurrent:
    """The rule for one device: its breaker's ``rated_current`` and the
    ``[rules.overcurrent]`` table; ``factor``×In for ``on_delay`` seconds raises, below
    ``clear_factor``×In clears."""

    rated_current: float
    params: OvercurrentConfig = OvercurrentConfig()

    @property
    def limit(self) -> float:
        return self.rated_current * self.params.factor

    # the rules.base.Rule protocol
    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: OvercurrentState | None,
             reading: Reading) -> tuple[OvercurrentState, list[Condition]]:
        return evaluate(state or OvercurrentState(known=False), reading, self)


_QUANTITIES = frozenset({Quantity.CURRENT})


@dataclass(frozen=True, slots=True)
class OvercurrentState:
    above_since: float | None = None  # first reading above the limit in the current run
    active: bool = False
    known: bool = True  # False until the first verdict (after a restart the stored alarm
    #                     may be active: a first healthy reading must clear it)


def evaluate(
    state: OvercurrentState, reading: Reading, rule: Overcurrent
) -> tuple[OvercurrentState, list[Condition]]:
    """Feed one phase-current reading; return the new state and any change of condition."""
    if reading.quantity is not Quantity.CURRENT or not reading.good:
        return state, []
    if reading.channel not in ("L1", "L2", "L3"):
        return state, []  # totals are not per-conductor currents
    now, amps = reading.ts, reading.value
    if amps > rule.limit:
        since = state.above_since if state.above_since is not None else now
        if not state.active and now - since >= rule.params.on_delay - ON_DELAY_SLACK:
            return OvercurrentState(since, True), [_condition(reading, rule, True)]
        return OvercurrentState(since, state.active, state.known), []
    if state.active and amps >= rule.rated_current * rule.params.clear_factor:
        return OvercurrentState(None, True), []  # inside the deadband: stay active, no chatter
    if state.active or not state.known:
        return OvercurrentState(), [_condition(reading, rule, False)]
    return OvercurrentState(), []


def _condition(reading: Reading, rule: Overcurrent, active: bool) -> Condition:
    pct = 100 * reading.value / rule.rated_current
    verb = "above" if active else "back below"
    return Condition(
        rule=NAME, device=reading.device, channel=reading.channel, active=active,
        severity=Severity.CRITICAL, ts=reading.ts, value=round(reading.value, 3),
        limit=rule.limit,
        message=f"{reading.channel} current {reading.value:.1f} A ({pct:.0f}% of In "
                f"{rule.rated_current:g} A) {verb} limit {rule.limit:g} A",
    )


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, Sequence[Rule]] = {}
    for device, config in devices:
        if device.rated_current is None or not device.serves(Quantity.CURRENT):
            continue
        out[device.name] = [Overcurrent(device.rated_current, config)]
    return out


SPEC = RuleSpec(name=NAME, params=OvercurrentConfig, build=_build,
                summary="per-phase current above the breaker rating for on_delay",
                alarms={NAME: "critical: a phase current above factor x In for on_delay"})
