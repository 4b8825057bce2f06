"""What rules say and what the alarm state machine keeps: conditions, alarms and their events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How urgent an alarm is; fire outranks everything and never waits behind bulk work."""

    FIRE = "fire"
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"fire": 0, "critical": 1, "warning": 2, "info": 3}[self.value]


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule's verdict on one source at one moment: active (abnormal) or not.

    ``key`` identifies the alarm across time: rule + device + channel, so the same fault on the
    same phase is one alarm however often the rule re-asserts it.
    """

    rule: str
    device: str
    active: bool
    severity: Severity
    ts: float
    value: float | None = None
    limit: float | None = None
    channel: str | None = None
    message: str = ""
    # the measurements behind a verdict, for people to judge it (a step's watts, its PF ...)
    evidence: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        return alarm_key(self.rule, self.device, self.channel)


def alarm_key(rule: str, device: str, channel: str | None) -> str:
    """Stable alarm id: ``rule:device[:channel]`` (also the MQTT topic leaf)."""
    return f"{rule}:{device}:{channel}" if channel else f"{rule}:{device}"


class AlarmState(StrEnum):
    """ISA-18.2 / IEC 62682 states, as people see them.

    The state is derived from the alarm's flags (``rules.alarm.derive_state``): out of service
    and shelved hide everything else; ``latched`` is an alarm whose condition has gone but that
    stays in alarm until someone resets it (fire).
    """

    NORMAL = "normal"
    UNACKED = "unacknowledged"
    ACKED = "acknowledged"
    RTN_UNACKED = "returned_unacknowledged"
    LATCHED = "latched"
    SHELVED = "shelved"
    OUT_OF_SERVICE = "out_of_service"

    @property
    def active(self) -> bool:
        """In alarm for people: needs attention now."""
        return self in (AlarmState.UNACKED, AlarmState.ACKED, AlarmState.LATCHED)


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm's whole state; immutable, replaced by each transition.

    ``condition`` is the rule's latest verdict, ``in_alarm`` that verdict after the on/off
    delays; ``pending_since`` is when the verdict started to differ from ``in_alarm`` (None: it
    does not). ``seq`` numbers this alarm's events, so event ids never repeat.
    """

    alarm_id: str
    rule: str
    device: str
    severity: Severity
    state: AlarmState = AlarmState.NORMAL
    channel: str | None = None
    value: float | None = None
    limit: float | None = None
    message: str = ""
    raised_at: float | None = None
    changed_at: float = 0.0
    acked_by: str | None = None
    activations: int = 0
    context: dict[str, str] = field(default_factory=dict)  # building, box, circuit ... for people
    evidence: dict[str, float] = field(default_factory=dict)  # the latest condition's evidence
    # flags the state is derived from
    condition: bool = False
    in_alarm: bool = False
    pending_since: float | None = None
    acked: bool = True  # nothing to acknowledge until it raises
    latched: bool = False
    shelved_until: float | None = None
    shelved_by: str | None = None
    out_of_service: bool = False
    out_of_service_by: str | None = None
    chattering: bool = False
    recent_activations: tuple[float, ...] = ()  # inside the chatter window
    annunciated_at: float | None = None  # last raise or re-alarm, for re-alarm timing
    realarms: int = 0  # escalation level: times re-annunciated while unacknowledged
    seq: int = 0

    def as_dict(self) -> dict[str, object]:
        """The alarm as people and receivers see it (MQTT retained state, webhooks)."""
        return {
            "alarm_id": self.alarm_id, "rule": self.rule, "device": self.device,
            "channel": self.channel, "severity": self.severity.value, "state": self.state.value,
            "active": self.state.active, "value": self.value, "limit": self.limit,
            "message": self.message, "raised_at": self.raised_at, "changed_at": self.changed_at,
            "acked_by": self.acked_by, "activations": self.activations,
            "condition": self.condition, "latched": self.latched,
            "shelved_until": self.shelved_until, "chattering": self.chattering,
            "realarms": self.realarms, "evidence": dict(self.evidence), **self.context,
        }


class EventKind(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"  # condition gone, not yet acknowledged
    ACKED = "acknowledged"
    REMOVED = "removed"  # cleared and acknowledged: nothing left for people to see
    LATCHED = "latched"  # condition gone, stays in alarm until reset
    RESET = "reset"
    REALARM = "realarm"  # still unacknowledged after realarm_after: in front of people again
    CHATTERING = "chattering"  # >= chatter_count activations in the window: one page, not many
    CHATTER_ENDED = "chatter_ended"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    OUT_OF_SERVICE = "out_of_service"
    IN_SERVICE = "in_service"

    @property
    def pages(self) -> bool:
        """Whether this event should reach a person's phone (webhooks), not only dashboards."""
        return self in (EventKind.RAISED, EventKind.REALARM, EventKind.CHATTERING)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm, as sent to people and stored.

    ``event_id`` (``alarm_id#seq``) is unique and stable across restarts: receivers
    de-duplicate on it (MQTT is at-least-once). ``by`` is the operator for commands.
    """

    kind: EventKind
    alarm: Alarm
    ts: float
    previous: AlarmState
    by: str | None = None
    flood: bool = False  # raised during an alarm flood: notifiers may digest it

    @property
    def event_id(self) -> str:
        return f"{self.alarm.alarm_id}#{self.alarm.seq}"

    def as_dict(self) -> dict[str, object]:
        return {"event": self.kind.value, "event_id": self.event_id, "ts": self.ts,
                "previous": self.previous.value, "by": self.by, "flood": self.flood,
                **self.alarm.as_dict()}
