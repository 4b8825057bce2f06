"""Alarm behaviour per rule: delays, latching, re-alarm, chattering, shelving; and floods.

Defaults follow domain.md §7 (ISA-18.2): fire latches until reset, is never shelvable and is
announced again every 5 minutes while nobody acknowledges it; critical electrical alarms every
30 minutes; warnings once. The daemon's ``[alarms]`` config overrides these per rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rules.alarm import AlarmPolicy
from rules.model import Severity

BY_SEVERITY: dict[Severity, AlarmPolicy] = {
    Severity.FIRE: AlarmPolicy(latching=True, shelvable=False, realarm_after=300.0),
    Severity.CRITICAL: AlarmPolicy(realarm_after=1800.0),
    Severity.WARNING: AlarmPolicy(),
    Severity.INFO: AlarmPolicy(),
}


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """More than ``count`` alarms raised inside ``window`` seconds is a flood (ISA-18.2: 10 in
    10 minutes per operator): one "alarm-flood" alarm pages, the individual non-fire alarms are
    marked ``flood`` so notifiers can digest them."""

    count: int = 10
    window: float = 600.0


@dataclass(frozen=True, slots=True)
class Policies:
    """Policy lookup: a rule's own policy, else its severity's default."""

    rules: Mapping[str, AlarmPolicy] = field(default_factory=dict)
    by_severity: Mapping[Severity, AlarmPolicy] = field(default_factory=lambda: BY_SEVERITY)

    def for_alarm(self, rule: str, severity: Severity) -> AlarmPolicy:
        policy = self.rules.get(rule)
        return policy if policy is not None else self.by_severity[severity]
