"""Overload (thermal I²t model), phase imbalance and neutral: table-driven, explicit times."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from core.measurements import Quality, Quantity, Reading
from rules import overload
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import Condition, EventKind, Severity

IN = 63.0
RULE = overload.Thermal(rated_current=IN, curve="C")


def amps(ts: float, value: float, channel: str | None = "L1",
         quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "m1", Quantity.CURRENT, value, quality, channel)


def feed(rule: Any, readings: list[Reading]) -> tuple[Any, list[Any]]:
    state: Any = None
    out: list[Any] = []
    for reading in readings:
        state, found = rule.step(state, reading)
        out += found
    return state, out


def verdicts(out: list[Any]) -> list[tuple[str, float, bool]]:
    return [(c.rule, c.ts, c.active) for c in out if isinstance(c, Condition)]


def steady(multiple: float, until: float, every: float = 10.0) -> list[Reading]:
    """A cold circuit (0 A at t=0), then ``multiple``×In from t=every on."""
    return [amps(0, 0.0)] + [amps(t, IN * multiple)
                             for t in range(int(every), int(until), int(every))]


def first_at(out: list[Any], rule: str) -> float | None:
    return next((c.ts for c in out if isinstance(c, Condition) and c.rule == rule and c.active),
                None)


@pytest.mark.parametrize(("multiple", "earliest", "latest"), [
    pytest.param(1.45, 240, 260, id="1.45In-conventional-trip-well-inside-1h"),
    pytest.param(2.55, 50, 60, id="2.55In-within-60s"),
    pytest.param(2.0, 100, 130, id="2In"),
])
def test_model_reaches_trip_point_within_the_standards_times(
        multiple: float, earliest: float, latest: float) -> None:
    """From cold, the model reaches 100 % no later than IEC 60898-1 lets the breaker trip."""
    rule = overload.Thermal(IN, params=overload.OverloadConfig(alarm_pct=100,
                                                                 alarm_clear_pct=90))
    _, out = feed(rule, steady(multiple, 4000, every=2))
    trip = first_at(out, "overload")
    assert trip is not None
    assert earliest <= trip <= latest


@pytest.mark.parametrize(("multiple", "expected_pct"), [
    pytest.param(1.13, 100.0, id="non-tripping-current-is-the-asymptote"),
    pytest.param(1.0, 78.3, id="rated-current"),
    pytest.param(0.5, 19.6, id="half-load"),
    pytest.param(0.0, 0.0, id="no-load"),
])
def test_steady_state_thermal_load(multiple: float, expected_pct: float) -> None:
    """A sustained current settles at (I / 1.13 In)²; 1.13·In never passes 100 %."""
    _, out = feed(RULE, steady(multiple, 3 * 3600, every=60))
    loads = [r.value for r in out if isinstance(r, Reading)]
    assert loads[-1] == pytest.approx(expected_pct, abs=0.1)
    assert max(loads) <= 100.0


@pytest.mark.parametrize(("series", "expected"), [
    pytest.param([(0, 30.0)], [("overload", 0, False), ("overload-warning", 0, False)],
                 id="healthy-first-verdicts"),
    pytest.param([(0, 0.0), (60, 100.8), (120, 100.8), (180, 100.8), (240, 100.8)],
                 [("overload", 0, False), ("overload-warning", 0, False),
                  ("overload", 180, True)], id="1.6In-raises-at-90pct"),
    pytest.param([(0, 0.0), (60, 100.8), (120, 100.8), (180, 100.8), (240, 40.0),
                  (300, 40.0), (360, 40.0)],
                 [("overload", 0, False), ("overload-warning", 0, False),
                  ("overload", 180, True), ("overload", 300, False)],
                 id="cools-below-clear-level"),
    pytest.param([(0, 0.0), (60, 100.8), (120, 100.8), (180, 100.8), (190, 68.0),
                  (200, 68.0), (400, 68.0)],
                 [("overload", 0, False), ("overload-warning", 0, False),
                  ("overload", 180, True), ("overload-warning", 400, True)],
                 id="deadband-holds-at-86pct"),
    pytest.param([(0, 52.0), (100, 52.0), (299, 52.0), (300, 52.0), (400, 52.0)],
                 [("overload", 0, False), ("overload-warning", 300, True)],
                 id="warning-after-5min-at-83pct-In"),
    pytest.param([(0, 52.0), (200, 52.0), (250, 45.0), (400, 52.0), (600, 52.0)],
                 [("overload", 0, False), ("overload-warning", 250, False)],
                 id="dip-below-warning-restarts-on-delay"),
    pytest.param([(0, 52.0), (300, 52.0), (310, 48.0), (320, 46.0)],
                 [("overload", 0, False), ("overload-warning", 300, True),
                  ("overload-warning", 320, False)], id="warning-deadband-75pct"),
])
def test_overload_series(series: list[tuple[float, float]],
                         expected: list[tuple[str, float, bool]]) -> None:
    """Conditions on first verdict and on change only; deadbands and on-delays hold."""
    _, out = feed(RULE, [amps(t, a) for t, a in series])
    assert verdicts(out) == expected


def test_derived_thermal_load_once_per_phase_current() -> None:
    """One thermal_load % reading per good phase current, on that phase; nothing else."""
    readings = [amps(0, 63, "L2"), amps(0, 500, "total"), amps(0, 500, quality=Quality.BAD),
                Reading(0, "m1", Quantity.VOLTAGE, 230, channel="L1"), amps(0, 10, None)]
    derived = []
    for reading in readings:
        _, out = RULE.step(None, reading)
        derived += [r for r in out if isinstance(r, Reading)]
    assert [(r.quantity, r.channel, r.value) for r in derived] == [
        (Quantity.THERMAL_LOAD, "L2", 78.3),  # steady state of In (below the start cap)
        (Quantity.THERMAL_LOAD, None, 2.0),  # a single-phase meter: no phase
    ]
    assert Quantity.THERMAL_LOAD.spec.field == "thermal_load_pct"


def test_first_reading_is_capped_and_repeated_timestamps_do_not_heat() -> None:
    """A restart mid-overload starts at 80 %, not at a one-sample alarm; same ts: no time."""
    state, out = RULE.step(None, amps(100, 3 * IN))
    assert state is not None
    assert state.heat == pytest.approx(overload.START_CAP)
    assert verdicts(out) == [("overload", 100, False)]
    again, out = RULE.step(state, amps(100, 3 * IN))
    assert again is not None
    assert again.heat == state.heat
    late, _ = RULE.step(again, amps(90, 3 * IN))  # out of order: ignored for heating
    assert late is not None
    assert (late.ts, late.heat) == (100, state.heat)


def test_overload_message_predicts_the_trip() -> None:
    """The electrician reads the phase, the load, the breaker and how long it has left."""
    _, out = feed(RULE, [amps(0, 0.0, "L2"), amps(60, 100.8, "L2"), amps(120, 100.8, "L2"),
                         amps(180, 100.8, "L2")])
    (alarm,) = [c for c in out if isinstance(c, Condition) and c.active]
    assert alarm.key == "overload:m1:L2"
    assert alarm.severity is Severity.CRITICAL
    assert alarm.message.startswith("L2 thermal load 9")
    assert "100.8 A on a 63 A C-curve breaker: may trip within" in alarm.message
    assert "(trip limit 71 A)" in alarm.message


def three(ts: float, i1: float, i2: float, i3: float, n: float | None = None) -> list[Reading]:
    out = [amps(ts, i1, "L1"), amps(ts, i2, "L2"), amps(ts, i3, "L3")]
    return out + ([amps(ts, n, "N")] if n is not None else [])


@pytest.mark.parametrize(("phases", "neutral"), [
    pytest.param((63, 0, 0), 63.0, id="one-phase-loaded"),
    pytest.param((40, 40, 40), 0.0, id="balanced"),
    pytest.param((80, 10, 12), 69.0, id="unbalanced"),
    pytest.param((60, 60, 0), 60.0, id="two-phases"),
])
def test_neutral_estimate_is_the_120_degree_vector_sum(
        phases: tuple[float, float, float], neutral: float) -> None:
    """|I_N| = sqrt(a²+b²+c²-ab-bc-ca) for fundamentals 120° apart."""
    a, b, c = phases
    rule = overload.Balance(1.0, params=overload.OverloadConfig(
        neutral_warn_pct=1e-9, neutral_alarm_pct=1e9, neutral_on_delay=0))
    _, out = feed(rule, three(0, a, b, c))
    conds = [x for x in out if x.rule == overload.NEUTRAL_RULE]
    expected = math.sqrt(a * a + b * b + c * c - a * b - b * c - c * a)
    assert expected == pytest.approx(neutral, abs=0.5)
    assert conds[-1].value == pytest.approx(expected, abs=0.01)


BALANCE = overload.Balance(rated_current=IN)


@pytest.mark.parametrize(("series", "expected"), [
    pytest.param([three(0, 20, 20, 20), three(700, 20, 20, 20)],
                 [("phase-imbalance", 0, False), ("neutral-overload", 0, False)],
                 id="balanced"),
    pytest.param([three(0, 30, 10, 12), three(300, 30, 10, 12), three(600, 30, 10, 12)],
                 [("neutral-overload", 0, False), ("phase-imbalance", 600, True)],
                 id="imbalance-after-10min"),
    pytest.param([three(0, 6, 1, 2), three(600, 6, 1, 2)],
                 [("phase-imbalance", 0, False), ("neutral-overload", 0, False)],
                 id="light-load-is-not-imbalance"),
    pytest.param([three(0, 30, 10, 12), three(600, 30, 10, 12), three(610, 20, 16, 17)],
                 [("neutral-overload", 0, False), ("phase-imbalance", 600, True),
                  ("phase-imbalance", 610, False)], id="imbalance-clears"),
    pytest.param([three(0, 90, 10, 10), three(30, 90, 10, 10), three(60, 90, 10, 10),
                  three(90, 120, 10, 10), three(150, 120, 10, 10), three(160, 30, 30, 30)],
                 [("neutral-overload", 60, True), ("neutral-overload", 150, True),
                  ("neutral-overload", 160, False)], id="neutral-warning-critical-clear"),
])
def test_balance_series(series: list[list[Reading]],
                        expected: list[tuple[str, float, bool]]) -> None:
    """Imbalance needs load and time; the neutral escalates warning -> critical -> clear."""
    _, out = feed(BALANCE, [r for group in series for r in group])
    got = verdicts(out)
    if expected and all(r == "neutral-overload" for r, _, _ in expected):
        got = [v for v in got if v[0] == "neutral-overload"]
    assert got == expected


def test_neutral_severity_and_message() -> None:
    """Warning at In, critical at 1.45·In, with both the estimate and the phases named."""
    rule = overload.Balance(IN, params=overload.OverloadConfig(neutral_on_delay=0))
    _, out = feed(rule, three(0, 80, 10, 12) + three(5, 120, 10, 10))
    levels = [(c.severity, c.active) for c in out if c.rule == overload.NEUTRAL_RULE]
    assert levels == [(Severity.WARNING, True), (Severity.CRITICAL, True)]
    first = next(c for c in out if c.rule == overload.NEUTRAL_RULE)
    assert first.key == "neutral-overload:m1"
    assert "neutral current 69 A (estimated from L1 80 A, L2 10 A, L3 12 A" in first.message


def test_measured_neutral_wins_and_stale_phases_are_not_combined() -> None:
    """A meter's own N current is used; a phase older than max_age is not compared."""
    rule = overload.Balance(IN, True, overload.OverloadConfig(neutral_on_delay=0))
    _, out = feed(rule, three(0, 20, 20, 20, n=70))  # balanced phases, harmonic-laden N
    (cond,) = [c for c in out if c.rule == overload.NEUTRAL_RULE and c.active]
    assert cond.value == 70
    assert "measured" in cond.message
    _, out = feed(BALANCE, [amps(0, 60, "L1"), amps(100, 5, "L2"), amps(100, 5, "L3")])
    assert verdicts(out) == []


def meter(name: str, **kw: Any) -> DeviceInfo:
    points = frozenset((Quantity.CURRENT, c) for c in kw.pop("phases", ("L1", "L2", "L3")))
    return DeviceInfo(name=name, kind="incomer", profile_kind="meter", points=points, poll=2,
                      **kw)


def only(name: str) -> Any:
    """Catalog parameters with every other rule disabled."""
    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == name else SimpleNamespace(enabled=False)
    return params


def test_catalog_builds_overload_and_engine_raises_it() -> None:
    """Meters with a rating get the model (and balance if 3-phase); the engine raises overload."""
    devices = [meter("m1", rated_current=IN), meter("m2"),
               meter("m3", rated_current=16, phases=(None,), breaker_curve="B"),
               DeviceInfo(name="rcm", kind="detector",
                          points=frozenset({(Quantity.RESIDUAL_CURRENT, "1")}))]
    assert CATALOG["overload"] is overload.SPEC
    built = build_rules(SiteInfo(), devices, only("overload"))
    assert [type(r).__name__ for r in built["m1"]] == ["Thermal", "Balance"]
    assert built["m2"] == []
    assert built["rcm"] == []
    assert [type(r).__name__ for r in built["m3"]] == ["Thermal"]
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(r)) for n, r in built.items()})
    events = []
    for ts in range(0, 400, 10):
        for reading in three(ts, 30, 100.8 if ts else 30, 30):
            events += engine.evaluate(reading)
    raised = [(e.ts, e.alarm.alarm_id) for e in events if e.kind is EventKind.RAISED]
    # 100.8 A on L2 with 30 A on L1 and L3 leaves about 71 A in the neutral
    assert raised == [(70, "neutral-overload:m1"), (140, "overload:m1:L2"),
                      (310, "overload-warning:m1:L2")]
    derived = engine.take_derived()
    assert {r.channel for r in derived} == {"L1", "L2", "L3"}
    assert all(r.quantity is Quantity.THERMAL_LOAD for r in derived)


@pytest.mark.parametrize(("table", "error"), [
    ({"alarm_pct": 50}, "alarm_clear_pct 80 is above alarm_pct 50"),
    ({"neutral_alarm_pct": 90}, "neutral_alarm_pct 90 is below neutral_warn_pct 100"),
    ({"time_constant": "5s"}, "greater than or equal to 10"),
    ({"bogus": 1}, "Unexpected keyword argument"),
])
def test_config_is_validated(table: dict[str, Any], error: str) -> None:
    """Bad [rules.overload] tables are refused with the reason."""
    from pydantic import TypeAdapter, ValidationError
    with pytest.raises(ValidationError, match=error):
        TypeAdapter(overload.OverloadConfig).validate_python(table)
    assert TypeAdapter(overload.OverloadConfig).validate_python(
        {"warn_on_delay": "10m"}).warn_on_delay == 600
