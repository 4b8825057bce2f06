"""Smoke detector maintenance: low battery and a dirty chamber, with fire stopping the timer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.measurements import Quality, Quantity, Reading
from rules import smoke
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import Condition, EventKind, Severity

RULE = smoke.Smoke()
B, OBS, F = Quantity.BATTERY, Quantity.OBSCURATION, Quantity.FIRE


def r(ts: float, quantity: Quantity, value: float, quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "sd", quantity, value, quality)


def feed(readings: list[Reading], rule: smoke.Smoke = RULE) -> list[Condition]:
    state: smoke.SmokeState | None = None
    out: list[Condition] = []
    for reading in readings:
        state, found = rule.step(state, reading)
        out += found
    return out


def verdicts(out: list[Condition]) -> list[tuple[str, float, bool]]:
    return [(c.rule, c.ts, c.active) for c in out]


def battery(*points: tuple[float, float]) -> list[Reading]:
    return [r(t, B, v) for t, v in points]


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(battery((0, 87)), [("smoke-low-battery", 0, False)], id="healthy"),
    pytest.param(battery((0, 18), (60, 18), (120, 17)), [("smoke-low-battery", 120, True)],
                 id="low-for-two-polls"),
    pytest.param(battery((0, 18), (60, 21), (120, 18), (180, 18)),
                 [("smoke-low-battery", 60, False)], id="one-recovered-reading-restarts"),
    pytest.param(battery((0, 18), (120, 18), (180, 23), (240, 26)),
                 [("smoke-low-battery", 120, True), ("smoke-low-battery", 240, False)],
                 id="new-battery-clears-above-25"),
    pytest.param([r(0, B, 65535, Quality.BAD)] * 5, [], id="mains-powered-never-flagged"),
])
def test_low_battery(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """Below 20 % for 2 minutes warns; the deadband clears from 25 %; 0xFFFF is ignored."""
    assert verdicts(feed(readings)) == expected


def chamber(start: int, end: int, db_m: float, every: int = 600) -> list[Reading]:
    return [r(t, OBS, db_m) for t in range(start, end, every)]


@pytest.mark.parametrize(("readings", "expected"), [
    pytest.param(chamber(0, 7200, 0.03), [("smoke-dirty-chamber", 0, False)], id="clean"),
    pytest.param(chamber(0, 4200, 0.12), [("smoke-dirty-chamber", 3600, True)],
                 id="dirty-for-an-hour"),
    pytest.param(chamber(0, 1800, 0.12) + chamber(1800, 2400, 0.09)
                 + chamber(2400, 4200, 0.12), [("smoke-dirty-chamber", 3600, True)],
                 id="wobble-inside-deadband-keeps-timing"),
    pytest.param(chamber(0, 1800, 0.12) + chamber(1800, 2400, 0.02)
                 + chamber(2400, 6600, 0.12),
                 [("smoke-dirty-chamber", 1800, False), ("smoke-dirty-chamber", 6000, True)],
                 id="clean-reading-restarts"),
    pytest.param(chamber(0, 4200, 0.12) + chamber(4200, 4800, 0.01),
                 [("smoke-dirty-chamber", 3600, True), ("smoke-dirty-chamber", 4200, False)],
                 id="cleaned"),
    pytest.param([r(0, F, 1), *chamber(0, 4200, 0.8), r(4200, F, 0), *chamber(4200, 6000, 0.12)],
                 [], id="fire-smoke-is-not-dirt"),
    pytest.param([*chamber(0, 3000, 0.12), r(3000, F, 1), r(3300, F, 0),
                  *chamber(3300, 7200, 0.12)],
                 [("smoke-dirty-chamber", 6900, True)], id="fire-restarts-the-hour"),
])
def test_dirty_chamber(readings: list[Reading], expected: list[tuple[str, float, bool]]) -> None:
    """A 0.1 dB/m baseline for an hour with no fire warns; fire stops the timer."""
    assert verdicts(feed(readings)) == expected


def test_messages_and_severity() -> None:
    """One line each, with the value, the limit and the units."""
    (low,) = feed(battery((0, 15), (120, 14)))
    assert (low.key, low.severity, low.value, low.limit) == (
        "smoke-low-battery:sd", Severity.WARNING, 14, 20)
    assert low.message == "smoke detector battery 14 % (below 20 %): replace the battery"
    (dirty,) = feed(chamber(0, 4200, 0.12))
    assert dirty.message == ("smoke chamber reads 0.12 dB/m with no fire for 60 min "
                             "(maintenance at 0.1 dB/m): clean or replace the detector")


def only(name: str) -> Any:
    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == name else SimpleNamespace(enabled=False)
    return params


def test_catalog_builds_smoke_and_engine_raises_it() -> None:
    """Smoke detectors get the rule, others not; the engine raises the low battery."""
    points = frozenset({(F, None), (Quantity.SMOKE_FAULT, None), (OBS, None), (B, None)})
    devices = [DeviceInfo(name="sd", kind="smoke", profile_kind="smoke", poll=1, points=points),
               DeviceInfo(name="m1", kind="incomer", points=frozenset({(Quantity.CURRENT, "L1")}))]
    assert CATALOG["smoke"] is smoke.SPEC
    built = build_rules(SiteInfo(), devices, only("smoke"))
    assert [type(x).__name__ for x in built["sd"]] == ["Smoke"]
    assert built["m1"] == []
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(x)) for n, x in built.items()})
    events = [e for t in range(0, 300, 60) for e in engine.evaluate(r(t, B, 12))]
    assert [(e.ts, e.kind, e.alarm.alarm_id) for e in events] == [
        (120, EventKind.RAISED, "smoke-low-battery:sd")]


def test_config_is_validated() -> None:
    """A clear level below the low level is refused; durations read as people write them."""
    adapter = TypeAdapter(smoke.Smoke)
    with pytest.raises(ValidationError, match="battery_clear_pct 10 is below battery_low_pct 20"):
        adapter.validate_python({"battery_clear_pct": 10})
    assert adapter.validate_python({"dirty_on_delay": "2h"}).dirty_on_delay == 7200
