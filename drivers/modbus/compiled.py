"""A read request's answer decoded in one go (pure): the hot path of every poll.

``RequestDecoder`` is built once per request of a poll plan. Register points in ABCD order
(most profiles: Eastron, CHINT, Acrel floats and integers) are unpacked together by one
precompiled ``struct`` format over the whole answer, gaps skipped as pad bytes; everything else
(other word orders, bit fields, coils, points that overlap another point's registers) goes
through ``decode_point``/``decode_bit`` one by one. Both give identical values and qualities
(``tests/unit/test_compiled_decoder.py`` checks every shipped profile against
``decode_responses``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from core.measurements import Quality, Reading
from drivers.modbus.decode import decode_bit, decode_point, point_range
from drivers.modbus.planner import ReadRequest
from drivers.profile import ByteOrder, DataType, Point

# struct codes of the types one format can hold, big-endian (ABCD)
_CODES: dict[DataType, str] = {
    DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
    DataType.FLOAT32: "f", DataType.FLOAT64: "d",
}
_BAD, _GOOD, _IMPLAUSIBLE = Quality.BAD, Quality.GOOD, Quality.IMPLAUSIBLE


class RequestDecoder:
    """Readings of one request's points from its answer, in the request's point order."""

    __slots__ = ("_fast", "_points", "_slow", "_struct", "_words", "request")

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self._points = request.points
        # fast: (position in points, quantity, channel, scale, offset, sentinels, low, high)
        fast: list[tuple[int, Point]] = []
        slow: list[tuple[int, Point]] = []
        fmt, cursor = [">"], 0  # cursor: first register not yet covered by the format
        ordered = sorted(enumerate(request.points), key=lambda ip: ip[1].address)
        for index, point in ordered:
            start = point.address - request.address
            if (request.table.is_bit or point.order is not ByteOrder.ABCD
                    or point.type not in _CODES or start < cursor):
                slow.append((index, point))
                continue
            if start > cursor:
                fmt.append(f"{2 * (start - cursor)}x")
            fmt.append(_CODES[point.type])
            cursor = start + point.width
            fast.append((index, point))
        self._struct = struct.Struct("".join(fmt)) if fast else None
        self._words = struct.Struct(f">{request.count}H") if fast else None
        self._fast = tuple(
            (index, p.quantity, p.channel, p.scale, p.offset, p.sentinels, *point_range(p))
            for index, p in fast)
        self._slow = tuple(slow)

    def decode(self, values: list[int] | list[bool], *, device: str, ts: float
               ) -> list[Reading]:
        out: list[Reading | None] = [None] * len(self._points)
        if self._struct is not None and self._words is not None:
            try:
                raws = self._struct.unpack_from(self._words.pack(*values))
            except struct.error:  # a word outside 0-65535: decode point by point (BAD)
                return self._one_by_one(values, device=device, ts=ts)
            for raw, (index, quantity, channel, scale, offset, sentinels, low, high) in zip(
                    raws, self._fast, strict=True):
                raw = float(raw)
                value = raw * scale + offset
                if not math.isfinite(value) or not math.isfinite(raw) or raw in sentinels:
                    quality = _BAD
                elif low <= value <= high:
                    quality = _GOOD
                else:
                    quality = _IMPLAUSIBLE
                out[index] = Reading(ts, device, quantity, value, quality, channel)
        for index, point in self._slow:
            out[index] = self._decode_one(point, values, device=device, ts=ts)
        return out  # type: ignore[return-value]  # every position was filled above

    def _one_by_one(self, values: Sequence[int | bool], *, device: str, ts: float
                    ) -> list[Reading]:
        return [self._decode_one(p, values, device=device, ts=ts) for p in self._points]

    def _decode_one(self, point: Point, values: Sequence[int | bool], *, device: str,
                    ts: float) -> Reading:
        part = values[self.request.slice_of(point)]
        try:
            if self.request.table.is_bit:
                value, quality = decode_bit(point, bool(part[0]))
            else:
                value, quality = decode_point(point, [int(v) for v in part])
        except (ValueError, IndexError):
            value, quality = math.nan, Quality.BAD
        return Reading(ts=ts, device=device, quantity=point.quantity, value=value,
                       quality=quality, channel=point.channel)
