"""Communication faults: silent devices, stale points and garbled answers on the bus.

A detector that stops answering protects nothing, so monitoring equipment must show a
communication fault within 100 s (GB 14287). A device is ``comms``-faulted when
``failed_polls`` polls in a row fail (its poller's ``online = 0`` health readings), or when it has
not answered (``online = 1``) for ``silent_after`` s, at least two and a half poll intervals; the
second case also covers a poller that stopped emitting anything, which the engine's one-second
``tick`` notices from the last-heard time. A fire panel's GB/T 26875 link publishes ``online``
every 5 s and ``online = 0`` only after its own heartbeat timeout, so one ``online = 0`` faults it
at once. Smoke detectors and fire panels are critical (their silence hides fires), other devices
warnings. ``comms-stale``: the device answers but one point has not arrived for ``stale_after``
(or three of its usual intervals, for slow points) - a broken poll plan or a gateway serving a
cached map; any arrival counts, as a bad-quality value is the sensor's fault, not the link's.
``comms-crc``: the cumulative ``crc_errors`` counter grew by ``crc_pct`` % of the polls in
``crc_window``: noise, a missing terminator or a bad shield on the RS-485 segment.

One rule object serves every device (one tick for all). Pure; time is the reading's or tick's.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Output, Rule, RuleSpec, SiteInfo
from rules.hysteresis import minutes
from rules.model import Condition, Severity

NAME = "comms"
STALE_RULE = "comms-stale"
CRC_RULE = "comms-crc"
HEALTH = frozenset({Quantity.ONLINE, Quantity.CRC_ERRORS})
IGNORED = frozenset({Quantity.LATENCY, Quantity.ERRORS})  # health, but not points
CRC_CHECKPOINTS = 10  # the CRC window is sampled this many times
CRC_MIN_POLLS = 10  # fewer polls in the window give no verdict
STALE_GAPS = 3.0  # a point is stale after this many of its own usual intervals, at least
# Points are checked for staleness every this many seconds, not at every 1 s tick: a stale
# limit is minutes, and a scan visits every point of the site (20 000 at 1000 meters)
POINT_SCAN_EVERY = 5.0
_SCAN = ("comms-point-scan",)  # the state that holds when the next point scan is due


@dataclass(frozen=True, slots=True)
class Link:
    """One device's communication parameters, resolved by ``_build``."""

    what: str  # for messages: "device", "smoke detector", "fire panel"
    severity: Severity
    polled: bool
    silent_after: float
    failed_polls: int
    stale_after: float
    crc_pct: float
    crc_min_errors: int
    crc_window: float
    # each point's configured poll interval (a 10-minute energy counter is not stale at 5)
    intervals: Mapping[tuple[Quantity, str | None], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceState:
    heard: float  # last answer (online = 1), or when we started to wait for one
    failures: int = 0  # online = 0 in a row
    down: bool | None = None
    polls: int = 0  # crc_errors readings seen: one per poll attempt
    checkpoints: tuple[tuple[float, float, int], ...] = ()  # (ts, crc counter, polls)
    crc: bool | None = None


@dataclass(frozen=True, slots=True)
class PointState:
    """The last arrival of a point, or of a poll group: the points a device's poller reads
    together on one interval arrive together, so one state serves them all (a state and a
    tick visit per group, not per point: 2 per meter instead of 25)."""

    ts: float  # last arrival
    gap: float = 0.0  # the interval before it
    stale: bool = False
    quantity: Quantity | None = None  # the point that names it in messages (the group's first)
    channel: str | None = None
    group: bool = False  # the state of a poll group, not of one point


class Comms:
    """Every device's communication rule; states per device and per point."""

    __slots__ = ("_links", "_quantities")

    def __init__(self, links: Mapping[str, Link], quantities: frozenset[Quantity]) -> None:
        self._links = dict(links)
        self._quantities = quantities | HEALTH

    def __repr__(self) -> str:
        return f"Comms({len(self._links)} devices)"

    @property
    def links(self) -> Mapping[str, Link]:
        return self._links

    @property
    def quantities(self) -> frozenset[Quantity]:
        return self._quantities

    def key(self, reading: Reading) -> Hashable:
        if reading.quantity in HEALTH:
            return NAME, reading.device
        link = self._links.get(reading.device)
        interval = link.intervals.get((reading.quantity, reading.channel)) if link else None
        if interval is None:  # a point of unknown rhythm: tracked alone
            return NAME, reading.device, reading.quantity, reading.channel
        return NAME, reading.device, interval  # the poll group read every `interval` s

    def step(self, state: Any, reading: Reading) -> tuple[Any, list[Condition]]:
        link = self._links.get(reading.device)
        q = reading.quantity
        if link is None or q in IGNORED:
            return state, []
        if q is Quantity.ONLINE:
            return self._online(state, reading, link)
        if q is Quantity.CRC_ERRORS:
            return self._crc(state, reading, link)
        if not link.polled:
            return state, []
        # a data point arrived (any quality: a bad value is the sensor's, not the link's)
        now = reading.ts
        if state is None:
            return PointState(now, 0.0, False, reading.quantity, reading.channel,
                              (reading.quantity, reading.channel) in link.intervals), []
        if now == state.ts and not state.stale:
            return state, []  # another point of the same poll
        gap = now - state.ts if now > state.ts else state.gap
        new = PointState(now, gap, False, state.quantity, state.channel, state.group)
        if state.stale:
            return new, [self._stale(reading.device, new, now, link, False, 0.0)]
        return new, []

    def tick(self, states: Iterable[tuple[Hashable, Any]],
             now: float) -> tuple[dict[Hashable, Any], list[Output]]:
        changed: dict[Hashable, Any] = {}
        out: list[Output] = []
        devices: dict[str, DeviceState] = {}
        points: list[tuple[tuple[Any, ...], PointState]] = []
        scan_at = 0.0
        for key, state in states:
            if isinstance(state, DeviceState):
                devices[key[1]] = state  # type: ignore[index]
            elif isinstance(state, PointState):
                points.append((key, state))  # type: ignore[arg-type]
            elif key == _SCAN:
                scan_at = state
        if now < scan_at:
            points = []  # not this tick
        else:
            changed[_SCAN] = now + POINT_SCAN_EVERY
        for name, link in self._links.items():
            s = devices.get(name)
            if s is None:  # never heard since start: wait silent_after from now
                s = devices[name] = changed[(NAME, name)] = DeviceState(heard=now)
            if s.down is not True and now - s.heard >= link.silent_after:
                s = devices[name] = changed[(NAME, name)] = DeviceState(
                    s.heard, s.failures, True, s.polls, s.checkpoints, s.crc)
                out.append(self._down(name, link, now, s, silent=True))
        for key, p in points:
            name = key[1]
            own = self._links.get(name)
            d = devices.get(name)
            if p.stale or own is None or d is None or d.down or now - d.heard > own.silent_after:
                continue  # already stale, or the device is not answering: that is comms
            age = now - p.ts
            configured = key[2] if len(key) == 3 else 0.0  # a poll group's own interval
            usual = max(p.gap, configured)
            if age > max(own.stale_after, STALE_GAPS * usual):
                stale = changed[key] = PointState(p.ts, p.gap, True, p.quantity, p.channel,
                                                  p.group)
                out.append(self._stale(name, stale, now, own, True, age))
        return changed, out

    # -- device health ------------------------------------------------------------------------

    def _online(self, state: DeviceState | None, reading: Reading,
                link: Link) -> tuple[DeviceState, list[Condition]]:
        now = reading.ts
        s = state or DeviceState(heard=now)
        if reading.good and reading.value >= 0.5:
            new = DeviceState(max(now, s.heard), 0, False, s.polls, s.checkpoints, s.crc)
            if s.down is not False:
                return new, [self._up(reading.device, link, now, s)]
            return new, []
        failures = s.failures + 1
        down = s.down is True or not link.polled or failures >= link.failed_polls or (
            now - s.heard >= link.silent_after)
        new = DeviceState(s.heard, failures, True if down else s.down, s.polls, s.checkpoints,
                          s.crc)
        if down and s.down is not True:
            return new, [self._down(reading.device, link, now, new, silent=False)]
        return new, []

    def _down(self, device: str, link: Link, now: float, s: DeviceState,
              silent: bool) -> Condition:
        quiet = now - s.heard
        if not link.polled:
            why = f"link down: no heartbeat, last heard {minutes(quiet)} ago"
        elif silent:
            why = f"no answer for {minutes(quiet)} (fault after {minutes(link.silent_after)})"
        else:
            why = (f"{s.failures} polls failed in a row, last answer {minutes(quiet)} ago: "
                   f"check its power, address and RS-485 wiring")
        return Condition(rule=NAME, device=device, active=True, severity=link.severity, ts=now,
                         value=round(quiet, 1), limit=link.silent_after,
                         message=f"{link.what} {device} communication fault: {why}")

    def _up(self, device: str, link: Link, now: float, s: DeviceState) -> Condition:
        message = f"{link.what} {device} answering again"
        if s.down:
            message += f" after {minutes(now - s.heard)}"
        return Condition(rule=NAME, device=device, active=False, severity=link.severity,
                         ts=now, value=0.0, limit=link.silent_after, message=message)

    def _crc(self, state: DeviceState | None, reading: Reading,
             link: Link) -> tuple[DeviceState, list[Condition]]:
        now, count = reading.ts, reading.value
        s = state or DeviceState(heard=now)
        polls = s.polls + 1
        marks = s.checkpoints
        if not reading.good:
            return DeviceState(s.heard, s.failures, s.down, polls, marks, s.crc), []
        if marks and count < marks[-1][1]:  # the counter restarted (poller restart)
            marks = ()
        if marks and now - marks[-1][0] < link.crc_window / CRC_CHECKPOINTS:
            return DeviceState(s.heard, s.failures, s.down, polls, marks, s.crc), []
        oldest = now - link.crc_window
        while len(marks) > 1 and marks[1][0] <= oldest:  # keep one mark at the window's start
            marks = marks[1:]
        marks = (*marks, (now, count, polls))
        base_ts, base_count, base_polls = marks[0]
        n, errors = polls - base_polls, count - base_count
        crc = s.crc
        out: list[Condition] = []
        if n >= CRC_MIN_POLLS and now - base_ts >= link.crc_window / 2:
            pct = 100 * errors / n
            active = pct >= link.crc_pct and errors >= link.crc_min_errors
            if active != crc and (active or crc is None or pct < link.crc_pct / 2):
                crc = active
                span = minutes(now - base_ts)
                message = (f"{link.what} {reading.device}: {errors:.0f} garbled answers in {n} "
                           f"polls ({pct:.1f} %, limit {link.crc_pct:g} %) in the last {span}: "
                           f"check RS-485 termination, shielding and cable runs" if active else
                           f"{link.what} {reading.device}: garbled answers down to {pct:.1f} % "
                           f"of polls in the last {span}")
                out.append(Condition(rule=CRC_RULE, device=reading.device, active=active,
                                     severity=Severity.WARNING, ts=now, value=round(pct, 2),
                                     limit=link.crc_pct, message=message))
        return DeviceState(s.heard, s.failures, s.down, polls, marks, crc), out

    # -- points -------------------------------------------------------------------------------

    def _stale(self, device: str, p: PointState, now: float, link: Link, active: bool,
               age: float) -> Condition:
        quantity, channel = p.quantity or Quantity.ONLINE, p.channel
        point = f"{quantity.value}-{channel}" if channel else quantity.value
        what = f"{quantity.value}{' ' + channel if channel else ''}" + (
            " (and the points read with it)" if p.group else "")
        if active:
            message = (f"{link.what} {device} answers but {what} has not been updated for "
                       f"{minutes(age)} (limit {minutes(link.stale_after)})")
        else:
            message = f"{link.what} {device}: {quantity.value} {channel or ''} updated again"
        return Condition(rule=STALE_RULE, device=device, channel=point, active=active,
                         severity=Severity.WARNING, ts=now, value=round(age, 1),
                         limit=link.stale_after, message=message.rstrip())


@dataclass(frozen=True, slots=True)
class CommsConfig:
    """``[rules.comms]``: every polled device and every fire panel."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # "comms": no answer for silent_after (s; GB 14287: a fault within 100 s), never less than
    # 2.5 poll intervals; or failed_polls failed polls in a row, whichever comes first.
    silent_after: Annotated[Duration, Ge(5), Le(86400)] = 100.0
    failed_polls: Annotated[int, Ge(1), Le(1000)] = 3
    # "comms-stale": a point of an answering device not updated for stale_after (s), or for
    # three of its usual intervals if that is longer (energy and battery poll every 60 s).
    stale_after: Annotated[Duration, Ge(5), Le(86400)] = 300.0
    # "comms-crc": garbled answers at least crc_pct % of the polls in crc_window (s), and at
    # least crc_min_errors of them; clears below half the rate.
    crc_pct: Annotated[float, Gt(0), Le(100)] = 5.0
    crc_min_errors: Annotated[int, Ge(1), Le(100000)] = 3
    crc_window: Annotated[Duration, Ge(60), Le(86400)] = 600.0


def _link(device: DeviceInfo, c: CommsConfig) -> Link:
    panel = device.kind == "fire-panel"
    smoke = device.kind == "smoke" or device.profile_kind == "smoke"
    return Link(
        what="fire panel" if panel else "smoke detector" if smoke else "device",
        severity=Severity.CRITICAL if panel or smoke else Severity.WARNING,
        polled=device.poll > 0 and not panel,
        silent_after=max(c.silent_after, 2.5 * device.poll), failed_polls=c.failed_polls,
        stale_after=c.stale_after, crc_pct=c.crc_pct, crc_min_errors=c.crc_min_errors,
        crc_window=c.crc_window, intervals=device.intervals)


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    chosen = [(d, c) for d, c in devices if d.poll > 0 or d.kind == "fire-panel"]
    if not chosen:
        return {}
    links = {d.name: _link(d, c) for d, c in chosen}
    points = frozenset(q for d, _ in chosen if links[d.name].polled for q, _ in d.points)
    rule = Comms(links, points - IGNORED)
    return {d.name: [rule] for d, _ in chosen}


SPEC = RuleSpec(
    name=NAME, params=CommsConfig, build=_build,
    summary="silent devices and fire panels, stale points, garbled answers on a bus",
    alarms={NAME: "warning (critical for smoke detectors and fire panels): not answering",
            STALE_RULE: "warning: a device answers but one point is not updated",
            CRC_RULE: "warning: garbled answers above crc_pct % of polls"})
