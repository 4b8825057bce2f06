"""The alarm state machine (ISA-18.2 subset), pure: ``transition(alarm, input, now)``.

normal --active--> unacknowledged --ack--> acknowledged --clear--> normal (removed)
unacknowledged --clear--> returned_unacknowledged --ack--> normal (removed)
returned_unacknowledged --active--> unacknowledged (raised again)
Shelving, latching, re-alarm and chattering come with the rules issue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rules.model import Alarm, AlarmEvent, AlarmState, Condition, EventKind


@dataclass(frozen=True, slots=True)
class Ack:
    """An operator acknowledges an alarm."""

    by: str


def new_alarm(condition: Condition, context: dict[str, str]) -> Alarm:
    """A normal alarm for a condition's key, carrying where it is for people."""
    return Alarm(alarm_id=condition.key, rule=condition.rule, device=condition.device,
                 channel=condition.channel, severity=condition.severity, context=context)


def transition(alarm: Alarm, signal: Condition | Ack, now: float) -> tuple[Alarm, list[AlarmEvent]]:
    """Apply a rule's condition or an operator's ack; return the new alarm and its events."""
    if isinstance(signal, Ack):
        return _ack(alarm, signal, now)
    return _condition(alarm, signal, now)


def _condition(alarm: Alarm, cond: Condition, now: float) -> tuple[Alarm, list[AlarmEvent]]:
    state = alarm.state
    measured = replace(alarm, value=cond.value, limit=cond.limit, message=cond.message,
                       severity=cond.severity)
    if cond.active:
        if state.active:
            return measured, []  # already raised: update the value, page nobody
        raised = replace(measured, state=AlarmState.UNACKED, raised_at=now, changed_at=now,
                         acked_by=None, activations=alarm.activations + 1)
        return raised, [AlarmEvent(EventKind.RAISED, raised, now, state)]
    if state is AlarmState.UNACKED:
        rtn = replace(measured, state=AlarmState.RTN_UNACKED, changed_at=now)
        return rtn, [AlarmEvent(EventKind.CLEARED, rtn, now, state)]
    if state is AlarmState.ACKED:
        gone = replace(measured, state=AlarmState.NORMAL, changed_at=now)
        return gone, [AlarmEvent(EventKind.REMOVED, gone, now, state)]
    return alarm, []


def _ack(alarm: Alarm, ack: Ack, now: float) -> tuple[Alarm, list[AlarmEvent]]:
    if alarm.state is AlarmState.UNACKED:
        acked = replace(alarm, state=AlarmState.ACKED, acked_by=ack.by, changed_at=now)
        return acked, [AlarmEvent(EventKind.ACKED, acked, now, alarm.state)]
    if alarm.state is AlarmState.RTN_UNACKED:
        gone = replace(alarm, state=AlarmState.NORMAL, acked_by=ack.by, changed_at=now)
        return gone, [AlarmEvent(EventKind.REMOVED, gone, now, alarm.state)]
    return alarm, []
