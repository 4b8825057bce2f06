"""Register map -> read requests that minimise bus time (pure).

Cost model
----------
One read request on an RTU line costs (``BusCost.request_ms``)::

    char_ms   = bits_per_char * 1000 / baudrate          # 10 bits for 8N1, 11 for 8E1/8N2
    silent_ms = max(3.5 * char_ms, 1.75)                  # t3.5; fixed at 1.75 ms above 19200
    payload   = 2 * count          (holding/input registers)
              = ceil(count / 8)    (coils/discrete inputs)
    request_ms(table, count) = (8 + 5 + payload) * char_ms + 2 * silent_ms + turnaround_ms

8 bytes is the request frame (unit, fc, address, count, CRC), 5 the response's overhead (unit,
fc, byte count, CRC); each frame is followed by a silent interval; ``turnaround_ms`` is the time
the device (and the USB adapter, and any ``pause``) keeps the line idle per request. Modbus TCP
uses the same formula with MBAP framing (12 + 9 bytes), no silent interval and a per-request
network latency as the turnaround (``BusCost.tcp``).

Reading ``g`` unread registers to bridge a gap costs ``2 g char_ms``; a second request costs
``(13 + payload) char_ms + 2 silent_ms + turnaround_ms``. Where that break-even lies depends on
the line, which is why the plan takes the cost from the bus rather than a fixed gap allowance.

Plan
----
Per table, the points are sorted by address and ``plan_requests`` solves

    best[0] = 0
    best[i] = min over j < i of best[j] + request_ms(table, span(points[j:i]))

where ``points[j:i]`` may share a request only if its span stays within the Modbus limit (125
registers, 2000 bits, or the profile's ``workarounds``) and overlaps no declared ``Hole``; a single
point is always readable on its own. This is optimal for the model: some optimal plan gives every
request a run of consecutive points in address order (a point between two members of a request
lies inside it or can swap requests without growing either), and the recurrence tries every such
partition. It costs O(n · k) for n points and k points per maximal span.

``plan_max_insert`` (Telegraf's ``max_insert`` heuristic) and ``plan_per_point`` (one request per
quantity) are the baselines the benchmark and the tests compare against; both plans are candidates
of the recurrence, so the optimal plan never costs more than either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from drivers.profile import Hole, Point, RegisterType

# Modbus RTU frame sizes in bytes: a read request is unit, fc, address(2), count(2), crc(2);
# a response is unit, fc, byte count, payload, crc(2).
_REQUEST_BYTES = 8
_RESPONSE_OVERHEAD = 5
_SILENT_CHARS = 3.5
_MIN_SILENT_MS = 1.75  # the spec fixes t3.5 at 1.75 ms above 19200 baud
# Modbus TCP: MBAP header (7) + fc, address, count = 12; MBAP + fc + byte count = 9.
_TCP_REQUEST_BYTES = 12
_TCP_RESPONSE_OVERHEAD = 9
DEFAULT_TCP_LATENCY_MS = 2.0  # LAN round trip plus gateway processing, per request
_EPS = 1e-9  # float slack when comparing plan costs


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


def _payload_bytes(table: RegisterType, count: int) -> int:
    return math.ceil(count / 8) if table.is_bit else 2 * count


@dataclass(frozen=True, slots=True, kw_only=True)
class BusCost:
    """Bus time of read requests on one line; see the module docstring for the formula.

    The defaults describe an 8N1 RTU line at 9600 baud with an instant device.
    """

    baudrate: int = 9600
    bits_per_char: int = 10  # start + 8 data + parity/stop bits
    turnaround_ms: float = 0.0  # idle line per request: device latency, adapter, pauses
    request_bytes: int = _REQUEST_BYTES
    response_overhead_bytes: int = _RESPONSE_OVERHEAD
    silent_chars: float = _SILENT_CHARS  # silence after each frame, in characters...
    min_silent_ms: float = _MIN_SILENT_MS  # ...but at least this long

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or self.bits_per_char <= 0:
            raise ValueError("baudrate and bits_per_char must be positive")
        if self.turnaround_ms < 0:
            raise ValueError(f"turnaround_ms {self.turnaround_ms} is negative")

    @classmethod
    def tcp(cls, *, latency_ms: float = DEFAULT_TCP_LATENCY_MS,
            bitrate: int = 10_000_000) -> BusCost:
        """Modbus TCP: MBAP framing, no silent interval, a fixed latency per request."""
        return cls(baudrate=bitrate, bits_per_char=8, turnaround_ms=latency_ms,
                   request_bytes=_TCP_REQUEST_BYTES,
                   response_overhead_bytes=_TCP_RESPONSE_OVERHEAD,
                   silent_chars=0.0, min_silent_ms=0.0)

    @property
    def char_ms(self) -> float:
        """Time of one character on the line in ms."""
        return self.bits_per_char * 1000.0 / self.baudrate

    @property
    def silent_ms(self) -> float:
        """Silent interval after each frame in ms."""
        return max(self.silent_chars * self.char_ms, self.min_silent_ms)

    def request_ms(self, table: RegisterType, count: int) -> float:
        """Bus time of one read of ``count`` registers (or bits) of ``table`` in ms."""
        chars = self.request_bytes + self.response_overhead_bytes + _payload_bytes(table, count)
        return chars * self.char_ms + 2 * self.silent_ms + self.turnaround_ms

    def cycle_ms(self, requests: Iterable[ReadRequest]) -> float:
        """Bus time of a list of requests (one poll cycle) in ms."""
        return sum(self.request_ms(r.table, r.count) for r in requests)


DEFAULT_COST = BusCost()


def _span_hits_hole(table: RegisterType, start: int, end: int, holes: Sequence[Hole]) -> bool:
    """Whether registers ``[start, end)`` overlap a hole (hole ends are inclusive)."""
    return any(h.table is table and h.start < end and start <= h.end for h in holes)


def _by_table(points: Iterable[Point]) -> list[tuple[RegisterType, list[Point]]]:
    """Points per table in table order (coil, discrete, holding, input), sorted by address."""
    groups: dict[RegisterType, list[Point]] = {}
    for point in points:
        groups.setdefault(point.table, []).append(point)
    return [(table, sorted(groups[table], key=lambda p: (p.address, p.width)))
            for table in RegisterType if table in groups]


def _gap(prev: Point, point: Point) -> int:
    """Unread registers between neighbours in address order, 0 if they overlap (as Telegraf)."""
    return max(0, point.address - (prev.address + prev.width))


def _request(table: RegisterType, members: Sequence[Point]) -> ReadRequest:
    start = min(p.address for p in members)
    end = max(p.address + p.width for p in members)
    return ReadRequest(table, start, end - start, tuple(members))


def _plan_table(table: RegisterType, pts: Sequence[Point], *, limit: int, holes: Sequence[Hole],
                cost: BusCost, max_gap: int | None) -> list[ReadRequest]:
    """Optimal partition of one table's sorted points into contiguous runs (see module doc)."""
    holes = [h for h in holes if h.table is table]
    # A point wider than the limit or itself over a hole can only ever be read alone (a run's
    # span covers each member's); left in the sequence it would split runs its neighbours could
    # otherwise share.
    def loner(p: Point) -> bool:
        return p.width > limit or _span_hits_hole(table, p.address, p.address + p.width, holes)

    alone = [_request(table, [p]) for p in pts if loner(p)]
    pts = [p for p in pts if not loner(p)]
    n = len(pts)
    best = [0.0] + [math.inf] * n  # best[i]: cheapest plan for pts[:i]
    used = [0] * (n + 1)  # requests in that plan: ties go to fewer requests
    cut = [0] * (n + 1)  # where the last request of that plan starts
    for i in range(1, n + 1):
        end = 0
        for j in range(i - 1, -1, -1):
            point = pts[j]
            end = max(end, point.address + point.width)
            if j < i - 1:  # a single point is always readable; a run must fit the rules
                span_ok = (end - point.address <= limit
                           and (max_gap is None or _gap(point, pts[j + 1]) <= max_gap)
                           and not _span_hits_hole(table, point.address, end, holes))
                if not span_ok:
                    break  # spans only grow to the left: no longer run can fit either
            total = best[j] + cost.request_ms(table, end - point.address)
            if total < best[i] - _EPS or (total <= best[i] + _EPS and used[j] + 1 < used[i]):
                best[i], used[i], cut[i] = total, used[j] + 1, j
    requests: list[ReadRequest] = alone
    i = n
    while i > 0:
        requests.append(_request(table, pts[cut[i]:i]))
        i = cut[i]
    return sorted(requests, key=lambda r: (r.address, r.count))


def plan_requests(
    points: Iterable[Point],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap: int | None = None,
    holes: Sequence[Hole] = (),
    cost: BusCost | None = None,
) -> list[ReadRequest]:
    """The read requests of least bus time under ``cost`` (default: 8N1 at 9600 baud).

    Requests come out ordered by table (coil, discrete, holding, input) and then address; each
    point is in exactly one request. A request never spans more than ``max_registers`` registers
    (``max_bits`` bits) nor touches a declared hole, except that a single point is always
    readable on its own. ``max_gap``, if given, additionally forbids bridging more unread
    registers than that between neighbours; by default the cost model alone decides.
    """
    cost = DEFAULT_COST if cost is None else cost
    requests: list[ReadRequest] = []
    for table, pts in _by_table(points):
        limit = max_bits if table.is_bit else max_registers
        requests += _plan_table(table, pts, limit=limit, holes=holes, cost=cost,
                                max_gap=max_gap)
    return requests


def plan_max_insert(
    points: Iterable[Point],
    *,
    max_fill: int = 50,
    max_registers: int = 125,
    max_bits: int = 2000,
    holes: Sequence[Hole] = (),
) -> list[ReadRequest]:
    """Telegraf's ``max_insert`` optimisation (plugins/inputs/modbus), a baseline.

    Points sorted by address (wider first on ties); the next point joins the current request
    while its gap to the previous point is at most ``max_fill`` (overlaps count as 0) and
    ``length + gap + width`` stays within the limit. Two changes keep the plan valid where
    Telegraf's is not: the request grows to the widest member's end (Telegraf takes the last
    member's, cutting off a wider overlapped field), and it never touches a declared hole.
    """
    requests: list[ReadRequest] = []
    for table, pts in _by_table(points):
        limit = max_bits if table.is_bit else max_registers
        pts = sorted(pts, key=lambda p: (p.address, -p.width))
        members = [pts[0]]
        start, end = pts[0].address, pts[0].address + pts[0].width
        for prev, point in pairwise(pts):
            gap = _gap(prev, point)
            new_end = max(end, point.address + point.width)
            if (gap <= max_fill and (end - start) + gap + point.width <= limit
                    and not _span_hits_hole(table, start, new_end, holes)):
                members.append(point)
                end = new_end
                continue
            requests.append(ReadRequest(table, start, end - start, tuple(members)))
            members = [point]
            start, end = point.address, point.address + point.width
        requests.append(ReadRequest(table, start, end - start, tuple(members)))
    return requests


def plan_per_point(points: Iterable[Point]) -> list[ReadRequest]:
    """One request per quantity, ordered by table and address: the naive baseline."""
    return [ReadRequest(table, p.address, p.width, (p,))
            for table, pts in _by_table(points) for p in pts]


def response_bytes(request: ReadRequest) -> int:
    """RTU response size of ``request`` in bytes."""
    return _RESPONSE_OVERHEAD + _payload_bytes(request.table, request.count)


def wire_time_ms(requests: Iterable[ReadRequest], *, baudrate: int,
                 bits_per_char: int = 10) -> float:
    """Estimated RTU bus time of one poll cycle in ms: both frames plus their silent intervals.

    Device turnaround time is not included; it varies by model and is measured, not planned.
    Same as ``BusCost(baudrate=..., bits_per_char=...).cycle_ms(requests)``.
    """
    return BusCost(baudrate=baudrate, bits_per_char=bits_per_char).cycle_ms(requests)
