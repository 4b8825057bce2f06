"""Routes readings to the rules configured for their device, and conditions to alarms.

No I/O and no clock: time comes from readings and callers. The engine keeps per-source rule
state and the alarms' current states in dictionaries, which is what lets it run at hundreds of
thousands of readings per second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from drivers.measurements import Quantity, Reading
from rules import fire, overload
from rules.alarm import Ack, new_alarm, transition
from rules.model import Alarm, AlarmEvent, Condition


@dataclass(frozen=True, slots=True)
class DeviceRules:
    """What to evaluate for one device, resolved from config by the daemon."""

    overcurrent: overload.OvercurrentParams | None = None
    flags: bool = True  # fire, detector fault and alarm flags (rules/fire.py)
    context: Mapping[str, str] = field(default_factory=dict)  # building, box, circuit ...
    # Per-channel location on top of ``context``, e.g. a fire panel's zone -> floor and area.
    locate: Callable[[str | None], Mapping[str, str]] | None = None

    def context_for(self, channel: str | None) -> dict[str, str]:
        if self.locate is None:
            return dict(self.context)
        return {**self.context, **self.locate(channel)}


class RuleEngine:
    """Readings in, alarm events out."""

    def __init__(self, *, devices: Mapping[str, DeviceRules],
                 alarms: Iterable[Alarm] = ()) -> None:
        self._devices = dict(devices)
        self._overcurrent: dict[tuple[str, str | None], overload.OvercurrentState] = {}
        self._flags: dict[tuple[str, str | None, Quantity], bool | None] = {}
        self.alarms: dict[str, Alarm] = {a.alarm_id: a for a in alarms}

    def evaluate(self, reading: Reading) -> list[AlarmEvent]:
        """Feed one reading through its device's rules; return the alarm transitions."""
        rules = self._devices.get(reading.device)
        if rules is None:
            return []
        conditions: list[Condition] = []
        if rules.overcurrent is not None:
            key = (reading.device, reading.channel)
            state = self._overcurrent.get(key, overload.OvercurrentState())
            state, found = overload.evaluate(state, reading, rules.overcurrent)
            self._overcurrent[key] = state
            conditions += found
        if rules.flags and reading.quantity in fire.FLAG_RULES:
            flag_key = (reading.device, reading.channel, reading.quantity)
            flag, found = fire.evaluate(self._flags.get(flag_key), reading)
            self._flags[flag_key] = flag
            conditions += found
        events: list[AlarmEvent] = []
        for condition in conditions:
            events += self.apply(condition, reading.ts)
        return events

    def apply(self, condition: Condition, now: float) -> list[AlarmEvent]:
        """Run one condition through the alarm state machine."""
        alarm = self.alarms.get(condition.key)
        if alarm is None:
            rules = self._devices.get(condition.device)
            alarm = new_alarm(condition, rules.context_for(condition.channel) if rules else {})
        alarm, events = transition(alarm, condition, now)
        self.alarms[alarm.alarm_id] = alarm
        return events

    def acknowledge(self, alarm_id: str, by: str, now: float) -> list[AlarmEvent]:
        """An operator's ack; unknown ids are ignored (the caller reports them)."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            return []
        alarm, events = transition(alarm, Ack(by), now)
        self.alarms[alarm_id] = alarm
        return events

    @property
    def active_count(self) -> int:
        return sum(1 for a in self.alarms.values() if a.state.active)
