"""The alarm state machine (ISA-18.2 / IEC 62682), pure: ``transition(alarm, signal, now, policy)``.

Signals are a rule's ``Condition``, an operator's command (``Ack``, ``Shelve``, ``Unshelve``,
``Reset``, ``RemoveFromService``, ``ReturnToService``) or ``Tick`` (time passed: delays,
shelve expiry, re-alarm and chatter timers). Each transition updates the alarm's flags, then
derives the state people see and emits one event per visible change::

    normal --raise--> unacknowledged --ack--> acknowledged --clear--> normal        (removed)
    unacknowledged --clear--> returned_unacknowledged --ack--> normal               (removed)
    unacknowledged|acknowledged --clear, latching--> latched --reset--> normal      (fire)
    any --shelve--> shelved --unshelve|expiry--> (derived again)
    any --out-of-service--> out_of_service --in-service--> (derived again)

While shelved or out of service, conditions still update the alarm (so unshelving shows the
truth) but nothing is announced. An alarm raised ``chatter_count`` times inside
``chatter_window`` is announced once as chattering, then stays quiet until a whole window
passes without a new activation. An unacknowledged alarm is announced again every
``realarm_after`` seconds (escalation level ``realarms``). Commands that make no sense (ack of a
normal alarm, shelving a fire) raise ``CommandRefused`` with the reason, changing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rules.model import Alarm, AlarmEvent, AlarmState, Condition, EventKind

# Timer checks happen on ticks a little late or readings a little early; this much counts as
# on time, so a 5 s delay at 1 s polls completes on the fifth second, not the sixth.
DELAY_SLACK = 0.05


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """How one rule's alarms behave; defaults per severity in ``rules.policy``."""

    on_delay: float = 0.0  # the condition must hold this long before the alarm raises
    off_delay: float = 0.0  # ... and be gone this long before it clears
    latching: bool = False  # stays in alarm after the condition goes, until reset
    realarm_after: float | None = None  # unacknowledged this long: announce again
    chatter_count: int = 3  # activations inside chatter_window that make it chattering
    chatter_window: float = 60.0
    shelvable: bool = True
    # False for events (info): back to normal when the condition goes, no one need acknowledge
    # a pump start that already ended (ISA-18.2 keeps such alerts out of the alarm system)
    acknowledge: bool = True


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed; lets delays, shelving, re-alarm and chattering run out."""


@dataclass(frozen=True, slots=True)
class Ack:
    by: str


@dataclass(frozen=True, slots=True)
class Shelve:
    by: str
    until: float


@dataclass(frozen=True, slots=True)
class Unshelve:
    by: str


@dataclass(frozen=True, slots=True)
class Reset:
    by: str


@dataclass(frozen=True, slots=True)
class RemoveFromService:
    by: str


@dataclass(frozen=True, slots=True)
class ReturnToService:
    by: str


Command = Ack | Shelve | Unshelve | Reset | RemoveFromService | ReturnToService
Signal = Condition | Command | Tick


class CommandRefused(ValueError):
    """An operator command that does not apply to the alarm in its current state."""


def new_alarm(condition: Condition, context: dict[str, str]) -> Alarm:
    """A normal alarm for a condition's key, carrying where it is for people."""
    return Alarm(alarm_id=condition.key, rule=condition.rule, device=condition.device,
                 channel=condition.channel, severity=condition.severity, context=context)


def derive_state(a: Alarm) -> AlarmState:
    """The state people see, from the alarm's flags."""
    if a.out_of_service:
        return AlarmState.OUT_OF_SERVICE
    if a.shelved_until is not None:
        return AlarmState.SHELVED
    if a.in_alarm:
        return AlarmState.ACKED if a.acked else AlarmState.UNACKED
    if a.latched:
        return AlarmState.LATCHED
    return AlarmState.NORMAL if a.acked else AlarmState.RTN_UNACKED


def needs_tick(a: Alarm, policy: AlarmPolicy) -> bool:
    """Whether time alone can change this alarm (the engine ticks only these)."""
    return (a.pending_since is not None or a.shelved_until is not None or a.chattering
            or (policy.realarm_after is not None and a.in_alarm and not a.acked))


def transition(alarm: Alarm, signal: Signal, now: float,
               policy: AlarmPolicy = AlarmPolicy()) -> tuple[Alarm, list[AlarmEvent]]:
    """Apply one signal at time ``now``; return the new alarm and the events to announce."""
    kinds: list[EventKind] = []
    by: str | None = None
    if isinstance(signal, Condition):
        a = _condition(alarm, signal)
    elif isinstance(signal, Tick):
        a = alarm
    else:
        a, kind = _command(alarm, signal, now, policy)
        kinds.append(kind)
        by = signal.by
    a, timer_kinds = _timers(a, now, policy)
    kinds += timer_kinds
    return _announce(alarm, a, kinds, now, by)


# -- flags ------------------------------------------------------------------------------------

def _condition(a: Alarm, cond: Condition) -> Alarm:
    pending = None if cond.active == a.in_alarm else (
        a.pending_since if a.pending_since is not None and a.condition == cond.active
        else cond.ts)
    return replace(a, condition=cond.active, pending_since=pending, value=cond.value,
                   limit=cond.limit, message=cond.message or a.message,
                   severity=cond.severity,
                   evidence=dict(cond.evidence) if cond.evidence else a.evidence)


def _command(a: Alarm, cmd: Command, now: float,
             policy: AlarmPolicy) -> tuple[Alarm, EventKind]:
    state = derive_state(a)
    if isinstance(cmd, Ack):
        if a.acked:
            raise CommandRefused(f"{a.alarm_id} is {state.value}: nothing to acknowledge")
        return replace(a, acked=True, acked_by=cmd.by), EventKind.ACKED
    if isinstance(cmd, Shelve):
        if not policy.shelvable:
            raise CommandRefused(f"{a.alarm_id}: {a.rule} alarms cannot be shelved; take the "
                                 f"device out of service if it is faulty")
        if cmd.until <= now:
            raise CommandRefused(f"{a.alarm_id}: shelve until {cmd.until:.0f} is in the past")
        return replace(a, shelved_until=cmd.until, shelved_by=cmd.by), EventKind.SHELVED
    if isinstance(cmd, Unshelve):
        if a.shelved_until is None:
            raise CommandRefused(f"{a.alarm_id} is not shelved")
        return replace(a, shelved_until=None, shelved_by=None), EventKind.UNSHELVED
    if isinstance(cmd, Reset):
        if not a.latched:
            raise CommandRefused(f"{a.alarm_id} is {state.value}, not latched: nothing to reset")
        if a.condition or a.in_alarm:
            raise CommandRefused(f"{a.alarm_id}: the condition is still present; reset the "
                                 f"panel or clear the cause first")
        # resetting is a deliberate act on a known alarm: it acknowledges it too
        return replace(a, latched=False, acked=True, acked_by=a.acked_by or cmd.by), \
            EventKind.RESET
    if isinstance(cmd, RemoveFromService):
        if a.out_of_service:
            raise CommandRefused(f"{a.alarm_id} is already out of service")
        return replace(a, out_of_service=True, out_of_service_by=cmd.by), \
            EventKind.OUT_OF_SERVICE
    if not a.out_of_service:
        raise CommandRefused(f"{a.alarm_id} is not out of service")
    return replace(a, out_of_service=False, out_of_service_by=None), EventKind.IN_SERVICE


# -- timers -----------------------------------------------------------------------------------

def _timers(a: Alarm, now: float, policy: AlarmPolicy) -> tuple[Alarm, list[EventKind]]:
    kinds: list[EventKind] = []
    if a.pending_since is not None:
        delay = policy.on_delay if a.condition else policy.off_delay
        if now - a.pending_since >= delay - DELAY_SLACK:
            a = _settle(a, now, policy)
    if a.shelved_until is not None and now >= a.shelved_until:
        a = replace(a, shelved_until=None, shelved_by=None)
        kinds.append(EventKind.UNSHELVED)
    recent = tuple(t for t in a.recent_activations if now - t < policy.chatter_window)
    if recent != a.recent_activations:
        a = replace(a, recent_activations=recent)
    if a.chattering and not recent:
        a = replace(a, chattering=False)
    if (policy.realarm_after is not None and derive_state(a) is AlarmState.UNACKED
            and not a.chattering and a.annunciated_at is not None
            and now - a.annunciated_at >= policy.realarm_after - DELAY_SLACK):
        a = replace(a, realarms=a.realarms + 1, annunciated_at=now)
        kinds.append(EventKind.REALARM)
    return a, kinds


def _settle(a: Alarm, now: float, policy: AlarmPolicy) -> Alarm:
    """The condition has held long enough: the alarm follows it."""
    if not a.condition:
        return replace(a, in_alarm=False, pending_since=None,
                       acked=a.acked or not policy.acknowledge)
    recent = (*(t for t in a.recent_activations if now - t < policy.chatter_window), now)
    return replace(a, in_alarm=True, pending_since=None, acked=False, acked_by=None,
                   latched=policy.latching, raised_at=now, annunciated_at=now, realarms=0,
                   activations=a.activations + 1, recent_activations=recent,
                   chattering=a.chattering or len(recent) >= policy.chatter_count)


# -- what people are told ---------------------------------------------------------------------

_QUIET_WHILE_CHATTERING = frozenset({EventKind.RAISED, EventKind.CLEARED, EventKind.LATCHED,
                                     EventKind.REMOVED})
# Kinds that already say why the state changed (commands and shelve expiry).
_EXPLAINING = frozenset({EventKind.ACKED, EventKind.SHELVED, EventKind.UNSHELVED,
                         EventKind.RESET, EventKind.OUT_OF_SERVICE, EventKind.IN_SERVICE})


def _announce(old: Alarm, new: Alarm, kinds: list[EventKind], now: float,
              by: str | None) -> tuple[Alarm, list[AlarmEvent]]:
    before, after = old.state, derive_state(new)
    if not any(k in _EXPLAINING for k in kinds):
        change = _state_change(before, after)
        if change is not None:
            kinds.insert(0, change)
    if after is AlarmState.NORMAL:  # an ack that leaves nothing to see removes the alarm
        kinds = [EventKind.REMOVED if k is EventKind.ACKED else k for k in kinds]
    if new.chattering:
        kinds = [k for k in kinds if k not in _QUIET_WHILE_CHATTERING]
        if not old.chattering:
            kinds.append(EventKind.CHATTERING)
    elif old.chattering:
        kinds.append(EventKind.CHATTER_ENDED)
    if not kinds:
        return replace(new, state=after), []
    events: list[AlarmEvent] = []
    a = new
    for kind in kinds:
        a = replace(a, state=after, changed_at=now, seq=a.seq + 1)
        events.append(AlarmEvent(kind=kind, alarm=a, ts=now, previous=before, by=by))
    return a, events


def _state_change(before: AlarmState, after: AlarmState) -> EventKind | None:
    """The event a condition- or delay-driven state change is announced as."""
    if before is after:
        return None
    if after is AlarmState.UNACKED:
        return EventKind.RAISED
    if after is AlarmState.LATCHED:
        return EventKind.LATCHED
    if after is AlarmState.RTN_UNACKED:
        return EventKind.CLEARED
    if after is AlarmState.NORMAL:
        return EventKind.REMOVED
    return None
