"""The InfluxDB sink: readings and alarm transitions to line protocol, written in batches.

``add`` and ``add_alarm`` are synchronous and cheap (format one line, append to a deque): the
hot path never waits for the network. A background task sends a batch when ``batch_size``
lines are waiting or the oldest has waited ``flush_interval`` seconds. A failed write (no
connection, timeout, 5xx, 429, auth) keeps the batch and retries it with capped, jittered
exponential backoff, in order; new points queue up behind it. A batch the server rejects as
malformed (400, other 4xx) is counted and dropped, since retrying it can never succeed.

Durability seam: accepted points live in memory until written. Issue 6 moves batches that
keep failing (and whatever is left at shutdown) into the SQLite spool; the places are marked
``SPOOL``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from daemon.config import InfluxConfig
from daemon.sinks.lineprotocol import (
    alarm_line,
    escape_key,
    format_value,
    reading_series,
    timestamp_ns,
)
from drivers.aio import finish_within
from drivers.measurements import Quantity, Reading
from rules.model import AlarmEvent

log = logging.getLogger(__name__)

_GZIP_MIN_BYTES = 64 * 1024  # below this, compressing costs more loop time than it saves
_RETRY_STATUS = frozenset({401, 403, 404, 408, 429})  # fixable by the server side; keep


@dataclass(frozen=True, slots=True)
class InfluxStats:
    """Counters since start (points unless named otherwise)."""

    pending: int  # accepted, not yet written (in memory)
    written: int
    failed_writes: int  # write attempts that failed and will be retried (requests, not points)
    rejected: int  # points in batches the server refused as invalid (400 and the like)
    dropped_bad_quality: int  # readings with Quality.BAD, never written as values
    unformattable: int  # readings or events that could not be turned into line protocol


class InfluxSink:
    """Batched writer to InfluxDB (v1 ``/write`` or v2 ``/api/v2/write``); an async context
    manager. ``device_tags`` maps device name to its location tags (building, box, ...)."""

    def __init__(self, *, config: InfluxConfig, site: str,
                 device_tags: Mapping[str, Mapping[str, str]],
                 retry_initial: float = 0.5, retry_max: float = 30.0,
                 close_timeout: float | None = None) -> None:
        self._config = config
        self._site = site
        self._device_tags = device_tags
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._close_timeout = close_timeout if close_timeout is not None else config.timeout
        self._buffer: deque[str] = deque()
        self._batch: list[str] | None = None  # the batch being written (or retried)
        self._oldest: float = 0.0  # monotonic time the oldest buffered line arrived
        self._prefixes: dict[tuple[str, Quantity, str | None], str] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._flush_now = False
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None  # v2
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._rejecting = False
        self._written = 0
        self._failed_writes = 0
        self._rejected = 0
        self._dropped_bad = 0
        self._unformattable = 0

    # -- the hot path ----------------------------------------------------------------------

    def add(self, reading: Reading) -> None:
        """Queue one reading; bad-quality readings are counted, not written. Never raises."""
        if not reading.good:
            self._dropped_bad += 1
            return
        try:
            key = (reading.device, reading.quantity, reading.channel)
            prefix = self._prefixes.get(key)
            if prefix is None:
                # "series field=" depends only on the key: escape and sort once per series.
                tags = self._device_tags.get(reading.device, {})
                prefix = self._prefixes[key] = (
                    f"{reading_series(reading, self._site, tags)} "
                    f"{escape_key(reading.quantity.spec.field)}=")
            # Always a float, so a field never changes type (see reading_line).
            text = f"{prefix}{format_value(float(reading.value))} {timestamp_ns(reading.ts)}"
        except Exception:
            self._count_unformattable(f"reading {reading!r}")
            return
        self._push(text)

    def add_alarm(self, event: AlarmEvent) -> None:
        """Queue one alarm transition for the ``alarms`` measurement. Never raises."""
        try:
            tags = self._device_tags.get(event.alarm.device, {})
            text = alarm_line(event, self._site, tags)
        except Exception:
            self._count_unformattable(f"alarm event {event.alarm.alarm_id}")
            return
        self._push(text)

    def _push(self, text: str) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
            self._wake.set()  # start the age clock in the flush loop
        self._buffer.append(text)
        self._idle.clear()
        if len(self._buffer) >= self._config.batch_size:
            self._wake.set()

    def _count_unformattable(self, what: str) -> None:
        if self._unformattable == 0:
            log.exception("cannot format %s as line protocol (further cases at DEBUG)", what)
        else:
            log.debug("cannot format %s as line protocol", what, exc_info=True)
        self._unformattable += 1

    # -- observability ---------------------------------------------------------------------

    @property
    def stats(self) -> InfluxStats:
        return InfluxStats(
            pending=len(self._buffer) + len(self._batch or ()),
            written=self._written, failed_writes=self._failed_writes, rejected=self._rejected,
            dropped_bad_quality=self._dropped_bad, unformattable=self._unformattable)

    async def drain(self) -> None:
        """Write everything queued now, ignoring the age rule; returns once nothing is pending
        (bound it with ``asyncio.timeout``: while InfluxDB is down it waits)."""
        self._flush_now = True
        self._wake.set()
        await self._idle.wait()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        auth = None
        # Secrets are read once, at start: a missing file is a startup error, not a retry loop.
        self._token = _read_secret(self._config.token_file)
        if self._config.api == "v1" and self._config.username:
            password = _read_secret(self._config.password_file) or ""
            auth = aiohttp.BasicAuth(self._config.username, password)
        self._session = aiohttp.ClientSession(
            auth=auth, timeout=aiohttp.ClientTimeout(total=self._config.timeout))
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
            if self._session is not None:
                await self._session.close()
                self._session = None
        left = self.stats.pending
        if left:
            # SPOOL: issue 6 writes these to the spool instead of losing them.
            log.error("InfluxDB sink closed with %d points unwritten (lost)", left)

    # -- the flush loop --------------------------------------------------------------------

    async def _run(self) -> None:
        if self._config.api == "v1":
            # Here rather than in __aenter__: a slow or absent server must not delay startup.
            await self._create_database()
        attempt = 0
        while True:
            if self._batch is None:
                await self._wait_for_batch()
                if not self._buffer:
                    if self._closing:
                        return
                    continue
                n = min(len(self._buffer), self._config.batch_size)
                self._batch = [self._buffer.popleft() for _ in range(n)]
                self._oldest = time.monotonic()  # the rest waited while we were busy
            if await self._write(self._batch):
                self._batch = None
                attempt = 0
                if not self._buffer:
                    self._flush_now = False
                    self._idle.set()
                continue
            # SPOOL: issue 6 moves self._batch to the spool after a few failures.
            delay = min(self._retry_max, self._retry_initial * 2 ** attempt)
            attempt += 1
            await self._sleep(delay * random.uniform(0.5, 1.0))

    async def _wait_for_batch(self) -> None:
        while not (self._closing or self._flush_now
                   or len(self._buffer) >= self._config.batch_size):
            timeout = None
            if self._buffer:
                timeout = self._oldest + self._config.flush_interval - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return

    async def _sleep(self, delay: float) -> None:
        """Back off, but not past a shutdown: the final flush should try again at once."""
        if self._closing:
            await asyncio.sleep(min(delay, 0.2))
            return
        self._wake.clear()
        deadline = time.monotonic() + delay
        while not self._closing and (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            self._wake.clear()

    async def _write(self, batch: list[str]) -> bool:
        """One write attempt; True when the batch is done with (written or rejected)."""
        assert self._session is not None
        body = ("\n".join(batch) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if len(body) >= _GZIP_MIN_BYTES:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip framing
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        url, params = self._write_target(headers)
        try:
            async with self._session.post(url, params=params, data=body,
                                          headers=headers) as response:
                status = response.status
                text = (await response.text(errors="replace"))[:500]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if 200 <= status < 300:
            self._written += len(batch)
            if self._failing:
                log.info("InfluxDB writes recovered (%d failed attempts so far)",
                         self._failed_writes)
                self._failing = False
            self._rejecting = False
            return True
        if status == 413 and len(batch) > 1:
            half = len(batch) // 2
            self._buffer.extendleft(reversed(batch[half:]))  # keep order: they go next
            batch[half:] = []
            log.warning("InfluxDB refused a batch as too large; splitting it")
            return False
        if status >= 500 or status in _RETRY_STATUS:
            if status == 404 and self._config.api == "v1":
                await self._create_database()
            return self._failed(f"HTTP {status}: {text.strip()}")
        self._rejected += len(batch)
        if not self._rejecting:
            log.error("InfluxDB rejected a batch of %d points (HTTP %d: %s); dropped, "
                      "further rejections at DEBUG", len(batch), status, text.strip())
            self._rejecting = True
        else:
            log.debug("InfluxDB rejected %d points (HTTP %d: %s)", len(batch), status, text)
        return True

    def _failed(self, why: str) -> bool:
        self._failed_writes += 1
        if not self._failing:
            log.error("InfluxDB write to %s failed (%s); keeping %d points and retrying",
                      self._config.url, why, self.stats.pending)
            self._failing = True
        else:
            log.debug("InfluxDB write failed again (%s)", why)
        return False

    def _write_target(self, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        base = self._config.url.rstrip("/")
        if self._config.api == "v2":
            if self._token:
                headers["Authorization"] = f"Token {self._token}"
            return f"{base}/api/v2/write", {"org": self._config.org or "",
                                            "bucket": self._config.bucket or "",
                                            "precision": "ns"}
        params = {"db": self._config.database, "precision": "ns"}
        if self._config.retention_policy:
            params["rp"] = self._config.retention_policy
        return f"{base}/write", params

    async def _create_database(self) -> None:
        """``CREATE DATABASE`` is idempotent in 1.x; failure is logged, not fatal (the server
        may be down now, or the user may lack admin rights on a database that exists)."""
        assert self._session is not None
        name = self._config.database.replace("\\", "\\\\").replace('"', '\\"')
        try:
            async with self._session.post(f"{self._config.url.rstrip('/')}/query",
                                          data={"q": f'CREATE DATABASE "{name}"'}) as response:
                text = await response.text(errors="replace")
                if response.status != 200 or '"error"' in text:
                    log.warning("CREATE DATABASE %s: HTTP %d %s", self._config.database,
                                response.status, text.strip()[:200])
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("CREATE DATABASE %s failed (%s); writes will retry",
                        self._config.database, exc or type(exc).__name__)


def _read_secret(path: Path | None) -> str | None:
    """A secret from a file (systemd credentials), without its trailing newline."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def _log_crash(task: asyncio.Task[None]) -> None:
    """A flush loop that dies is a bug; say so at once rather than at shutdown."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.critical("InfluxDB flush task crashed; points now only accumulate", exc_info=error)
