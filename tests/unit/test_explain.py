"""The demo's verdicts: each alarm is matched to the scenario event that explains it, or not."""

from __future__ import annotations

from simulator.community.explain import RaisedAlarm, cause_of, explain, unalarmed
from simulator.community.scenario import load_scenario
from simulator.community.truth import TruthRecord, ground_truth

EVENING = load_scenario("evening")
TRUTH = ground_truth(EVENING)


def _event(label: str) -> TruthRecord:
    return next(r for r in TRUTH if r.label == label)


def test_an_alarm_of_the_events_kind_on_its_device_is_explained() -> None:
    leak = _event("leakage")
    alarm = RaisedAlarm(f"leakage-prealarm:{leak.target}:1", leak.target, leak.start + 600)
    assert cause_of(alarm, TRUTH) == leak


def test_a_fire_panel_component_is_explained_by_the_smoke_fire_it_shows() -> None:
    fire = _event("fire")
    panel = next(p.device for p in fire.points if p.device != fire.target)
    assert cause_of(RaisedAlarm(f"fire:{panel}:1-1-2", panel, fire.start + 2), TRUTH) == fire


def test_the_wrong_rule_the_wrong_device_or_the_wrong_time_is_unexplained() -> None:
    leak = _event("leakage")
    other = next(r for r in TRUTH if r.target != leak.target)
    assert cause_of(RaisedAlarm(f"comms:{leak.target}", leak.target, leak.start + 60),
                    TRUTH) is None
    assert cause_of(RaisedAlarm(f"leakage:{other.target}:1", other.target, leak.start + 60),
                    TRUTH) is None
    assert cause_of(RaisedAlarm(f"leakage:{leak.target}:1", leak.target, leak.start - 60),
                    TRUTH) is None
    assert cause_of(RaisedAlarm("alarm-flood:firewarden", "firewarden", leak.start + 60),
                    TRUTH) is None


def test_explain_keeps_one_verdict_per_alarm_and_lists_unalarmed_events() -> None:
    leak, fire = _event("leakage"), _event("fire")
    first = RaisedAlarm(f"leakage:{leak.target}:1", leak.target, leak.start + 900)
    again = RaisedAlarm(first.alarm_id, leak.target, leak.start + 4000)
    stray = RaisedAlarm("comms-stale:b12-box1", "b12-box1", leak.start + 10)
    verdicts = explain([again, stray, first], TRUTH)
    assert [v.alarm for v in verdicts] == [stray, first]
    assert verdicts[0].cause is None
    assert verdicts[1].cause == leak
    assert verdicts[1].delay == 900
    missed = unalarmed(TRUTH, verdicts, until=fire.start)
    assert leak not in missed
    assert fire in missed
    assert all(r.start <= fire.start for r in missed)
