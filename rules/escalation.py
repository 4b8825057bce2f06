"""Escalation chains, pure: ``step(chain, alarm, state, now) -> (state, actions)``.

A chain is a list of tiers (electricians -> manager -> 街道 duty), each naming the notifiers
it pages and how long after the previous tier it is paged if nobody acknowledged, per severity.
An alarm the chain covers starts it when it raises (tier 1, or ``off_hours_start`` when the
raise falls outside working hours in the chain's time zone); each later tier is paged once its
delay has passed since the tier before it was paged. The chain ends when the alarm is
acknowledged (reset counts: it acknowledges), shelved, taken out of service, or clears by
itself while not latched (a latched fire escalates until someone acknowledges it); the tiers
already paged are told how it ended ("acknowledged by 李师傅 after 17 min").

The chain's state (``ChainState``) is all that must survive a restart: which tiers were paged
when. The daemon stores it with the pages it queues in one transaction, so a restarted daemon
neither pages a tier again nor forgets the next one. No I/O, no clock: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

from rules.model import Alarm, Severity

EndReason = Literal["acknowledged", "cleared", "shelved", "out_of_service"]


@dataclass(frozen=True, slots=True)
class Tier:
    """One step of a chain: who is paged, and how long after the previous tier (per
    severity; tier 1's delay is ignored: it is paged when the chain starts)."""

    name: str
    notify: tuple[str, ...]
    delay: Mapping[Severity, float] = field(default_factory=dict)

    def delay_for(self, severity: Severity) -> float:
        return self.delay.get(severity, 0.0)


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """When tier 1 is on site: ``start``-``end`` local time (``end`` before ``start`` spans
    midnight), on ``days`` (0 Monday .. 6 Sunday), in ``timezone`` (IANA)."""

    start: time
    end: time
    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(7))

    def contains(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, ZoneInfo(self.timezone))
        now, day = local.time(), local.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= now < self.end
        # across midnight: the shift belongs to the day it started on
        if now >= self.start:
            return day in self.days
        return now < self.end and (day - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Chain:
    """Which alarms a chain covers and its tiers."""

    name: str
    tiers: tuple[Tier, ...]
    min_severity: Severity = Severity.WARNING
    rules: frozenset[str] = frozenset()  # empty: every rule
    buildings: frozenset[str] = frozenset()  # empty: every building
    working_hours: WorkingHours | None = None  # None: always working hours
    off_hours_start: int = 0  # tier index the chain starts at outside working hours

    def covers(self, alarm: Alarm) -> bool:
        return (alarm.severity.rank <= self.min_severity.rank
                and (not self.rules or alarm.rule in self.rules)
                and (not self.buildings or alarm.context.get("building", "") in self.buildings))

    def start_tier(self, ts: float) -> int:
        if self.working_hours is None or self.working_hours.contains(ts):
            return 0
        return min(self.off_hours_start, len(self.tiers) - 1)


@dataclass(frozen=True, slots=True)
class ChainState:
    """One alarm's escalation so far: when it started, which tiers were paged when (tier
    index, time), and how it ended."""

    alarm_id: str
    chain: str
    started_at: float
    start_tier: int
    paged: tuple[tuple[int, float], ...] = ()
    ended_at: float | None = None
    ended_reason: EndReason | None = None
    ended_by: str | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def last_tier(self) -> int | None:
        return self.paged[-1][0] if self.paged else None


@dataclass(frozen=True, slots=True)
class Escalate:
    """Page ``tier`` (index) of the chain for this alarm; ``waited`` s unacknowledged so far."""

    alarm_id: str
    tier: int
    tier_name: str
    notify: tuple[str, ...]
    waited: float
    off_hours: bool
    previous: tuple[str, ...]  # names of the tiers paged before


@dataclass(frozen=True, slots=True)
class StandDown:
    """Tell the tiers already paged that the chain ended, why, by whom, after how long."""

    alarm_id: str
    reason: EndReason
    by: str | None
    after: float
    notify: tuple[str, ...]
    tiers: tuple[str, ...]


Action = Escalate | StandDown


def needs_escalation(alarm: Alarm) -> bool:
    """Unacknowledged and in alarm (or latched), visible to people."""
    return (not alarm.acked and (alarm.in_alarm or alarm.latched)
            and alarm.shelved_until is None and not alarm.out_of_service)


def end_reason(alarm: Alarm) -> EndReason | None:
    """Why a running chain must stop now, or None to keep going."""
    if alarm.out_of_service:
        return "out_of_service"
    if alarm.shelved_until is not None:
        return "shelved"
    if alarm.acked:
        return "acknowledged"
    if not alarm.in_alarm and not alarm.latched and not alarm.chattering:
        return "cleared"  # a chattering alarm's clears are not the end of it
    return None


def due_tiers(chain: Chain, severity: Severity, state: ChainState, now: float) -> list[int]:
    """The tier indexes due at ``now`` that were not paged yet, in order: the start tier
    first, then each next tier once its delay has passed since the one before was paged
    (paging a tier now restarts the clock for the next, so after a long outage only one more
    tier is due, and each tier still gets its full delay to answer)."""
    due: list[int] = []
    last = state.last_tier
    last_at = state.paged[-1][1] if state.paged else None
    if last is None:
        due.append(state.start_tier)
        last, last_at = state.start_tier, now
    assert last_at is not None
    while last + 1 < len(chain.tiers):
        nxt = last + 1
        if now - last_at < chain.tiers[nxt].delay_for(severity) - 0.05:  # rules.alarm slack
            break
        due.append(nxt)
        last, last_at = nxt, now
    return due


def step(chain: Chain, alarm: Alarm, state: ChainState | None,
         now: float) -> tuple[ChainState | None, list[Action]]:
    """One look at one alarm: start, continue or end its chain. Returns the new state (None:
    no chain) and what to send."""
    if state is not None and not state.ended:
        reason = end_reason(alarm)
        if reason is not None:
            ended = replace(state, ended_at=now, ended_reason=reason,
                            ended_by=_by(alarm, reason))
            paged = [chain.tiers[t] for t, _ in state.paged if t < len(chain.tiers)]
            notify = tuple(dict.fromkeys(n for tier in paged for n in tier.notify))
            if not notify:
                return ended, []
            return ended, [StandDown(alarm_id=alarm.alarm_id, reason=reason,
                                     by=ended.ended_by, after=now - state.started_at,
                                     notify=notify, tiers=tuple(t.name for t in paged))]
    if not needs_escalation(alarm) or not chain.covers(alarm) or not chain.tiers:
        return state, []
    if state is None or state.ended:
        started = alarm.raised_at if alarm.raised_at is not None else now
        if state is not None and started <= state.started_at:
            started = now  # the same activation again (unshelved, back in service): from now
        # working hours are judged at the raise, also when a restart sees it late
        state = ChainState(alarm_id=alarm.alarm_id, chain=chain.name, started_at=started,
                           start_tier=chain.start_tier(started))
    actions: list[Action] = []
    for index in due_tiers(chain, alarm.severity, state, now):
        tier = chain.tiers[index]
        previous = tuple(chain.tiers[t].name for t, _ in state.paged)
        actions.append(Escalate(alarm_id=alarm.alarm_id, tier=index, tier_name=tier.name,
                                notify=tier.notify, waited=now - state.started_at,
                                off_hours=state.start_tier > 0, previous=previous))
        state = replace(state, paged=(*state.paged, (index, now)))
    return state, actions


def chain_for(chains: Sequence[Chain], alarm: Alarm) -> Chain | None:
    """The first chain covering this alarm."""
    return next((c for c in chains if c.covers(alarm)), None)


def _by(alarm: Alarm, reason: EndReason) -> str | None:
    if reason == "acknowledged":
        return alarm.acked_by
    if reason == "shelved":
        return alarm.shelved_by
    if reason == "out_of_service":
        return alarm.out_of_service_by
    return None
