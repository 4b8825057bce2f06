"""Register map -> read requests (pure).

Neighbouring points are merged into one request while the unread gap between them is small,
the request stays within the Modbus limit and it would not touch a declared ``Hole`` (registers
the device refuses, so a read spanning them fails as a whole). Greedy for now; an optimal plan
under a bus cost model can replace ``plan_requests`` without changing its signature.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.profile import Hole, Point, RegisterType

# Modbus RTU frame sizes in bytes: a read request is unit, fc, address(2), count(2), crc(2);
# a response is unit, fc, byte count, payload, crc(2).
_REQUEST_BYTES = 8
_RESPONSE_OVERHEAD = 5
_SILENT_CHARS = 3.5
_MIN_SILENT_MS = 1.75  # the spec fixes t3.5 at 1.75 ms above 19200 baud


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read transaction: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: RegisterType
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        """First address after the request."""
        return self.address + self.count

    def slice_of(self, point: Point) -> slice:
        """Where ``point`` sits in this request's response values."""
        start = point.address - self.address
        return slice(start, start + point.width)


def _span_hits_hole(table: RegisterType, start: int, end: int, holes: Sequence[Hole]) -> bool:
    """Whether registers ``[start, end)`` overlap a hole (hole ends are inclusive)."""
    return any(h.table is table and h.start < end and start <= h.end for h in holes)


def plan_requests(
    points: Iterable[Point],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap: int = 50,
    holes: Sequence[Hole] = (),
) -> list[ReadRequest]:
    """Group points into as few read requests as the limits allow.

    Requests come out ordered by table (coil, discrete, holding, input) and then address. A
    single point is always readable on its own, even if it is wider than the limit.
    """
    by_table: dict[RegisterType, list[Point]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    requests: list[ReadRequest] = []
    for table in RegisterType:
        group = sorted(by_table.get(table, ()), key=lambda p: (p.address, p.width))
        limit = max_bits if table.is_bit else max_registers
        start = end = -1
        members: list[Point] = []
        for point in group:
            p_end = point.address + point.width
            if members:
                new_end = max(end, p_end)
                if (point.address - end <= max_gap and new_end - start <= limit
                        and not _span_hits_hole(table, start, new_end, holes)):
                    end = new_end
                    members.append(point)
                    continue
                requests.append(ReadRequest(table, start, end - start, tuple(members)))
            start, end, members = point.address, p_end, [point]
        if members:
            requests.append(ReadRequest(table, start, end - start, tuple(members)))
    return requests


def response_bytes(request: ReadRequest) -> int:
    """RTU response size of ``request`` in bytes."""
    payload = math.ceil(request.count / 8) if request.table.is_bit else 2 * request.count
    return _RESPONSE_OVERHEAD + payload


def wire_time_ms(requests: Iterable[ReadRequest], *, baudrate: int,
                 bits_per_char: int = 10) -> float:
    """Estimated RTU bus time of one poll cycle in ms: both frames plus their silent intervals.

    Device turnaround time is not included; it varies by model and is measured, not planned.
    """
    char_ms = bits_per_char * 1000.0 / baudrate
    silent_ms = max(_SILENT_CHARS * char_ms, _MIN_SILENT_MS)
    return sum(
        (_REQUEST_BYTES + response_bytes(r)) * char_ms + 2 * silent_ms for r in requests
    )
