"""The ISA-18.2 alarm state machine, table-driven with explicit times; and the engine's floods."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.measurements import Quantity, Reading
from rules.alarm import (
    Ack,
    AlarmPolicy,
    CommandRefused,
    RemoveFromService,
    Reset,
    ReturnToService,
    Shelve,
    Signal,
    Tick,
    Unshelve,
    new_alarm,
    transition,
)
from rules.engine import DeviceRules, RuleEngine, UnknownAlarm
from rules.fire import Flags
from rules.model import Alarm, AlarmState, Condition, EventKind, Severity
from rules.policy import FloodPolicy

S = AlarmState
K = EventKind
ON, OFF, TICK = "on", "off", "tick"
Step = tuple[float, "str | Signal"]


def cond(active: bool, ts: float, value: float = 1.0) -> Condition:
    return Condition(rule="leakage", device="rcm-1", channel="1", active=active,
                     severity=Severity.CRITICAL, ts=ts, value=value, message="x")


DEFAULT = AlarmPolicy()


def run(steps: list[Step], policy: AlarmPolicy = DEFAULT,
        alarm: Alarm | None = None) -> tuple[Alarm, list[tuple[float, K, S]]]:
    """Feed ``steps`` in order; return the final alarm and (time, event, state) of each event."""
    a = alarm or new_alarm(cond(True, 0), {"building": "12"})
    out: list[tuple[float, K, S]] = []
    for t, step in steps:
        signal: Signal = (cond(step == ON, t) if step in (ON, OFF)
                          else Tick() if step == TICK else step)  # type: ignore[assignment]
        a, events = transition(a, signal, t, policy)
        out += [(e.ts, e.kind, e.alarm.state) for e in events]
    return a, out


@pytest.mark.parametrize(("steps", "expected", "final"), [
    pytest.param([(0, ON)], [(0, K.RAISED, S.UNACKED)], S.UNACKED, id="raise"),
    pytest.param([(0, ON), (1, ON), (2, ON)], [(0, K.RAISED, S.UNACKED)], S.UNACKED,
                 id="still-active-is-not-news"),
    pytest.param([(0, ON), (5, Ack("li")), (9, OFF)],
                 [(0, K.RAISED, S.UNACKED), (5, K.ACKED, S.ACKED), (9, K.REMOVED, S.NORMAL)],
                 S.NORMAL, id="ack-then-clear"),
    pytest.param([(0, ON), (9, OFF), (12, Ack("li"))],
                 [(0, K.RAISED, S.UNACKED), (9, K.CLEARED, S.RTN_UNACKED),
                  (12, K.REMOVED, S.NORMAL)], S.NORMAL, id="clear-then-ack"),
    pytest.param([(0, ON), (9, OFF), (11, ON)],
                 [(0, K.RAISED, S.UNACKED), (9, K.CLEARED, S.RTN_UNACKED),
                  (11, K.RAISED, S.UNACKED)], S.UNACKED, id="returns-before-ack"),
    pytest.param([(0, OFF)], [], S.NORMAL, id="healthy-first-verdict"),
])
def test_basic_lifecycle(steps: list[Step], expected: list[tuple[float, K, S]],
                         final: S) -> None:
    alarm, events = run(steps)
    assert events == expected
    assert alarm.state is final


@pytest.mark.parametrize(("steps", "expected"), [
    pytest.param([(0, ON), (4, TICK), (4.9, ON)], [], id="held-too-short"),
    pytest.param([(0, ON), (2, ON), (5, TICK)], [(5, K.RAISED, S.UNACKED)],
                 id="raises-on-tick-after-delay"),
    pytest.param([(0, ON), (3, OFF), (6, TICK), (7, ON), (11, ON), (12, ON)],
                 [(12, K.RAISED, S.UNACKED)], id="a-gap-restarts-the-delay"),
])
def test_on_delay(steps: list[Step], expected: list[tuple[float, K, S]]) -> None:
    assert run(steps, AlarmPolicy(on_delay=5))[1] == expected


def test_off_delay_holds_and_a_return_cancels_it() -> None:
    policy = AlarmPolicy(off_delay=30)
    _, events = run([(0, ON), (10, OFF), (20, ON), (25, OFF), (54, TICK), (55, TICK)], policy)
    assert events == [(0, K.RAISED, S.UNACKED), (55, K.CLEARED, S.RTN_UNACKED)]


def test_latching_alarm_waits_for_reset() -> None:
    policy = AlarmPolicy(latching=True)
    alarm, events = run([(0, ON), (10, OFF), (20, Ack("li"))], policy)
    assert events == [(0, K.RAISED, S.UNACKED), (10, K.LATCHED, S.LATCHED),
                      (20, K.ACKED, S.LATCHED)]
    alarm, events = run([(30, Reset("li"))], policy, alarm)
    assert events == [(30, K.RESET, S.NORMAL)]


def test_reset_acknowledges_and_is_refused_while_the_condition_holds() -> None:
    policy = AlarmPolicy(latching=True)
    alarm, _ = run([(0, ON)], policy)
    with pytest.raises(CommandRefused, match="condition is still present"):
        run([(5, Reset("li"))], policy, alarm)
    alarm, events = run([(10, OFF), (11, Reset("wang"))], policy, alarm)
    assert events[-1] == (11, K.RESET, S.NORMAL)
    assert alarm.acked_by == "wang"
    with pytest.raises(CommandRefused, match="not latched"):
        run([(12, Reset("li"))], policy, alarm)


def test_latched_alarm_raises_again_when_the_condition_returns() -> None:
    _, events = run([(0, ON), (10, OFF), (20, ON)], AlarmPolicy(latching=True))
    assert events[-1] == (20, K.RAISED, S.UNACKED)


def test_shelved_alarm_is_silent_and_expires() -> None:
    alarm, events = run([(0, ON), (10, Shelve("li", until=100)), (50, OFF), (60, ON),
                         (70, OFF), (99, TICK), (100, TICK)])
    assert events == [(0, K.RAISED, S.UNACKED), (10, K.SHELVED, S.SHELVED),
                      (100, K.UNSHELVED, S.RTN_UNACKED)]
    assert alarm.activations == 2  # the activation while shelved was still counted


def test_unshelve_shows_the_truth() -> None:
    _, events = run([(0, Shelve("li", until=1000)), (5, ON), (8, Unshelve("li"))])
    assert events == [(0, K.SHELVED, S.SHELVED), (8, K.UNSHELVED, S.UNACKED)]


@pytest.mark.parametrize(("steps", "policy", "reason"), [
    ([(0, ON), (1, Shelve("li", until=99))], AlarmPolicy(shelvable=False), "cannot be shelved"),
    ([(0, ON), (10, Shelve("li", until=5))], AlarmPolicy(), "in the past"),
    ([(0, ON), (1, Unshelve("li"))], AlarmPolicy(), "not shelved"),
    ([(0, ON), (1, Ack("li")), (2, Ack("li"))], AlarmPolicy(), "nothing to acknowledge"),
    ([(0, ReturnToService("li"))], AlarmPolicy(), "not out of service"),
    ([(0, RemoveFromService("li")), (1, RemoveFromService("li"))], AlarmPolicy(),
     "already out of service"),
])
def test_commands_that_do_not_apply_are_refused(steps: list[Step], policy: AlarmPolicy,
                                                reason: str) -> None:
    with pytest.raises(CommandRefused, match=reason):
        run(steps, policy)


def test_out_of_service_is_silent_until_back() -> None:
    _, events = run([(0, RemoveFromService("li")), (5, ON), (9, OFF), (12, ON),
                     (20, ReturnToService("li"))])
    assert events == [(0, K.OUT_OF_SERVICE, S.OUT_OF_SERVICE), (20, K.IN_SERVICE, S.UNACKED)]


def test_realarm_escalates_until_acknowledged() -> None:
    alarm, events = run([(0, ON), (299, TICK), (300, TICK), (450, TICK), (600, TICK),
                         (650, Ack("li")), (1200, TICK)], AlarmPolicy(realarm_after=300))
    assert events == [(0, K.RAISED, S.UNACKED), (300, K.REALARM, S.UNACKED),
                      (600, K.REALARM, S.UNACKED), (650, K.ACKED, S.ACKED)]
    assert alarm.realarms == 2


def test_chattering_is_one_page_then_quiet_then_ends() -> None:
    _, events = run([(0, ON), (10, OFF), (20, ON), (30, OFF), (40, ON), (45, OFF), (50, ON),
                     (55, OFF), (100, TICK), (111, TICK)])
    assert events == [(0, K.RAISED, S.UNACKED), (10, K.CLEARED, S.RTN_UNACKED),
                      (20, K.RAISED, S.UNACKED), (30, K.CLEARED, S.RTN_UNACKED),
                      (40, K.CHATTERING, S.UNACKED), (111, K.CHATTER_ENDED, S.RTN_UNACKED)]


def test_slow_repeats_are_not_chattering() -> None:
    _, events = run([(0, ON), (10, OFF), (40, ON), (50, OFF), (80, ON)])
    assert K.CHATTERING not in [k for _, k, _ in events]


def test_event_ids_are_unique_and_value_updates_are_silent() -> None:
    a = new_alarm(cond(True, 0), {})
    ids: list[str] = []
    steps: list[tuple[float, Signal]] = [(0, cond(True, 0, 310.0)), (1, cond(True, 1, 320.0)),
                                         (2, Ack("li")), (3, cond(False, 3)),
                                         (4, cond(True, 4))]
    for t, signal in steps:
        a, events = transition(a, signal, t)
        ids += [e.event_id for e in events]
    assert ids == ["leakage:rcm-1:1#1", "leakage:rcm-1:1#2", "leakage:rcm-1:1#3",
                   "leakage:rcm-1:1#4"]


def test_events_carry_who_did_it() -> None:
    a, _ = run([(0, ON)])
    _, (event,) = transition(a, Ack("electrician-li"), 5)
    assert event.by == "electrician-li"
    assert event.as_dict()["by"] == "electrician-li"


# -- the engine ---------------------------------------------------------------------------

def fire_reading(ts: float, device: str, value: float = 1.0) -> Reading:
    return Reading(ts=ts, device=device, quantity=Quantity.FIRE, value=value, channel="1")


def test_engine_flood_raises_one_alarm_and_marks_the_rest() -> None:
    detectors = {f"d{i}": DeviceRules(rules=(Flags(),)) for i in range(15)}
    engine = RuleEngine(devices=detectors, flood=FloodPolicy(count=10, window=600))
    fault = [Reading(ts=float(i), device=f"d{i}", quantity=Quantity.SMOKE_FAULT, value=1.0)
             for i in range(12)]
    events = [e for r in fault for e in engine.evaluate(r)]
    flood = [e for e in events if e.alarm.rule == "alarm-flood"]
    assert [(e.kind, e.ts) for e in flood] == [(K.RAISED, 10.0)]  # the 11th alarm
    assert [e.flood for e in events if e.alarm.rule != "alarm-flood"] == [False] * 10 + [True] * 2
    (fire,) = engine.evaluate(fire_reading(13, "d13"))
    assert fire.kind is K.RAISED
    assert not fire.flood  # fire is never digested
    later = engine.tick(700.0)  # the window has passed (the fire re-alarms meanwhile)
    assert [(e.alarm.rule, e.kind) for e in later] == [("fire", K.REALARM),
                                                        ("alarm-flood", K.CLEARED)]


def test_engine_ticks_on_delays_without_new_readings() -> None:
    from rules.policy import Policies
    engine = RuleEngine(devices={"d": DeviceRules()},
                        policies=Policies(rules={"detector-fault": {"on_delay": 10.0}}))
    assert engine.evaluate(Reading(ts=0, device="d", quantity=Quantity.SMOKE_FAULT,
                                   value=1.0)) == []
    assert engine.tick(9.0) == []
    (event,) = engine.tick(10.0)
    assert (event.kind, event.alarm.alarm_id) == (K.RAISED, "detector-fault:d")


def test_engine_commands() -> None:
    engine = RuleEngine(devices={"d": DeviceRules()})
    engine.evaluate(fire_reading(0, "d"))
    with pytest.raises(UnknownAlarm):
        engine.command("fire:d:9", Ack("li"), 1)
    with pytest.raises(CommandRefused, match="cannot be shelved"):
        engine.command("fire:d:1", Shelve("li", until=100), 1)
    (ack,) = engine.command("fire:d:1", Ack("li"), 2)
    assert ack.alarm.state is S.ACKED
    engine.evaluate(fire_reading(3, "d", 0.0))
    assert engine.alarms["fire:d:1"].state is S.LATCHED
    (reset,) = engine.command("fire:d:1", Reset("li"), 4)
    assert reset.alarm.state is S.NORMAL
    assert engine.active_count == 0


def test_engine_restored_alarms_keep_their_state() -> None:
    """Alarms loaded from the store carry on: an active one is not raised twice."""
    engine = RuleEngine(devices={"d": DeviceRules()})
    engine.evaluate(fire_reading(0, "d"))
    saved = list(engine.alarms.values())
    again = RuleEngine(devices={"d": DeviceRules()}, alarms=saved)
    assert again.evaluate(fire_reading(5, "d")) == []
    (latched,) = again.evaluate(fire_reading(6, "d", 0.0))
    assert latched.kind is K.LATCHED
    assert latched.event_id == f"fire:d:1#{saved[0].seq + 1}"
    assert replace(saved[0]).seq == 1


def test_clock_jump_neither_raises_nor_delays() -> None:
    """A +2 h step during an on-delay completes nothing by itself, and the remaining delay
    still runs; rule timers restart (first verdicts again)."""
    from rules.overcurrent import Overcurrent, OvercurrentConfig
    from rules.policy import Policies

    engine = RuleEngine(devices={"m": DeviceRules(rules=(Flags(), Overcurrent(
        63, OvercurrentConfig(on_delay=3))))},
        policies=Policies(rules={"detector-fault": {"on_delay": 10.0}}))
    amps = [Reading(ts=t, device="m", quantity=Quantity.CURRENT, value=80.0, channel="L1")
            for t in (0.0, 1.0)]
    assert [e for r in amps for e in engine.evaluate(r)] == []
    engine.evaluate(Reading(ts=1.0, device="m", quantity=Quantity.SMOKE_FAULT, value=1.0))
    engine.clock_jumped(7200.0)
    assert engine.tick(7201.0) == []  # the jump alone raises nothing
    later = [Reading(ts=t, device="m", quantity=Quantity.CURRENT, value=80.0, channel="L1")
             for t in (7202.0, 7204.0, 7205.0)]
    raised = [(e.ts, e.alarm.rule) for r in later for e in engine.evaluate(r)]
    assert raised == [(7205.0, "overcurrent")]  # the on-delay restarted at the jump
    assert engine.tick(7210.0) == []  # the alarm's own on-delay kept its remaining 10 s:
    assert [(e.ts, e.alarm.rule) for e in engine.tick(7211.0)] == [(7211.0, "detector-fault")]


def test_an_event_that_needs_no_acknowledgement_is_gone_when_it_ends() -> None:
    """Info events (a fire-water pump start): raised, then back to normal when the condition
    goes, with nobody asked to acknowledge; an ordinary alarm returns unacknowledged."""
    event_policy = AlarmPolicy(acknowledge=False)
    a, events = run([(0, ON), (3, OFF)], event_policy)
    assert events[0][1:] == (K.RAISED, S.UNACKED)
    assert a.state is S.NORMAL
    assert events[-1][2] is S.NORMAL
    ordinary, _ = run([(0, ON), (3, OFF)])
    assert ordinary.state is S.RTN_UNACKED
