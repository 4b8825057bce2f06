"""The InfluxDB sink: readings, alarm transitions and self-metrics, written without loss.

``add``, ``add_alarm`` and ``add_point`` are synchronous and cheap (format one line, append to
a deque): the hot path never waits for the network. A background task sends a batch when
``batch_size`` lines are waiting or the oldest has waited ``flush_interval`` seconds; bodies of
64 KiB and more are gzipped (``gzip = "auto"``: unless the server is on loopback).

Without loss: a batch whose write fails (no connection, timeout, 5xx, 429, auth) goes to the
SQLite spool at once (``daemon/sinks/spool.py``), and so does everything queued behind it while
the server stays away; the spool is replayed in order, oldest first, with capped jittered
backoff, before anything newer is sent; on shutdown whatever is still in memory goes to the
spool too, so a restart replays it. A batch the server refuses as malformed (400 and other
4xx, e.g. a field type conflict or a line that does not parse) is bisected until the refused
lines are isolated: those are quarantined (kept in the spool file with the reason, logged
once, counted), the rest written.

Two APIs (v1 ``/write`` and v2 ``/api/v2/write``) behind one ``Writer`` interface, in
``daemon/sinks/influx_writers.py``; this module is the batching, spooling and retry lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from core.aio import finish_within
from core.measurements import Quality, Quantity, Reading
from daemon.config import InfluxConfig
from daemon.sinks.influx_writers import Outcome, V1Writer, V2Writer, Writer
from daemon.sinks.lineprotocol import (
    FieldValue,
    alarm_line,
    escape_key,
    line,
    reading_series,
    timestamp_ns,
)
from daemon.sinks.spool import Spool
from daemon.sqlitefile import DiskReserve, StateProblem, is_full
from rules.model import AlarmEvent

log = logging.getLogger(__name__)

_MEMORY_SPOOL = Path(":memory:")
STRANDED_MAX = 200_000  # reading points kept in memory while the spool's disk refuses writes
SPOOL_RETRY = 30.0  # s between attempts to use a spool that failed


@dataclass(frozen=True, slots=True)
class InfluxStats:
    """Counters since start (points unless named otherwise); spool ones since it was made."""

    pending: int  # accepted, in memory, not yet written
    written: int
    failed_writes: int  # write attempts that failed and will be retried (requests)
    quarantined: int  # lines the server refused as malformed, kept aside
    dropped_bad_quality: int  # readings with Quality.BAD, never written as values
    unformattable: int  # readings or events that could not be turned into line protocol
    spool_points: int
    spool_bytes: int
    spool_dropped: int  # reading points dropped to keep the spool under spool_max_mb
    write_latency_ms: float  # the last successful write's round trip
    lost: int = 0  # reading points dropped because the spool's disk refused them too
    spool_failing: bool = False

    @property
    def rejected(self) -> int:  # the name before quarantining existed
        return self.quarantined


class InfluxSink:
    """Batched, spooled writer to InfluxDB; an async context manager. ``device_tags`` maps
    device name to its location tags; ``spool`` is the spool file (None: memory only, for
    tools and tests that don't need durability)."""

    def __init__(self, *, config: InfluxConfig, site: str,
                 device_tags: Mapping[str, Mapping[str, str]], spool: Path | None = None,
                 retry_initial: float = 0.5, retry_max: float = 30.0,
                 close_timeout: float | None = None, writer: Writer | None = None,
                 reserve: DiskReserve | None = None) -> None:
        self._config = config
        self._site = site
        self._device_tags = device_tags
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._close_timeout = close_timeout if close_timeout is not None else config.timeout
        self._writer: Writer = writer or (V2Writer(config) if config.api == "v2"
                                          else V1Writer(config))
        self._spool = Spool(spool or _MEMORY_SPOOL, max_bytes=config.spool_max_mb << 20,
                            reserve=reserve)
        self._readings: deque[str] = deque()
        self._alarms: deque[str] = deque()  # kept apart: the spool never drops them
        self._stranded: deque[tuple[list[str], bool]] = deque()  # the spool refused them
        self._stranded_points = 0
        self._spool_error_at: float | None = None  # monotonic time the spool last failed
        self._lost = 0  # readings dropped because neither the disk nor memory could hold them
        self._inflight: tuple[list[str], bool] | None = None  # from memory, being written
        self._oldest: float = 0.0  # monotonic time the oldest buffered line arrived
        # device -> (quantity, channel) -> "series field="; one key tuple per kind of point
        self._prefixes: dict[str, dict[tuple[Quantity, str | None], str]] = {}
        self._point_keys: dict[tuple[Quantity, str | None], tuple[Quantity, str | None]] = {}
        self._stamp_ts: float | None = None
        self._stamp = ""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._idle_flag = True  # mirrors _idle without a method call on the hot path
        self._closing = False
        self._flush_now = False
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._refusing = False
        self._dropping = False
        self._written = 0
        self._failed_writes = 0
        self._dropped_bad = 0
        self._unformattable = 0
        self._latency_ms = 0.0

    # -- the hot path ----------------------------------------------------------------------

    def add(self, reading: Reading) -> None:
        """Queue one reading; bad-quality readings are counted, not written. Never raises."""
        if reading.quality is not Quality.GOOD:
            self._dropped_bad += 1
            return
        try:
            point = (reading.quantity, reading.channel)
            try:
                prefix = self._prefixes[reading.device][point]
            except KeyError:  # "series field=": escaped and sorted once per series
                tags = self._device_tags.get(reading.device, {})
                point = self._point_keys.setdefault(point, point)
                prefix = self._prefixes.setdefault(reading.device, {})[point] = (
                    f"{reading_series(reading, self._site, tags)} "
                    f"{escape_key(reading.quantity.spec.field)}=")
            # Always a float, so a field never changes type (see reading_line).
            value = reading.value
            if value.__class__ is not float:
                value = float(value)
            if value - value != 0.0:  # NaN or infinite, without a function call
                raise ValueError(f"cannot write non-finite float {value!r}")
            if reading.ts != self._stamp_ts:  # a poll's readings share one timestamp
                self._stamp_ts, self._stamp = reading.ts, f" {timestamp_ns(reading.ts)}"
            text = prefix + repr(value) + self._stamp
        except Exception:
            self._count_unformattable(f"reading {reading!r}")
            return
        self._push(self._readings, text)

    def add_alarm(self, event: AlarmEvent) -> None:
        """Queue one alarm transition for the ``alarms`` measurement. Never raises."""
        try:
            tags = self._device_tags.get(event.alarm.device, {})
            text = alarm_line(event, self._site, tags)
        except Exception:
            self._count_unformattable(f"alarm event {event.alarm.alarm_id}")
            return
        self._push(self._alarms, text)

    def add_point(self, measurement: str, fields: Mapping[str, FieldValue],
                  ts: float) -> None:
        """Queue one point of the daemon's own (e.g. ``firewarden`` self-metrics)."""
        try:
            text = line(measurement, {"site": self._site}, fields, ts)
        except Exception:
            self._count_unformattable(f"point {measurement}")
            return
        self._push(self._readings, text)

    def _push(self, queue: deque[str], text: str) -> None:
        # The hot path: a few hundred nanoseconds, so no Event calls unless something changes.
        queue.append(text)
        n = len(queue)
        if n == 1 and len(self._readings) + len(self._alarms) == 1:
            self._oldest = time.monotonic()
            self._wake.set()  # start the age clock in the flush loop
        if self._idle_flag:
            self._idle.clear()
            self._idle_flag = False
        if n == self._config.batch_size:
            self._wake.set()

    def _set_idle(self) -> None:
        self._idle.set()
        self._idle_flag = True

    def _count_unformattable(self, what: str) -> None:
        if self._unformattable == 0:
            log.exception("cannot format %s as line protocol (further cases at DEBUG)", what)
        else:
            log.debug("cannot format %s as line protocol", what, exc_info=True)
        self._unformattable += 1

    # -- observability ---------------------------------------------------------------------

    @property
    def stats(self) -> InfluxStats:
        inflight = len(self._inflight[0]) if self._inflight else 0
        inflight += self._stranded_points
        spool = self._spool
        return InfluxStats(
            pending=len(self._readings) + len(self._alarms) + inflight,
            written=self._written, failed_writes=self._failed_writes,
            quarantined=spool.quarantined,
            dropped_bad_quality=self._dropped_bad, unformattable=self._unformattable,
            spool_points=spool.points, spool_bytes=spool.bytes, spool_dropped=spool.dropped,
            write_latency_ms=self._latency_ms, lost=self._lost,
            spool_failing=self._spool_error_at is not None)

    @property
    def spool_problem(self) -> StateProblem | None:
        """What opening the spool file found wrong with it (damaged, not writable)."""
        return self._spool.problem

    async def drain(self) -> None:
        """Write everything queued and spooled now, ignoring the age rule; returns once
        nothing is pending (bound it with ``asyncio.timeout``: while InfluxDB is down it
        waits)."""
        self._flush_now = True
        self._wake.set()
        await self._idle.wait()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._spool.open()
        if self._spool.points:
            self._idle.clear()  # drain() must wait for the replay
            self._idle_flag = False
            log.info("InfluxDB spool %s holds %d points from before; replaying them first",
                     self._spool.path, self._spool.points)
        # Secrets are read once, at start: a missing file is a startup error, not a retry loop.
        await self._writer.prepare()
        self._task = asyncio.create_task(self._run(), name="influx-flush")
        self._task.add_done_callback(_log_crash)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            await finish_within(task, self._close_timeout)
        finally:
            await self._writer.close()
            self._spill(final=True)
            if self._stranded_points:
                log.error("InfluxDB sink closed with %d points neither written nor spooled "
                          "(the spool's disk refused them): lost", self._stranded_points)
            if self._spool.points and self._spool.path != _MEMORY_SPOOL:
                log.warning("InfluxDB sink closed with %d points in the spool %s: they are "
                            "written after the restart", self._spool.points, self._spool.path)
            elif self._spool.points:
                log.error("InfluxDB sink closed with %d points unwritten (no spool: lost)",
                          self._spool.points)
            self._spool.close()

    # -- the flush loop --------------------------------------------------------------------

    async def _run(self) -> None:
        if isinstance(self._writer, V1Writer):
            # Here rather than in __aenter__: a slow or absent server must not delay startup.
            await self._writer.create_database()
        attempt = 0
        while True:
            if self._spool_usable() and self._spool.batches:
                # Replay (or retry) the oldest spooled batch before anything newer.
                if (self._closing or len(self._readings) >= self._config.batch_size
                        or ((self._readings or self._alarms) and time.monotonic()
                            - self._oldest >= self._config.flush_interval)):
                    self._spill()  # during a replay, new points wait on disk, not in memory
                try:
                    head = self._spool.oldest()
                except sqlite3.Error as exc:
                    self._spool_failed(exc)
                    continue
                assert head is not None
                left = await self._deliver(head.lines)
                try:
                    if not left:
                        self._spool.remove(head.seq)
                        attempt = 0
                        if not self._spool.batches and self._spool.maintain():
                            log.info("InfluxDB spool drained and compacted")
                        continue
                    if len(left) != len(head.lines):
                        self._spool.replace(head.seq, [left], alarms=head.alarms)
                except sqlite3.Error as exc:
                    self._spool_failed(exc)  # a replay later re-writes it: harmless
                    continue
                self._spill()  # the server is away: what waits in memory goes to disk too
            elif self._stranded:
                # Batches the spool could not take (disk full), kept in memory.
                lines, alarms = self._stranded[0]
                left = await self._deliver(lines)
                if not left:
                    self._stranded.popleft()
                    self._stranded_points -= len(lines)
                    attempt = 0
                    continue
                self._stranded[0] = (left, alarms)
                self._stranded_points -= len(lines) - len(left)
                if self._spool_usable() and self._spool.writable():  # room again?
                    stranded, self._stranded, self._stranded_points = self._stranded, deque(), 0
                    for lines, alarms in stranded:
                        self._to_disk(lines, alarms)
                self._spill()
            else:
                if not (self._readings or self._alarms):
                    self._flush_now = False
                    self._set_idle()
                batch = await self._next_batch()
                if batch is None:
                    if self._closing:
                        return
                    self._flush_now = False
                    self._set_idle()
                    continue
                lines, alarms = self._inflight = batch
                left = await self._deliver(lines)
                self._inflight = None
                if not left:
                    attempt = 0
                    continue
                # Not taken in time: to disk, in order, with everything queued behind it.
                self._to_disk(left, alarms)
                self._spill()
            if self._closing:
                return  # __aexit__ spills the rest
            delay = min(self._retry_max, self._retry_initial * 2 ** attempt)
            attempt += 1
            await self._sleep(delay * random.uniform(0.5, 1.0))

    async def _next_batch(self) -> tuple[list[str], bool] | None:
        """The next batch from memory once it is due (size, age, drain, close); alarms
        first, since they are few and what people were told."""
        await self._wait_for_batch()
        if self._alarms:
            queue, alarms = self._alarms, True
        elif self._readings:
            queue, alarms = self._readings, False
        else:
            return None
        n = min(len(queue), self._config.batch_size)
        batch = [queue.popleft() for _ in range(n)]
        self._oldest = time.monotonic()  # the rest waited while we were busy
        return batch, alarms

    def _spill(self, *, final: bool = False) -> None:
        """Move what waits in memory to the spool, in batch-size pieces (readings after
        alarms; order within each kind kept)."""
        if final and self._inflight is not None:
            lines, alarms = self._inflight  # may have been written: a replay is harmless
            self._to_disk(lines, alarms)
            self._inflight = None
        for queue, alarms in ((self._alarms, True), (self._readings, False)):
            while queue:
                n = min(len(queue), self._config.batch_size)
                self._to_disk([queue.popleft() for _ in range(n)], alarms)

    def _to_disk(self, lines: list[str], alarms: bool) -> None:
        """One batch into the spool; if the disk refuses (full, read-only), into memory."""
        if self._spool_usable() and self._spool.writable():
            try:
                dropped = self._spool.put(lines, alarms=alarms)
            except sqlite3.Error as exc:
                self._spool_failed(exc)
            else:
                self._spool_error_at = None
                if dropped:
                    # once at ERROR, then DEBUG: the count is in the self-metrics
                    level = logging.DEBUG if self._dropping else logging.ERROR
                    self._dropping = True
                    log.log(level, "InfluxDB spool over %d MB: dropped the %d oldest reading "
                            "points (%d so far; alarms are never dropped)",
                            self._config.spool_max_mb, dropped, self._spool.dropped)
                return
        self._stranded.append((lines, alarms))
        self._stranded_points += len(lines)
        readings = sum(len(b) for b, a in self._stranded if not a)  # alarms do not count
        while readings > STRANDED_MAX:
            oldest = next(i for i, (_, a) in enumerate(self._stranded) if not a)
            gone, _ = self._stranded[oldest]
            excess = readings - STRANDED_MAX
            if excess < len(gone):  # trim the batch's oldest lines only
                self._stranded[oldest] = (gone[excess:], False)
                gone = gone[:excess]
            else:
                del self._stranded[oldest]
            self._stranded_points -= len(gone)
            readings -= len(gone)
            self._lost += len(gone)

    def _spool_usable(self) -> bool:
        return (self._spool_error_at is None
                or time.monotonic() - self._spool_error_at >= SPOOL_RETRY)

    def _spool_failed(self, exc: sqlite3.Error) -> None:
        reserve = self._spool.reserve
        if is_full(exc) and reserve is not None and reserve.release():
            return  # room to drain now: the caller retries at once
        if self._spool_error_at is None:
            log.error("InfluxDB spool %s: cannot write (%s): disk full? Unwritten points are "
                      "kept in memory (up to %d readings, then the oldest are lost; alarms are "
                      "kept) and the spool is retried every %.0f s", self._spool.path, exc,
                      STRANDED_MAX, SPOOL_RETRY)
        self._spool_error_at = time.monotonic()

    async def _deliver(self, lines: list[str]) -> list[str]:
        """Write ``lines``; return those still to be written (empty: done). Refused lines are
        isolated by bisection and quarantined; too-large batches are split."""
        started = time.monotonic()
        result = await self._writer.write(lines)
        if result.outcome is Outcome.WRITTEN:
            self._latency_ms = (time.monotonic() - started) * 1000
            self._written += len(lines)
            if self._failing:
                log.info("InfluxDB writes recovered (%d failed attempts so far)",
                         self._failed_writes)
                self._failing = False
            return []
        if result.outcome is Outcome.RETRY:
            self._failed(result.detail)
            return lines
        if len(lines) == 1 and result.outcome is Outcome.REFUSED:
            self._quarantine(lines, result.detail)
            return []
        if len(lines) == 1:  # a single line too large for the server: nothing else helps
            self._quarantine(lines, result.detail)
            return []
        half = len(lines) // 2
        first = await self._deliver(lines[:half])
        if first:
            return first + lines[half:]
        return await self._deliver(lines[half:])

    def _quarantine(self, lines: list[str], why: str) -> None:
        self._spool.quarantine(lines, why)
        if not self._refusing:
            log.error("InfluxDB refused %d line(s) as malformed (%s); quarantined in %s, "
                      "further refusals at DEBUG: %s", len(lines), why, self._spool.path,
                      lines[0][:200])
            self._refusing = True
        else:
            log.debug("InfluxDB refused %d line(s) (%s)", len(lines), why)

    def _failed(self, why: str) -> None:
        self._failed_writes += 1
        if not self._failing:
            log.error("InfluxDB write to %s failed (%s); spooling to disk and retrying",
                      self._config.url, why)
            self._failing = True
        else:
            log.debug("InfluxDB write failed again (%s)", why)

    async def _wait_for_batch(self) -> None:
        while not (self._closing or self._flush_now
                   or len(self._readings) >= self._config.batch_size
                   or len(self._alarms) >= self._config.batch_size):
            timeout = None
            if self._readings or self._alarms:
                timeout = self._oldest + self._config.flush_interval - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return

    async def _sleep(self, delay: float) -> None:
        """Back off, but not past a shutdown; meanwhile what arrives goes to the spool every
        ``flush_interval``, so accepted points never wait in memory for the next attempt."""
        self._wake.clear()
        deadline = time.monotonic() + delay
        while not self._closing and (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       min(remaining, self._config.flush_interval))
            self._wake.clear()
            if self._readings or self._alarms:
                self._spill()


def _log_crash(task: asyncio.Task[None]) -> None:
    """A flush loop that dies is a bug; say so at once rather than at shutdown."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.critical("InfluxDB flush task crashed; points now only accumulate", exc_info=error)
