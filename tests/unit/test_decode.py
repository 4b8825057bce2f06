"""Register decoding and encoding: every type, every byte/word order, scaling, sentinels."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.measurements import Quality
from drivers.modbus.decode import (
    decode_bit,
    decode_point,
    decode_raw,
    encode_bit,
    encode_point,
    merge_bit,
)
from drivers.profile import ByteOrder, DataType, Point

ORDERS = list(ByteOrder)
WORD_TYPES = [t for t in DataType if t is not DataType.BOOL]


def point(type_: DataType | str = DataType.UINT16, order: ByteOrder | str = ByteOrder.ABCD,
          **extra: Any) -> Point:
    # byte-layout vectors, not plausible voltages: the range is opened wide (see test_bounds)
    return Point.model_validate({"quantity": "voltage", "address": 0, "register": "holding",
                                 "type": str(type_), "order": str(order), "min": -1e300,
                                 "max": 1e300, **extra})


F64_BITS = struct.unpack(">d", bytes(range(1, 9)))[0]  # bytes 01..08, MSB first

# (type, order, words as they arrive, raw value)
CASES: list[tuple[str, str, list[int], float]] = [
    ("uint16", "ABCD", [0x1234], 0x1234),
    ("uint16", "CDAB", [0x1234], 0x1234),
    ("uint16", "BADC", [0x3412], 0x1234),
    ("uint16", "DCBA", [0x3412], 0x1234),
    ("int16", "ABCD", [0xFB2E], -1234),
    ("int16", "CDAB", [0xFB2E], -1234),
    ("int16", "BADC", [0x2EFB], -1234),
    ("int16", "DCBA", [0x2EFB], -1234),
    ("uint32", "ABCD", [0x1234, 0x5678], 0x12345678),
    ("uint32", "CDAB", [0x5678, 0x1234], 0x12345678),
    ("uint32", "BADC", [0x3412, 0x7856], 0x12345678),
    ("uint32", "DCBA", [0x7856, 0x3412], 0x12345678),
    ("int32", "ABCD", [0xFFFF, 0xFFFE], -2),
    ("int32", "CDAB", [0xFFFE, 0xFFFF], -2),
    ("int32", "BADC", [0xFFFF, 0xFEFF], -2),
    ("int32", "DCBA", [0xFEFF, 0xFFFF], -2),
    ("float32", "ABCD", [0x4366, 0x0000], 230.0),
    ("float32", "CDAB", [0x0000, 0x4366], 230.0),
    ("float32", "BADC", [0x6643, 0x0000], 230.0),
    ("float32", "DCBA", [0x0000, 0x6643], 230.0),
    ("float32", "ABCD", [0xBF80, 0x0000], -1.0),
    ("float64", "ABCD", [0x0102, 0x0304, 0x0506, 0x0708], F64_BITS),
    ("float64", "CDAB", [0x0708, 0x0506, 0x0304, 0x0102], F64_BITS),
    ("float64", "BADC", [0x0201, 0x0403, 0x0605, 0x0807], F64_BITS),
    ("float64", "DCBA", [0x0807, 0x0605, 0x0403, 0x0201], F64_BITS),
]


@pytest.mark.parametrize(("type_", "order", "words", "raw"), CASES)
def test_decode_known_vectors(type_: str, order: str, words: list[int], raw: float) -> None:
    """Each type in each order decodes the documented byte layout to the right value."""
    value, quality = decode_point(point(type_, order), words)
    assert value == raw
    assert quality is Quality.GOOD


@pytest.mark.parametrize(("type_", "order", "words", "raw"), CASES)
def test_encode_known_vectors(type_: str, order: str, words: list[int], raw: float) -> None:
    """Encoding the value gives back exactly the documented registers."""
    assert encode_point(point(type_, order), raw) == words


@pytest.mark.parametrize(
    ("order", "word", "bit", "expected"),
    [("ABCD", 0x0024, 2, 1.0), ("ABCD", 0x0024, 5, 1.0), ("ABCD", 0x0024, 3, 0.0),
     ("ABCD", 0x8000, 15, 1.0), ("BADC", 0x2400, 2, 1.0), ("DCBA", 0x0080, 15, 1.0),
     ("CDAB", 0x0024, 2, 1.0), ("BADC", 0x0024, 2, 0.0)],
)
def test_bits_pick_one_bit(order: str, word: int, bit: int, expected: float) -> None:
    """A bits point reads its own bit of the word, after the byte order is applied."""
    assert decode_point(point("bits", order, bit=bit), [word]) == (expected, Quality.GOOD)


@pytest.mark.parametrize(
    ("type_", "words", "scale", "offset", "expected"),
    [("uint16", [2301], 0.1, 0.0, 230.1), ("int16", [0xFFF6], 0.5, 0.0, -5.0),
     ("int16", [250], 0.1, -40.0, -15.0), ("uint32", [0, 1000], 0.01, 0.0, 10.0),
     ("float32", [0x4366, 0], 1000.0, 0.0, 230_000.0)],
)
def test_scale_and_offset(type_: str, words: list[int], scale: float, offset: float,
                          expected: float) -> None:
    """value = raw * scale + offset."""
    value, quality = decode_point(point(type_, scale=scale, offset=offset), words)
    assert value == pytest.approx(expected)
    assert quality is Quality.GOOD


def test_sentinel_compared_with_raw_value() -> None:
    """A raw sentinel is BAD even though the scaled value differs from it."""
    p = point("uint16", scale=0.1, sentinels=[65535])
    assert decode_point(p, [0xFFFF])[1] is Quality.BAD
    value, quality = decode_point(p, [0xFFFE])
    assert value == pytest.approx(6553.4)
    assert quality is Quality.GOOD


def test_scaled_value_is_not_a_sentinel() -> None:
    """A sentinel is matched against raw values only, never the scaled one."""
    p = point("uint16", scale=0.1, sentinels=[6553.5])
    assert decode_point(p, [0xFFFF])[1] is Quality.GOOD


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]])
def test_nan_and_infinity_are_bad(words: list[int]) -> None:
    """NaN, +inf and -inf from a float register are flagged BAD."""
    value, quality = decode_point(point("float32"), words)
    assert quality is Quality.BAD
    assert not math.isfinite(value)


def test_wrong_word_count_is_an_error() -> None:
    """Decoding a float32 from one register is a programming error, not a silent value."""
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_point(point("float32"), [0x4366])


def test_word_out_of_range_is_an_error() -> None:
    """Register words must be 16-bit."""
    with pytest.raises(ValueError, match="outside 0-65535"):
        decode_point(point("uint16"), [70000])


def test_decode_bit_scales() -> None:
    """Coil states decode to 0/1, with scale and offset applied."""
    coil = Point.model_validate({"quantity": "relay", "address": 3, "register": "coil",
                                 "type": "bool"})
    assert decode_bit(coil, True) == (1.0, Quality.GOOD)
    assert decode_bit(coil, False) == (0.0, Quality.GOOD)
    assert encode_bit(coil, 1.0) is True
    assert encode_bit(coil, 0.0) is False
    with pytest.raises(ValueError, match="decode_bit"):
        decode_raw(coil, [1])


@pytest.mark.parametrize(
    ("type_", "value"),
    [("uint16", -1.0), ("uint16", 65536.0), ("int16", 40000.0), ("int32", 2.0**31),
     ("uint32", -0.6), ("float32", 1e39), ("int16", math.nan)],
)
def test_encode_out_of_range_raises(type_: str, value: float) -> None:
    """A value the register type cannot carry is refused, not wrapped around."""
    with pytest.raises(ValueError, match=r"does not fit|cannot be sent"):
        encode_point(point(type_), value)


def test_encode_applies_inverse_scaling() -> None:
    """encode_point undoes scale and offset, rounding to the nearest raw step."""
    assert encode_point(point("uint16", scale=0.1), 230.1) == [2301]
    assert encode_point(point("int16", scale=0.1, offset=-40.0), -15.0) == [250]


@pytest.mark.parametrize("order", ORDERS)
def test_merge_bit_keeps_other_bits(order: ByteOrder) -> None:
    """Setting one bits point leaves its neighbours in the same word alone."""
    b3 = point("bits", order, bit=3)
    b9 = point("bits", order, bit=9)
    word = merge_bit(b9, merge_bit(b3, 0, 1.0), 1.0)
    assert decode_point(b3, [word])[0] == 1.0
    assert decode_point(b9, [word])[0] == 1.0
    word = merge_bit(b3, word, 0.0)
    assert decode_point(b3, [word])[0] == 0.0
    assert decode_point(b9, [word])[0] == 1.0
    assert encode_point(b9, 1.0) == [merge_bit(b9, 0, 1.0)]  # encode = only its own bit


@given(st.data())
def test_words_round_trip(data: st.DataObject) -> None:
    """decode then encode returns the same registers for every type and order."""
    type_ = data.draw(st.sampled_from([t for t in WORD_TYPES if t is not DataType.BITS]))
    order = data.draw(st.sampled_from(ORDERS))
    p = point(type_, order)
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=p.width, max_size=p.width))
    value, _ = decode_point(p, words)
    if math.isnan(value):
        return  # NaN payloads are not preserved through a float; NaN is BAD anyway
    assert encode_point(p, value) == words


_RANGES = {DataType.INT16: (-(2**15), 2**15 - 1), DataType.UINT16: (0, 2**16 - 1),
           DataType.INT32: (-(2**31), 2**31 - 1), DataType.UINT32: (0, 2**32 - 1)}


@given(st.data())
def test_scaled_integers_round_trip(data: st.DataObject) -> None:
    """Scaled integer points survive value -> registers -> value to within float error."""
    type_ = data.draw(st.sampled_from(list(_RANGES)))
    order = data.draw(st.sampled_from(ORDERS))
    scale = data.draw(st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0]))
    offset = data.draw(st.sampled_from([0.0, -40.0, 273.15]))
    raw = data.draw(st.integers(*_RANGES[type_]))
    p = point(type_, order, scale=scale, offset=offset)
    value = raw * scale + offset
    decoded, quality = decode_point(p, encode_point(p, value))
    assert quality is Quality.GOOD
    assert decoded == pytest.approx(value, rel=1e-12, abs=1e-9)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(ORDERS))
def test_float32_values_round_trip(value: float, order: ByteOrder) -> None:
    """Any finite float32 value comes back bit-exact."""
    p = point("float32", order)
    assert decode_point(p, encode_point(p, value)) == (value, Quality.GOOD)
