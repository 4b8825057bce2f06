"""Register words <-> engineering values, as a profile point describes them (pure).

A point's raw value is decoded from the words in its byte/word order (see ``ByteOrder``), then
scaled: ``value = raw * scale + offset``. Sentinels are compared with the raw value, because
vendors document them in raw terms (``0xFFFF`` = "no sensor"); NaN, infinities and sentinels
give ``Quality.BAD`` so they are dropped at the driver boundary, never alarmed on. A finite
value outside the point's plausible range (its ``min``/``max``, else the quantity's
``PLAUSIBLE`` range) gives ``Quality.IMPLAUSIBLE``: not good either, and counted.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from core.measurements import Quality, bounded, checked_value, plausible_range
from drivers.profile import ByteOrder, DataType, Point

# struct format of each multi-byte type, big-endian once the bytes are in ABCD order
_FORMATS: dict[DataType, str] = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
    DataType.BITS: ">H",
}

_INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(1 << 15), (1 << 15) - 1),
    DataType.UINT16: (0, (1 << 16) - 1),
    DataType.INT32: (-(1 << 31), (1 << 31) - 1),
    DataType.UINT32: (0, (1 << 32) - 1),
}


def _swaps(order: ByteOrder) -> tuple[bool, bool]:
    """(swap the words, swap the bytes within each word) that turn ``order`` into ABCD."""
    return order in (ByteOrder.CDAB, ByteOrder.DCBA), order in (ByteOrder.BADC, ByteOrder.DCBA)


def words_to_bytes(words: Sequence[int], order: ByteOrder) -> bytes:
    """Register words as they arrived -> the value's bytes, most significant first."""
    swap_words, swap_bytes = _swaps(order)
    seq = list(reversed(words)) if swap_words else list(words)
    out = bytearray()
    for word in seq:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"register word {word} is outside 0-65535")
        hi, lo = word >> 8, word & 0xFF
        out += bytes((lo, hi)) if swap_bytes else bytes((hi, lo))
    return bytes(out)


def bytes_to_words(data: bytes, order: ByteOrder) -> list[int]:
    """The inverse of ``words_to_bytes``: value bytes (MSB first) -> words as sent on the wire."""
    swap_words, swap_bytes = _swaps(order)
    words = [
        (data[i + 1] << 8 | data[i]) if swap_bytes else (data[i] << 8 | data[i + 1])
        for i in range(0, len(data), 2)
    ]
    return list(reversed(words)) if swap_words else words


def decode_raw(point: Point, words: Sequence[int]) -> float:
    """The unscaled value of a register point (for ``bits``: 0.0 or 1.0)."""
    if point.type is DataType.BOOL:
        raise ValueError(f"{point.key}: bool points are bits, use decode_bit")
    if len(words) != point.width:
        raise ValueError(f"{point.key}: {point.type.value} needs {point.width} registers, "
                         f"got {len(words)}")
    (raw,) = struct.unpack(_FORMATS[point.type], words_to_bytes(words, point.order))
    if point.type is DataType.BITS:
        assert point.bit is not None  # the Point validator guarantees it
        return float(raw >> point.bit & 1)
    return float(raw)


def point_range(point: Point) -> tuple[float, float]:
    """The range a point's engineering value must lie in to be good."""
    return plausible_range(point.quantity, point.min, point.max)


def _scaled(point: Point, raw: float) -> tuple[float, Quality]:
    _, raw_quality = checked_value(raw, point.sentinels)
    value, quality = checked_value(raw * point.scale + point.offset)
    if Quality.BAD in (raw_quality, quality):
        return value, Quality.BAD
    return value, bounded(value, quality, point_range(point))


def decode_point(point: Point, words: Sequence[int]) -> tuple[float, Quality]:
    """Engineering value and quality of a register point from its ``point.width`` words."""
    return _scaled(point, decode_raw(point, words))


def decode_bit(point: Point, bit: bool) -> tuple[float, Quality]:
    """Engineering value and quality of a coil or discrete-input point."""
    return _scaled(point, 1.0 if bit else 0.0)


def _raw_from_value(point: Point, value: float) -> float:
    if point.scale == 0:
        raise ValueError(f"{point.key}: scale 0 cannot be inverted")
    return (value - point.offset) / point.scale


def encode_point(point: Point, value: float) -> list[int]:
    """Registers a device would send for ``value`` (the inverse of ``decode_point``).

    Integer types round to the nearest raw step and raise ``ValueError`` when the value does not
    fit. A ``bits`` point yields its register with only its own bit set or clear; merge it into
    the shared word with ``merge_bit``.
    """
    if point.type is DataType.BOOL:
        raise ValueError(f"{point.key}: bool points are bits, use encode_bit")
    raw = _raw_from_value(point, value)
    if point.type is DataType.BITS:
        assert point.bit is not None
        return bytes_to_words(struct.pack(">H", (1 << point.bit) if raw else 0), point.order)
    fmt = _FORMATS[point.type]
    if point.type in _INT_RANGES:
        if not math.isfinite(raw):
            raise ValueError(f"{point.key}: {value!r} cannot be sent as {point.type.value}")
        lo, hi = _INT_RANGES[point.type]
        whole = round(raw)
        if not lo <= whole <= hi:
            raise ValueError(f"{point.key}: {value!r} (raw {whole}) does not fit "
                             f"{point.type.value}")
        data = struct.pack(fmt, whole)
    else:
        try:
            data = struct.pack(fmt, raw)
        except OverflowError as exc:  # too large for float32
            raise ValueError(f"{point.key}: {value!r} does not fit {point.type.value}") from exc
    return bytes_to_words(data, point.order)


def encode_bit(point: Point, value: float) -> bool:
    """The coil/discrete state a device would send for ``value`` (inverse of ``decode_bit``)."""
    return bool(round(_raw_from_value(point, value)))


def merge_bit(point: Point, word: int, value: float) -> int:
    """``word`` (as sent) with the ``bits`` point's bit set to ``value``, other bits kept."""
    if point.type is not DataType.BITS or point.bit is None:
        raise ValueError(f"{point.key}: merge_bit needs a 'bits' point")
    (current,) = struct.unpack(">H", words_to_bytes([word], point.order))
    mask = 1 << point.bit
    current = (current | mask) if _raw_from_value(point, value) else (current & ~mask)
    return bytes_to_words(struct.pack(">H", current), point.order)[0]
