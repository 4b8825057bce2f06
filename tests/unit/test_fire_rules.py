"""Fire and detector flags: conditions on change, fire severity, zone locations in alarms."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.measurements import Quality, Quantity, Reading
from daemon.assembly import device_rules
from daemon.config import FirePanelConfig, validate_config
from daemon.panels import zone_locator
from rules import fire
from rules.engine import RuleEngine
from rules.model import AlarmState, EventKind, Severity


def flag(quantity: Quantity, value: float, ts: float = 0.0, channel: str | None = "2-3-25",
         quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts=ts, device="panel", quantity=quantity, value=value, channel=channel,
                   quality=quality)


@pytest.mark.parametrize(("previous", "value", "expect"), [
    (None, 0.0, [False]),  # a first verdict, even healthy (the engine keeps no alarm for it)
    (None, 1.0, [True]),
    (False, 1.0, [True]),
    (True, 1.0, []),  # still in fire: no repeat
    (True, 0.0, [False]),
    (False, 0.0, []),
])
def test_fire_flag_emits_on_change(previous: bool | None, value: float,
                                   expect: list[bool]) -> None:
    state, found = fire.evaluate(previous, flag(Quantity.FIRE, value))
    assert state is (value >= 0.5)
    assert [c.active for c in found] == expect
    for c in found:
        assert (c.rule, c.severity, c.key) == ("fire", Severity.FIRE, "fire:panel:2-3-25")


@pytest.mark.parametrize(("quantity", "rule", "severity"), [
    (Quantity.FIRE, "fire", Severity.FIRE),
    (Quantity.SMOKE_FAULT, "detector-fault", Severity.WARNING),
    (Quantity.DETECTOR_FAULT, "detector-fault", Severity.WARNING),
    (Quantity.DETECTOR_ALARM, "electrical-fire", Severity.CRITICAL),
])
def test_each_flag_has_its_rule(quantity: Quantity, rule: str, severity: Severity) -> None:
    _, (condition,) = fire.evaluate(None, flag(quantity, 1.0))
    assert (condition.rule, condition.severity) == (rule, severity)
    assert "zone 3, position 25" in condition.message


def test_bad_quality_and_other_quantities_are_ignored() -> None:
    assert fire.evaluate(False, flag(Quantity.FIRE, 1.0, quality=Quality.BAD)) == (False, [])
    assert fire.evaluate(None, flag(Quantity.CURRENT, 99.0)) == (None, [])


def test_modbus_smoke_detector_message_names_the_device() -> None:
    _, (condition,) = fire.evaluate(None, flag(Quantity.FIRE, 1.0, channel=None))
    assert condition.message == "FIRE: panel"


def _panel() -> FirePanelConfig:
    return FirePanelConfig.model_validate({
        "name": "p", "transport": "tcp-server", "port": 9000, "building": "12",
        "zone": [{"zone": 3, "floor": "3", "area": "east stairwell"},
                 {"zone": 3, "system": 2, "floor": "3", "area": "west stairwell"},
                 {"zone": 9, "building": "12A"}]})


@pytest.mark.parametrize(("channel", "where"), [
    ("2-3-25", {"zone": "3", "floor": "3", "area": "west stairwell"}),  # exact system wins
    ("1-3-25", {"zone": "3", "floor": "3", "area": "east stairwell"}),  # any system
    ("1-9-1", {"zone": "9", "building": "12A"}),
    ("1-7-1", {"zone": "7"}),  # unmapped zone: still says which zone
    ("uitd", {}),
    (None, {}),
])
def test_zone_locator(channel: str | None, where: dict[str, str]) -> None:
    assert dict(zone_locator(_panel())(channel)) == where


def test_panel_fire_alarm_carries_building_floor_and_area() -> None:
    loaded = validate_config({
        "site": {"id": "t"},
        "fire_panel": [{"name": "b12-panel", "transport": "tcp-server", "port": 9000,
                        "building": "12", "zone": [{"zone": 3, "floor": "3",
                                                    "area": "east stairwell"}]}],
    }, Path("inline.toml"))
    engine = RuleEngine(devices=device_rules(loaded))
    (event,) = engine.evaluate(Reading(ts=5.0, device="b12-panel", quantity=Quantity.FIRE,
                                       value=1.0, channel="2-3-25"))
    assert event.kind is EventKind.RAISED
    assert event.alarm.context == {"kind": "fire-panel", "building": "12", "zone": "3",
                                   "floor": "3", "area": "east stairwell"}
    assert engine.evaluate(Reading(ts=6.0, device="b12-panel", quantity=Quantity.FIRE,
                                   value=1.0, channel="2-3-25")) == []
    (cleared,) = engine.evaluate(Reading(ts=9.0, device="b12-panel", quantity=Quantity.FIRE,
                                         value=0.0, channel="2-3-25"))
    assert cleared.kind is EventKind.LATCHED  # fire stays in alarm until someone resets it
    assert cleared.alarm.state is AlarmState.LATCHED


def test_panel_name_must_differ_from_devices() -> None:
    from daemon.config import ConfigError
    with pytest.raises(ConfigError, match=r"fire_panel\[0\]\.name: 'm1' is also a device name"):
        validate_config({
            "site": {"id": "t"},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": 502}],
            "device": [{"name": "m1", "bus": "gw", "unit": 1, "profile": "eastron-sdm630"}],
            "fire_panel": [{"name": "m1", "transport": "serial", "port": "/dev/ttyUSB1"}],
        }, Path("inline.toml"))
