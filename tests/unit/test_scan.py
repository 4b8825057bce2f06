"""The pure parts of ``firewarden scan``: unit lists, plausibility scoring, ranking, settings."""

from __future__ import annotations

import math

import pytest

from core.measurements import Quality, Quantity, Reading
from daemon.scan import (
    IMPLAUSIBLE,
    PLAUSIBLE,
    ZERO,
    Candidate,
    ScanResult,
    UnitsError,
    confidence,
    parse_units,
    plausibility,
    rank,
    scan_bus,
    score_profile,
    unit_range,
)
from drivers.modbus.decode import encode_bit, encode_point, merge_bit
from drivers.modbus.poller import decode_responses, plan_points
from drivers.profile import DataType, Profile, RegisterType, load_profile, shipped_profiles

# -- parse_units -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1", [1]),
    ("1-3", [1, 2, 3]),
    ("1-10,15,20-22", [*range(1, 11), 15, 20, 21, 22]),
    (" 5 , 1 - 2 ", [1, 2, 5]),
    ("3,1-4,2", [1, 2, 3, 4]),
    ("247", [247]),
    ("1-247", list(range(1, 248))),
])
def test_parse_units(text: str, expected: list[int]) -> None:
    """Ranges and single ids, in any order and with spaces, come out sorted and unique."""
    assert parse_units(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "no units"),
    ("   ", "no units"),
    ("1,,3", "empty entry"),
    ("1,", "empty entry"),
    ("abc", "'abc' is not a unit id"),
    ("1-x", "'1-x' is not a unit id"),
    ("1-2-3", "'1-2-3' is not a unit id"),
    ("10-1", "runs backwards"),
    ("0", "outside 1-247 (0 is broadcast"),
    ("0-5", "outside 1-247 (0 is broadcast"),
    ("248", "unit 248 in '248' is outside 1-247"),
    ("200-300", "unit 300 in '200-300' is outside 1-247"),
])
def test_parse_units_errors(text: str, message: str) -> None:
    """Bad lists raise UnitsError (a ValueError) whose message quotes the offending part."""
    with pytest.raises(UnitsError, match=message.replace("(", r"\(")):
        parse_units(text)


def test_parse_units_tcp_range() -> None:
    """Modbus TCP allows a whole byte: 0 and 255 are valid there, 256 is not."""
    assert parse_units("0,255", lowest=0, highest=255) == [0, 255]
    with pytest.raises(UnitsError, match="outside 0-255"):
        parse_units("250-256", lowest=0, highest=255)


# -- plausibility ----------------------------------------------------------------------------

def r(quantity: Quantity, value: float, channel: str | None = None,
      quality: Quality = Quality.GOOD) -> Reading:
    return Reading(ts=0.0, device="d", quantity=quantity, value=value, quality=quality,
                   channel=channel)


@pytest.mark.parametrize(("reading", "expected"), [
    (r(Quantity.VOLTAGE, 230.0), PLAUSIBLE),
    (r(Quantity.VOLTAGE, 0.0), IMPLAUSIBLE),  # a meter that answers has voltage
    (r(Quantity.VOLTAGE, 23_000.0), IMPLAUSIBLE),  # wrong scale
    (r(Quantity.FREQUENCY, 50.0), PLAUSIBLE),
    (r(Quantity.FREQUENCY, 0.0), IMPLAUSIBLE),
    (r(Quantity.POWER_FACTOR, -0.9), PLAUSIBLE),
    (r(Quantity.POWER_FACTOR, 1.5), IMPLAUSIBLE),
    (r(Quantity.CURRENT, 0.0), ZERO),
    (r(Quantity.CURRENT, -1.0), IMPLAUSIBLE),
    (r(Quantity.CURRENT, 12_000.0), IMPLAUSIBLE),
    (r(Quantity.TEMPERATURE, -20.0), PLAUSIBLE),
    (r(Quantity.TEMPERATURE, 3276.7, quality=Quality.BAD), 0.0),  # the device's "no probe"
    (r(Quantity.RESIDUAL_CURRENT, 3_500.0), IMPLAUSIBLE),
    (r(Quantity.BATTERY, 250.0), IMPLAUSIBLE),
    (r(Quantity.POWER, math.nan, quality=Quality.BAD), IMPLAUSIBLE),  # garbage float32
    (r(Quantity.ENERGY, math.inf, quality=Quality.BAD), IMPLAUSIBLE),
    (r(Quantity.ONLINE, 1.0), 0.0),  # health quantities say nothing about the map
])
def test_plausibility(reading: Reading, expected: float) -> None:
    """In-range values count, zeros barely, out-of-range and NaN count against, sentinels not."""
    assert plausibility(reading) == expected


def test_bits_are_weak_evidence() -> None:
    """A bit is 0 or 1 on any map, so it counts less than an in-range measurement."""
    assert 0 < plausibility(r(Quantity.FIRE, 1.0), weak=True) < PLAUSIBLE
    assert 0 < plausibility(r(Quantity.DETECTOR_ALARM, 3.0)) < PLAUSIBLE


# -- scoring whole profiles on a device's register image -------------------------------------

Image = dict[RegisterType, dict[int, int]]


def image_of(profile: Profile, values: dict[str, float]) -> Image:
    """The registers a device speaking ``profile`` holds for ``values`` (by point key)."""
    image: Image = {}
    for point in profile.points:
        table = image.setdefault(point.table, {})
        value = values[point.key]
        if point.table.is_bit:
            table[point.address] = int(encode_bit(point, value))
        elif point.type is DataType.BITS:
            table[point.address] = merge_bit(point, table.get(point.address, 0), value)
        else:
            for i, word in enumerate(encode_point(point, value)):
                table[point.address + i] = word
    return image


def readings_from(image: Image, profile: Profile) -> list[Reading]:
    """What scanning with ``profile`` decodes from a device holding ``image``.

    Like the simulator: a table the device does not have fails the read (no readings),
    unmapped registers in a table it has read 0.
    """
    requests = plan_points(profile, profile.points)
    if any(req.table not in image for req in requests):
        return []
    responses: list[list[int] | list[bool]] = []
    for req in requests:
        words = [image[req.table].get(a, 0) for a in range(req.address, req.end)]
        responses.append([bool(w) for w in words] if req.table.is_bit else words)
    return decode_responses(requests, responses, device="d", ts=0.0)


def guess(image: Image) -> list[Candidate]:
    profiles = [load_profile(name) for name in shipped_profiles()]
    return rank([Candidate(p.name, score_profile(p, readings_from(image, p)))
                 for p in profiles])


METER = {"voltage": 231.0, "current": 12.5, "power": 2750.0, "apparent_power": 2890.0,
         "reactive_power": 880.0, "power_factor": 0.95, "frequency": 50.02,
         "energy_import": 8123.4, "energy_export": 0.0, "energy": 8123.4, "voltage_thd": 2.1}


def meter_values(profile: Profile) -> dict[str, float]:
    return {p.key: METER[p.quantity.value] for p in profile.points}


def test_scorer_picks_sdm630_on_sdm630_readings() -> None:
    """A three-phase SDM630 image: sdm630 beats sdm120, whose map is a subset of it."""
    sdm630 = load_profile("eastron-sdm630")
    ranked = guess(image_of(sdm630, meter_values(sdm630)))
    assert [c.profile for c in ranked[:2]] == ["eastron-sdm630", "eastron-sdm120"]
    assert ranked[0].score > 2 * ranked[1].score
    assert all(c.score == 0 for c in ranked[2:])  # holding/coil maps cannot read it


def test_scorer_picks_sdm120_on_sdm120_readings() -> None:
    """A single-phase SDM120 image: sdm630 reads 0 V on L2/L3 and loses despite more points."""
    sdm120 = load_profile("eastron-sdm120")
    ranked = guess(image_of(sdm120, meter_values(sdm120)))
    assert ranked[0].profile == "eastron-sdm120"
    assert ranked[1].profile == "eastron-sdm630"
    assert ranked[0].score > ranked[1].score


def test_scorer_picks_residual_current_detector() -> None:
    """A residual-current/temperature detector image is not taken for a smoke detector."""
    detector = load_profile("residual-current-temperature")
    values = {p.key: 0.0 for p in detector.points}
    values.update({"residual_current/1": 42.0, "temperature/1": 31.5, "temperature/2": 28.0,
                   "temperature/3": 3276.7, "temperature/4": 3276.7})  # two probes absent
    ranked = guess(image_of(detector, values))
    assert ranked[0].profile == "residual-current-temperature"
    # the smoke map decodes residual 42 mA and 31.5 °C as a status word and 315 % battery
    smoke = next(c for c in ranked if c.profile == "modbus-smoke-detector")
    assert smoke.score < ranked[0].score / 2


def test_scorer_picks_smoke_detector() -> None:
    """A healthy smoke detector (all clear, battery 87 %) is recognised as one."""
    smoke = load_profile("modbus-smoke-detector")
    values = {"fire": 0.0, "smoke_fault": 0.0, "obscuration": 0.05, "battery": 87.0}
    ranked = guess(image_of(smoke, values))
    assert ranked[0].profile == "modbus-smoke-detector"
    assert ranked[0].score > 0


@pytest.mark.parametrize("name", ["chint-ddsu666", "chint-dtsu666"])
def test_scorer_picks_chint_meters(name: str) -> None:
    """A CHINT meter's image (floats at 0x2000.., scaled per its manual) is recognised as it."""
    profile = load_profile(name)
    ranked = guess(image_of(profile, meter_values(profile)))
    assert ranked[0].profile == name
    assert ranked[0].score > 0
    assert all(c.score < ranked[0].score for c in ranked[1:])


def test_scorer_picks_firewater_transmitter() -> None:
    """A converter with live 4-20 mA loops (0.32 MPa, 2.6 m) is taken for the transmitter."""
    profile = load_profile("firewater-transmitter")
    values = {"loop_current/1": 7.2, "water_pressure/1": 0.32,
              "loop_current/2": 12.32, "water_level/2": 2.6}
    image = image_of(profile, values)
    ranked = guess(image)
    assert ranked[0].profile == "firewater-transmitter"
    assert ranked[0].score > 0


def test_failed_reads_score_nothing() -> None:
    """A profile whose reads failed (no readings) scores 0, never negative."""
    assert score_profile(load_profile("eastron-sdm630"), []) == 0.0


def test_garbage_scores_zero_not_negative() -> None:
    """Implausible readings pull a score down to 0 at most."""
    profile = load_profile("eastron-sdm120")
    readings = [r(Quantity.VOLTAGE, 0.0, "L1"), r(Quantity.FREQUENCY, 1e9, "L1")]
    assert score_profile(profile, readings) == 0.0


# -- ranking and results ---------------------------------------------------------------------

def test_rank_and_confidence() -> None:
    """Best score first, ties by name; confidence is the best's share of the top two."""
    ranked = rank([Candidate("b", 2.0), Candidate("c", 6.0), Candidate("a", 2.0),
                   Candidate("d", 0.0)])
    assert [c.profile for c in ranked] == ["c", "a", "b", "d"]
    assert confidence(ranked) == 0.75
    assert confidence([Candidate("only", 1.3)]) == 1.0
    assert confidence([Candidate("x", 0.0)]) == 0.0
    assert confidence([]) == 0.0


def test_scan_result_without_a_match() -> None:
    """A unit that answers but matches no profile is 'unknown', with no values."""
    result = ScanResult(unit=9, candidates=(Candidate("a", 0.0, error="exception 2"),))
    assert result.profile is None
    assert result.values() == {}
    assert result.as_json() == {
        "unit": 9, "profile": None, "confidence": 0.0, "values": {},
        "candidates": [{"profile": "a", "score": 0.0, "plausible": 0, "points": 0,
                        "error": "exception 2"}]}


def test_scan_result_values() -> None:
    """Values and key values come from the best profile's good readings only."""
    best = Candidate("m", 3.0, readings=(
        r(Quantity.VOLTAGE, 230.0, "L1"), r(Quantity.VOLTAGE, 231.0, "L2"),
        r(Quantity.TEMPERATURE, 3276.7, "2", Quality.BAD), r(Quantity.CURRENT, 4.0, "L1")))
    result = ScanResult(unit=1, candidates=(best, Candidate("n", 1.0)))
    assert result.values() == {"voltage/L1": 230.0, "voltage/L2": 231.0, "current/L1": 4.0}
    assert [(k.quantity, k.channel) for k in result.key_values()] == [
        (Quantity.VOLTAGE, "L1"), (Quantity.CURRENT, "L1")]
    assert result.runner_up is not None
    assert result.runner_up.profile == "n"


# -- settings --------------------------------------------------------------------------------

def test_scan_bus_tcp_and_serial() -> None:
    """--host means TCP (port 502 by default); without it --port is a serial device."""
    tcp = scan_bus(host="10.0.0.5", port=None)
    assert (tcp.type, tcp.host, tcp.port, tcp.timeout) == ("tcp", "10.0.0.5", 502, 0.3)
    assert unit_range(tcp) == (0, 255)
    gateway = scan_bus(host="gw", port="4001", rtu_over_tcp=True)
    assert (gateway.type, gateway.port) == ("rtu-over-tcp", 4001)
    assert unit_range(gateway) == (1, 247)
    rtu = scan_bus(host=None, port="/dev/ttyUSB0", baudrate=2400, parity="E", timeout=0.5)
    assert (rtu.type, rtu.port, rtu.baudrate, rtu.parity, rtu.timeout) == (
        "rtu", "/dev/ttyUSB0", 2400, "E", 0.5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"host": None, "port": None}, "give --port DEVICE"),
    ({"host": "gw", "port": "serial0"}, "with --host, --port is a TCP port"),
    ({"host": None, "port": "/dev/ttyS0", "rtu_over_tcp": True}, "needs --host"),
    ({"host": None, "port": "/dev/ttyS0", "baudrate": 1234}, "baudrate"),
    ({"host": "gw", "port": 70000}, "TCP port 1-65535"),
    ({"host": "gw", "port": 502, "timeout": 0.0}, "timeout"),
])
def test_scan_bus_errors(kwargs: dict[str, object], message: str) -> None:
    """Bad settings raise ValueError naming the option."""
    with pytest.raises(ValueError, match=message):
        scan_bus(**kwargs)  # type: ignore[arg-type]
