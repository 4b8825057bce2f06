"""Alarm behaviour per rule: delays, latching, re-alarm, chattering, shelving; and floods.

Defaults follow ISA-18.2 / IEC 62682: fire latches until reset, is never shelvable and is
announced again every 5 minutes while nobody acknowledges it; critical electrical alarms every
30 minutes; warnings once; info events (a fire-water pump start) need no acknowledgement and are
gone when they end. The daemon's ``[alarms]`` config overrides these per rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from rules.alarm import AlarmPolicy
from rules.model import Severity

BY_SEVERITY: dict[Severity, AlarmPolicy] = {
    Severity.FIRE: AlarmPolicy(latching=True, shelvable=False, realarm_after=300.0),
    Severity.CRITICAL: AlarmPolicy(realarm_after=1800.0),
    Severity.WARNING: AlarmPolicy(),
    Severity.INFO: AlarmPolicy(acknowledge=False),
}


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """More than ``count`` alarms raised inside ``window`` seconds is a flood (ISA-18.2: 10 in
    10 minutes per operator): one "alarm-flood" alarm pages, the individual non-fire alarms are
    marked ``flood`` so notifiers can digest them."""

    count: int = 10
    window: float = 600.0


class Policies:
    """Policy lookup: the severity's default with the site's chatter limits, then the rule's
    own overrides (``{"leakage": {"off_delay": 30.0}}``)."""

    def __init__(self, *, rules: Mapping[str, Mapping[str, Any]] | None = None,
                 chatter_count: int = 3, chatter_window: float = 60.0,
                 by_severity: Mapping[Severity, AlarmPolicy] | None = None) -> None:
        self._rules = {name: dict(o) for name, o in (rules or {}).items()}
        self._base = {sev: replace(p, chatter_count=chatter_count, chatter_window=chatter_window)
                      for sev, p in (by_severity or BY_SEVERITY).items()}
        self._cache: dict[tuple[str, Severity], AlarmPolicy] = {}

    def for_alarm(self, rule: str, severity: Severity) -> AlarmPolicy:
        key = (rule, severity)
        policy = self._cache.get(key)
        if policy is None:
            policy = replace(self._base[severity], **self._rules.get(rule, {}))
            self._cache[key] = policy
        return policy
