"""Overcurrent rule and alarm state machine: pure, table-driven, time passed in."""

from __future__ import annotations

import pytest

from core.measurements import Quality, Quantity, Reading
from rules import overcurrent
from rules.alarm import Ack, CommandRefused, new_alarm, transition
from rules.engine import DeviceRules, RuleEngine, UnknownAlarm
from rules.model import AlarmState, Condition, EventKind, Severity

PARAMS = overcurrent.Overcurrent(63, overcurrent.OvercurrentConfig(factor=1.0, clear_factor=0.95,
                                                                  on_delay=5))


def amps(ts: float, value: float, channel: str = "L1", quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "m1", Quantity.CURRENT, value, quality, channel)


def run(series: list[tuple[float, float]]) -> list[tuple[float, bool]]:
    state = overcurrent.OvercurrentState()
    out: list[tuple[float, bool]] = []
    for ts, value in series:
        state, conds = overcurrent.evaluate(state, amps(ts, value), PARAMS)
        out += [(c.ts, c.active) for c in conds]
    return out


@pytest.mark.parametrize(("series", "expected"), [
    pytest.param([(0, 70), (4, 70), (5, 70)], [(5, True)], id="raises-after-on-delay"),
    pytest.param([(0, 70), (4.97, 70)], [(4.97, True)], id="poll-jitter-tolerated"),
    pytest.param([(0, 70), (4.9, 70)], [], id="too-short-by-more-than-jitter"),
    pytest.param([(0, 70), (4, 70), (4.5, 50), (6, 70), (10, 70)], [], id="spike-resets-delay"),
    pytest.param([(0, 70), (5, 70), (6, 61), (7, 59)], [(5, True), (7, False)],
                 id="deadband-then-clear"),
    pytest.param([(0, 63), (10, 63)], [], id="at-limit-is-not-above"),
    pytest.param([(0, 70), (5, 70), (6, 80), (7, 90)], [(5, True)], id="raised-once"),
])
def test_overcurrent_series(series: list[tuple[float, float]],
                            expected: list[tuple[float, bool]]) -> None:
    """The rule raises only after the on-delay, once, and clears below the deadband."""
    assert run(series) == expected


def test_overcurrent_ignores_totals_bad_quality_and_other_quantities() -> None:
    """Totals, bad values and voltages never trip the per-phase rule."""
    state = overcurrent.OvercurrentState()
    for reading in (amps(0, 500, "total"), amps(0, 500, quality=Quality.BAD),
                    Reading(0, "m1", Quantity.VOLTAGE, 500, channel="L1")):
        state, conds = overcurrent.evaluate(state, reading, PARAMS)
        assert conds == []
    assert state == overcurrent.OvercurrentState()


def cond(active: bool, ts: float = 0) -> Condition:
    return Condition("overcurrent", "m1", active, Severity.CRITICAL, ts, 70, 63, "L1", "msg")


def test_alarm_lifecycle_ack_then_clear() -> None:
    """normal -> unacked -> acked -> removed, one event each."""
    alarm = new_alarm(cond(True), {"building": "12"})
    alarm, ev = transition(alarm, cond(True, 1), 1)
    assert (alarm.state, [e.kind for e in ev]) == (AlarmState.UNACKED, [EventKind.RAISED])
    assert alarm.raised_at == 1
    assert alarm.context == {"building": "12"}
    alarm, ev = transition(alarm, cond(True, 2), 2)
    assert ev == []
    assert alarm.state is AlarmState.UNACKED
    alarm, ev = transition(alarm, Ack("li"), 3)
    assert (alarm.state, alarm.acked_by, ev[0].kind) == (AlarmState.ACKED, "li", EventKind.ACKED)
    alarm, ev = transition(alarm, cond(False, 4), 4)
    assert (alarm.state, ev[0].kind, ev[0].previous) == (
        AlarmState.NORMAL, EventKind.REMOVED, AlarmState.ACKED)


def test_alarm_clear_then_ack_and_reraise() -> None:
    """A cleared unacked alarm waits for ack; if it returns first, it is raised again."""
    alarm, _ = transition(new_alarm(cond(True), {}), cond(True, 1), 1)
    alarm, ev = transition(alarm, cond(False, 2), 2)
    assert (alarm.state, ev[0].kind) == (AlarmState.RTN_UNACKED, EventKind.CLEARED)
    alarm, ev = transition(alarm, cond(True, 3), 3)
    assert (alarm.state, alarm.activations, ev[0].kind) == (AlarmState.UNACKED, 2, EventKind.RAISED)
    alarm, _ = transition(alarm, cond(False, 4), 4)
    alarm, ev = transition(alarm, Ack("wang"), 5)
    assert (alarm.state, ev[0].kind) == (AlarmState.NORMAL, EventKind.REMOVED)


def test_ack_of_normal_alarm_is_refused() -> None:
    """Acknowledging something not in alarm is refused with the reason, changing nothing."""
    alarm = new_alarm(cond(True), {})
    with pytest.raises(CommandRefused, match="is normal: nothing to acknowledge"):
        transition(alarm, Ack("x"), 1)


def test_engine_routes_per_phase_and_keeps_alarms() -> None:
    """Each phase is its own alarm; unconfigured devices are ignored."""
    engine = RuleEngine(devices={"m1": DeviceRules(rules=(PARAMS,), context={"box": "1"})})
    events = []
    for ts in range(0, 7):
        events += engine.evaluate(amps(ts, 70, "L1"))
        events += engine.evaluate(amps(ts, 30, "L2"))
        events += engine.evaluate(Reading(ts, "other", Quantity.CURRENT, 999, channel="L1"))
    assert [e.alarm.alarm_id for e in events] == ["overcurrent:m1:L1"]
    assert events[0].alarm.context == {"box": "1"}
    assert engine.active_count == 1
    assert engine.acknowledge("overcurrent:m1:L1", "li", 8)[0].kind is EventKind.ACKED
    with pytest.raises(UnknownAlarm):
        engine.acknowledge("nope", "li", 8)
