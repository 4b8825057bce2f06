"""The compiled per-request decoder gives exactly what point-by-point decoding gives."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.measurements import Quality, Reading
from drivers.modbus.compiled import RequestDecoder
from drivers.modbus.poller import decode_responses, plan_points
from drivers.profile import load_profile, shipped_profiles

PROFILES = shipped_profiles()


def _same(a: Reading, b: Reading) -> bool:
    both_nan = math.isnan(a.value) and math.isnan(b.value)
    return (a.device, a.quantity, a.channel, a.quality, a.ts) == (
        b.device, b.quantity, b.channel, b.quality, b.ts) and (both_nan or a.value == b.value)


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_shipped_profile_decodes_alike(name: str, seed: int) -> None:
    profile = load_profile(name)
    rand = random.Random(seed)
    for request in plan_points(profile, profile.points):
        if request.table.is_bit:
            values: list[int] | list[bool] = [rand.random() < 0.5 for _ in range(request.count)]
        else:  # random words, with NaN, infinities and sentinel-looking words mixed in
            values = [rand.choice((rand.randrange(65536), 0x7FC0, 0x7F80, 0xFFFF, 0x8000, 0))
                      for _ in range(request.count)]
        expected = decode_responses([request], [values], device="d", ts=1.0)
        got = RequestDecoder(request).decode(values, device="d", ts=1.0)
        assert len(got) == len(expected)
        assert all(_same(a, b) for a, b in zip(got, expected, strict=True)), (got, expected)


def test_a_word_out_of_range_is_bad_not_a_crash() -> None:
    profile = load_profile("eastron-sdm630")
    request = plan_points(profile, profile.points)[0]
    values = [0] * request.count
    values[0] = 70000
    got = RequestDecoder(request).decode(values, device="d", ts=1.0)
    assert got[0].quality is Quality.BAD
    assert math.isnan(got[0].value)
    assert got[1].quality is Quality.GOOD  # the others still decode


def test_float_answer_decodes_to_its_value() -> None:
    profile = load_profile("eastron-sdm630")
    request = plan_points(profile, profile.points)[0]
    values = [0] * request.count
    values[0:2] = struct.unpack(">HH", struct.pack(">f", 231.5))  # voltage L1 at 0x0000
    got = RequestDecoder(request).decode(values, device="d", ts=1.0)
    first = got[0]
    assert (first.quantity.value, first.channel, first.value) == ("voltage", "L1", 231.5)
