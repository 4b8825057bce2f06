"""What a poller plans before it talks to a bus (pure): devices and their poll groups, the read
requests per group, the grid of poll slots, the stagger of distribution boxes, the backoff of a
failing device, and the Readings decoded from a poll's answers."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.measurements import Quality, Reading
from drivers.modbus.decode import decode_bit, decode_point
from drivers.modbus.planner import BusCost, ReadRequest, plan_requests
from drivers.modbus.registry import bus_type
from drivers.modbus.transport import BusSettings
from drivers.profile import Point, Profile, RegisterType


class DeviceSettings(Protocol):
    """What the poller needs from a device's config (``daemon.config.DeviceConfig`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> int: ...
    @property
    def poll(self) -> float: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def building(self) -> str: ...
    @property
    def box(self) -> str: ...  # with building: devices of one box share a stagger slot


@dataclass(frozen=True, slots=True)
class PolledDevice:
    """A configured device with its resolved profile."""

    config: DeviceSettings
    profile: Profile


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with +-``jitter`` (fraction), so failed peers do not align."""

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``failures`` >= 1)."""
        raw = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return min(self.cap, raw * (1.0 + self.jitter * (2.0 * rand() - 1.0)))


DEFAULT_BACKOFF = Backoff()
def next_slot(slot: float, interval: float, now: float) -> float:
    """The first slot of the grid ``slot + k*interval`` that lies after ``now`` (pure).

    Anchoring on the grid instead of on "now" keeps the schedule from drifting by the poll's
    own duration; skipping missed slots keeps an overrun from turning into a burst.
    """
    if now < slot:
        return slot + interval
    return slot + interval * (math.floor((now - slot) / interval) + 1)


def point_interval(point: Point, device_poll: float) -> float:
    """A point's poll interval in seconds: its own ``poll`` override or the device's."""
    return device_poll if point.poll is None else point.poll


def bus_cost(bus: BusSettings, profile: Profile) -> BusCost:
    """The planner's cost model for this bus and device: baud rate, framing, extra pause."""
    return bus_type(bus).cost(baudrate=bus.baudrate, turnaround_ms=1000 * pause_after(bus, profile))


def plan_points(profile: Profile, points: Sequence[Point],
                cost: BusCost | None = None) -> list[ReadRequest]:
    """Read requests for some of a profile's points, honouring its workarounds."""
    quirks = profile.workarounds
    if quirks.one_request_per_point:
        tables = list(RegisterType)
        ordered = sorted(points, key=lambda p: (tables.index(p.table), p.address))
        return [ReadRequest(p.table, p.address, p.width, (p,)) for p in ordered]
    return plan_requests(points, max_registers=quirks.max_registers, max_bits=quirks.max_bits,
                         holes=profile.holes, cost=cost)


def device_plan(device: PolledDevice,
                cost: BusCost | None = None) -> list[tuple[float, list[ReadRequest]]]:
    """(interval, requests) per poll group of a device, fastest group first."""
    groups: dict[float, list[Point]] = {}
    for point in device.profile.points:
        groups.setdefault(point_interval(point, device.config.poll), []).append(point)
    return [(interval, plan_points(device.profile, pts, cost))
            for interval, pts in sorted(groups.items())]


def decode_responses(requests: Sequence[ReadRequest], responses: Sequence[list[int] | list[bool]],
                     *, device: str, ts: float) -> list[Reading]:
    """One Reading per point of the requests from their responses (pure)."""
    readings: list[Reading] = []
    for request, values in zip(requests, responses, strict=True):
        for point in request.points:
            part = values[request.slice_of(point)]
            try:
                if request.table.is_bit:
                    value, quality = decode_bit(point, bool(part[0]))
                else:
                    value, quality = decode_point(point, [int(v) for v in part])
            except (ValueError, IndexError):
                value, quality = math.nan, Quality.BAD
            readings.append(Reading(ts=ts, device=device, quantity=point.quantity, value=value,
                                    quality=quality, channel=point.channel))
    return readings


def stagger_groups(devices: Sequence[DeviceSettings]) -> list[int]:
    """Each device's stagger slot (0, 1, ... in order of first appearance; pure): devices of
    one distribution box (same non-empty ``building`` and ``box``) share a slot, every other
    device has its own."""
    slots: dict[tuple[str, ...], int] = {}
    out = []
    for i, device in enumerate(devices):
        key = ("box", device.building, device.box) if device.box else ("device", str(i))
        out.append(slots.setdefault(key, len(slots)))
    return out


def pause_after(bus: BusSettings, profile: Profile) -> float:
    """Silence after each frame: the bus's ``pause`` or the profile's own, whichever is longer."""
    return max(bus.pause, profile.workarounds.pause_after_ms / 1000.0)
