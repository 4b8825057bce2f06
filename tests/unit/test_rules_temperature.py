"""Temperature: over-temperature levels, rate of rise and the spread between a box's probes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.measurements import Quality, Quantity, Reading
from rules import temperature
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import Condition, EventKind, Severity

RULE = temperature.Temperature()
SPREAD = temperature.Spread()
OPEN = 3276.7  # the 0x7FFF sentinel scaled by 0.1: the driver marks it bad


def deg(ts: float, value: float, channel: str = "1", quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "td", Quantity.TEMPERATURE, value, quality, channel)


def feed(rule: Any, readings: list[Reading]) -> list[Condition]:
    state: Any = None
    out: list[Condition] = []
    for reading in readings:
        state, found = rule.step(state, reading)
        out += found
    return out


def verdicts(out: list[Condition], *rules: str) -> list[tuple[str, float, bool]]:
    return [(c.rule, c.ts, c.active) for c in out if not rules or c.rule in rules]


def series(*runs: tuple[float, float, float], every: int = 5) -> list[Reading]:
    """(from, to, °C) runs polled every ``every`` s, ``to`` excluded."""
    return [deg(t, v) for start, end, v in runs for t in range(int(start), int(end), every)]


LEVELS = ("overtemperature", "overtemperature-warning")


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(series((0, 20, 35)),
                 [("overtemperature", 0, False), ("overtemperature-warning", 0, False)],
                 id="healthy"),
    pytest.param(series((0, 20, 62)), [("overtemperature", 0, False),
                                       ("overtemperature-warning", 10, True)],
                 id="warning-after-10s"),
    pytest.param(series((0, 20, 85)), [("overtemperature", 10, True),
                                       ("overtemperature-warning", 10, True)],
                 id="alarm-after-10s"),
    pytest.param(series((0, 5, 85), (5, 10, 70), (10, 30, 85)),
                 [("overtemperature", 5, False), ("overtemperature-warning", 10, True),
                  ("overtemperature", 20, True)], id="dip-restarts-the-alarm-delay"),
    pytest.param(series((0, 15, 85), (15, 25, 77), (25, 30, 74)),
                 [("overtemperature", 10, True), ("overtemperature-warning", 10, True),
                  ("overtemperature", 25, False)], id="deadband-5C"),
])
def test_overtemperature_levels(readings: list[Reading],
                                expected: list[tuple[str, float, bool]]) -> None:
    """60 °C warns and 80 °C alarms after 10 s; each clears 5 °C below its limit."""
    assert verdicts(feed(RULE, readings), *LEVELS) == expected


def test_overtemperature_message_and_bad_quality() -> None:
    """Value, limit and units in one line; an open probe (0x7FFF) never alarms."""
    (alarm,) = [c for c in feed(RULE, series((0, 15, 83.5))) if c.rule == "overtemperature"]
    assert (alarm.key, alarm.severity, alarm.value, alarm.limit) == (
        "overtemperature:td:1", Severity.CRITICAL, 83.5, 80)
    assert alarm.message == ("probe 1 83.5 °C at or above the 80 °C alarm for 10 s "
                             "(PVC insulation is rated 70 °C)")
    assert RULE.step(None, deg(0, OPEN, quality=Quality.BAD)) == (None, [])


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(series((0, 600, 30)), [("temperature-rise", 0, False)], id="flat"),
    pytest.param([deg(t, 30 + t / 60) for t in range(0, 900, 30)],
                 [("temperature-rise", 0, False), ("temperature-rise", 480, True)],
                 id="1C-per-min-warns-after-8-min"),
    pytest.param([deg(t, 30 + t / 300) for t in range(0, 3600, 30)],
                 [("temperature-rise", 0, False)], id="slow-warming-is-fine"),
    pytest.param([deg(t, 30 + min(t, 600) / 60) for t in range(0, 1800, 30)],
                 [("temperature-rise", 0, False), ("temperature-rise", 480, True),
                  ("temperature-rise", 960, False)], id="clears-once-the-plateau-holds"),
])
def test_rate_of_rise(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """8 °C within 10 min warns even far below the limits; it clears below half of that."""
    assert verdicts(feed(RULE, readings), "temperature-rise") == expected


def four(ts: float, *values: float) -> list[Reading]:
    return [deg(ts, v, str(i + 1), Quality.BAD if v == OPEN else Quality.GOOD)
            for i, v in enumerate(values)]


def probes(start: int, end: int, *values: float, every: int = 30) -> list[Reading]:
    """The four probes polled every ``every`` s from ``start`` to ``end`` (excluded)."""
    return [r for t in range(start, end, every) for r in four(t, *values)]


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(probes(0, 600, 30, 31, 32, 30), [("temperature-spread", 0, False)], id="even"),
    pytest.param(probes(0, 330, 30, 48, 32, 30), [("temperature-spread", 300, True)],
                 id="one-hot-terminal-for-5-min"),
    pytest.param(probes(0, 310, 30, 48, 32, 30) + four(310, 30, 42, 32, 30)
                 + four(320, 30, 39, 32, 30),
                 [("temperature-spread", 300, True), ("temperature-spread", 320, False)],
                 id="deadband-to-10C"),
    pytest.param(probes(0, 600, 30, OPEN, 32, 30), [("temperature-spread", 0, False)],
                 id="open-probe-is-left-out"),
    pytest.param(probes(0, 200, 30, 48, 32, 30) + probes(200, 230, 30, OPEN, 32, 30)
                 + probes(230, 560, 30, 48, 32, 30),
                 [("temperature-spread", 200, False), ("temperature-spread", 530, True)],
                 id="open-probe-restarts-the-delay"),
])
def test_spread(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """Hottest minus coldest probe above 15 °C for 5 min warns (NETA MTS: major)."""
    assert verdicts(feed(SPREAD, readings)) == expected


def test_spread_message_and_stale_probes() -> None:
    """The message names both probes; a probe silent for over a minute is not compared."""
    out = feed(SPREAD, probes(0, 330, 30, 48, 32, 30))
    assert out[-1].message == ("probe 2 48.0 °C is 18.0 °C hotter than probe 1 30.0 °C for "
                               "5 min (limit 15 °C): check that terminal")
    assert out[-1].key == "temperature-spread:td"
    assert feed(SPREAD, [deg(0, 80, "2"), deg(100, 30, "1"), deg(500, 30, "1")]) == []


def only(name: str) -> Any:
    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == name else SimpleNamespace(enabled=False)
    return params


def test_catalog_builds_temperature_and_engine_raises_it() -> None:
    """Four-probe detectors get both rules, a one-probe device no spread; the engine alarms."""
    probes = frozenset((Quantity.TEMPERATURE, str(c)) for c in range(1, 5))
    devices = [DeviceInfo(name="td", kind="detector", poll=1, points=probes),
               DeviceInfo(name="one", kind="detector", poll=1,
                          points=frozenset({(Quantity.TEMPERATURE, "1")})),
               DeviceInfo(name="m1", kind="incomer", points=frozenset({(Quantity.CURRENT, "L1")}))]
    assert CATALOG["temperature"] is temperature.SPEC
    built = build_rules(SiteInfo(), devices, only("temperature"))
    assert [type(r).__name__ for r in built["td"]] == ["Temperature", "Spread"]
    assert [type(r).__name__ for r in built["one"]] == ["Temperature"]
    assert built["m1"] == []
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(r)) for n, r in built.items()})
    events = [e for t in range(0, 30, 5) for e in engine.evaluate(deg(t, 30 if t < 5 else 90))]
    assert [(e.ts, e.kind, e.alarm.alarm_id) for e in events] == [
        (5, EventKind.RAISED, "temperature-rise:td:1"),
        (15, EventKind.RAISED, "overtemperature:td:1"),
        (15, EventKind.RAISED, "overtemperature-warning:td:1")]


def test_config_is_validated() -> None:
    """An alarm below the warning is refused; durations read as people write them."""
    adapter = TypeAdapter(temperature.Temperature)
    with pytest.raises(ValidationError, match="alarm_c 50 is below warn_c 60"):
        adapter.validate_python({"alarm_c": 50})
    assert adapter.validate_python({"rise_window": "15m"}).rise_window == 900
