"""The pipeline and the alarm desk: readings in, rules evaluated, alarm events stored and
sent on.

Fire first: fire and detector flags (from panels and Modbus smoke detectors) take their own
unbounded lane with its own consumer, and the bulk consumer yields to the loop every
``BULK_SLICE`` readings, so a fire waits for at most one slice of bulk work, never for a backlog.
In the outboxes, fire-severity events are sent before anything else waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from core.aio import cancel_and_wait
from core.measurements import Quantity, Reading
from daemon.commands import CommandError, Freshness, clip, parse_command
from daemon.escalation import Escalator
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from rules import fire
from rules.alarm import CommandRefused
from rules.engine import RuleEngine, UnknownAlarm
from rules.model import AlarmEvent

log = logging.getLogger("firewarden")

log = logging.getLogger("firewarden")

TICK_INTERVAL = 1.0  # clock s between rule and alarm timer ticks
MIN_TICK_WAIT = 0.05  # real s: the fastest tick on a fast simulated clock (CPU, not meaning)
CLOCK_JUMP = 2.0  # s of wall-clock drift against the monotonic clock in one tick: a step
BULK_SLICE = 64  # bulk readings handled between yields to the loop (~1 ms of work)
FIRE_LANE = frozenset(fire.FLAG_RULES)


class Wakeable(Protocol):
    def wake(self) -> None: ...



class AlarmDesk:
    """The one path of alarm events: the store first (durable, so nothing accepted is lost
    and nothing delivered pages twice after a restart), then the notifiers are woken to send
    from the store's outbox, and the transitions go to InfluxDB's ``alarms``. Operator
    commands come in here too."""

    def __init__(self, *, engine: RuleEngine, store: AlarmStore, influx: InfluxSink,
                 clock: Callable[[], float] = time.time, command_max_age: float = 300.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._store = store
        self._influx = influx
        self._clock = clock
        # a command's ts is the sender's real time: judged by the real clock, also when the
        # rules run on a simulated one
        self._wall = wall
        self._fresh = Freshness(command_max_age)
        self.notifiers: list[Wakeable] = []
        self.watchers: list[Callable[[], None]] = []  # e.g. Home Assistant device states
        self.escalator: Escalator | None = None  # [[escalation]] chains, if configured

    def wake_notifiers(self) -> None:
        """New rows are in the outbox (escalation pages, the morning report): send them."""
        for notifier in self.notifiers:
            notifier.wake()

    def escalate(self, now: float) -> None:
        """Run the escalation chains (rule ticks, after commands); wake the notifiers if they
        queued pages."""
        if self.escalator is not None and self.escalator.run(
                self.engine.alarms, now, flooding=self.engine.flooding):
            self.wake_notifiers()

    def publish(self, events: Sequence[AlarmEvent]) -> None:
        if not events:
            return
        for event in events:
            alarm = event.alarm
            log.warning("alarm %s %s: %s", alarm.alarm_id, event.kind.value, alarm.message)
        self._store.record(events)
        for notifier in self.notifiers:
            notifier.wake()
        for event in events:
            self._influx.add_alarm(event)
        for watcher in self.watchers:
            watcher()

    def command(self, verb: str, body: bytes) -> dict[str, object]:
        """Apply one operator command; the result says what happened or why not."""
        try:
            request = parse_command(verb, body)
        except CommandError as exc:
            return _refusal(verb, exc)
        answer: dict[str, object] = {"verb": verb, "alarm_id": request.alarm_id,
                                     "by": request.by}
        if request.request_id is not None:
            answer["id"] = request.request_id
        try:
            self._fresh.admit(request, body, self._wall())
        except CommandError as exc:
            return {**answer, **_refusal(verb, exc)}
        try:
            events = self.engine.command(request.alarm_id, request.signal(self._clock()),
                                         self._clock())
        except UnknownAlarm:
            return {**answer, "ok": False, "error": f"no alarm {request.alarm_id!r}"}
        except CommandRefused as exc:
            return {**answer, "ok": False, "error": str(exc)}
        self.publish(events)
        self.escalate(self._clock())  # an ack ends its chain now, not at the next tick
        alarm = self.engine.alarms[request.alarm_id]
        log.info("command %s on %s by %s: now %s", verb, request.alarm_id, request.by,
                 alarm.state.value)
        return {**answer, "ok": True, "state": alarm.state.value,
                "events": [e.event_id for e in events]}



def _refusal(verb: str, exc: CommandError) -> dict[str, object]:
    """The answer to a command not applied: ``refused`` names an intake refusal (counted)."""
    answer: dict[str, object] = {"ok": False, "verb": clip(verb), "error": str(exc)}
    if exc.refused is not None:
        answer["refused"] = exc.refused
    return answer



class Pipeline:
    """Consumes readings: stores every one, runs the rules, sends alarm events on.

    ``submit`` is what pollers and panels call: synchronous, never blocks, never raises. A full
    bulk queue refuses (and counts) rather than stalls a bus; the fire lane is unbounded, as
    its readings are few and none may be refused.
    """

    def __init__(self, *, desk: AlarmDesk, influx: InfluxSink, queue_size: int,
                 clock: Callable[[], float] = time.time, clock_rate: float = 1.0) -> None:
        self._desk = desk
        self._clock_rate = clock_rate  # simulated seconds per real second
        self._engine = desk.engine
        self._clock = clock
        self._influx = influx
        # bulk readings travel in batches (one poll's readings); the bound is in readings
        self._queue: asyncio.Queue[Sequence[Reading]] = asyncio.Queue()
        self._queue_size = queue_size
        self._queued = 0  # readings in the bulk queue
        self._fire_lane: asyncio.Queue[Reading] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.refused = 0
        self.processed = 0
        self.online: dict[str, bool] = {}

    def submit(self, reading: Reading) -> None:
        if reading.quantity in FIRE_LANE:
            self._fire_lane.put_nowait(reading)
            return
        self._enqueue((reading,))

    def submit_many(self, readings: Sequence[Reading]) -> None:
        """One poll's readings: fire and detector flags each to the fire lane, the rest as one
        batch (one queue operation per poll instead of one per reading)."""
        bulk = [r for r in readings if r.quantity not in FIRE_LANE]
        if len(bulk) != len(readings):
            for reading in readings:
                if reading.quantity in FIRE_LANE:
                    self._fire_lane.put_nowait(reading)
        if bulk:
            self._enqueue(bulk)

    def _enqueue(self, batch: Sequence[Reading]) -> None:
        if self._queued + len(batch) > self._queue_size:
            before, self.refused = self.refused, self.refused + len(batch)
            if before == 0 or before // 1000 != self.refused // 1000:
                log.error("reading queue full: %d readings refused so far", self.refused)
            return
        self._queued += len(batch)
        self._queue.put_nowait(batch)

    def submit_now(self, reading: Reading) -> None:
        """For receive callbacks that acknowledge what they got (a fire panel's ACK): a fire
        or detector flag is handled before this returns (rules run, the alarm is in the
        store and the notifiers are woken), so an ACKed fire is never only in a queue."""
        if reading.quantity not in FIRE_LANE:
            self.submit(reading)
            return
        try:
            self._handle(reading)
        except Exception:  # a bug in one reading's path must not break the receiver
            log.exception("failed to process %s", reading)

    @property
    def depth(self) -> int:
        return self._queued + self._fire_lane.qsize()

    @property
    def bulk_depth(self) -> int:
        return self._queued

    @property
    def fire_depth(self) -> int:
        return self._fire_lane.qsize()

    async def __aenter__(self) -> Pipeline:
        self._tasks = [
            asyncio.create_task(self._consume(self._fire_lane, slice_=1), name="fire-lane"),
            asyncio.create_task(self._consume_bulk(), name="pipeline"),
            asyncio.create_task(self._tick(), name="rule-ticks"),
        ]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # Drain what the (already stopped) pollers and panels queued, then stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._fire_lane.join()
                await self._queue.join()
        await cancel_and_wait(*self._tasks)

    async def _consume(self, queue: asyncio.Queue[Reading], *, slice_: int) -> None:
        handled = 0
        while True:
            reading = await queue.get()  # returns without yielding while the queue has items
            try:
                self._handle(reading)
            except Exception:  # a bug in one reading's path must not stop the daemon
                log.exception("failed to process %s", reading)
            finally:
                queue.task_done()
            handled += 1
            if handled % slice_ == 0:
                await asyncio.sleep(0)  # let the fire lane (and everything else) run

    async def _consume_bulk(self) -> None:
        handled = 0
        while True:
            batch = await self._queue.get()  # returns without yielding while there are items
            try:
                for reading in batch:
                    try:
                        self._handle(reading)
                    except Exception:  # a bug in one reading's path must not stop the daemon
                        log.exception("failed to process %s", reading)
                    handled += 1
                    if handled >= BULK_SLICE:
                        handled = 0
                        await asyncio.sleep(0)  # let the fire lane (and everything else) run
            finally:
                self._queued -= len(batch)
                self._queue.task_done()

    def _handle(self, reading: Reading) -> None:
        self.processed += 1
        if reading.quantity is Quantity.ONLINE:
            self.online[reading.device] = reading.value >= 1
        self._influx.add(reading)
        self._desk.publish(self._engine.evaluate(reading))
        for derived in self._engine.take_derived():
            self._influx.add(derived)

    async def _tick(self) -> None:
        """Time alone moves alarms too: delays, shelving, re-alarm, silent devices, dusk.
        Also watches the wall clock against the monotonic one: a step (NTP, a person) must not
        raise, clear or delay an alarm by itself."""
        loop = asyncio.get_running_loop()
        last_wall, last_mono = self._clock(), loop.time()
        # every TICK_INTERVAL of the clock's time (on a simulated clock: more often in real
        # time, down to MIN_TICK_WAIT), so timers resolve alike at any clock rate
        wait = max(TICK_INTERVAL / self._clock_rate, min(TICK_INTERVAL, MIN_TICK_WAIT))
        while True:
            await asyncio.sleep(wait)
            wall, mono = self._clock(), loop.time()
            jump = (wall - last_wall) - (mono - last_mono) * self._clock_rate
            last_wall, last_mono = wall, mono
            # a step is more than a real second's worth of clock (reading the two clocks a
            # few ms apart on a busy box must not count as one at a high rate)
            if abs(jump) > max(CLOCK_JUMP, TICK_INTERVAL * self._clock_rate):
                log.warning("wall clock jumped by %+.1f s; rule timers restart, alarm timers "
                            "keep their remaining time", jump)
                self._engine.clock_jumped(jump)
            try:
                self._desk.publish(self._engine.tick(wall))
                self._desk.escalate(wall)
                for derived in self._engine.take_derived():
                    self._influx.add(derived)
            except Exception:
                log.exception("rule tick failed")



class Together:
    """Enters several async context managers, and exits them all at once: stopping twenty
    bus pollers one after the other would add up their in-flight requests' timeouts."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self._parts = list(parts)
        self._entered: list[Any] = []

    async def __aenter__(self) -> Together:
        try:
            for part in self._parts:
                await part.__aenter__()
                self._entered.append(part)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        entered, self._entered = self._entered, []
        results = await asyncio.gather(*(p.__aexit__(exc_type, exc, tb) for p in entered),
                                       return_exceptions=True)
        for part, result in zip(entered, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError):
                log.error("stopping %s failed: %r", type(part).__name__, result)

