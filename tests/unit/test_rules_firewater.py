"""Fire water: low pressure and level with on-delays, NE43 sensor faults, pump-start events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.measurements import Quality, Quantity, Reading
from drivers.profile import load_profile
from rules import firewater
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import AlarmState, Condition, EventKind, Severity

RULE = firewater.Firewater()


def mpa(ts: float, value: float, quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts, "fw", Quantity.WATER_PRESSURE, value, quality, "1")


def level(ts: float, value: float) -> Reading:
    return Reading(ts, "fw", Quantity.WATER_LEVEL, value, Quality.GOOD, "2")


def loop(ts: float, value: float, channel: str = "1") -> Reading:
    return Reading(ts, "fw", Quantity.LOOP_CURRENT, value, Quality.GOOD, channel)


def feed(readings: list[Reading], rule: firewater.Firewater = RULE) -> list[Condition]:
    states: dict[Any, firewater.FirewaterState | None] = {}
    out: list[Condition] = []
    for reading in readings:
        key = rule.key(reading)
        states[key], found = rule.step(states.get(key), reading)
        out += found
    return out


def verdicts(out: list[Condition], only: str) -> list[tuple[float, bool]]:
    return [(c.ts, c.active) for c in out if c.rule == only]


def pressure_run(*runs: tuple[float, float, float], step: float = 2.0) -> list[Reading]:
    """(from, to, MPa) runs at ``step`` s polls, ``to`` excluded."""
    out = []
    for start, end, value in runs:
        t = start
        while t < end:
            out.append(mpa(t, value))
            t += step
    return out


def test_low_pressure_waits_its_on_delay_and_clears_above_the_deadband() -> None:
    """0.05 MPa for 30 s raises (not before); 0.075 stays in (deadband); 0.09 clears."""
    out = feed(pressure_run((0, 10, 0.30), (10, 60, 0.05), (60, 70, 0.075), (70, 80, 0.09)))
    assert verdicts(out, firewater.PRESSURE_RULE) == [(0, False), (40, True), (70, False)]
    raised = next(c for c in out if c.rule == firewater.PRESSURE_RULE and c.active)
    assert raised.severity is Severity.CRITICAL
    assert raised.limit == 0.07
    assert "GB 50974" in raised.message


def test_short_pressure_dip_is_not_low_pressure() -> None:
    """A 20 s dip below 0.07 MPa (a pump starting) never raises the low-pressure alarm."""
    out = feed(pressure_run((0, 10, 0.30), (10, 30, 0.05), (30, 60, 0.30)))
    assert verdicts(out, firewater.PRESSURE_RULE) == [(0, False)]


def test_low_level_uses_its_own_limit_and_delay() -> None:
    """Level below low_level_m for level_on_delay (60 s) raises; recovery clears."""
    rule = firewater.Firewater(low_level_m=1.5)
    readings = [level(t, 2.0 if t < 10 else 1.2) for t in range(0, 100, 5)]
    readings += [level(t, 1.6) for t in range(100, 110, 5)]
    out = feed(readings, rule)
    assert verdicts(out, firewater.LEVEL_RULE) == [(0, False), (70, True), (100, False)]


@pytest.mark.parametrize("ma", [3.5, 0.0, 21.0])
def test_loop_current_outside_ne43_is_a_fault_and_holds_the_low_verdict(ma: float) -> None:
    """Open loop (0 mA), NE43 low (3.5) or high (21) failure signals raise a sensor fault after
    10 s; the "pressure" it decodes to (below 0.07 MPa) never raises low pressure."""
    readings = []
    for t in range(0, 60, 2):
        current = 12.0 if t < 10 else ma
        readings += [loop(t, current), mpa(t, (current - 4) * 0.1)]
    out = feed(readings)
    assert verdicts(out, firewater.FAULT_RULE) == [(0, False), (20, True)]
    assert verdicts(out, firewater.PRESSURE_RULE) == [(0, False)]
    fault = next(c for c in out if c.rule == firewater.FAULT_RULE and c.active)
    assert fault.severity is Severity.WARNING
    assert "NAMUR NE43" in fault.message


def test_fault_clears_when_the_loop_recovers() -> None:
    """A repaired loop clears the fault after its own reading; the channel is judged again."""
    readings = [loop(t, 2.0) for t in range(0, 30, 2)] + [loop(t, 12.0) for t in range(30, 34, 2)]
    out = feed(readings)
    assert verdicts(out, firewater.FAULT_RULE) == [(10, True), (30, False)]


def test_implausible_value_is_a_fault() -> None:
    """A value out of its plausible range (bad quality) counts as a transmitter fault too."""
    readings = [mpa(t, -0.4, Quality.IMPLAUSIBLE) for t in range(0, 30, 2)]
    assert verdicts(feed(readings), firewater.FAULT_RULE) == [(10, True)]


def test_pump_start_is_an_event_raised_and_cleared_at_once() -> None:
    """Pressure 0.35 -> 0.22 MPa and back within 5 min: one info pump-start event."""
    out = feed(pressure_run((0, 300, 0.35), (300, 340, 0.22), (340, 400, 0.34)))
    pump = [c for c in out if c.rule == firewater.PUMP_RULE]
    assert [(c.ts, c.active) for c in pump] == [(340, True), (340, False)]
    assert pump[0].severity is Severity.INFO
    assert pump[0].value == pytest.approx(0.13, abs=0.005)
    assert dict(pump[0].evidence)["seconds"] == 40
    assert verdicts(out, firewater.PRESSURE_RULE) == [(0, False)]  # never low


def test_closed_valve_drop_that_stays_is_no_pump_start_but_low_pressure() -> None:
    """A drop that stays (a closed valve) is not a pump start; below the limit it alarms."""
    out = feed(pressure_run((0, 300, 0.30), (300, 1200, 0.04)))
    assert verdicts(out, firewater.PUMP_RULE) == []
    assert verdicts(out, firewater.PRESSURE_RULE) == [(0, False), (330, True)]


def test_slow_leak_never_looks_like_a_pump_start_and_ends_in_low_pressure() -> None:
    """A main losing 0.01 MPa a minute from 0.30 MPa: no dip, low pressure once below 0.07."""
    readings = [mpa(t, 0.30 - 0.01 * t / 60) for t in range(0, 1800, 2)]
    out = feed(readings)
    assert verdicts(out, firewater.PUMP_RULE) == []
    raised = [c for c in out if c.rule == firewater.PRESSURE_RULE and c.active]
    assert len(raised) == 1
    assert 1380 + 30 <= raised[0].ts <= 1380 + 34  # crosses 0.07 MPa at 1380 s, +30 s delay


def test_catalog_builds_firewater_for_the_transmitter_profile_only() -> None:
    """A device with the firewater-transmitter profile gets the rule, a meter does not; the
    engine raises low pressure and logs a pump start without latching it."""
    profile = load_profile("firewater-transmitter")
    devices = [DeviceInfo(name="fw", kind="other", poll=2,
                          points=frozenset((p.quantity, p.channel) for p in profile.points)),
               DeviceInfo(name="m1", kind="incomer", points=frozenset({(Quantity.CURRENT, "L1")}),
                          rated_current=63)]
    assert CATALOG["firewater"] is firewater.SPEC

    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == "firewater" else SimpleNamespace(enabled=False)

    built = build_rules(SiteInfo(), devices, params)
    assert [type(r).__name__ for r in built["fw"]] == ["Firewater"]
    assert built["m1"] == []
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(r)) for n, r in built.items()})
    readings = pressure_run((0, 300, 0.35), (300, 340, 0.22), (340, 400, 0.34))
    events = [e for r in readings for e in engine.evaluate(r)]
    pump = [(e.kind, e.alarm.severity) for e in events if e.alarm.rule == firewater.PUMP_RULE]
    # an info event needs no acknowledgement: raised, then removed (back to normal) at once
    assert pump == [(EventKind.RAISED, Severity.INFO), (EventKind.REMOVED, Severity.INFO)]
    assert not any(e.alarm.latched for e in events)
    assert not [a for a in engine.alarms.values() if a.rule == firewater.PUMP_RULE
                and a.state is not AlarmState.NORMAL]


@pytest.mark.parametrize(("table", "error"), [
    ({"low_pressure_mpa": 0}, "greater than 0"),
    ({"low_pressure_mpa": 3.0}, "less than or equal to 2.4"),
    ({"fault_low_ma": 5}, "less than or equal to 4"),
    ({"pressure_on_delay": "2h"}, "less than or equal to 3600"),
    ({"nonsense": 1}, "nonsense"),
])
def test_config_is_validated(table: dict[str, Any], error: str) -> None:
    """[rules.firewater] / [device.rules.firewater] values are checked; per-building limits
    (0.10 MPa for a class-1 high-rise) are accepted."""
    with pytest.raises(ValidationError, match=error):
        TypeAdapter(firewater.Firewater).validate_python(table)
    adapter = TypeAdapter(firewater.Firewater)
    assert adapter.validate_python({"low_pressure_mpa": 0.10}).low_pressure_mpa == 0.10
    assert adapter.validate_python({"pressure_on_delay": "1m"}).pressure_on_delay == 60.0
