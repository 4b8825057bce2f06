"""The wiring rules: e-bike charging, resistive and unexpected loads, unmetered taps.

Series are built the way a meter sees loads: P adds, the true-RMS apparent power S of each load
is P / (true PF), and a metering chip's var register counts only the phase shift (so a charger
without PFC, PF 0.55 from harmonics, shows almost no var).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.measurements import Quality, Quantity, Reading
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.lighting import sun_day
from rules.model import Condition, EventKind, Severity
from rules.taps import TapRule, TapState
from rules.wiring import CircuitRule
from rules.wiring_config import WiringConfig
from rules.wiring_state import CircuitState

SITE = SiteInfo(latitude=31.23, longitude=121.47, timezone="Asia/Shanghai")
ZONE = ZoneInfo(SITE.timezone)
T21 = datetime(2024, 11, 15, 21, 0, tzinfo=ZONE).timestamp()  # night
T10 = datetime(2024, 11, 15, 10, 0, tzinfo=ZONE).timestamp()  # day
DUSK = sun_day(SITE, T10).dusk
PARAMS = WiringConfig()
MIN = 60.0
VA = frozenset({Quantity.APPARENT_POWER})

Load = tuple[float, float]  # (W, true PF) of one appliance
Poll = list[Load]  # every load running at one poll


def circuit(lighting: bool = True, s_from: frozenset[Quantity] = VA) -> CircuitRule:
    return CircuitRule(site=SITE, params=PARAMS, lighting=lighting, s_from=s_from)


def readings(ts: float, loads: Poll, device: str = "b1-box1-stair",
             quality: Quality = Quality.GOOD) -> list[Reading]:
    """One SDM120 poll: V, I (true RMS), P, S (V x I) as the meter registers them."""
    p = sum(w for w, _ in loads)
    s = sum(w / pf for w, pf in loads)  # same-kind loads: S adds (harmonics in phase)
    volts = 225.0
    return [Reading(ts, device, Quantity.VOLTAGE, volts, quality, "L1"),
            Reading(ts, device, Quantity.CURRENT, s / volts, quality, "L1"),
            Reading(ts, device, Quantity.POWER, p, quality, "L1"),
            Reading(ts, device, Quantity.APPARENT_POWER, s, quality, "L1")]


def run(rule: CircuitRule, start: float, polls: list[Poll],
        quality: Quality = Quality.GOOD) -> list[Condition]:
    """One poll a minute; every condition raised (active), in order."""
    state: CircuitState | None = None
    raised: list[Condition] = []
    for k, loads in enumerate(polls):
        for reading in readings(start + k * MIN, loads, quality=quality):
            state, conditions = rule.step(state, reading)
            raised += [c for c in conditions if c.active]
    return raised


BASE: Load = (90.0, 0.9)  # stair lamps' standby, an intercom, a camera


def series(*parts: tuple[int, list[Load]]) -> list[Poll]:
    """(polls, extra loads) runs over the base load."""
    return [[BASE, *extra] for n, extra in parts for _ in range(n)]


def charger(w0: float, pf: float, minutes: int, creep: float = 0.08) -> list[Poll]:
    """A charger in constant current: its input creeps up as the pack's voltage rises."""
    return [[BASE, (w0 * (1 + creep * k / minutes), pf)] for k in range(minutes)]


def fridge(cycles: int, on: int = 20, off: int = 40) -> list[Poll]:
    return [poll for _ in range(cycles)
            for poll in series((on, [(110.0, 0.75)]), (off, []))]


CASES: list[tuple[str, CircuitRule, float, list[Poll], list[tuple[str, int]]]] = [
    ("charger without PFC at night: raised at 45 min", circuit(), T21,
     series((8, [])) + charger(180, 0.55, 60), [("ebike-charging", 53)]),
    ("charger with active PFC by day: raised at 45 min", circuit(), T10,
     series((8, [])) + charger(220, 0.98, 60), [("ebike-charging", 53)]),
    ("charger found from V x I when the meter has no VA register",
     circuit(s_from=frozenset({Quantity.VOLTAGE, Quantity.CURRENT})), T21,
     series((8, [])) + charger(180, 0.55, 60), [("ebike-charging", 53)]),
    ("a charge shorter than 45 min: nothing", circuit(), T21,
     series((8, [])) + charger(180, 0.55, 40) + series((10, [])), []),
    ("fridge compressor cycles: nothing", circuit(False), T21, series((8, [])) + fridge(4), []),
    ("heater cycling on its thermostat: resistive-load once 10 min on, 6 polls steady",
     circuit(False), T21,
     series((8, []), (6, [(2000.0, 1.0)]), (4, []), (6, [(2000.0, 1.0)])),
     [("resistive-load", 23)]),
    ("a kettle for 4 minutes: nothing", circuit(False), T21,
     series((8, []), (4, [(1800.0, 1.0)]), (20, [])), []),
    ("unknown 150 W load, PF 0.9, flat, at night on a public circuit, first day: nothing",
     circuit(False), T21, series((8, []), (90, [(150.0, 0.9)])), []),
    ("the same by day: nothing", circuit(False), T10, series((8, []), (90, [(150.0, 0.9)])),
     []),
    ("steady load: nothing", circuit(), T21, series((60, [])), []),
    ("stair lamps switching on at dusk: nothing", circuit(), DUSK - 10 * MIN,
     series((10, []), (60, [(86.0, 0.9)])), []),
    ("a one-poll spike: nothing", circuit(), T21,
     series((8, []), (1, [(400.0, 0.6)]), (30, [])), []),
]


@pytest.mark.parametrize(("rule", "start", "polls", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_circuit_series(rule: CircuitRule, start: float, polls: list[Poll],
                        expected: list[tuple[str, int]]) -> None:
    """Each load series raises exactly the expected alarms at the expected poll."""
    raised = run(rule, start, polls)
    assert [(c.rule, round((c.ts - start) / MIN)) for c in raised] == expected


def test_ebike_message_carries_the_evidence() -> None:
    """The e-bike condition has its confidence as value; the message the step, its own PF
    (from S, not from the var register), its duration and the baseline."""
    raised = run(circuit(), T21 - 20 * MIN, series((5, [])) + charger(180, 0.55, 50))
    assert len(raised) == 1
    c = raised[0]
    assert c.severity is Severity.WARNING
    assert c.value is not None
    assert 0.6 <= c.value <= 1.0
    assert c.message.startswith(f"b1-box1-stair: likely e-bike charging, confidence "
                                f"{c.value:.2f} (step +180 W on 90 W, now +")
    assert "PF of the step 0.55" in c.message
    assert "45 min since 20:45, creeping up)" in c.message


def test_a_second_charger_on_a_charging_circuit_is_its_own_alarm() -> None:
    """A second bike plugged in while the first charges: a layer on top, alarm channel L1.2."""
    first = charger(180, 0.55, 120)
    second = charger(150, 0.6, 70)
    polls = series((8, [])) + first[:50] + [a + b[1:] for a, b in zip(first[50:], second,
                                                                       strict=True)]
    raised = run(circuit(), T21, polls)
    assert [(c.rule, c.channel) for c in raised] == [("ebike-charging", "L1"),
                                                    ("ebike-charging", "L1.2")]
    assert "(a second load)" in raised[1].message


def test_a_heater_next_to_a_charger_is_not_folded_into_it() -> None:
    """A heater switched on while a charger is tracked opens its own layer."""
    polls = series((8, [])) + charger(180, 0.55, 60)
    polls += [[*poll, (1500.0, 1.0)] for poll in charger(194, 0.55, 15)]
    raised = run(circuit(False), T21, polls)
    assert [c.rule for c in raised] == ["ebike-charging", "resistive-load"]


def test_routine_timer_load_is_not_an_ebike() -> None:
    """A lobby light on a timer (same size, same minute every evening): quiet on every day."""
    rule = circuit(False)
    state: CircuitState | None = None
    raised: list[Condition] = []
    start = T21 - 150 * MIN  # 18:30
    for day in range(4):
        polls = series((30, []), (270, [(120.0, 0.55)]), (60, []))
        for k, loads in enumerate(polls):
            for reading in readings(start + day * 86400 + (k - 30) * MIN, loads):
                state, conditions = rule.step(state, reading)
                raised += [c for c in conditions if c.active]
    assert raised == []


def test_bad_quality_is_ignored() -> None:
    """Bad readings neither start nor feed a layer."""
    assert run(circuit(), T21, series((8, [])) + charger(180, 0.55, 60), Quality.BAD) == []


def test_layer_end_clears_the_alarm() -> None:
    """When the step goes away the e-bike alarm clears, once."""
    rule = circuit()
    state: CircuitState | None = None
    seen: list[tuple[str, bool]] = []
    polls = series((8, [])) + charger(180, 0.55, 60) + series((5, []))
    for k, loads in enumerate(polls):
        for reading in readings(T21 + k * MIN, loads):
            state, conditions = rule.step(state, reading)
            seen += [(c.rule, c.active) for c in conditions if c.rule == "ebike-charging"]
    assert seen == [("ebike-charging", False), ("ebike-charging", True),
                    ("ebike-charging", False)]


# -- unmetered taps ---------------------------------------------------------------------------

COUNTERS = {"b1-box1-main": (Quantity.ENERGY_IMPORT, "total"),
            "b1-box1-sockets": (Quantity.ENERGY_IMPORT, "L1"),
            "b1-box1-stair": (Quantity.ENERGY_IMPORT, "L1")}
TAP = TapRule(site=SITE, params=PARAMS, incomer="b1-box1-main",
              subs=frozenset({"b1-box1-sockets", "b1-box1-stair"}), counters=COUNTERS,
              where="b1 box 1")


def feed_tap(minutes: int, tap_w: float, tap_from: int = 0, tap_to: int = 10**6,
             skew: float = 0.0, start: float = T21) -> list[tuple[int, bool, Condition]]:
    """Counters read a minute apart, sub-meters ``skew`` s after the incomer, with loads that
    move between reads (a compressor, a lift): sockets 1000 W +- 400 W, stair 90 W, the box's
    tap from/to minute; (minute, active, condition) per change."""
    state: TapState | None = None
    out: list[tuple[int, bool, Condition]] = []
    energy = {"b1-box1-main": 50_000.0, "b1-box1-sockets": 20_000.0, "b1-box1-stair": 3000.0}
    step = 10.0
    for k in range(int(minutes * 60 / step)):
        t = k * step
        sockets = 1000.0 + (400.0 if (k // 7) % 2 else -400.0)
        tap = tap_w if tap_from * 60 <= t < tap_to * 60 else 0.0
        watts = {"b1-box1-sockets": sockets, "b1-box1-stair": 90.0,
                 "b1-box1-main": sockets + 90.0 + tap}
        for name, w in watts.items():
            energy[name] += w * step / 3.6e6
        if k % 6:
            continue
        for name, (quantity, channel) in COUNTERS.items():
            offset = 0.0 if name == "b1-box1-main" else skew
            reading = Reading(start + t + offset, name, quantity, energy[name], channel=channel)
            state, conditions = TAP.step(state, reading)
            out += [(int(t // 60), c.active, c) for c in conditions]
    return out


def test_tap_balance_is_quiet_without_a_tap_even_with_meters_read_apart() -> None:
    """No tap: the first verdict is healthy and nothing changes, with sub-meters read 50 s
    after the incomer while the sockets' load swings by 800 W."""
    changes = feed_tap(180, 0.0, skew=50.0)
    assert [(active) for _, active, _ in changes] == [False]


def test_tap_raises_after_window_and_delay_and_clears() -> None:
    """A 300 W tap: raised once the 30-min window shows it for tap_delay, held through a
    quiet spell shorter than tap_clear_after, cleared after a longer one."""
    changes = feed_tap(24 * 60, 300.0, tap_from=60, tap_to=150, skew=40.0)
    assert [active for _, active, _ in changes] == [False, True, False]
    raised_at, cleared_at = changes[1][0], changes[2][0]
    assert 60 + 10 <= raised_at <= 60 + 30 + 10
    hold = PARAMS.tap_clear_after / 60
    assert 150 + hold <= cleared_at <= 150 + 30 + hold + 2
    message = changes[1][2].message
    assert message.startswith("b1 box 1: incomer averaged ")
    assert "W more than its metered sub-circuits" in message
    assert changes[1][2].severity is Severity.CRITICAL


def test_tap_below_tolerance_stays_quiet() -> None:
    """A 60 W gap is inside the class-1 tolerance (80 W + 3 %)."""
    assert [active for _, active, _ in feed_tap(180, 60.0)] == [False]


def test_tap_freezes_while_a_sub_meter_is_silent() -> None:
    """Without every counter the balance is not guessed."""
    state: TapState | None = None
    for k in range(60):
        ts = T21 + k * MIN
        for name in ("b1-box1-main", "b1-box1-sockets"):
            quantity, channel = COUNTERS[name]
            state, conditions = TAP.step(state, Reading(ts, name, quantity, 1000.0 + k,
                                                        channel=channel))
            assert conditions == []


# -- through the catalog and the engine -------------------------------------------------------

def _meter(name: str, kind: str, phases: tuple[str, ...]) -> DeviceInfo:
    points = frozenset((q, ph) for q in (Quantity.POWER, Quantity.APPARENT_POWER,
                                         Quantity.VOLTAGE, Quantity.CURRENT)
                       for ph in phases)
    counter = "total" if len(phases) > 1 else "L1"
    return DeviceInfo(name=name, kind=kind, profile_kind="meter", poll=60,
                      points=points | {(Quantity.ENERGY_IMPORT, counter)},
                      building="1", box="1", rated_current=16.0 if kind != "incomer" else 63.0)


def test_engine_builds_box_rules() -> None:
    """build_rules: watched sub-circuits get step signatures reading S, the box a shared tap
    reading every energy counter; a box with a meter lacking a counter gets no balance."""
    infos = [_meter("b1-box1-main", "incomer", ("L1", "L2", "L3")),
             _meter("b1-box1-stair", "lighting", ("L1",)),
             _meter("b1-box1-sockets", "sockets", ("L1",))]

    def params(rule: str, device: str) -> Any:
        return WiringConfig() if rule == "wiring" else type("Off", (), {"enabled": False})()

    built = build_rules(SITE, infos, params)
    assert [type(r).__name__ for r in built["b1-box1-stair"]] == ["CircuitRule", "TapRule"]
    assert [type(r).__name__ for r in built["b1-box1-sockets"]] == ["TapRule"]
    assert built["b1-box1-main"][0] is built["b1-box1-sockets"][0]
    stair = built["b1-box1-stair"][0]
    assert isinstance(stair, CircuitRule)
    assert stair.s_from == VA
    tap = built["b1-box1-main"][0]
    assert isinstance(tap, TapRule)
    assert tap.counters["b1-box1-main"] == (Quantity.ENERGY_IMPORT, "total")
    no_counter = [infos[0], infos[1],
                  DeviceInfo(name="b1-box1-sockets", kind="sockets", profile_kind="meter",
                             points=frozenset({(Quantity.POWER, "L1")}), building="1", box="1")]
    assert "TapRule" not in [type(r).__name__ for r in
                             build_rules(SITE, no_counter, params)["b1-box1-main"]]


def test_engine_raises_ebike_once() -> None:
    """Through the engine and the alarm machine: one raised event for one charge."""
    infos = [_meter("b1-box1-stair", "lighting", ("L1",))]

    def params(rule: str, device: str) -> Any:
        return WiringConfig() if rule == "wiring" else type("Off", (), {"enabled": False})()

    built = build_rules(SITE, infos, params)
    engine = RuleEngine(devices={"b1-box1-stair": DeviceRules(
        rules=tuple(built["b1-box1-stair"]), context={"building": "1", "box": "1"})})
    raised = []
    for k, loads in enumerate(series((8, [])) + charger(200, 0.6, 70)):
        for reading in readings(T21 + k * MIN, loads):
            raised += [(e.alarm.alarm_id, round((e.ts - T21) / MIN))
                       for e in engine.evaluate(reading) if e.kind is EventKind.RAISED]
    assert raised == [("ebike-charging:b1-box1-stair:L1", 53)]


def test_evidence_reaches_the_alarm_its_json_and_influxdb() -> None:
    """The step's numbers travel with the alarm: as_dict (MQTT, webhooks, the store) and the
    ``alarms`` point's fields."""
    from daemon.sinks.lineprotocol import alarm_line
    from daemon.store import alarm_from_json, alarm_to_json

    infos = [_meter("b1-box1-stair", "lighting", ("L1",))]
    built = build_rules(SITE, infos, lambda rule, device: WiringConfig() if rule == "wiring"
                        else type("Off", (), {"enabled": False})())
    engine = RuleEngine(devices={"b1-box1-stair": DeviceRules(
        rules=tuple(built["b1-box1-stair"]), context={"building": "1"})})
    events = [e for k, loads in enumerate(series((8, [])) + charger(200, 0.6, 50))
              for reading in readings(T21 + k * MIN, loads)
              for e in engine.evaluate(reading) if e.kind is EventKind.RAISED]
    alarm = events[0].alarm
    assert alarm.evidence["step_w"] == pytest.approx(200, abs=5)
    assert alarm.evidence["step_pf"] == pytest.approx(0.6, abs=0.02)
    assert alarm.evidence["baseline_w"] == pytest.approx(90, abs=1)
    assert alarm.evidence["duration_min"] == 45
    assert alarm.as_dict()["evidence"] == alarm.evidence
    assert alarm_from_json(alarm_to_json(alarm)).evidence == alarm.evidence
    line = alarm_line(events[0], "site")
    assert f"step_w={alarm.evidence['step_w']}" in line
    assert "step_pf=" in line


def test_a_heater_is_one_alarm_through_its_thermostat_cycles() -> None:
    """Four thermostat cycles: raised once, cleared once, after a whole resistive_window off."""
    rule = circuit(False)
    state: CircuitState | None = None
    seen: list[tuple[bool, int]] = []
    polls = series((8, [])) + series((8, [(2000.0, 1.0)]), (5, [])) * 4 + series((40, []))
    for k, loads in enumerate(polls):
        for reading in readings(T21 + k * MIN, loads):
            state, conditions = rule.step(state, reading)
            seen += [(c.active, k) for c in conditions if c.rule == "resistive-load"]
    assert [active for active, _ in seen] == [False, True, False]
    last_on = 8 + 13 * 3 + 8
    assert seen[2][1] >= last_on + PARAMS.resistive_window / MIN


def test_lamps_going_off_at_dawn_end_their_own_layer_not_the_charger_on_top() -> None:
    """Stair lamps on at dusk (their own layer), a charger on top at night; at dawn the lamps'
    layer closes and the charger keeps its baseline (never below zero, never cleared)."""
    day = sun_day(SITE, T10)
    start = day.dusk - 10 * MIN
    dawn_next = sun_day(SITE, T10 + 86400).dawn
    polls: list[Poll] = []
    charge_from, charge_to = day.dusk + 4 * 3600, dawn_next + 2 * 3600
    k = 0
    while start + k * MIN < charge_to + 30 * MIN:
        t = start + k * MIN
        loads: Poll = [BASE]
        if day.dusk <= t < dawn_next:
            loads.append((300.0, 0.95))  # the stair lamps on their photocell
        if charge_from <= t < charge_to:
            hours = min((t - charge_from) / 3600, 3.0)  # constant current, then a plateau
            loads.append((180.0 * (1 + 0.08 * hours), 0.55))
        polls.append(loads)
        k += 1
    rule = circuit()
    state: CircuitState | None = None
    events: list[tuple[str, bool, float]] = []
    for n, loads in enumerate(polls):
        for reading in readings(start + n * MIN, loads):
            state, conditions = rule.step(state, reading)
            events += [(c.rule, c.active, c.ts) for c in conditions
                       if c.rule == "ebike-charging"]
            assert state is not None
            assert all(layer.base >= 0 for layer in state.layers), state.layers
    raised = [(active, ts) for _, active, ts in events if active]
    assert len(raised) == 1
    assert charge_from < raised[0][1] < charge_from + 50 * MIN
    cleared = [ts for _, active, ts in events if not active and ts > raised[0][1]]
    assert cleared
    assert cleared[0] >= charge_to  # cleared when the charger stops, not at dawn
