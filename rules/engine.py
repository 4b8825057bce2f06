"""Routes readings to the rules configured for their device, and conditions to alarms.

No I/O and no clock: time comes from readings and callers (``tick`` for timers). The engine
keeps every rule's states and every alarm's current state in dictionaries, routed by
(device, quantity), which is what lets it run at hundreds of thousands of readings a second.

Floods: more than ``FloodPolicy.count`` alarms raised inside its window raise one
``alarm-flood`` alarm; while it is active, other non-fire events are marked ``flood`` so
notifiers can send a digest instead of a page storm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.measurements import Quantity, Reading
from rules.alarm import (
    Ack,
    AlarmPolicy,
    Command,
    Tick,
    needs_tick,
    new_alarm,
    transition,
)
from rules.base import Output, Rule, TickingRule
from rules.fire import Flags
from rules.model import Alarm, AlarmEvent, Condition, EventKind, Severity
from rules.policy import FloodPolicy, Policies

FLOOD_RULE = "alarm-flood"
FLOOD_DEVICE = "firewarden"


@dataclass(frozen=True, slots=True)
class DeviceRules:
    """What to evaluate for one device, resolved from config by the daemon."""

    rules: Sequence[Rule] = (Flags(),)
    context: Mapping[str, str] = field(default_factory=dict)  # building, box, circuit ...
    # Per-channel location on top of ``context``, e.g. a fire panel's zone -> floor and area.
    locate: Callable[[str | None], Mapping[str, str]] | None = None

    def context_for(self, channel: str | None) -> dict[str, str]:
        if self.locate is None:
            return dict(self.context)
        return {**self.context, **self.locate(channel)}


class UnknownAlarm(KeyError):
    """A command named an alarm the engine does not have."""


class RuleEngine:
    """Readings in, alarm events out."""

    def __init__(self, *, devices: Mapping[str, DeviceRules], alarms: Iterable[Alarm] = (),
                 policies: Policies | None = None, flood: FloodPolicy | None = None) -> None:
        self._devices = dict(devices)
        self._policies = policies or Policies()
        self._flood = flood or FloodPolicy()
        # device -> quantity -> the rules fed by it (nested: no key tuple per reading)
        self._routes: dict[str, dict[Quantity, tuple[Rule, ...]]] = {}
        self._ticking: list[TickingRule] = []
        for name, device in self._devices.items():
            for rule in device.rules:
                for quantity in rule.quantities:
                    routes = self._routes.setdefault(name, {})
                    routes[quantity] = (*routes.get(quantity, ()), rule)
                if isinstance(rule, TickingRule) and rule not in self._ticking:
                    self._ticking.append(rule)
        # each rule's states by the rule's own key: a tick hands a rule only its own states
        self._states: dict[int, dict[Hashable, Any]] = {}
        self.alarms: dict[str, Alarm] = {a.alarm_id: a for a in alarms}
        self._timed: set[str] = {a.alarm_id for a in self.alarms.values()
                                 if needs_tick(a, self._policy(a))}
        self._raises: deque[float] = deque()
        self._derived: list[Reading] = []

    # -- inputs -------------------------------------------------------------------------------

    def evaluate(self, reading: Reading) -> list[AlarmEvent]:
        """Feed one reading through its device's rules; return the alarm transitions."""
        routes = self._routes.get(reading.device)
        rules = routes.get(reading.quantity) if routes is not None else None
        if not rules:
            return []
        events: list[AlarmEvent] = []
        for rule in rules:
            states = self._states.get(id(rule))
            if states is None:
                states = self._states[id(rule)] = {}
            key = rule.key(reading)
            state, outputs = rule.step(states.get(key), reading)
            states[key] = state
            if outputs:
                events += self._outputs(outputs, reading.ts)
        return events

    def take_derived(self) -> list[Reading]:
        """Readings the rules derived since the last call (e.g. thermal load), to store."""
        derived, self._derived = self._derived, []
        return derived

    def apply(self, condition: Condition, now: float) -> list[AlarmEvent]:
        """Run one condition through the alarm state machine."""
        alarm = self.alarms.get(condition.key)
        if alarm is None:
            if not condition.active:
                return []  # a healthy first verdict: no alarm to keep
            rules = self._devices.get(condition.device)
            alarm = new_alarm(condition, rules.context_for(condition.channel) if rules else {})
        return self._transition(alarm, condition, now)

    def command(self, alarm_id: str, command: Command, now: float) -> list[AlarmEvent]:
        """An operator's command; raises UnknownAlarm or rules.alarm.CommandRefused."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise UnknownAlarm(alarm_id)
        return self._transition(alarm, command, now)

    def acknowledge(self, alarm_id: str, by: str, now: float) -> list[AlarmEvent]:
        return self.command(alarm_id, Ack(by), now)

    def tick(self, now: float) -> list[AlarmEvent]:
        """Let time pass: rule timers, alarm delays, shelve expiry, re-alarm, chattering."""
        events: list[AlarmEvent] = []
        for rule in self._ticking:
            states = self._states.setdefault(id(rule), {})
            changed, outputs = rule.tick(list(states.items()), now)
            states.update(changed)
            if outputs:
                events += self._outputs(outputs, now)
        for alarm_id in sorted(self._timed):
            events += self._transition(self.alarms[alarm_id], Tick(), now)
        events += self._update_flood(now)
        return events

    def clock_jumped(self, delta: float) -> None:
        """The wall clock stepped by ``delta`` seconds (NTP correcting a bad RTC, someone
        setting the time). Rule timers restart from the next readings (rules give their first
        verdicts again, so nothing raises or clears from the jump alone); alarm timers (on/off
        delays, re-alarm, shelving, chattering, floods) keep the time they had left."""
        self._states.clear()

        def shift(t: float | None) -> float | None:
            return None if t is None else t + delta

        for alarm_id, a in self.alarms.items():
            self.alarms[alarm_id] = replace(
                a, pending_since=shift(a.pending_since), annunciated_at=shift(a.annunciated_at),
                shelved_until=shift(a.shelved_until),
                recent_activations=tuple(t + delta for t in a.recent_activations))
        self._raises = deque(t + delta for t in self._raises)

    # -- queries ------------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return sum(1 for a in self.alarms.values() if a.state.active)

    @property
    def flooding(self) -> bool:
        flood = self.alarms.get(f"{FLOOD_RULE}:{FLOOD_DEVICE}")
        return flood is not None and flood.in_alarm

    # -- internals ----------------------------------------------------------------------------

    def _outputs(self, outputs: Sequence[Output], now: float) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for output in outputs:
            if isinstance(output, Condition):
                events += self.apply(output, now)
            else:
                self._derived.append(output)
        return events

    def _policy(self, alarm: Alarm) -> AlarmPolicy:
        return self._policies.for_alarm(alarm.rule, alarm.severity)

    def _transition(self, alarm: Alarm, signal: Condition | Command | Tick,
                    now: float) -> list[AlarmEvent]:
        policy = self._policy(alarm)
        alarm, events = transition(alarm, signal, now, policy)
        self.alarms[alarm.alarm_id] = alarm
        if needs_tick(alarm, policy):
            self._timed.add(alarm.alarm_id)
        else:
            self._timed.discard(alarm.alarm_id)
        if not events or alarm.rule == FLOOD_RULE:
            return events
        raised = sum(1 for e in events if e.kind is EventKind.RAISED)
        self._raises.extend([now] * raised)
        out = self._update_flood(now) if raised else []
        if self.flooding:
            events = [e if e.alarm.severity is Severity.FIRE else replace(e, flood=True)
                      for e in events]
        return events + out

    def _update_flood(self, now: float) -> list[AlarmEvent]:
        while self._raises and now - self._raises[0] > self._flood.window:
            self._raises.popleft()
        flooding = len(self._raises) > self._flood.count
        alarm_id = f"{FLOOD_RULE}:{FLOOD_DEVICE}"
        current = self.alarms.get(alarm_id)
        if current is None and not flooding:
            return []
        if current is not None and current.condition == flooding:
            return []
        window_min = self._flood.window / 60
        condition = Condition(
            rule=FLOOD_RULE, device=FLOOD_DEVICE, active=flooding, severity=Severity.WARNING,
            ts=now, value=float(len(self._raises)), limit=float(self._flood.count),
            message=f"alarm flood: {len(self._raises)} alarms raised in the last "
                    f"{window_min:g} min (individual pages are digested)" if flooding
                    else f"alarm flood over: {len(self._raises)} alarms in {window_min:g} min")
        return self.apply(condition, now)

