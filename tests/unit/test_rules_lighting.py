"""The lighting rule: lamps out, partly out, burning by day, cycling; dark hours and lux."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.measurements import Quality, Quantity, Reading
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.lighting import LightingConfig, LightingRule, LightingState, sun_day
from rules.model import Condition, EventKind, Severity

SITE = SiteInfo(latitude=31.23, longitude=121.47, timezone="Asia/Shanghai")
ZONE = ZoneInfo(SITE.timezone)
NIGHT = datetime(2024, 11, 15, 22, 0, tzinfo=ZONE).timestamp()  # dark (dusk 17:21)
NOON = datetime(2024, 11, 15, 12, 0, tzinfo=ZONE).timestamp()  # light
DUSK = sun_day(SITE, NOON).dusk  # 17:21:39 local
# learn_polls 2: the nameplate yields to what the lamps draw after two healthy polls
PARAMS = LightingConfig(lamps=3, lamp_current=0.18, learn_polls=2)
RELAYS = frozenset({"1"})

# one poll: (seconds after the series' start, relay or None if not read, lamp current A)
Poll = tuple[float, float | None, float]


def run(start: float, polls: list[Poll], params: LightingConfig = PARAMS,
        relays: frozenset[str] = RELAYS, lux: float | None = None,
        quality: Quality = Quality.GOOD) -> list[tuple[float, str, bool]]:
    """Feed the polls of channel 1; the conditions as (offset, rule, active)."""
    rule = LightingRule(site=SITE, params=params, has_relay=relays)
    state: LightingState | None = None
    out: list[tuple[float, str, bool]] = []
    for offset, relay, amps in polls:
        ts = start + offset
        readings = []
        if lux is not None:
            readings.append(Reading(ts, "lights", Quantity.LUX, lux))
        if relay is not None:
            readings.append(Reading(ts, "lights", Quantity.RELAY, relay, channel="1"))
        readings.append(Reading(ts, "lights", Quantity.LAMP_CURRENT, amps, quality, "1"))
        for reading in readings:
            state, conditions = rule.step(state, reading)
            out += [(offset, c.rule, c.active) for c in conditions]
    return out


def active(found: list[tuple[float, str, bool]]) -> list[tuple[float, str]]:
    return [(t, r) for t, r, a in found if a]


def series(relay: float | None, amps: list[float], step: float = 60.0) -> list[Poll]:
    return [(k * step, relay, a) for k, a in enumerate(amps)]


CASES: list[tuple[str, float, list[Poll], list[tuple[float, str]]]] = [
    ("healthy night: nothing", NIGHT, series(1, [0.54] * 6), []),
    ("all out at night: lamp-out on the 2nd poll", NIGHT, series(1, [0.54, 0.0, 0.0, 0.0]),
     [(120, "lamp-out")]),
    ("one of 3 out: lamp-partial on the 2nd poll", NIGHT,
     series(1, [0.54, 0.54, 0.54, 0.36, 0.36]), [(240, "lamp-partial")]),
    ("one of 3 out from the start: within the nameplate's tolerance, learnt", NIGHT,
     series(1, [0.36] * 5), []),
    ("two of 3 out from the start: below half the nameplate, lamp-partial", NIGHT,
     series(1, [0.18] * 5), [(120, "lamp-partial")]),
    ("a single low poll is not an outage", NIGHT, series(1, [0.54, 0.0, 0.54, 0.54]), []),
    ("lamps off by day, commanded off: nothing", NOON, series(0, [0.0] * 5), []),
    ("stuck relay by day: lamp-day-burning", NOON, series(0, [0.0, 0.54, 0.54, 0.54]),
     [(120, "lamp-day-burning")]),
    ("cycling: 4 jumps raise lamp-cycling, no lamp-out", NIGHT,
     series(1, [0.54, 0.0, 0.54, 0.0, 0.54, 0.0, 0.54]), [(240, "lamp-cycling")]),
    ("dusk: a dead channel is out 2 polls after dusk", DUSK,
     [(0.0, 1, 0.0), (60.0, 1, 0.0)], [(60, "lamp-out")]),
    ("relay on but off by day: lamp-out (commanded on)", NOON, series(1, [0.0, 0.0]),
     [(60, "lamp-out")]),
]


@pytest.mark.parametrize(("start", "polls", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_lighting_series(start: float, polls: list[Poll],
                         expected: list[tuple[float, str]]) -> None:
    """Each series raises exactly the expected alarms at the expected polls."""
    assert active(run(start, polls)) == expected


def test_first_verdict_is_emitted_once_and_changes_only() -> None:
    """A healthy channel reports its first verdicts once, then nothing until a change."""
    found = run(NIGHT, series(1, [0.54] * 5 + [0.0] * 3 + [0.54] * 3))
    assert found == [(0, "lamp-out", False), (0, "lamp-partial", False),
                     (360, "lamp-out", True), (540, "lamp-out", False)]


def test_day_burning_holds_through_the_night_until_seen_off() -> None:
    """A stuck relay stays alarmed while lit at night and clears once seen off by day."""
    found = run(NOON, series(0, [0.54, 0.54, 0.54]))
    assert active(found) == [(60, "lamp-day-burning")]
    night = run(NIGHT, series(1, [0.54] * 3))
    assert not active(night)
    rule = LightingRule(site=SITE, params=PARAMS, has_relay=RELAYS)
    state = None
    out = []
    for ts, relay, amps in [(NOON, 0, 0.54), (NOON + 60, 0, 0.54), (NIGHT, 1, 0.54),
                            (NIGHT + 60, 1, 0.54), (NOON + 86400, 0, 0.0),
                            (NOON + 86460, 0, 0.0)]:
        for reading in (Reading(ts, "l", Quantity.RELAY, relay, channel="1"),
                        Reading(ts, "l", Quantity.LAMP_CURRENT, amps, channel="1")):
            state, conditions = rule.step(state, reading)
            out += [(c.rule, c.active, c.ts) for c in conditions if c.rule.endswith("burning")]
    assert out == [("lamp-day-burning", True, NOON + 60),
                   ("lamp-day-burning", False, NOON + 86460)]


def test_bad_current_gives_no_verdict() -> None:
    """Bad lamp-current readings never raise anything."""
    assert run(NIGHT, series(1, [0.0] * 4), quality=Quality.BAD) == []


@pytest.mark.parametrize(("lux", "expected"), [
    (1000.0, []),  # the sensor sees light: not dark yet, nothing expected without a relay
    (5.0, [(60, "lamp-out")]),  # dark by sun and lux: lamps should be lit
    (None, [(60, "lamp-out")]),  # no sensor: the sun alone
])
def test_lux_gates_dark_hours_without_relay(lux: float | None,
                                            expected: list[tuple[float, str]]) -> None:
    """Without a relay point, dark hours decide; a fresh lux reading gates them."""
    assert active(run(NIGHT, series(None, [0.0] * 3), relays=frozenset(), lux=lux)) == expected


def test_lux_hysteresis_keeps_state_inside_the_band() -> None:
    """Between lux_dark and lux_light the previous verdict of the sensor stands."""
    rule = LightingRule(site=SITE, params=PARAMS)
    state, _ = rule.step(None, Reading(NIGHT, "l", Quantity.LUX, 10.0))
    assert state.lux_dark is True
    state, _ = rule.step(state, Reading(NIGHT + 60, "l", Quantity.LUX, 40.0))
    assert state.lux_dark is True
    state, _ = rule.step(state, Reading(NIGHT + 120, "l", Quantity.LUX, 60.0))
    assert state.lux_dark is False
    state, _ = rule.step(state, Reading(NIGHT + 180, "l", Quantity.LUX, 40.0))
    assert state.lux_dark is False
    bad, _ = rule.step(state, Reading(NIGHT + 240, "l", Quantity.LUX, 65535.0, Quality.BAD))
    assert bad == state


def test_learns_the_lit_current_when_lamp_current_is_not_configured() -> None:
    """With lamp_current 0 the channel's lit current is learned; losing a lamp is partial."""
    params = LightingConfig(lamps=3)
    found = run(NIGHT, series(1, [0.54, 0.54, 0.54, 0.36, 0.36]), params=params)
    assert active(found) == [(240, "lamp-partial")]


def test_channels_past_the_lamp_list_are_not_watched() -> None:
    """A lamps list names the channels in use; others (nothing connected) never alarm."""
    params = LightingConfig(lamps=(3,), lamp_current=0.18)
    rule = LightingRule(site=SITE, params=params, has_relay=frozenset({"1", "2"}))
    state = None
    for ts in (NIGHT, NIGHT + 60, NIGHT + 120):
        for reading in (Reading(ts, "l", Quantity.RELAY, 0.0, channel="2"),
                        Reading(ts, "l", Quantity.LAMP_CURRENT, 0.0, channel="2")):
            state, conditions = rule.step(state, reading)
            assert conditions == []


def test_messages_are_one_line_for_electricians() -> None:
    """The raise names the channel, the lamps out and the currents, on one line."""
    rule = LightingRule(site=SITE, params=LightingConfig(lamps=4, lamp_current=0.18,
                                                         learn_polls=2),
                        has_relay=RELAYS)
    state = None
    raised: list[Condition] = []
    for k, amps in enumerate([0.72, 0.72, 0.72, 0.54, 0.54]):
        for reading in (Reading(NIGHT + 60 * k, "b13-lights", Quantity.RELAY, 1, channel="1"),
                        Reading(NIGHT + 60 * k, "b13-lights", Quantity.LAMP_CURRENT, amps,
                                channel="1")):
            state, conditions = rule.step(state, reading)
            raised += [c for c in conditions if c.active]
    assert [c.message for c in raised] == [
        "b13-lights channel 1: 1 of 4 lamps out: drawing 0.54 A of 0.72 A expected"]
    assert raised[0].severity is Severity.WARNING


def test_engine_raises_lamp_out_through_the_catalog() -> None:
    """build_rules + RuleEngine: a dead channel at night raises lamp-out with its context."""
    info = DeviceInfo(name="b1-lights", kind="lighting", profile_kind="lighting", poll=60,
                      building="1", area="dark-areas",
                      points=frozenset({(Quantity.RELAY, "1"), (Quantity.LAMP_CURRENT, "1"),
                                        (Quantity.LUX, None)}))

    def params(rule: str, device: str) -> Any:
        return LightingConfig(lamps=2, lamp_current=0.18) if rule == "lighting" else \
            type("Off", (), {"enabled": False})()

    built = build_rules(SITE, [info], params)
    engine = RuleEngine(devices={"b1-lights": DeviceRules(rules=tuple(built["b1-lights"]),
                                                          context={"building": "1"})})
    events = []
    for k in range(3):
        ts = NIGHT + 60 * k
        events += engine.evaluate(Reading(ts, "b1-lights", Quantity.LUX, 0.5))
        events += engine.evaluate(Reading(ts, "b1-lights", Quantity.RELAY, 1.0, channel="1"))
        events += engine.evaluate(Reading(ts, "b1-lights", Quantity.LAMP_CURRENT, 0.0,
                                          channel="1"))
    raised = [e for e in events if e.kind is EventKind.RAISED]
    assert [(e.alarm.alarm_id, e.ts) for e in raised] == [("lamp-out:b1-lights:1", NIGHT + 60)]
    assert raised[0].alarm.context["building"] == "1"


def _night_with_voltage(volts: list[float], amps: list[float],
                        params: LightingConfig) -> list[tuple[float, str, bool]]:
    """Channel 1 commanded on, the building's incomer reporting ``volts`` each poll."""
    rule = LightingRule(site=SITE, params=params, has_relay=RELAYS, controller="lights",
                        supply="b1-box1-main")
    state: LightingState | None = None
    out: list[tuple[float, str, bool]] = []
    for k, (v, a) in enumerate(zip(volts, amps, strict=True)):
        ts = NIGHT + 60 * k
        for reading in (Reading(ts, "b1-box1-main", Quantity.VOLTAGE, v, channel="L1"),
                        Reading(ts, "lights", Quantity.RELAY, 1.0, channel="1"),
                        Reading(ts, "lights", Quantity.LAMP_CURRENT, a, channel="1")):
            state, conditions = rule.step(state, reading)
            out += [(k * 60.0, c.rule, c.active) for c in conditions]
    return out


def test_a_night_voltage_swell_is_not_a_lamp_out() -> None:
    """Eight 30 W LED lamps are constant power: learnt at a 205 V evening sag (1.24 A),
    they draw 1.08 A at a 236 V night swell, about one lamp's share less. With the
    building's voltage the rule sees the same power and stays quiet."""
    params = LightingConfig(lamps=8, lamp_current=0.0)
    volts = [205.0] * 40 + [236.0] * 40
    amps = [8 * 30 / 0.95 / v for v in volts]
    assert active(_night_with_voltage(volts, amps, params)) == []
    # the counter-check: without voltage compensation the swell reads as a lamp out
    plain = run(NIGHT, series(1, amps), params=params)
    assert (60.0 * 41, "lamp-partial") in active(plain)


def test_a_lamp_dying_during_a_swell_is_still_seen() -> None:
    """A real loss of one of eight lamps at 236 V is found against the compensated
    reference."""
    params = LightingConfig(lamps=8, lamp_current=0.0)
    volts = [205.0] * 40 + [236.0] * 40
    amps = [(8 if k < 60 else 7) * 30 / 0.95 / v for k, v in enumerate(volts)]
    assert active(_night_with_voltage(volts, amps, params)) == [(61 * 60.0, "lamp-partial")]


def test_the_nameplate_yields_to_the_lamps_once_learnt() -> None:
    """Nameplate 0.18 A a lamp, the lamps really draw 0.20 A: healthy from the start, and
    the reference becomes what they draw, so one of three out is still a partial."""
    params = LightingConfig(lamps=3, lamp_current=0.18, learn_polls=10)
    found = run(NIGHT, series(1, [0.60] * 20 + [0.40] * 3), params=params)
    assert active(found) == [(21 * 60.0, "lamp-partial")]


def test_a_relay_commanded_off_in_the_dark_is_a_schedule() -> None:
    """A timer cutting the lamps at midnight: no lamp-out while the relay says off."""
    assert active(run(NIGHT, series(0, [0.0] * 30))) == []
