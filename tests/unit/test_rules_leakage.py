"""Leakage: alarm and pre-alarm with on-delay and deadband, and the rising trend."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.measurements import Quality, Quantity, Reading
from rules import leakage
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import Condition, EventKind, Severity

RULE = leakage.Leakage()


def ma(ts: float, value: float, channel: str | None = "1",
       quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "rcm", Quantity.RESIDUAL_CURRENT, value, quality, channel)


def feed(rule: leakage.Leakage, readings: list[Reading]) -> list[Condition]:
    state: leakage.LeakageState | None = None
    out: list[Condition] = []
    for reading in readings:
        state, found = rule.step(state, reading)
        out += found
    return out


def verdicts(out: list[Condition], only: str | None = None) -> list[tuple[str, float, bool]]:
    return [(c.rule, c.ts, c.active) for c in out if only is None or c.rule == only]


def every_second(*runs: tuple[float, float, float]) -> list[Reading]:
    """(from, to, mA) runs at 1 s polls, ``to`` excluded."""
    return [ma(t, value) for start, end, value in runs for t in range(int(start), int(end))]


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(every_second((0, 3, 150)),
                 [("leakage", 0, False), ("leakage-prealarm", 0, False)], id="healthy"),
    pytest.param(every_second((0, 7, 320)), [("leakage", 5, True)], id="alarm-after-5s"),
    pytest.param(every_second((0, 3, 320), (3, 4, 150), (4, 10, 320)),
                 [("leakage", 3, False), ("leakage-prealarm", 3, False), ("leakage", 9, True)],
                 id="dip-restarts-on-delay"),
    pytest.param(every_second((0, 6, 320), (6, 8, 280), (8, 9, 260)),
                 [("leakage", 5, True), ("leakage", 8, False)], id="deadband-to-270mA"),
    pytest.param(every_second((0, 31, 220)),
                 [("leakage", 0, False), ("leakage-prealarm", 30, True)],
                 id="prealarm-at-70pct-after-30s"),
    pytest.param(every_second((0, 31, 220), (31, 33, 195), (33, 34, 185)),
                 [("leakage", 0, False), ("leakage-prealarm", 30, True),
                  ("leakage-prealarm", 33, False)], id="prealarm-clears-below-189mA"),
    pytest.param(every_second((0, 40, 320)),
                 [("leakage", 5, True), ("leakage-prealarm", 30, True)],
                 id="both-levels-active"),
])
def test_leakage_levels(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """300 mA (GB 50116) after 5 s; pre-alarm at 210 mA after 30 s; 90 % deadbands."""
    assert verdicts(feed(RULE, readings)) == expected


def test_alarm_setting_and_messages() -> None:
    """The alarm setting is configurable; messages carry value, limit, channel and units."""
    out = feed(leakage.Leakage(alarm_ma=500), every_second((0, 40, 320)))
    # 320 mA is below the 350 mA pre-alarm of a 500 mA setting
    assert verdicts(out) == [("leakage", 0, False), ("leakage-prealarm", 0, False)]
    (alarm,) = [c for c in feed(RULE, every_second((0, 6, 320))) if c.active]
    assert (alarm.key, alarm.severity, alarm.value, alarm.limit) == (
        "leakage:rcm:1", Severity.CRITICAL, 320, 300)
    assert alarm.message == ("residual current ch 1 320 mA at or above the 300 mA alarm for "
                             "5 s (alarm setting 300 mA, GB 50116 §9.2.3)")


def test_bad_quality_and_other_quantities_are_ignored() -> None:
    """A sentinel or a temperature never moves the leakage state."""
    for reading in (ma(0, 999, quality=Quality.BAD),
                    Reading(0, "rcm", Quantity.TEMPERATURE, 999, channel="1")):
        assert RULE.step(None, reading) == (None, [])


def ramp(start: float, end: float, minutes: int, every: int = 10) -> list[Reading]:
    """A straight line from ``start`` to ``end`` mA over ``minutes``, with a ±2 mA wobble."""
    n = minutes * 60 // every
    return [ma(i * every, start + (end - start) * i / n + (2 if i % 2 else -2))
            for i in range(n + 1)]


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(ramp(120, 170, 40), [("leakage-rising", 1440, True)],
                 id="steady-rise-of-37mA-in-30min"),
    pytest.param(ramp(120, 130, 40), [("leakage-rising", 1440, False)], id="slow-drift"),
    pytest.param([ma(t, 120 if t < 900 else 160) for t in range(0, 2400, 10)],
                 [("leakage-rising", 1440, False)], id="one-load-step-is-not-a-trend"),
    pytest.param(ramp(120, 170, 40) + [ma(2400 + t, 110) for t in range(0, 1200, 10)],
                 [("leakage-rising", 1440, True), ("leakage-rising", 2640, False)],
                 id="falls-back"),
    pytest.param(ramp(60, 90, 5), [], id="window-not-covered-yet"),
])
def test_leakage_rising(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """A least-squares rise of 30 mA per 30 min with a good fit warns; steps and drift do not."""
    assert verdicts(feed(RULE, readings), "leakage-rising") == expected


def test_rising_stops_at_the_prealarm() -> None:
    """Once the pre-alarm range is reached the trend warning hands over to the pre-alarm."""
    out = feed(RULE, ramp(150, 250, 50))
    rising = [c for c in out if c.rule == "leakage-rising"]
    assert [(c.ts, c.active) for c in rising] == [(1440, True), (1920, False)]
    assert rising[0].message == ("residual current ch 1 rising steadily: +60 mA in 30 min "
                                 "(warning at +30 mA), now 196 mA, pre-alarm at 210 mA")
    assert "rose into the pre-alarm range" in rising[-1].message
    assert ("leakage-prealarm", True) in [(c.rule, c.active) for c in out]


def only(name: str) -> Any:
    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == name else SimpleNamespace(enabled=False)
    return params


def test_catalog_builds_leakage_and_engine_raises_it() -> None:
    """Residual-current detectors get the rule, meters do not; the engine raises leakage."""
    devices = [DeviceInfo(name="rcm", kind="detector", profile_kind="detector", poll=1,
                          points=frozenset({(Quantity.RESIDUAL_CURRENT, "1"),
                                            (Quantity.TEMPERATURE, "1")})),
               DeviceInfo(name="m1", kind="incomer", points=frozenset({(Quantity.CURRENT, "L1")}),
                          rated_current=63)]
    assert CATALOG["leakage"] is leakage.SPEC
    built = build_rules(SiteInfo(), devices, only("leakage"))
    assert [type(r).__name__ for r in built["rcm"]] == ["Leakage"]
    assert built["m1"] == []
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(r)) for n, r in built.items()})
    events = [e for t in range(10) for e in engine.evaluate(ma(t, 150 if t < 2 else 340))]
    assert [(e.ts, e.kind, e.alarm.alarm_id) for e in events] == [
        (7, EventKind.RAISED, "leakage:rcm:1")]


@pytest.mark.parametrize(("table", "error"), [
    ({"alarm_ma": 10}, "greater than or equal to 20"),
    ({"alarm_ma": 1500}, "less than or equal to 1000"),
    ({"prealarm_pct": 100}, "less than 100"),
    ({"trend_window": "1m"}, "greater than or equal to 300"),
])
def test_config_is_validated(table: dict[str, Any], error: str) -> None:
    """[rules.leakage] follows the detectors' 20-1000 mA setting range."""
    with pytest.raises(ValidationError, match=error):
        TypeAdapter(leakage.Leakage).validate_python(table)
    assert TypeAdapter(leakage.Leakage).validate_python({"alarm_ma": 500}).alarm_ma == 500
