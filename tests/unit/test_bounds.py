"""Plausibility bounds: a finite value outside its quantity's physical range is IMPLAUSIBLE,
never GOOD; a profile point overrides the range; flags have none."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from core.logbudget import LogBudget, held_back
from core.measurements import (
    PLAUSIBLE,
    Quality,
    Quantity,
    bounded,
    plausible_range,
)
from drivers.modbus.decode import decode_point, point_range
from drivers.profile import Point, Profile, ProfileError, load_profile


def f32(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def point(quantity: str, **extra: Any) -> Point:
    return Point.model_validate({"quantity": quantity, "address": 0, "register": "input",
                                 "type": "float32", **extra})


@pytest.mark.parametrize(("quantity", "value", "quality"), [
    ("current", 1.7e38, Quality.IMPLAUSIBLE),  # the glitching meter of issue 13
    ("current", -1.7e38, Quality.IMPLAUSIBLE),
    ("current", 63.0, Quality.GOOD),
    ("current", -12.0, Quality.GOOD),  # signed on some meters
    ("current", 10_000.0, Quality.GOOD),  # the bound itself is plausible
    ("voltage", 231.0, Quality.GOOD),
    ("voltage", 0.0, Quality.GOOD),  # a lost phase
    ("voltage", -5.0, Quality.IMPLAUSIBLE),
    ("voltage", 1_200.0, Quality.IMPLAUSIBLE),
    ("energy", -0.5, Quality.IMPLAUSIBLE),  # counters never run below zero
    ("energy", 2e10, Quality.IMPLAUSIBLE),
    ("energy", 123_456.7, Quality.GOOD),
    ("frequency", 50.0, Quality.GOOD),
    ("frequency", 0.0, Quality.GOOD),  # a dead phase on many meters
    ("frequency", 400.0, Quality.IMPLAUSIBLE),
    ("power_factor", -0.9, Quality.GOOD),
    ("power_factor", 1.5, Quality.IMPLAUSIBLE),
    ("temperature", 85.0, Quality.GOOD),
    ("temperature", -60.0, Quality.IMPLAUSIBLE),
    ("temperature", 3276.7, Quality.IMPLAUSIBLE),
    ("residual_current", 9_000.0, Quality.GOOD),  # mA
    ("residual_current", 65_535.0, Quality.IMPLAUSIBLE),
    ("lux", 120_000.0, Quality.GOOD),
    ("power", 2.5e7, Quality.GOOD),
    ("power", 1e9, Quality.IMPLAUSIBLE),
])
def test_decoded_value_is_checked_against_its_quantitys_range(quantity: str, value: float,
                                                              quality: Quality) -> None:
    got, got_quality = decode_point(point(quantity), f32(value))
    assert got_quality is quality
    assert math.isclose(got, value, rel_tol=1e-6)


def test_nan_and_inf_stay_bad_and_sentinels_win() -> None:
    assert decode_point(point("current"), [0x7FC0, 0])[1] is Quality.BAD  # NaN
    assert decode_point(point("current"), [0x7F80, 0])[1] is Quality.BAD  # +inf
    sentinel = Point.model_validate({"quantity": "temperature", "address": 1, "type": "int16",
                                     "scale": 0.1, "sentinels": [32767]})
    assert decode_point(sentinel, [32767])[1] is Quality.BAD  # the device's "no probe"


def test_flags_have_no_bounds() -> None:
    """A fire flag or an alarm bit word is never second-guessed as implausible."""
    for quantity in (Quantity.FIRE, Quantity.DETECTOR_ALARM, Quantity.DETECTOR_FAULT,
                     Quantity.SMOKE_FAULT, Quantity.RELAY):
        assert quantity not in PLAUSIBLE
        assert plausible_range(quantity) == (-math.inf, math.inf)
    word = Point.model_validate({"quantity": "detector_alarm", "address": 8})
    assert decode_point(word, [0xFFFF]) == (65535.0, Quality.GOOD)


def test_profile_point_overrides_the_range() -> None:
    narrow = point("current", max=100.0)
    assert point_range(narrow) == (-10_000.0, 100.0)
    assert decode_point(narrow, f32(150.0))[1] is Quality.IMPLAUSIBLE
    wide = point("temperature", min=-200.0, max=1_200.0)  # a furnace thermocouple
    assert decode_point(wide, f32(900.0))[1] is Quality.GOOD


def test_bounded_is_pure_and_leaves_bad_alone() -> None:
    assert bounded(5.0, Quality.GOOD, (0.0, 1.0)) is Quality.IMPLAUSIBLE
    assert bounded(0.5, Quality.GOOD, (0.0, 1.0)) is Quality.GOOD
    assert bounded(5.0, Quality.BAD, (0.0, 1.0)) is Quality.BAD


@pytest.mark.parametrize(("extra", "message"), [
    ({"min": 10.0, "max": 5.0}, "min 10.0 must be below max 5.0"),
    ({"max": math.nan}, "point[0].max"),
    ({"min": -math.inf}, "point[0].min"),
])
def test_profile_bounds_are_validated(tmp_path: Any, extra: dict[str, float],
                                      message: str) -> None:
    path = tmp_path / "p.toml"
    values = "\n".join(f"{k} = {'nan' if math.isnan(v) else '-inf' if v == -math.inf else v}"
                       for k, v in extra.items())
    path.write_text('[profile]\nname = "p"\nmanufacturer = "m"\nmodel = "m"\nsource = "s"\n'
                    f'[[point]]\nquantity = "current"\naddress = 0\n{values}\n',
                    encoding="utf-8")
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_profile(str(path))


def test_shipped_profiles_still_load() -> None:
    from drivers.profile import shipped_profiles

    for name in shipped_profiles():
        assert isinstance(load_profile(name), Profile)


def test_log_budget_one_line_per_key_per_interval() -> None:
    budget = LogBudget(interval=60.0)
    assert budget.take("a", 0.0) == 0
    assert [budget.take("a", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert budget.take("b", 3.0) == 0  # another cause has its own budget
    assert budget.take("a", 60.0) == 3  # the next line counts what was held back
    assert budget.take("a", 61.0) is None
    assert budget.take("a", 10.0) == 1  # a clock that went back opens a new window
    assert held_back(0) == ""
    assert held_back(3) == " (3 more like this not logged)"
