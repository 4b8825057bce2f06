"""One poller per physical bus: schedules, reads, decodes and emits Readings.

The poller owns its bus. Every transaction holds one lock (a bus carries one frame at a time),
each device is read on a fixed grid of its ``poll`` interval that never drifts (an overrun skips
slots instead of bursting to catch up), and points with their own ``poll`` are read on their own
grid. A failing device backs off alone (capped, jittered exponential, from its second failure
in a row: one lost answer is simply retried at its next slot) while its neighbours keep
their slots; a busy device is retried without touching the link; a broken link is closed and
reconnected with its own capped backoff. Logging follows transitions: the first failure at
ERROR, repeats at DEBUG, one INFO line on recovery; each of those lines at most once a minute
per device and cause (``LogBudget``), so a device that flaps between garbage and good answers
on every poll writes one line a minute that counts the rest. A value outside its plausible
range is dropped as ``Quality.IMPLAUSIBLE`` and counted per device (``device_health``
``implausible``), with one WARNING a minute per device.

Schedules run on the poller's clock: ``rate`` is how many clock seconds pass per real second (1
on a real site; a simulated clock running R× real time gives R). Poll intervals (the device's
and the points' own) and the stagger are in clock seconds, so they are waited as ``interval /
rate`` real seconds; timeouts, busy retries and backoff are about the link and the devices'
real behaviour and stay in real seconds.

The devices of one distribution box (the same non-empty ``building`` and ``box``) share one
stagger slot and are read back to back, so an incomer and its sub-circuit meters are compared
on readings taken within a few milliseconds of each other, not up to a poll interval apart.

Which failures are whose: a Modbus exception, a timeout (``ModbusTimeoutError``) or a garbled
answer (``ModbusFrameError``) is the device's, so only that device backs off and the link stays
open; only ``ModbusLinkError`` closes and reconnects the link. A poll stops at its device's
first failure, so a dead unit on a shared serial line costs its neighbours at most one timeout
per attempt, and its backoff spaces the attempts out.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from core.aio import cancel_and_wait
from core.logbudget import LogBudget, held_back
from core.measurements import Quality, Quantity, Reading
from drivers.modbus.compiled import RequestDecoder
from drivers.modbus.decode import point_range
from drivers.modbus.errors import ModbusDeviceError, ModbusError, ModbusLinkError
from drivers.modbus.planner import BusCost, ReadRequest
from drivers.modbus.registry import make_transport
from drivers.modbus.schedule import (
    DEFAULT_BACKOFF,
    Backoff,
    DeviceSettings,
    PolledDevice,
    bus_cost,
    decode_responses,
    device_plan,
    next_slot,
    pause_after,
    plan_points,
    point_interval,
    stagger_groups,
)
from drivers.modbus.transport import BusSettings, ModbusTransport

__all__ = ["BUSY_DELAY", "Backoff", "BusPoller", "DeviceSettings", "PolledDevice", "bus_cost",
           "decode_responses", "device_plan", "next_slot", "plan_points", "point_interval",
           "read_once", "stagger_groups"]

log = logging.getLogger(__name__)

Emit = Callable[[Reading], None]
EmitMany = Callable[[Sequence[Reading]], None]
Clock = Callable[[], float]


BUSY_DELAY = 0.1  # s before retrying a busy device; doubles per retry
COUNTERS_EVERY = 60.0  # clock s: the flat error counters are re-sent at least this often


Response = list[int] | list[bool]


async def _read_all(transport: ModbusTransport, lock: asyncio.Semaphore,
                    requests: Sequence[ReadRequest], *, unit: int, busy_retries: int,
                    pause: float) -> tuple[list[Response], float]:
    """Responses of all requests and the summed round-trip time in ms; raises ModbusError."""
    loop = asyncio.get_running_loop()
    responses: list[Response] = []
    rtt = 0.0
    for request in requests:
        attempt = 0
        while True:
            async with lock:
                started = loop.time()
                try:
                    values = await transport.read(request.table, request.address, request.count,
                                                  unit)
                    break
                except ModbusDeviceError as exc:
                    if not exc.busy or attempt >= busy_retries:
                        raise
                finally:
                    rtt += (loop.time() - started) * 1000.0
                    if pause:  # silence the device asked for, before anyone's next frame
                        await asyncio.sleep(pause)
            # busy is not broken: wait outside the lock and ask again on the same link
            await asyncio.sleep(BUSY_DELAY * 2**attempt)
            attempt += 1
        responses.append(values)
    return responses, rtt


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def read_once(bus: BusSettings, device: PolledDevice,
                    clock: Clock = time.time) -> list[Reading]:
    """Read every point of one device once (``firewarden read``); raises ModbusError."""
    requests = plan_points(device.profile, device.profile.points, bus_cost(bus, device.profile))
    async with make_transport(bus) as transport:
        ts = clock()
        responses, _ = await _read_all(transport, asyncio.Semaphore(1), requests,
                                       unit=device.config.unit, busy_retries=bus.retries,
                                       pause=pause_after(bus, device.profile))
    return decode_responses(requests, responses, device=device.config.name, ts=ts)


@dataclass(eq=False)
class _DeviceState:
    device: PolledDevice
    failures: int = 0  # consecutive
    errors: int = 0  # since start
    implausible: int = 0  # values outside their plausible range, since start
    retry_at: float = 0.0  # loop time; 0 = no backoff
    counters_sent: tuple[int, int, float] = (-1, -1, 0.0)  # errors, implausible, at (clock)
    # one poll of a device at a time, when the bus polls several devices at once: a job due
    # while another of its device's jobs runs waits here, not in one of the bus's slots
    busy: bool = False
    deferred: list[_Job] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.device.config.name


@dataclass(eq=False)
class _Job:
    """One poll group: the points of one device that share an interval."""

    state: _DeviceState
    interval: float  # real seconds between polls (the clock interval / rate)
    requests: list[ReadRequest]
    decoders: list[RequestDecoder]  # one per request, shared with same-model devices
    next_due: float = 0.0
    seq: int = field(default=0)

    @property
    def due(self) -> float:
        return max(self.next_due, self.state.retry_at)


class BusPoller:
    """Polls every device of one bus and emits their Readings; an async context manager."""

    def __init__(self, *, bus: BusSettings, devices: Sequence[PolledDevice], emit: Emit,
                 clock: Clock = time.time, backoff: Backoff = DEFAULT_BACKOFF,
                 rate: float = 1.0, emit_many: EmitMany | None = None) -> None:
        """``rate``: ``clock`` seconds per real second (see the module docstring);
        ``emit_many``: takes a successful poll's readings at once (else ``emit`` each)."""
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._bus = bus
        self._emit_fn = emit
        self._emit_many_fn = emit_many
        self._clock = clock
        self._rate = rate
        self._lag_ms = 0.0
        self._backoff = backoff
        self._transport = make_transport(bus)  # fails early for unsupported bus types
        # frames in flight at once: 1 on a serial line (a lock), up to ``concurrency`` on a
        # Modbus TCP link whose device or gateway answers units in parallel
        self._concurrency = max(1, bus.concurrency)
        self._lock = asyncio.Semaphore(self._concurrency)
        self._connecting = asyncio.Lock()
        self._jobs: list[_Job] = []
        self._heap: list[tuple[float, int, _Job]] = []  # (due, seq, job) of jobs not running
        self._wake: asyncio.Future[None] | None = None  # the scheduler's sleep, when it sleeps
        self._wake_at = math.inf
        self._slot: dict[int, int] = {}  # id(device state) -> stagger slot
        enabled = [d for d in devices if d.config.enabled]
        slots = stagger_groups([d.config for d in enabled])
        # Devices of one model and poll share one plan and its decoders (the profile object is
        # shared by config loading): 1000 meters of one model are one plan, not 1000.
        plans: dict[tuple[int, float, BusCost],
                    list[tuple[float, list[ReadRequest], list[RequestDecoder]]]] = {}
        for device, slot in zip(enabled, slots, strict=True):
            state = _DeviceState(device)
            self._slot[id(state)] = slot
            cost = bus_cost(bus, device.profile)
            key = (id(device.profile), device.config.poll, cost)
            if key not in plans:
                plans[key] = [(interval, requests, [RequestDecoder(r) for r in requests])
                              for interval, requests in device_plan(device, cost)]
            for interval, requests, decoders in plans[key]:
                self._jobs.append(_Job(state, interval / rate, requests, decoders,
                                       seq=len(self._jobs)))
        self._slots = max(slots, default=-1) + 1
        self._slot_due: dict[int, float] = {}  # slot -> due time of its latest poll cycle
        self._link_failures = 0
        self._link_retry_at = 0.0
        self._emit_failures = 0
        self._log_budget = LogBudget()
        self._task: asyncio.Task[None] | None = None

    @property
    def lock(self) -> asyncio.Semaphore:
        """The bus's frame slots (one on a serial line); anyone else sending frames on this
        bus (writes) must hold one."""
        return self._lock

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"modbus-poller:{self._bus.name}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._transport.close()

    # -- the loop ---------------------------------------------------------------------------

    def take_lag_ms(self) -> float:
        """The worst poll start lag (ms) since the last call (self-metrics)."""
        lag, self._lag_ms = self._lag_ms, 0.0
        return lag

    async def _run(self) -> None:
        if not self._jobs:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Stagger the devices across their poll interval instead of making them all due at
        # the same instant: readings then arrive spread out (no burst into the pipeline's
        # queue), and each poll starts on time instead of waiting behind the whole bus. The
        # devices of one box share a slot (due together, polled back to back in config order).
        for job in self._jobs:
            rank = self._slot[id(job.state)]
            poll = job.state.device.config.poll / self._rate
            job.next_due = start + min(job.interval, poll) * rank / self._slots
        self._heap = [(job.due, job.seq, job) for job in self._jobs]
        heapq.heapify(self._heap)
        polls = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()
        me = asyncio.current_task()
        try:
            while True:
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError  # a cancel a library swallowed mid-request
                await polls.acquire()
                job = await self._next_due(loop)
                # how late this poll starts against its schedule (a slow bus, a busy loop);
                # the devices of a box after the first wait for it by design, which is not lag
                slot = self._slot[id(job.state)]
                if self._slot_due.get(slot) != job.due:
                    self._slot_due[slot] = job.due
                    self._lag_ms = max(self._lag_ms, (loop.time() - job.due) * 1000)
                job.state.busy = True  # before the task starts: its other jobs must wait
                if self._concurrency == 1:
                    await self._poll_and_requeue(job, polls)
                else:
                    task = asyncio.create_task(self._poll_and_requeue(job, polls))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                await cancel_and_wait(task)

    async def _next_due(self, loop: asyncio.AbstractEventLoop) -> _Job:
        """Wait for the earliest job that is not running to fall due; take it off the heap.

        Keys are refreshed lazily: a device's backoff (``retry_at``) set by one of its jobs
        moves its other jobs later only when they reach the top of the heap."""
        heap = self._heap
        while True:
            if heap:
                key, seq, job = heap[0]
                due = job.due
                if due > key:
                    heapq.heapreplace(heap, (due, seq, job))
                    continue
                delay = due - loop.time()
                if delay <= 0:
                    heapq.heappop(heap)
                    if job.state.busy:
                        job.state.deferred.append(job)
                        continue
                    return job
            else:
                due, delay = math.inf, math.inf  # every job is running: wait for one to end
            self._wake, self._wake_at = loop.create_future(), due
            timer = loop.call_later(delay, _wake_up, self._wake) if delay < math.inf else None
            try:
                await self._wake
            finally:
                if timer is not None:
                    timer.cancel()
                self._wake, self._wake_at = None, math.inf

    async def _poll_and_requeue(self, job: _Job, polls: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        state = job.state
        try:
            await self._poll(job)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not silence the whole bus
            log.exception("bus %s: unexpected error polling %s", self._bus.name,
                          job.state.name)
            job.next_due = next_slot(job.next_due, job.interval, loop.time())
        finally:
            state.busy = False
            polls.release()
        waiting, state.deferred = [job, *state.deferred], []
        for each in waiting:
            heapq.heappush(self._heap, (each.due, each.seq, each))
        earliest = min(each.due for each in waiting)
        if self._wake is not None and earliest < self._wake_at and not self._wake.done():
            self._wake.set_result(None)

    async def _poll(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        state = job.state
        ts = self._clock()
        try:
            if not await self._link_up():
                # the bus is down, not the device: report it offline, no device backoff
                self._failed(state, None, ts)
                return
            config = state.device.config
            responses, rtt = await _read_all(
                self._transport, self._lock, job.requests, unit=config.unit,
                busy_retries=self._bus.retries, pause=pause_after(self._bus, state.device.profile))
        except ModbusError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc  # shutting down, not a device failure
            # timeouts and garbled frames are the device's: the port stays open for the others
            if isinstance(exc, ModbusLinkError) or (
                    state.device.profile.workarounds.close_on_error):
                await self._transport.close()  # the next transaction reconnects
            self._failed(state, exc, ts)
            return
        finally:
            job.next_due = next_slot(job.next_due, job.interval, loop.time())
        name = state.name
        readings = [r for decoder, values in zip(job.decoders, responses, strict=True)
                    for r in decoder.decode(values, device=name, ts=ts)]
        self._count_implausible(state, readings)
        if state.failures and (quiet := self._log_budget.take(
                (state.name, "back"), loop.time())) is not None:
            log.info("device %s (unit %d on %s) is back after %d failed polls%s", state.name,
                     state.device.config.unit, self._bus.name, state.failures,
                     held_back(quiet))
        state.failures = 0
        state.retry_at = 0.0
        self._health(state, ts, online=True, latency_ms=rtt, batch=readings)
        if self._emit_many_fn is None:
            for reading in readings:
                self._emit(reading)
        else:
            try:
                self._emit_many_fn(readings)
            except Exception:  # the consumer's bug must not stop the bus
                self._emit_failed()

    async def _link_up(self) -> bool:
        """Connect if needed (respecting the link backoff); whether the link is usable."""
        if self._transport.connected:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() < self._link_retry_at:
            return False
        try:
            async with self._connecting:
                if self._transport.connected:  # another poll reconnected meanwhile
                    return True
                async with self._lock:
                    await self._transport.connect()
        except ModbusLinkError as exc:
            self._link_failures += 1
            delay = self._backoff.delay(self._link_failures)
            self._link_retry_at = loop.time() + delay
            level = logging.ERROR if self._link_failures == 1 else logging.DEBUG
            log.log(level, "bus %s: %s; retrying in %.1fs", self._bus.name, exc, delay)
            return False
        if self._link_failures:
            log.info("bus %s: reconnected to %s after %d failed attempts", self._bus.name,
                     self._transport.endpoint, self._link_failures)
        self._link_failures = 0
        self._link_retry_at = 0.0
        return True

    def _failed(self, state: _DeviceState, exc: ModbusError | None, ts: float) -> None:
        state.errors += 1
        if exc is not None:  # a device-level failure: this device backs off alone
            state.failures += 1
            # One lost answer is retried at the device's next slot, as on a real site where
            # the backoff (real seconds) is shorter than a poll anyway; from the second failure
            # in a row the device backs off. On a fast simulated clock a first backoff of ~1 s
            # real would silence the device for many simulated polls.
            # (Without a delay its other poll groups still queue behind whatever became due
            # during this failure, so the neighbours go first.)
            delay = self._backoff.delay(state.failures - 1) if state.failures > 1 else 0.0
            now = asyncio.get_running_loop().time()
            state.retry_at = now + delay
            quiet = self._log_budget.take((state.name, type(exc).__name__), now) \
                if state.failures == 1 else None
            log.log(logging.DEBUG if quiet is None else logging.ERROR,
                    "device %s (unit %d on %s): %s; next try %s%s", state.name,
                    state.device.config.unit, self._bus.name, exc,
                    f"in {delay:.1f}s" if delay else "at its next poll", held_back(quiet or 0))
        self._health(state, ts, online=False, latency_ms=None)

    def _health(self, state: _DeviceState, ts: float, *, online: bool,
                latency_ms: float | None, batch: list[Reading] | None = None) -> None:
        """ONLINE and CRC_ERRORS after every attempt (the comms rule counts polls by them);
        LATENCY only when there was an answer; the ERRORS and IMPLAUSIBLE counters when they
        change and at least every ``COUNTERS_EVERY`` clock seconds (a flat counter at every
        1 s poll of 1000 meters is 2000 values a second that say nothing new). CRC_ERRORS
        counts every garbled answer (bad CRC or framing) the transport saw from the device
        since start, a measure of the wiring rather than of the device. Appended to
        ``batch`` when given (emitted with the poll's readings), else emitted."""
        name = state.name
        out: list[Reading] = [] if batch is None else batch
        out.append(Reading(ts, name, Quantity.ONLINE, 1.0 if online else 0.0))
        if latency_ms is not None:
            out.append(Reading(ts, name, Quantity.LATENCY, round(latency_ms, 3)))
        garbled = self._transport.stats(state.device.config.unit).garbled
        out.append(Reading(ts, name, Quantity.CRC_ERRORS, float(garbled)))
        errors, implausible, sent_at = state.counters_sent
        if (errors, implausible) != (state.errors, state.implausible) \
                or ts - sent_at >= COUNTERS_EVERY:
            state.counters_sent = (state.errors, state.implausible, ts)
            out.append(Reading(ts, name, Quantity.ERRORS, float(state.errors)))
            out.append(Reading(ts, name, Quantity.IMPLAUSIBLE, float(state.implausible)))
        if batch is None:
            for reading in out:
                self._emit(reading)

    def _count_implausible(self, state: _DeviceState, readings: Sequence[Reading]) -> None:
        bad = [r for r in readings if r.quality is Quality.IMPLAUSIBLE]
        if not bad:
            return
        state.implausible += len(bad)
        quiet = self._log_budget.take((state.name, "implausible"),
                                      asyncio.get_running_loop().time())
        if quiet is None:
            return
        first = bad[0]
        point = next(p for p in state.device.profile.points
                     if (p.quantity, p.channel) == (first.quantity, first.channel))
        low, high = point_range(point)
        log.warning("device %s: %s = %g %s is outside its plausible range %g..%g %s; dropped as "
                    "implausible (%d value(s) in this poll, %d since start)%s", state.name,
                    point.key, first.value, first.unit, low, high, first.unit, len(bad),
                    state.implausible, held_back(quiet))

    def _emit(self, reading: Reading) -> None:
        try:
            self._emit_fn(reading)
        except Exception:  # the consumer's bug must not stop the bus
            self._emit_failed()

    def _emit_failed(self) -> None:
        """Called from an ``except`` block: log the consumer's failure, once at ERROR."""
        self._emit_failures += 1
        if self._emit_failures == 1:
            log.exception("bus %s: emit failed (further failures logged at DEBUG)",
                          self._bus.name)
        else:
            log.debug("bus %s: emit failed again (%d)", self._bus.name, self._emit_failures,
                      exc_info=True)
