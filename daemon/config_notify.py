"""Config sections that schedule notifications: ``[[escalation]]`` chains and the ``[report]``
(the morning report). Validated like the rest of daemon/config.py (frozen, every error naming
its path); ``notify_errors`` cross-checks the notifier names against ``[[webhook]]``.

``to_chain`` turns an ``[[escalation]]`` table into the pure rules.escalation.Chain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.durations import Duration
from rules.escalation import Chain, Tier, WorkingHours
from rules.model import Severity

TierName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=64)]
SeverityName = Literal["fire", "critical", "warning", "info"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MAX_DELAY = 7 * 86_400.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def parse_clock(text: str) -> time:
    """``"08:00"`` -> 08:00 (local time of day)."""
    match = _CLOCK.match(text.strip())
    if match is None:
        raise ValueError(f"not a time of day {text!r}: use HH:MM, e.g. '08:00'")
    return time(int(match.group(1)), int(match.group(2)))


def _zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


class TierConfig(_Frozen):
    """``[[escalation.tier]]``: one step of the chain."""

    name: TierName
    notify: Annotated[tuple[TierName, ...], Field(min_length=1)]  # [[webhook]] names
    # how long after the previous tier was paged, nobody having acknowledged: one duration
    # for every severity, or per severity ({ fire = "2m", critical = "10m", warning = "30m" })
    after: Duration | dict[SeverityName, Duration] | None = None

    @field_validator("after")
    @classmethod
    def _bounded(cls, value: float | dict[str, float] | None) -> float | dict[str, float] | None:
        for v in ([value] if isinstance(value, float) else (value or {}).values()):
            if v > MAX_DELAY:
                raise ValueError(f"at most 7 days, got {v:g} s")
        return value

    def delays(self) -> dict[Severity, float]:
        if self.after is None:
            return {}
        if isinstance(self.after, float):
            return {s: self.after for s in Severity}
        return {Severity(k): v for k, v in self.after.items()}


class EscalationConfig(_Frozen):
    """``[[escalation]]``: a chain of tiers for the alarms it covers (the first chain that
    covers an alarm is used)."""

    name: TierName
    min_severity: SeverityName = "warning"
    rules: tuple[str, ...] = ()  # alarm rules covered (empty: all)
    buildings: tuple[str, ...] = ()  # buildings covered (empty: all)
    working_hours: str | None = None  # "08:00-18:00" local; "22:00-06:00" spans midnight
    working_days: tuple[Day, ...] = DAYS
    off_hours_start: TierName | None = None  # outside working hours start at this tier
    timezone: str | None = None  # default: [site] timezone
    tiers: Annotated[tuple[TierConfig, ...], Field(min_length=1, alias="tier")]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f"use HH:MM-HH:MM, e.g. '08:00-18:00', got {value!r}")
            if parse_clock(start) == parse_clock(end):
                raise ValueError(f"start and end are the same ({value!r})")
        return value

    @model_validator(mode="after")
    def _tiers(self) -> EscalationConfig:
        names = [t.name for t in self.tiers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"tier[{i}].name: {name!r} used twice")
        first = self.tiers[0].after
        if first is not None and any(self.tiers[0].delays().values()):
            raise ValueError("tier[0].after: the first tier is paged when the alarm raises; "
                             "set after on the tiers that follow it")
        needed = [s.value for s in Severity if s.rank <= Severity(self.min_severity).rank]
        for i, tier in enumerate(self.tiers[1:], start=1):
            if tier.after is None:
                raise ValueError(f"tier[{i}].after: required (how long after tier "
                                 f"{names[i - 1]!r} nobody acknowledged)")
            if isinstance(tier.after, dict):
                missing = [s for s in needed if s not in tier.after]
                if missing:
                    raise ValueError(f"tier[{i}].after: no delay for {', '.join(missing)} "
                                     f"(min_severity is {self.min_severity!r})")
        if self.off_hours_start is not None:
            if self.working_hours is None:
                raise ValueError("off_hours_start needs working_hours")
            if self.off_hours_start not in names:
                raise ValueError(f"off_hours_start: no tier {self.off_hours_start!r} "
                                 f"(tiers: {', '.join(names)})")
        return self


def to_chain(config: EscalationConfig, site_timezone: str) -> Chain:
    hours = None
    if config.working_hours is not None:
        start, _, end = config.working_hours.partition("-")
        hours = WorkingHours(start=parse_clock(start), end=parse_clock(end),
                             timezone=config.timezone or site_timezone,
                             days=frozenset(DAYS.index(d) for d in config.working_days))
    names = [t.name for t in config.tiers]
    return Chain(name=config.name,
                 tiers=tuple(Tier(t.name, t.notify, t.delays()) for t in config.tiers),
                 min_severity=Severity(config.min_severity), rules=frozenset(config.rules),
                 buildings=frozenset(config.buildings), working_hours=hours,
                 off_hours_start=names.index(config.off_hours_start)
                 if config.off_hours_start else 0)


class ReportConfig(_Frozen):
    """``[report]``: the morning report, sent by the running daemon every day at ``at``
    (local time in ``timezone``) through the ``notify`` webhooks."""

    at: str = "08:00"
    timezone: str | None = None  # default: [site] timezone
    notify: Annotated[tuple[TierName, ...], Field(min_length=1)]
    language: Literal["zh", "en"] = "zh"
    since: Annotated[Duration, Field(ge=3600, le=31 * 86_400)] = 86_400.0
    chart: bool = True  # a PNG of alarms per hour, where the channel takes images (WeCom)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)

    @field_validator("at")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @property
    def time_of_day(self) -> time:
        return parse_clock(self.at)


def notify_errors(webhooks: Sequence[str], escalations: Sequence[EscalationConfig],
                  report: ReportConfig | None) -> list[str]:
    """Notifier names that are not ``[[webhook]]`` names, one line each, and chains that can
    never be used (an earlier one covers everything they do)."""
    known = set(webhooks)
    listing = ", ".join(webhooks) or "none configured"
    errors: list[str] = []
    for i, chain in enumerate(escalations):
        for j, tier in enumerate(chain.tiers):
            errors += [f"escalation[{i}].tier[{j}].notify: no [[webhook]] named {n!r} "
                       f"(webhooks: {listing})" for n in tier.notify if n not in known]
    names = [c.name for c in escalations]
    errors += [f"escalation[{i}].name: {n!r} used twice" for i, n in enumerate(names)
               if n in names[:i]]
    if report is not None:
        errors += [f"report.notify: no [[webhook]] named {n!r} (webhooks: {listing})"
                   for n in report.notify if n not in known]
    return errors


def escalated_sinks(escalations: Sequence[EscalationConfig]) -> set[str]:
    """The webhooks some chain pages (their plain pages of covered alarms are left to the
    chain)."""
    return {n for c in escalations for t in c.tiers for n in t.notify}


def covered(payload: dict[str, Any], chains: Sequence[Chain]) -> bool:
    """Whether an outbox event's alarm is covered by one of ``chains``."""
    rank = Severity(str(payload.get("severity", "info"))).rank \
        if payload.get("severity") in {s.value for s in Severity} else 9
    for chain in chains:
        if (rank <= chain.min_severity.rank
                and (not chain.rules or payload.get("rule") in chain.rules)
                and (not chain.buildings or payload.get("building", "") in chain.buildings)):
            return True
    return False
