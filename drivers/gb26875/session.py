"""Link bookkeeping for the fire-panel receiver, pure: reconnect backoff, the per-session resend
filter, liveness state and the per-cause log limit. Time is passed in."""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime

from core.logbudget import LogBudget, held_back

log = logging.getLogger("drivers.gb26875.link")

RESEND_MEMORY = 256  # serials remembered per source address
# s a serial stays remembered: the standard resends an unACKed frame within ~30 s; a longer
# memory would swallow a rebooted UITD's first frames (its serials restart)
RESEND_WINDOW = 60.0
MAX_SOURCES = 1024  # source addresses remembered; the least recently heard is forgotten
LOG_INTERVAL = 60.0  # s: one log line per cause


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with +-``jitter`` (fraction), so reconnects do not align."""

    base: float = 1.0
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``failures`` >= 1)."""
        raw = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return min(self.cap, raw * (1.0 + self.jitter * (2.0 * rand() - 1.0)))


class ResendFilter:
    """Remembers (source, serial, ADU fingerprint) to recognise resends (pure: time is passed).

    Per source, the last ``memory`` serials heard within ``window`` seconds are kept. A frame
    whose time label is more than ``window`` before the source's previous one starts a new
    session (the UITD rebooted, its clock reset): everything remembered of it is forgotten.
    """

    def __init__(self, *, memory: int = RESEND_MEMORY, window: float = RESEND_WINDOW,
                 max_sources: int = MAX_SOURCES) -> None:
        self._memory = memory
        self._window = window
        self._max_sources = max_sources
        self._sources: OrderedDict[Hashable, OrderedDict[int, tuple[int, float]]] = OrderedDict()
        self._labels: dict[Hashable, datetime] = {}

    def seen(self, source: Hashable, serial: int, fingerprint: int, now: float,
             label: datetime | None = None) -> bool:
        """Record this frame; True if it is a resend of one recorded within the window.

        ``now`` is monotonic time; ``label`` the frame's time label (None: unknown).
        """
        if label is not None:
            last = self._labels.get(source)
            self._labels[source] = label
            if last is not None and (last - label).total_seconds() > self._window:
                self._sources.pop(source, None)
        serials = self._sources.get(source)
        if serials is None:
            serials = self._sources[source] = OrderedDict()
            if len(self._sources) > self._max_sources:
                forgotten, _ = self._sources.popitem(last=False)
                self._labels.pop(forgotten, None)
        else:
            self._sources.move_to_end(source)
        previous = serials.pop(serial, None)
        serials[serial] = (fingerprint, now)
        while len(serials) > self._memory:
            serials.popitem(last=False)
        return (previous is not None and previous[0] == fingerprint
                and 0.0 <= now - previous[1] <= self._window)


@dataclass
class LinkState:
    """Counters and liveness of one link; counters run from start and survive reconnects.

    ``frames`` counts valid frames (data, heartbeats and resends); ``errors`` counts every
    defect: undecodable bytes (NAKed or not) and ``on_frame`` failures (also in
    ``callback_errors``); ``evicted`` and ``idle_closed`` count connections we closed to keep
    room. Times are from the link's ``monotonic`` clock (seconds, not unix time).
    """

    connected: bool = False
    connections: int = 0
    online: bool = False
    connected_at: float | None = None
    last_frame_at: float | None = None
    started_at: float | None = None
    frames: int = 0
    delivered: int = 0
    heartbeats: int = 0
    acks: int = 0
    naks: int = 0
    duplicates: int = 0
    errors: int = 0
    callback_errors: int = 0
    evicted: int = 0
    idle_closed: int = 0
    accept_errors: int = 0


class LogLimiter:
    """``LogBudget`` bound to a logger and a clock. Causes are a fixed set of words (never an
    address), so its memory stays small."""

    def __init__(self, logger: logging.Logger, *, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._budget = LogBudget(interval)
        self._clock = clock

    def log(self, cause: str, level: int, msg: str, *args: object) -> None:
        left_out = self._budget.take(cause, self._clock())
        if left_out is not None:
            self._log.log(level, msg + held_back(left_out), *args)

