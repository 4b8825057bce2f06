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

    @property
    def key(self) -> str:
        return alarm_key(self.rule, self.device, self.channel)


def alarm_key(rule: str, device: str, channel: str | None) -> str:
    """Stable alarm id: ``rule:device[:channel]`` (also the MQTT topic leaf)."""
    return f"{rule}:{device}:{channel}" if channel else f"{rule}:{device}"


class AlarmState(StrEnum):
    """ISA-18.2 states (subset grown by the rules issue)."""

    NORMAL = "normal"
    UNACKED = "unacknowledged"
    ACKED = "acknowledged"
    RTN_UNACKED = "returned_unacknowledged"

    @property
    def active(self) -> bool:
        return self in (AlarmState.UNACKED, AlarmState.ACKED)


@dataclass(frozen=True, slots=True)
class Alarm:
    """The current state of one alarm; immutable, replaced by each transition."""

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

    def as_dict(self) -> dict[str, object]:
        return {
            "alarm_id": self.alarm_id, "rule": self.rule, "device": self.device,
            "channel": self.channel, "severity": self.severity.value, "state": self.state.value,
            "active": self.state.active, "value": self.value, "limit": self.limit,
            "message": self.message, "raised_at": self.raised_at, "changed_at": self.changed_at,
            "acked_by": self.acked_by, "activations": self.activations, **self.context,
        }


class EventKind(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKED = "acknowledged"
    REMOVED = "removed"  # cleared and acknowledged: nothing left for people to see


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm, as sent to people and stored."""

    kind: EventKind
    alarm: Alarm
    ts: float
    previous: AlarmState

    def as_dict(self) -> dict[str, object]:
        return {"event": self.kind.value, "ts": self.ts, "previous": self.previous.value,
                **self.alarm.as_dict()}
