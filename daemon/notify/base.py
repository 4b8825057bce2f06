"""The one lifecycle every notifier shares: send the alarm store's outbox from a background
task; an async context manager.

A notifier delivers the rows of its own outbox sink (daemon/store.py ``Outbox``: ``pending``
in send order, ``delivered`` once the receiver took them), so nothing accepted is lost across
an outage or a restart. This base owns what used to be copied into each notifier:

- ``__aenter__``: ``_open()`` (read secrets, make a session: a missing secret is a startup
  error, not a retry loop), then the worker task ``_run()``; starting never waits for the
  receiver (the daemon runs without one).
- ``wake()``: new rows are in the outbox; ``drain()``: wait until the worker went idle.
- ``__aexit__``: set ``_closing``, let the worker flush what it can within ``close_timeout``
  seconds, then cancel it (drivers/aio.py ``finish_within``/``cancel_and_wait``), then
  ``_close()``; rows still waiting stay in the store and are logged once.
- a worker that dies of a bug is logged CRITICAL at once (not at shutdown) and started again
  after a capped exponential backoff (``restart_initial`` .. ``restart_max`` seconds; the
  backoff starts over once a worker ran longer than ``restart_max``): a bug hit by one odd
  event must not silence the notifier until the daemon restarts. Events queue in the store
  meanwhile. A crash while closing is not restarted.
- ``_sleep(delay)``: a retry backoff that shutdown cuts short.
- ``sinks(config)`` and ``from_config(config, ...)``: the outbox sinks a config needs and the
  notifiers it asks for; daemon/notify/registry.py calls them for every registered class.

A subclass keeps only its transport: ``_run()`` (connect, format, send, and its own retry
policy), ``_open``/``_close`` and its stats. Logs go to the subclass's module logger, named
by ``label``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from core.aio import finish_within
from daemon.config import Config
from daemon.store import Outbox

QUEUED_LIMIT = 100_000  # rows counted for ``queued``
RESTART_INITIAL = 1.0  # s: first delay before a crashed worker is started again
RESTART_MAX = 60.0  # s: cap of that delay

# A command handler: (verb, raw body) -> the result object published on cmd/result; a
# "refused" key in it marks an intake refusal (counted, logged).
CommandHandler = Callable[[str, bytes], dict[str, object]]


class Notifier(ABC):
    """Sends one outbox sink to one receiver, retrying forever; an async context manager."""

    def __init__(self, *, outbox: Outbox, sink: str, label: str, task_name: str,
                 close_timeout: float, restart_initial: float = RESTART_INITIAL,
                 restart_max: float = RESTART_MAX) -> None:
        self._outbox = outbox
        self._sink = sink
        self._label = label  # how the logs name this notifier: "MQTT notifier", "webhook x"
        self._task_name = task_name
        self._close_timeout = close_timeout
        self._restart_initial = restart_initial
        self._restart_max = restart_max
        self.crashes = 0  # worker crashes since start (each logged CRITICAL)
        self._log = logging.getLogger(type(self).__module__)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- how the supervisor builds notifiers (daemon/notify/registry.py) -------------------

    @classmethod
    @abstractmethod
    def sinks(cls, config: Config) -> list[str]:
        """The outbox sinks the notifiers ``from_config`` builds will send (the alarm store
        keeps one outbox row per event and sink)."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Config, *, outbox: Outbox,
                    on_command: CommandHandler | None = None) -> Sequence[Notifier]:
        """The notifiers ``config`` asks for (none when its section is absent), not yet
        started."""

    @property
    def sink(self) -> str:
        """The outbox sink this notifier sends."""
        return self._sink

    @property
    def _queued(self) -> int:
        return len(self._outbox.pending(self._sink, QUEUED_LIMIT))

    def wake(self) -> None:
        """New events are in the outbox: send them. Never blocks, never raises."""
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Return once the outbox is empty (bound it with ``asyncio.timeout``)."""
        await self._idle.wait()

    async def __aenter__(self) -> Self:
        await self._open()
        self._task = asyncio.create_task(self._supervise(), name=self._task_name)
        self._task.add_done_callback(self._log_crash)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            await finish_within(task, self._close_timeout)
        finally:
            await self._close()
        if queued := self._queued:
            self._log.warning("%s closed with %d events unsent: kept in the store, sent after "
                              "the restart", self._label, queued)

    # -- what a transport provides -----------------------------------------------------------

    async def _open(self) -> None:  # noqa: B027 (optional hook)
        """Before the worker starts: read secrets, make sessions."""

    async def _close(self) -> None:  # noqa: B027 (optional hook)
        """After the worker ended (or was cancelled): release what ``_open`` made."""

    @abstractmethod
    async def _run(self) -> None:
        """The worker: send the outbox until ``_closing`` and nothing more can go out; set
        ``_idle`` whenever the outbox is empty."""

    # -- shared helpers ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Run the worker; start it again, after a backoff, when it dies of a bug."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._run()
                return
            except Exception as error:
                self.crashes += 1
                if time.monotonic() - started > self._restart_max:
                    failures = 0  # ran a good while: not a crash loop
                failures += 1
                if self._closing:
                    self._log.critical("%s task crashed while closing; unsent events stay in "
                                       "the store", self._label, exc_info=error)
                    return
                delay = capped_backoff(failures, self._restart_initial, self._restart_max)
                self._log.critical("%s task crashed; restarting it in %.1f s, events queue up "
                                   "meanwhile", self._label, delay, exc_info=error)
            await self._sleep(delay)
            if self._closing:
                return

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds before retrying, cut short by shutdown (``wake()`` alone
        does not cut it short)."""
        deadline = time.monotonic() + delay
        while not self._closing and (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        """A supervisor that dies (of what ``_supervise`` does not catch) is a bug; say so at
        once rather than at shutdown."""
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.critical("%s task crashed; events now only queue up", self._label,
                               exc_info=error)


def capped_backoff(attempt: int, initial: float, maximum: float) -> float:
    """The delay before retry number ``attempt`` (1, 2, ...): ``initial`` doubling each time,
    at most ``maximum`` (callers add their own jitter). The exponent is capped too: a broker
    down for hours counts thousands of attempts, and ``1.0 * 2 ** 1100`` raises OverflowError
    (which killed the loop that asked)."""
    return min(maximum, initial * 2.0 ** min(attempt - 1, 64))
