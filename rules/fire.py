"""Fire and detector states: a detector's or panel's flag becomes a condition when it changes.

Pure. The flags arrive as 0/1 readings from Modbus smoke detectors and from fire panels over
GB/T 26875.3 (channel ``"{system}-{zone}-{position}"``). Fire has its own severity so it
outranks every other alarm on the way out; latching until a panel reset comes with the alarm
state machine's latched state (rules issue).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.model import Condition, Severity

NAME = "fire"


@dataclass(frozen=True, slots=True)
class FlagRule:
    rule: str
    severity: Severity
    what: str  # for the message: "fire", "detector fault" ...


FLAG_RULES: dict[Quantity, FlagRule] = {
    Quantity.FIRE: FlagRule(NAME, Severity.FIRE, "FIRE"),
    Quantity.SMOKE_FAULT: FlagRule("detector-fault", Severity.WARNING, "detector fault"),
    Quantity.DETECTOR_ALARM: FlagRule("electrical-fire", Severity.CRITICAL,
                                      "electrical fire detector alarm"),
    Quantity.DETECTOR_FAULT: FlagRule("detector-fault", Severity.WARNING, "detector fault"),
}


def evaluate(previous: bool | None, reading: Reading) -> tuple[bool | None, list[Condition]]:
    """Feed one flag reading; ``previous`` is the flag's last value (None: never seen).

    A condition is emitted when the flag changes and on its first sighting (a healthy first
    sighting creates no alarm, but clears one the store kept from before a restart).
    """
    spec = FLAG_RULES.get(reading.quantity)
    if spec is None or not reading.good:
        return previous, []
    now = reading.value >= 0.5
    if now == previous:
        return now, []
    return now, [Condition(rule=spec.rule, device=reading.device, channel=reading.channel,
                           active=now, severity=spec.severity, ts=reading.ts,
                           value=1.0 if now else 0.0, message=_message(spec, reading, now))]


def _message(spec: FlagRule, reading: Reading, active: bool) -> str:
    where = reading.device
    if reading.channel:
        parts = reading.channel.split("-")
        if len(parts) == 3:
            where += f" component {reading.channel} (system {parts[0]}, zone {parts[1]}, " \
                     f"position {parts[2]})"
        else:
            where += f" channel {reading.channel}"
    return f"{spec.what}: {where}" if active else f"{spec.what} cleared: {where}"


@dataclass(frozen=True, slots=True)
class Flags:
    """The flag rules as one ``rules.base.Rule``; the state is the flag's last value."""

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return reading.device, reading.channel, reading.quantity

    def step(self, state: Any, reading: Reading) -> tuple[bool | None, list[Condition]]:
        return evaluate(state, reading)


_QUANTITIES = frozenset(FLAG_RULES)


@dataclass(frozen=True, slots=True)
class FireConfig:
    """``[rules.fire]``: fire, detector fault and electrical fire detector flags of every smoke
    detector, residual-current/temperature detector and fire panel."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    flags = Flags()
    return {d.name: [flags] for d, _ in devices
            if d.kind == "fire-panel" or any(d.serves(q) for q in FLAG_RULES)}


SPEC = RuleSpec(name=NAME, params=FireConfig, build=_build,
                summary="fire and fault flags from smoke detectors, detectors and fire panels",
                alarms={NAME: "fire: a detector or panel reports fire; latches until reset",
                        "detector-fault": "warning: a detector or panel reports a fault",
                        "electrical-fire": "critical: an electrical fire detector's own alarm"})
