"""The wiring rules: e-bike charging, resistive and unexpected loads, unmetered taps."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.measurements import Quality, Quantity, Reading
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.lighting import sun_day
from rules.model import Condition, EventKind, Severity
from rules.wiring import CircuitRule, CircuitState, TapRule, TapState, WiringConfig

SITE = SiteInfo(latitude=31.23, longitude=121.47, timezone="Asia/Shanghai")
ZONE = ZoneInfo(SITE.timezone)
T21 = datetime(2024, 11, 15, 21, 0, tzinfo=ZONE).timestamp()  # night
T10 = datetime(2024, 11, 15, 10, 0, tzinfo=ZONE).timestamp()  # day
DUSK = sun_day(SITE, T10).dusk
PARAMS = WiringConfig()
MIN = 60.0


def circuit(lighting: bool = True) -> CircuitRule:
    return CircuitRule(site=SITE, params=PARAMS, lighting=lighting,
                       q_from=Quantity.REACTIVE_POWER)


def run(rule: CircuitRule, start: float, loads: list[tuple[float, float]],
        quality: Quality = Quality.GOOD) -> list[Condition]:
    """One poll a minute: (W, PF) per poll on L1; the active conditions raised."""
    state: CircuitState | None = None
    raised: list[Condition] = []
    for k, (watts, pf) in enumerate(loads):
        ts = start + k * MIN
        var = watts * math.tan(math.acos(pf))
        for reading in (Reading(ts, "b1-box1-stair", Quantity.POWER, watts, quality, "L1"),
                        Reading(ts, "b1-box1-stair", Quantity.REACTIVE_POWER, var, quality,
                                "L1")):
            state, conditions = rule.step(state, reading)
            raised += [c for c in conditions if c.active]
    return raised


def with_step(base: tuple[float, float], step: tuple[float, float], before: int,
              after: int, taper: float = 0.0) -> list[tuple[float, float]]:
    """``before`` polls of ``base`` (W, PF) then ``after`` polls with ``step`` added."""
    bw, bpf = base
    sw, spf = step
    out = [(bw, bpf)] * before
    for k in range(after):
        w = sw * (1 - taper * k / max(1, after))
        p = bw + w
        q = bw * math.tan(math.acos(bpf)) + w * math.tan(math.acos(spf))
        out.append((p, p / math.hypot(p, q)))
    return out


CASES: list[tuple[str, CircuitRule, float, list[tuple[float, float]], list[tuple[str, int]]]] = [
    ("e-bike at night on a stairwell: raised after 20 min", circuit(), T21,
     with_step((90, 0.9), (230, 0.6), 8, 30), [("ebike-charging", 28)]),
    ("e-bike too short (15 min): nothing", circuit(), T21,
     with_step((90, 0.9), (230, 0.6), 8, 15) + [(90.0, 0.9)] * 10, []),
    ("heater on a public circuit: resistive-load after 2 min", circuit(False), T21,
     with_step((300, 0.9), (2000, 1.0), 8, 10), [("resistive-load", 10)]),
    ("PF 0.9 step on a public circuit at night: unexpected-load after 30 min", circuit(False),
     T21, with_step((150, 0.9), (150, 0.92), 8, 40), [("unexpected-load", 38)]),
    ("the same step by day on a public circuit: nothing", circuit(False), T10,
     with_step((300, 0.9), (150, 0.92), 8, 40), []),
    ("steady load: nothing", circuit(), T21, [(90.0, 0.9)] * 60, []),
    ("stair lamps switching on at dusk: nothing", circuit(), DUSK - 10 * MIN,
     with_step((4, 0.9), (86, 0.9), 10, 60), []),
    ("a one-poll spike: nothing", circuit(), T21,
     [(90.0, 0.9)] * 8 + [(400.0, 0.6)] + [(90.0, 0.9)] * 30, []),
]


@pytest.mark.parametrize(("rule", "start", "loads", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_circuit_series(rule: CircuitRule, start: float, loads: list[tuple[float, float]],
                        expected: list[tuple[str, int]]) -> None:
    """Each load series raises exactly the expected alarms at the expected poll."""
    raised = run(rule, start, loads)
    assert [(c.rule, round((c.ts - start) / MIN)) for c in raised] == expected


def test_ebike_message_and_confidence() -> None:
    """The e-bike condition carries its confidence as value and says so in one line."""
    raised = run(circuit(), T21 - 25 * MIN, with_step((90, 0.9), (230, 0.6), 5, 25))
    assert len(raised) == 1
    c = raised[0]
    assert c.severity is Severity.WARNING
    assert c.value is not None
    assert 0.8 <= c.value <= 1.0
    assert c.message == ("b1-box1-stair: +230 W for 20 min since 20:40, steady, PF 0.60: "
                         f"likely e-bike charging (confidence {c.value:.2f})")


def test_ebike_without_pf_is_still_found_with_less_confidence() -> None:
    """Without reactive power or PF the signature rests on size, duration and the hour."""
    rule = CircuitRule(site=SITE, params=PARAMS, lighting=True, q_from=None)
    raised = run(rule, T21, with_step((90, 0.9), (230, 0.6), 8, 30))
    assert [c.rule for c in raised] == ["ebike-charging"]
    assert raised[0].value is not None
    assert raised[0].value < 0.9


def test_bad_quality_is_ignored() -> None:
    """Bad readings neither start nor feed a session."""
    assert run(circuit(), T21, with_step((90, 0.9), (230, 0.6), 8, 30), Quality.BAD) == []


def test_session_end_clears_the_alarm() -> None:
    """When the step goes away the e-bike alarm clears, once."""
    rule = circuit()
    state: CircuitState | None = None
    seen: list[tuple[str, bool]] = []
    for k, (watts, pf) in enumerate(with_step((90, 0.9), (230, 0.6), 8, 30) + [(90, 0.9)] * 5):
        ts = T21 + k * MIN
        for reading in (Reading(ts, "c", Quantity.POWER, watts, channel="L1"),
                        Reading(ts, "c", Quantity.REACTIVE_POWER,
                                watts * math.tan(math.acos(pf)), channel="L1")):
            state, conditions = rule.step(state, reading)
            seen += [(c.rule, c.active) for c in conditions if c.rule == "ebike-charging"]
    assert seen == [("ebike-charging", False), ("ebike-charging", True),
                    ("ebike-charging", False)]


# -- unmetered taps ---------------------------------------------------------------------------

TAP = TapRule(site=SITE, params=PARAMS, incomer="b1-box1-main",
              subs=frozenset({"b1-box1-sockets", "b1-box1-stair"}), where="b1 box 1", skew=10)


def feed_tap(polls: list[tuple[tuple[float, float, float], float, float]],
             start: float = T21) -> list[tuple[int, bool]]:
    """(incomer L1-L3 W, sockets W, stair W) a minute apart; (poll, active) changes."""
    state: TapState | None = None
    out: list[tuple[int, bool]] = []
    for k, (phases, sockets, stair) in enumerate(polls):
        ts = start + k * MIN
        readings = [Reading(ts, "b1-box1-sockets", Quantity.POWER, sockets, channel="L1"),
                    Reading(ts, "b1-box1-stair", Quantity.POWER, stair, channel="L1")]
        readings += [Reading(ts, "b1-box1-main", Quantity.POWER, w, channel=ph)
                     for ph, w in zip(("L1", "L2", "L3"), phases, strict=True)]
        readings.append(Reading(ts, "b1-box1-main", Quantity.POWER, sum(phases),
                                channel="total"))
        for reading in readings:
            state, conditions = TAP.step(state, reading)
            out += [(k, c.active) for c in conditions]
    return out


NORMAL = ((1040.0, 130.0, 40.0), 1000.0, 90.0)  # 120 W of the box's own draw
TAPPED = ((1040.0, 2130.0, 40.0), 1000.0, 90.0)  # +2 kW on L2


@pytest.mark.parametrize(("polls", "expected"), [
    ([NORMAL] * 20, [(2, False)]),  # the first verdict, once 3 gaps are in
    ([NORMAL] * 3 + [TAPPED] * 12, [(2, False), (10, True)]),  # median of 5, 5 min held
    ([NORMAL] * 3 + [TAPPED] * 12 + [NORMAL] * 5, [(2, False), (10, True), (17, False)]),
    ([NORMAL] * 3 + [TAPPED] * 4 + [NORMAL] * 10, [(2, False)]),  # 4 min: not sustained
])
def test_tap_series(polls: list[tuple[tuple[float, float, float], float, float]],
                    expected: list[tuple[int, bool]]) -> None:
    """The incomer above its sub-circuits beyond tolerance for tap_delay raises the tap."""
    assert feed_tap(polls) == expected


def test_tap_waits_for_every_sub_circuit_and_skips_stale_ones() -> None:
    """A sub-circuit that stopped reporting (silent) freezes the verdict instead of guessing."""
    state: TapState | None = None
    for k in range(10):
        ts = T21 + k * MIN
        for ph, w in (("L1", 1040.0), ("L2", 2130.0), ("L3", 40.0)):
            state, conditions = TAP.step(state, Reading(ts, "b1-box1-main", Quantity.POWER, w,
                                                        channel=ph))
            assert conditions == []
        state, conditions = TAP.step(state, Reading(ts, "b1-box1-stair", Quantity.POWER,
                                                    90.0, channel="L1"))
        assert conditions == []


def test_tap_message() -> None:
    """The tap message names the box, the gap, the tolerance and since when."""
    state: TapState | None = None
    raised: list[Condition] = []
    for k, (phases, sockets, stair) in enumerate([NORMAL] * 3 + [TAPPED] * 12):
        ts = T21 + k * MIN
        for reading in [Reading(ts, "b1-box1-sockets", Quantity.POWER, sockets, channel="L1"),
                        Reading(ts, "b1-box1-stair", Quantity.POWER, stair, channel="L1"),
                        *(Reading(ts, "b1-box1-main", Quantity.POWER, w, channel=ph)
                          for ph, w in zip(("L1", "L2", "L3"), phases, strict=True))]:
            state, conditions = TAP.step(state, reading)
            raised += [c for c in conditions if c.active]
    assert len(raised) == 1
    assert raised[0].severity is Severity.CRITICAL
    assert raised[0].message == (
        "b1 box 1: incomer 3210 W is 2120 W above its metered sub-circuits (1090 W; "
        "tolerance 346 W) for 5 min since 21:05: unmetered tap or unmetered circuit")


# -- through the catalog and the engine -------------------------------------------------------

def _meter(name: str, kind: str, phases: tuple[str, ...]) -> DeviceInfo:
    points = frozenset((q, ph) for q in (Quantity.POWER, Quantity.REACTIVE_POWER,
                                         Quantity.POWER_FACTOR) for ph in phases)
    return DeviceInfo(name=name, kind=kind, profile_kind="meter", points=points, poll=60,
                      building="1", box="1", rated_current=16.0 if kind != "incomer" else 63.0)


def test_engine_builds_box_rules_and_raises_ebike_and_tap() -> None:
    """build_rules + RuleEngine: sub-circuits get step signatures, the box a shared tap."""
    infos = [_meter("b1-box1-main", "incomer", ("L1", "L2", "L3")),
             _meter("b1-box1-stair", "lighting", ("L1",)),
             _meter("b1-box1-sockets", "sockets", ("L1",))]

    def params(rule: str, device: str) -> Any:
        return WiringConfig() if rule == "wiring" else type("Off", (), {"enabled": False})()

    built = build_rules(SITE, infos, params)
    assert [type(r).__name__ for r in built["b1-box1-stair"]] == ["CircuitRule", "TapRule"]
    assert [type(r).__name__ for r in built["b1-box1-sockets"]] == ["TapRule"]
    assert built["b1-box1-main"][0] is built["b1-box1-sockets"][0]
    engine = RuleEngine(devices={i.name: DeviceRules(rules=tuple(built[i.name]),
                                                     context={"building": "1", "box": "1"})
                                 for i in infos})
    raised = []
    for k in range(40):
        ts = T21 + k * MIN
        charging = k >= 5
        stair = 90.0 + (230.0 if charging else 0.0)
        stair_q = 43.6 + (306.7 if charging else 0.0)
        tap = 2000.0 if k >= 10 else 0.0
        readings = [Reading(ts, "b1-box1-stair", Quantity.POWER, stair, channel="L1"),
                    Reading(ts, "b1-box1-stair", Quantity.REACTIVE_POWER, stair_q,
                            channel="L1"),
                    Reading(ts, "b1-box1-sockets", Quantity.POWER, 1000.0, channel="L1"),
                    Reading(ts, "b1-box1-main", Quantity.POWER, 1040.0, channel="L1"),
                    Reading(ts, "b1-box1-main", Quantity.POWER, stair + 40.0 + tap,
                            channel="L2"),
                    Reading(ts, "b1-box1-main", Quantity.POWER, 40.0, channel="L3")]
        for reading in readings:
            raised += [(e.alarm.alarm_id, round((e.ts - T21) / MIN))
                       for e in engine.evaluate(reading) if e.kind is EventKind.RAISED]
    assert raised == [("unmetered-tap:b1-box1-main", 17),
                      ("ebike-charging:b1-box1-stair:L1", 25)]
