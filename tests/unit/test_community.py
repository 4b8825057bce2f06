"""The pure community model: load curves, CC/CV, dusk/dawn, lamp modes, taps, determinism,
energy counters, scenario validation and ground truth."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from astral import Observer
from astral.sun import dawn, dusk
from hypothesis import given, settings
from hypothesis import strategies as st

from core.durations import parse_duration
from daemon.config import validate_config
from drivers.profile import load_profile
from simulator.community import (
    CommunityModel,
    Endpoints,
    FirePanelEndpoint,
    ScenarioError,
    available,
    daemon_config,
    ground_truth,
    load_scenario,
    truth_document,
)
from simulator.community.events import ebike_joules, ebike_watts
from simulator.community.model import HOUSEHOLD, shape_at
from simulator.community.scenario import Scenario, parse_scenario
from simulator.community.timeparse import parse_at
from simulator.toml_writer import dump_toml

EVENING = load_scenario("evening")


def scenario(events: list[dict[str, Any]] | None = None, **community: Any) -> Scenario:
    """A one-building scenario starting 2024-11-15 17:00 Shanghai, lasting a day."""
    raw: dict[str, Any] = {
        "scenario": {"start": "2024-11-15T17:00", "duration": "1d", "seed": 9},
        "community": {"buildings": 1, **community},
        "event": events or [],
    }
    return parse_scenario(raw)


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw)
    return info.value.errors


# -- time parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30m", 1800.0), ("4h", 14400.0), ("1h30m", 5400.0), ("2d", 172800.0),
    ("3w", 1814400.0), (45, 45.0),
])
def test_durations(text: str | int, seconds: float) -> None:
    """Durations accept units s/m/h/d/w, compounds and bare seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4x", "h", "-3s", "1h 30"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_clock_times_roll_to_the_next_day() -> None:
    """"18:30" is the next 18:30 at or after the start; "+30m" an offset."""
    start, zone = EVENING.start, EVENING.zone  # 17:00
    assert parse_at("18:30", start, zone) == start + 5400
    assert parse_at("16:00", start, zone) == start + 23 * 3600
    assert parse_at("+30m", start, zone) == start + 1800


# -- load curves and e-bikes ----------------------------------------------------------------

def test_household_curve_has_trough_bump_and_evening_peak() -> None:
    """Night trough, morning bump, evening peak between 19 and 22 h."""
    night = min(shape_at("household", h) for h in (2, 3, 4))
    morning = shape_at("household", 7.5)
    midday = shape_at("household", 14)
    peak_hour = max(range(24), key=lambda h: HOUSEHOLD[h])
    assert night < midday < morning < 1.0
    assert 19 <= peak_hour <= 22


def test_sockets_load_follows_the_curve() -> None:
    """The sockets circuit draws far more at 20:00 than at 03:00."""
    sc = scenario()
    model = CommunityModel(sc)
    evening = model.sample(sc.start + 3 * 3600)["b1-box1-sockets"][("power", "L1")]
    night = model.sample(sc.start + 10 * 3600)["b1-box1-sockets"][("power", "L1")]
    assert evening > 3 * night


def test_ebike_cc_then_monotone_cv_taper() -> None:
    """CC near cc_w for its phase, then a non-increasing taper to end_fraction, then off."""
    cc, cv, w = 3 * 3600.0, 3600.0, 220.0
    cc_values = [ebike_watts(t, w, cc, cv, 0.1) for t in range(0, int(cc), 60)]
    assert all(0.9 * w <= v <= w for v in cc_values)
    taper = [ebike_watts(cc + t, w, cc, cv, 0.1) for t in range(0, int(cv), 60)]
    assert all(b <= a for a, b in itertools.pairwise(taper))
    assert taper[-1] == pytest.approx(0.1 * w, rel=0.05)
    assert ebike_watts(cc + cv, w, cc, cv, 0.1) == 0.0
    numeric = sum(ebike_watts(t + 0.5, w, cc, cv, 0.1) for t in range(int(cc + cv)))
    assert ebike_joules(cc + cv, w, cc, cv, 0.1) == pytest.approx(numeric, rel=1e-4)


def test_ebike_lowers_the_circuit_power_factor() -> None:
    """A PF 0.6 charger on a lit stairwell pulls the circuit's PF down."""
    sc = scenario([{"kind": "ebike", "target": "b1-box1-stair", "at": "20:00"}])
    model = CommunityModel(sc)
    t = sc.start + 3.5 * 3600
    with_bike = model.sample(t)["b1-box1-stair"]
    without = model.sample(t, without={0})["b1-box1-stair"]
    assert with_bike[("power", "L1")] - without[("power", "L1")] == pytest.approx(
        ebike_watts(1800, 220, 3 * 3600, 3600, 0.1))
    assert with_bike[("power_factor", "L1")] < without[("power_factor", "L1")] - 0.1


# -- lighting ---------------------------------------------------------------------------------

def test_lamps_switch_at_civil_dusk_and_dawn() -> None:
    """Relays follow astral's civil dusk and dawn for the site; current = lamps x 0.18 A."""
    sc = scenario(lamps_per_channel=3)
    site = sc.community
    observer = Observer(latitude=site.latitude, longitude=site.longitude)
    evening = dusk(observer, date(2024, 11, 15), tzinfo=sc.zone).timestamp()
    morning = dawn(observer, date(2024, 11, 16), tzinfo=sc.zone).timestamp()
    model = CommunityModel(sc)
    for t, on in ((evening - 60, False), (evening + 60, True), (morning - 60, True),
                  (morning + 60, False)):
        lights = model.sample(t)["b1-lights"]
        assert lights[("relay", "1")] == float(on), t
        assert lights[("lamp_current", "1")] == pytest.approx(3 * 0.18 if on else 0, abs=0.01)
    assert model.sample(evening + 60)["b1-lights"][("lux", None)] < 5
    assert model.sample(evening - 3 * 3600)["b1-lights"][("lux", None)] > 1000


@pytest.mark.parametrize(("mode", "expected_at_night", "expected_by_day"), [
    ("one", 3 * 0.18, 0.0),
    ("all", 0.0, 0.0),
    ("day-burning", 4 * 0.18, 4 * 0.18),
])
def test_lamp_failure_modes(mode: str, expected_at_night: float,
                            expected_by_day: float) -> None:
    """One lamp's share missing, all missing, or burning by day with the relay off."""
    sc = scenario([{"kind": "lamp-failure", "target": "b1-lights", "at": "17:01",
                    "params": {"channel": 2, "mode": mode}}], lamps_per_channel=4)
    model = CommunityModel(sc)
    night = model.sample(sc.start + 4 * 3600)["b1-lights"]
    day = model.sample(sc.start + 20 * 3600)["b1-lights"]  # 13:00 next day
    assert night[("lamp_current", "2")] == pytest.approx(expected_at_night, abs=0.01)
    assert day[("lamp_current", "2")] == pytest.approx(expected_by_day, abs=0.01)
    assert day[("relay", "2")] == 0.0
    assert night[("lamp_current", "1")] == pytest.approx(4 * 0.18, abs=0.01)  # others fine


def test_cycling_lamp_goes_on_and_off() -> None:
    """A cycling channel alternates between dark and lit within each period."""
    sc = scenario([{"kind": "lamp-failure", "target": "b1-lights", "at": "20:00",
                    "params": {"channel": 1, "mode": "cycling", "period": "2m"}}])
    model = CommunityModel(sc)
    start = sc.events[0].start
    values = [model.sample(start + k * 30 + 5)["b1-lights"][("lamp_current", "1")]
              for k in range(8)]
    assert values[:4] == pytest.approx([0.0, 0.0, 0.36, 0.36], abs=0.01)
    assert values[4:] == pytest.approx(values[:4], abs=0.01)


# -- wiring -----------------------------------------------------------------------------------

def test_tap_makes_incomer_exceed_the_sub_circuits() -> None:
    """Incomer minus its sub-circuits on the tapped phase grows by the tap, and only there."""
    sc = load_scenario("unmetered-tap")
    model = CommunityModel(sc)
    tap = sc.events[0]
    box = sc.community.buildings[0].boxes[1]

    def excess(t: float, q: str) -> float:
        s = model.sample(t)
        subs = sum(s[c.name][(q, "L1")] for c in box.circuits if c.phase == "L2")
        return s[box.incomer][(q, "L2")] - subs

    inside, outside = (tap.start + tap.end) / 2, tap.start - 600
    volts = model.sample(inside)[box.incomer][("voltage", "L2")]
    base = box.base_w * 1.2  # the box's own draw with its noise
    assert excess(inside, "power") - 9 * volts * 0.95 == pytest.approx(box.base_w, abs=base)
    assert excess(outside, "power") == pytest.approx(box.base_w, abs=base)
    assert 8.0 < excess(inside, "current") < 9.6  # amps add as phasors, close to 9 A here
    assert excess(outside, "current") < 0.6


# -- determinism and counters -----------------------------------------------------------------

def test_noise_is_deterministic_and_order_free() -> None:
    """Same scenario, same values whatever the order; another seed gives other values."""
    t1, t2 = EVENING.start + 1234.5, EVENING.start + 7777.0
    a = CommunityModel(EVENING)
    b = CommunityModel(EVENING)
    assert a.sample(t1) == b.sample(t1)
    second = b.sample(t2)
    assert CommunityModel(EVENING).sample(t2) == second
    other = CommunityModel(dataclasses.replace(EVENING, seed=8)).sample(t1)
    assert other["b12-box1-sockets"] != a.sample(t1)["b12-box1-sockets"]


def test_sample_of_some_devices_equals_the_full_sample() -> None:
    """Sampling a subset gives the same values as the full sample."""
    model = CommunityModel(EVENING)
    t = EVENING.start + 4 * 3600
    full = model.sample(t)
    part = model.sample(t, ["b12-box2-rc", "b13-lights", "b14-box1-public"])
    assert part == {k: full[k] for k in part}
    assert set(part) == {"b12-box2-rc", "b13-lights", "b14-box1-public"}


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 6 * 86400), st.floats(0, 6 * 3600))
def test_energy_never_decreases(offset: float, step: float) -> None:
    """Every energy counter at t + step is at least its value at t."""
    sc = load_scenario("ebike-night")
    model = CommunityModel(sc)
    t = sc.start - 86400 + offset
    before, after = model.sample(t), model.sample(t + step)
    for device, values in before.items():
        for key, value in values.items():
            if key[0] in ("energy", "energy_import"):
                assert after[device][key] >= value - 1e-9, (device, key)


def test_every_served_key_is_a_profile_point() -> None:
    """The model serves exactly the points of each device's profile."""
    model = CommunityModel(EVENING)
    sample = model.sample(EVENING.start)
    for device in EVENING.community.devices():
        keys = {(p.quantity.value, p.channel) for p in load_profile(device.profile).points}
        assert set(sample[device.name]) == keys, device.name


def test_leakage_creeps_to_the_alarm() -> None:
    """Residual current ramps to to_ma and sets the detector's alarm bit; heat sets bit 1."""
    sc = scenario([
        {"kind": "leakage-creep", "target": "b1-box1-rc", "at": "18:00",
         "params": {"to_ma": 400, "ramp": "1h"}},
        {"kind": "cable-heating", "target": "b1-box1-rc", "at": "18:00",
         "params": {"channel": 1, "to_c": 100, "ramp": "30m"}},
    ])
    model = CommunityModel(sc)
    half = model.sample(sc.start + 3600 + 1800)["b1-box1-rc"]
    full = model.sample(sc.start + 3 * 3600)["b1-box1-rc"]
    assert 200 < half[("residual_current", "1")] < 320
    assert full[("residual_current", "1")] == pytest.approx(400, abs=40)
    assert full[("temperature", "1")] == pytest.approx(100, abs=1)
    assert int(full[("detector_alarm", None)]) & 0b11 == 0b11


# -- scenarios --------------------------------------------------------------------------------

def test_shipped_scenarios_load() -> None:
    """Every shipped scenario validates; the benchmark one has many generated events."""
    names = available()
    assert {"evening", "ebike-night", "lamp-failures", "unmetered-tap", "smoke",
            "weeks"} <= set(names)
    for name in names:
        assert load_scenario(name).events, name
    weeks = load_scenario("weeks")
    assert weeks.duration >= 14 * 86400
    assert sum(e.generated for e in weeks.events) > 30
    assert len({e.kind for e in weeks.events}) >= 8


def test_generated_events_are_deterministic() -> None:
    """The same seed generates the same events; another seed others."""
    path = Path(__file__).parents[2] / "simulator" / "scenarios" / "weeks.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert parse_scenario(raw).events == load_scenario("weeks").events
    raw["scenario"]["seed"] = 1
    assert parse_scenario(raw).events != load_scenario("weeks").events


BASE: dict[str, Any] = {"scenario": {"start": "2024-11-15T17:00", "duration": "4h"},
                        "community": {"buildings": 2}}


@pytest.mark.parametrize(("extra", "message"), [
    ({"event": [{"kind": "ebike", "target": "b9-box1-stair", "at": "18:00"}]},
     "event[0].target: no circuit 'b9-box1-stair' for ebike (known: b1-box1-sockets"),
    ({"event": [{"kind": "boom", "target": "b1-box1-stair"}]},
     "event[0].kind: unknown kind 'boom'"),
    ({"event": [{"kind": "heater", "target": "b1-box1-stair", "params": {"watts": 9e9}}]},
     "event[0].params.watts: must be 200-5000 (got 9000000000.0)"),
    ({"event": [{"kind": "heater", "target": "b1-box1-stair", "params": {"volts": 1}}]},
     "event[0].params.volts: heater has no parameter 'volts'"),
    ({"event": [{"kind": "heater", "target": "b1-box1-stair", "at": "+5h"}]},
     "event[0].at: '+5h' is outside the scenario"),
    ({"event": [{"kind": "heater", "target": "b1-lights"}]},
     "event[0].target: no circuit 'b1-lights' for heater"),
    ({"event": [{"kind": "lamp-failure", "target": "b1-lights",
                 "params": {"mode": "flicker"}}]},
     "event[0].params.mode: must be one of one, all, day-burning, cycling (got 'flicker')"),
    ({"event": [{"kind": "heater", "target": "b1-box1-stair", "at": "25:00"}]},
     "event[0].at: not a clock time: '25:00'"),
    ({"generate": [{"kind": "ebike", "targets": "*-attic"}]},
     "generate[0].targets: '*-attic' matches no target of ebike"),
    ({"scenario": {"start": "yesterday"}}, "scenario.start: not a local ISO datetime"),
    ({"scenario": {"start": "2024-11-15T17:00", "compression": 0}},
     "scenario.compression: must be a number > 0 (got 0)"),
    ({"community": {"buildings": 2, "timezone": "Mars/Olympus"}},
     "community.timezone: unknown time zone (got 'Mars/Olympus')"),
    ({"community": {"buildings": 2, "lamp_channels": 9}},
     "community.buildings[0].lamp_channels: must be a whole number 1-8 (got 9)"),
    ({"community": {"buildings": [{"id": "7"}, {"id": "7"}]}},
     "community.buildings[1].id: '7' is used by another building"),
    ({"community": {"buildings": 2, "flats": 3}}, "community.flats: unknown key"),
])
def test_validation_errors_name_field_and_value(extra: dict[str, Any], message: str) -> None:
    """Each mistake gives one line naming where it is and what was given."""
    raw = {**BASE, **extra}
    errors = errors_of(raw)
    assert any(message in e for e in errors), errors


def test_all_errors_are_reported_at_once() -> None:
    """Several bad events give several lines."""
    raw = {**BASE, "event": [{"kind": "heater", "target": "nowhere"},
                             {"kind": "ebike", "target": "b1-box1-stair",
                              "params": {"pf": 3}}]}
    assert len(errors_of(raw)) == 2


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    """A wrong name says which scenarios exist."""
    with pytest.raises(ScenarioError, match=r"shipped: .*evening"):
        load_scenario("nope")


def test_overrides_clip_events() -> None:
    """A shorter run drops later events and clips running ones; compression changes offsets."""
    short = EVENING.with_overrides(duration=3 * 3600, compression=600)
    assert short.end == EVENING.start + 3 * 3600
    assert all(e.start < short.end and e.end <= short.end for e in short.events)
    assert len(short.events) < len(EVENING.events)
    assert ground_truth(short)[0].real_start == (short.events[0].start - short.start) / 600


# -- truth and config -------------------------------------------------------------------------

def test_truth_labels_every_event() -> None:
    """One record per event, labelled and located, with real offsets and affected points."""
    truth = {r.kind: r for r in ground_truth(EVENING)}
    assert set(truth) == {"lamp-failure", "ebike", "leakage-creep", "heater", "smoke-fire",
                          "main-leak", "valve-closed"}
    leak = truth["main-leak"]
    assert (leak.target, leak.label, leak.channel) == ("b14-firewater", "firewater-pressure-low",
                                                       "1")
    assert leak.effect == {"to_mpa": 0.05, "ramp_s": 7200.0}
    bike = truth["ebike"]
    assert (bike.target, bike.building, bike.box, bike.circuit, bike.channel) == \
        ("b12-box1-stair", "12", "1", "stair", "L2")
    assert bike.label == "ebike-charging"
    assert bike.start_local == "2024-11-15T19:05:00+08:00"
    assert bike.end_local == "2024-11-15T22:35:00+08:00"
    assert bike.real_start == (bike.start - EVENING.start) / EVENING.compression
    assert bike.effect["watts"] == 230.0
    assert ("b12-box1-main", "power", "L2") in {(p.device, p.quantity, p.channel)
                                                for p in bike.points}
    lamp = truth["lamp-failure"]
    assert lamp.effect["lamp_current_delta_a"] == pytest.approx(-0.18)
    fire = truth["smoke-fire"]
    assert fire.effect["panel"] == "b13-fire-panel"
    assert fire.channel == "1-1-2"
    assert {(p.device, p.quantity) for p in fire.points} == {("b13-smoke2", "fire"),
                                                             ("b13-fire-panel", "fire")}


def test_firewater_events_pull_the_pressure_down() -> None:
    """A leaking main declines slowly and stays above 0.07 MPa for its first hour; a closed
    valve drops within a minute and stays down; the tank level and the loop currents follow."""
    model = CommunityModel(EVENING)
    leak = next(e for e in EVENING.events if e.kind == "main-leak")
    valve = next(e for e in EVENING.events if e.kind == "valve-closed")

    def pressure(name: str, t: float) -> float:
        return model.sample(t, [name])[name][("water_pressure", "1")]

    before = pressure("b14-firewater", leak.start - 60)
    assert 0.28 <= before <= 0.32
    hour = pressure("b14-firewater", leak.start + 3600)
    assert 0.07 < hour < before - 0.08  # declining, not yet low
    assert pressure("b14-firewater", leak.start + 2 * 3600 + 60) == pytest.approx(0.05)
    assert pressure("b12-firewater", valve.start + 60) == pytest.approx(0.04)
    assert pressure("b12-firewater", valve.start + 3600) == pytest.approx(0.04)
    served = model.sample(valve.start + 60, ["b12-firewater"])["b12-firewater"]
    assert served[("loop_current", "1")] == pytest.approx(4.4, abs=0.01)
    assert 2.9 < served[("water_level", "2")] < 3.1


def test_demo_community_has_firewater_and_a_chint_meter() -> None:
    """The demo's community polls two fire-water converters and one CHINT DDSU666."""
    devices = {d.name: d for d in EVENING.community.devices()}
    assert devices["b12-firewater"].profile == "firewater-transmitter"
    assert devices["b14-firewater"].profile == "firewater-transmitter"
    assert [d.name for d in devices.values() if d.profile.startswith("chint-")] == \
        ["b13-pump-meter"]
    meter = CommunityModel(EVENING).sample(EVENING.start, ["b13-pump-meter"])["b13-pump-meter"]
    assert 150 < meter[("power", "L1")] < 210
    assert meter[("power_factor", "L1")] == 0.85


def test_truth_document_is_json() -> None:
    """The truth file round-trips through JSON with the run's frame of reference."""
    doc = json.loads(json.dumps(truth_document(EVENING)))
    assert doc["scenario"] == "evening"
    assert doc["compression"] == 120
    assert len(doc["events"]) == len(EVENING.events)


def test_daemon_config_validates(tmp_path: Path) -> None:
    """The generated config passes the daemon's own validation, TOML round trip included."""
    endpoints = Endpoints(
        modbus={b.id: ("127.0.0.1", 15020 + i) for i, b in
                enumerate(EVENING.community.buildings)},
        fire_panels={b.id: FirePanelEndpoint("tcp-server", 19000 + i, "127.0.0.1")
                     for i, b in enumerate(EVENING.community.buildings)})
    raw = tomllib.loads(dump_toml(daemon_config(EVENING.community, endpoints), "test"))
    loaded = validate_config(raw, tmp_path / "firewarden.toml")
    config = loaded.config
    assert len(config.devices) == len(EVENING.community.devices())
    assert len(config.fire_panels) == 3
    stair = config.device("b12-box1-stair")
    assert (stair.kind, stair.building, stair.box, stair.circuit) == \
        ("lighting", "12", "1", "stair")
    assert config.device("b12-box1-main").rated_current == 63.0
    assert math.isclose(config.site.latitude, 31.23)


def test_a_silent_lighting_controller_does_not_break_sampling() -> None:
    """Device faults on a lighting controller are served by the runner, not the model."""
    scenario = parse_scenario({
        "scenario": {"name": "t", "start": "2024-11-15T18:00", "duration": "1h"},
        "community": {"buildings": 1},
        "event": [{"kind": "device-silent", "target": "b1-lights", "at": "+10m"}],
    })
    model = CommunityModel(scenario)
    values = model.sample(scenario.start + 15 * 60)["b1-lights"]
    assert values[("relay", "1")] == 1.0  # after dusk in November: lamps on
    assert model.faults(scenario.start + 15 * 60) == {"b1-lights": "silent"}
