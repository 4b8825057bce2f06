"""The supervisor: builds the pipeline from a config and runs it until told to stop.

    pollers -------Reading--> bulk queue ---\\
    fire panels ---Reading--> fire lane -----> pipeline --> influx sink (every reading)
                                                    \\--> rule engine --AlarmEvent--> AlarmDesk
    MQTT cmd/<verb> ------------------------------------------------------------------/
    AlarmDesk: alarm store (SQLite: alarms + outbox per notifier) -> wake MQTT, webhooks
               -> influx "alarms" -> Home Assistant device states

Fire first: fire and detector flags (from panels and Modbus smoke detectors) take their own
unbounded lane with its own consumer, and the bulk consumer yields to the loop every
``BULK_SLICE`` readings, so a fire waits for at most one slice of bulk work, never for a backlog.
In the outboxes, fire-severity events are sent before anything else waiting.

Components are async context managers entered in dependency order, so shutdown runs in reverse:
pollers and panels stop first, the pipeline drains what they queued, then MQTT and InfluxDB
flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from daemon import systemd
from daemon.commands import CommandError, Freshness, clip, parse_command
from daemon.config import Config, ConfigError, DeviceConfig, LoadedConfig, load_config
from daemon.notify import homeassistant as ha
from daemon.notify import registry as notifiers
from daemon.notify.mqtt import MqttNotifier
from daemon.panels import PanelHost, zone_locator
from daemon.secrets import SecretError, check_secrets
from daemon.sinks.influx import InfluxSink
from daemon.sqlitefile import DiskReserve, StateProblem
from daemon.store import AlarmStore
from drivers.aio import cancel_and_wait
from drivers.measurements import Quantity, Reading
from drivers.modbus.poller import BusPoller, PolledDevice, point_interval
from rules import fire, statestore
from rules.alarm import CommandRefused
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import build_rules
from rules.engine import DeviceRules, RuleEngine, UnknownAlarm
from rules.model import AlarmEvent
from rules.policy import FloodPolicy, Policies

log = logging.getLogger("firewarden")

STATUS_INTERVAL = 10.0
MAINTENANCE_INTERVAL = 3600.0  # s between alarm store trims and compactions
TICK_INTERVAL = 1.0  # clock s between rule and alarm timer ticks
MIN_TICK_WAIT = 0.05  # real s: the fastest tick on a fast simulated clock (CPU, not meaning)
CLOCK_JUMP = 2.0  # s of wall-clock drift against the monotonic clock in one tick: a step
BULK_SLICE = 64  # bulk readings handled between yields to the loop (~1 ms of work)
FIRE_LANE = frozenset(fire.FLAG_RULES)


def site_info(config: Config) -> SiteInfo:
    site = config.site
    return SiteInfo(latitude=site.latitude, longitude=site.longitude, timezone=site.timezone)


def device_infos(loaded: LoadedConfig) -> list[DeviceInfo]:
    """What the rules may know of each enabled device and fire panel."""
    config = loaded.config
    infos = [DeviceInfo(
        name=d.name, kind=d.kind, profile_kind=loaded.profiles[d.name].profile.kind,
        points=frozenset((p.quantity, p.channel) for p in loaded.profiles[d.name].points),
        poll=d.poll, rated_current=d.rated_current, breaker_curve=d.breaker_curve,
        intervals={(p.quantity, p.channel): point_interval(p, d.poll)
                   for p in loaded.profiles[d.name].points},
        building=d.building, box=d.box, circuit=d.circuit, floor=d.floor, area=d.area)
        for d in config.devices if d.enabled]
    infos += [DeviceInfo(name=p.name, kind="fire-panel", profile_kind="fire-panel",
                         building=p.building) for p in config.fire_panels if p.enabled]
    return infos


def device_rules(loaded: LoadedConfig) -> dict[str, DeviceRules]:
    """Each device's rules from the catalog, with its location for the alarms' context."""
    config = loaded.config
    built = build_rules(site_info(config), device_infos(loaded), loaded.params)
    out: dict[str, DeviceRules] = {}
    for device in config.devices:
        out[device.name] = DeviceRules(rules=tuple(built.get(device.name, ())),
                                       context=_context(device))
    for panel in config.fire_panels:
        context = {"kind": "fire-panel"} | ({"building": panel.building} if panel.building else {})
        out[panel.name] = DeviceRules(rules=tuple(built.get(panel.name, ())), context=context,
                                      locate=zone_locator(panel))
    return out


def policies(config: Config) -> Policies:
    alarms = config.alarms
    return Policies(rules={name: rule.overrides() for name, rule in alarms.rule.items()},
                    chatter_count=alarms.chatter_count, chatter_window=alarms.chatter_window)


def flood_policy(config: Config) -> FloodPolicy:
    return FloodPolicy(count=config.alarms.flood_count, window=config.alarms.flood_window)


def device_tags(config: Config) -> dict[str, dict[str, str]]:
    """InfluxDB tags per device: its location plus the bus it hangs on (fire panels: their
    link, e.g. ``gb26875-tcp-server``)."""
    tags = {d.name: {**d.tags(), "bus": d.bus, "kind": d.kind} for d in config.devices}
    for panel in config.fire_panels:
        tags[panel.name] = {"bus": f"gb26875-{panel.transport}", "kind": "fire-panel"} | (
            {"building": panel.building} if panel.building else {})
    return tags


def state_store_events(engine: RuleEngine, problems: Sequence[StateProblem | None],
                       now: float) -> list[AlarmEvent]:
    """The ``state-store`` alarms for state files that could not be used as they were."""
    events: list[AlarmEvent] = []
    for problem in filter(None, problems):
        for condition in statestore.conditions(problem.path.name, damaged=problem.damaged,
                                               message=problem.message, now=now):
            events += engine.apply(condition, now)
    return events


def _context(device: DeviceConfig) -> dict[str, str]:
    return {**device.tags(), "kind": device.kind}


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
        self._queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=queue_size)
        self._fire_lane: asyncio.Queue[Reading] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.refused = 0
        self.processed = 0
        self.online: dict[str, bool] = {}

    def submit(self, reading: Reading) -> None:
        if reading.quantity in FIRE_LANE:
            self._fire_lane.put_nowait(reading)
            return
        try:
            self._queue.put_nowait(reading)
        except asyncio.QueueFull:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.error("reading queue full: %d readings refused so far", self.refused)

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
        return self._queue.qsize() + self._fire_lane.qsize()

    @property
    def bulk_depth(self) -> int:
        return self._queue.qsize()

    @property
    def fire_depth(self) -> int:
        return self._fire_lane.qsize()

    async def __aenter__(self) -> Pipeline:
        self._tasks = [
            asyncio.create_task(self._consume(self._fire_lane, slice_=1), name="fire-lane"),
            asyncio.create_task(self._consume(self._queue, slice_=BULK_SLICE), name="pipeline"),
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


@dataclass
class SelfMetrics:
    """The daemon's own health as the ``firewarden`` measurement, every status interval."""

    pipeline: Pipeline
    engine: RuleEngine
    influx: InfluxSink
    mqtt: MqttNotifier
    pollers: Sequence[BusPoller]

    def fields(self) -> dict[str, float]:
        influx = self.influx.stats
        alarms = self.engine.alarms.values()
        return {
            "queue_depth": float(self.pipeline.bulk_depth),
            "fire_lane_depth": float(self.pipeline.fire_depth),
            "readings_processed": float(self.pipeline.processed),
            "readings_refused": float(self.pipeline.refused),
            "influx_pending": float(influx.pending),
            "influx_written": float(influx.written),
            "influx_failed_writes": float(influx.failed_writes),
            "influx_rejected": float(influx.quarantined),
            "spool_bytes": float(influx.spool_bytes),
            "spool_points": float(influx.spool_points),
            "spool_dropped": float(influx.spool_dropped),
            "influx_lost": float(influx.lost),
            "write_latency_ms": round(influx.write_latency_ms, 3),
            "poll_lag_ms": round(max((p.take_lag_ms() for p in self.pollers), default=0.0), 3),
            "mqtt_queued": float(self.mqtt.stats.queued),
            "commands_refused": float(self.mqtt.stats.commands_refused),
            "alarms_active": float(sum(1 for a in alarms if a.state.active)),
            "alarms_unacked": float(sum(1 for a in alarms if a.state.active and not a.acked)),
        }

    def record(self, now: float) -> None:
        try:
            self.influx.add_point("firewarden", self.fields(), now)
        except Exception:  # self-monitoring must never take the daemon down
            log.exception("self-metrics failed")


class Supervisor:
    """Runs a config until ``stop`` is set; ``reload`` (SIGHUP) swaps in the config file's
    current contents if they are valid, and keeps the running config if not."""

    def __init__(self, *, loaded: LoadedConfig, clock: Callable[[], float] = time.time,
                 clock_rate: float = 1.0) -> None:
        self._loaded = loaded
        self._clock = clock
        self._clock_rate = clock_rate
        self.reloads = 0  # accepted reloads (tests and STATUS=)
        # outlives a reload: the UITDs' connections stay open while the pipeline is swapped
        self._panels = PanelHost(clock=clock, rate=clock_rate)

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
        reload = reload or asyncio.Event()
        async with self._panels:
            while await self._run_config(stop, reload):
                self.reloads += 1
                log.info("reloaded %s: restarting with the new config (alarms and spool are "
                         "kept)", self._loaded.path)

    async def _run_config(self, stop: asyncio.Event, reload: asyncio.Event) -> bool:
        """Run the current config; True when it should be replaced by a reloaded one."""
        config = self._loaded.config
        reserve = DiskReserve(config.daemon.state_dir / "disk-reserve")
        store = AlarmStore(config.daemon.state_dir / "alarms.db",
                           sinks=notifiers.sinks(config), reserve=reserve)
        async with AsyncExitStack() as stack:
            stack.enter_context(store)
            in_memory = store.problem is not None and not store.problem.damaged
            if not reserve.ensure() and not in_memory:
                log.warning("state dir %s: no room for the %d MB full-disk reserve; a full "
                            "disk may keep the InfluxDB spool from draining",
                            config.daemon.state_dir, reserve.size >> 20)
            store.maintain()
            alarms = store.load_alarms()
            engine = RuleEngine(devices=device_rules(self._loaded), policies=policies(config),
                                flood=flood_policy(config), alarms=alarms)
            if alarms:
                log.info("alarm store %s: %d alarms, %d active, %s events waiting",
                         store.path, len(alarms), engine.active_count, store.backlog() or 0)
            influx = await stack.enter_async_context(InfluxSink(
                config=config.influxdb, site=config.site.id, device_tags=device_tags(config),
                spool=config.daemon.state_dir / "influx-spool.db", reserve=reserve))
            desk = AlarmDesk(engine=engine, store=store, influx=influx, clock=self._clock,
                             command_max_age=config.mqtt.command_max_age)
            for notifier in notifiers.build(config, outbox=store, on_command=desk.command):
                desk.notifiers.append(await stack.enter_async_context(notifier))
            mqtt = next(n for n in desk.notifiers if isinstance(n, MqttNotifier))
            if config.mqtt.homeassistant:
                desk.watchers.append(self._home_assistant(mqtt, engine))
            desk.publish(state_store_events(engine, [store.problem, influx.spool_problem],
                                            self._clock()))
            pipeline = await stack.enter_async_context(Pipeline(
                desk=desk, influx=influx, queue_size=config.daemon.queue_size,
                clock=self._clock, clock_rate=self._clock_rate))
            pollers: list[BusPoller] = []
            # Schedules (polls, panel health samples) run on the clock's time, so a "60s" poll
            # is 60 s of simulated time on a simulated clock; timeouts, backoff and link
            # liveness (panel heartbeats) stay real. The panels outlive a reload (kept unless
            # stopping), so they stop before the pipeline drains on a real stop.
            await stack.enter_async_context(self._panels.attach(
                config.fire_panels, pipeline.submit_now, keep=lambda: not stop.is_set()))
            for bus in config.buses:
                devices = [PolledDevice(config=d, profile=self._loaded.profiles[d.name])
                           for d in config.devices if d.bus == bus.name and d.enabled]
                if devices:
                    pollers.append(BusPoller(bus=bus, devices=devices, emit=pipeline.submit,
                                             clock=self._clock, rate=self._clock_rate))
            await stack.enter_async_context(Together(pollers))
            await stack.enter_async_context(systemd.Watchdog())
            systemd.ready()  # also ends a reload's RELOADING=1
            log.info("running: site %s, %d buses, %d devices, %d fire panels",
                     config.site.id, len(config.buses), len(config.devices),
                     len(config.fire_panels))
            reloading = await self._report_until(stop, reload, pipeline, engine, SelfMetrics(
                pipeline=pipeline, engine=engine, influx=influx, mqtt=mqtt, pollers=pollers),
                maintain=store.maintain)
            if not reloading:
                systemd.stopping()
            log.info("%s: flushing readings and alarms",
                     "reloading" if reloading else "stopping")
        if not reloading:
            log.info("stopped")
        return reloading

    def _home_assistant(self, mqtt: MqttNotifier, engine: RuleEngine) -> Callable[[], None]:
        """Announce HA discovery now; return the function that refreshes device states."""
        config, profiles = self._loaded.config, self._loaded.profiles
        devices = [ha.HaDevice(name=d.name, model=profiles[d.name].name, area=d.building,
                               can_burn=any(p.quantity is Quantity.FIRE
                                            for p in profiles[d.name].points))
                   for d in config.devices if d.enabled]
        devices += [ha.HaDevice(name=p.name, model="GB/T 26875.3 fire panel", area=p.building,
                                can_burn=True) for p in config.fire_panels if p.enabled]
        where = {"site": config.site.id, "prefix": config.mqtt.topic_prefix}
        for topic, payload in ha.discovery(devices, discovery_prefix=config.mqtt.discovery_prefix,
                                           **where):
            mqtt.set_retained(topic, payload)

        def refresh() -> None:
            for topic, payload in ha.states(devices, engine.alarms.values(), **where):
                mqtt.set_retained(topic, payload)

        refresh()
        log.info("Home Assistant discovery: %d devices under %s/", len(devices),
                 config.mqtt.discovery_prefix)
        return refresh

    async def _report_until(self, stop: asyncio.Event, reload: asyncio.Event,
                            pipeline: Pipeline, engine: RuleEngine, metrics: SelfMetrics,
                            maintain: Callable[[], object]) -> bool:
        """STATUS= and self-metrics until stop (False) or an accepted reload (True); the
        alarm store's maintenance every ``MAINTENANCE_INTERVAL``."""
        config = self._loaded.config
        n_devices = len(config.devices) + len(config.fire_panels)
        refused = ""
        maintained = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - maintained >= MAINTENANCE_INTERVAL:
                maintained = time.monotonic()
                try:
                    maintain()
                except Exception:  # housekeeping must never take the daemon down
                    log.exception("alarm store maintenance failed")
            if reload.is_set():
                reload.clear()
                accepted, refused = self._try_reload()
                if accepted:
                    return True
            online = sum(pipeline.online.values())
            spool = metrics.influx.stats.spool_points
            systemd.status(
                f"{online}/{n_devices} devices online, {engine.active_count} alarms active, "
                f"queue {pipeline.depth}" + (f", {spool} points spooled" if spool else "")
                + refused)
            metrics.record(self._clock())
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload.wait())}
            _, pending = await asyncio.wait(waits, timeout=STATUS_INTERVAL,
                                            return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        return False

    def _try_reload(self) -> tuple[bool, str]:
        """Validate the config file again: (True, "") to switch to it, or (False, a STATUS=
        note) with the errors logged, keeping the running config."""
        systemd.reloading()
        path = self._loaded.path
        try:
            candidate = load_config(path)
            if problems := check_secrets(candidate.config):
                raise ConfigError(problems)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("reload refused: %s", line)
            log.error("reload refused: %s has %d error(s); still running the previous config",
                      path, len(exc.errors))
            systemd.ready()
            return False, f"; reload refused ({len(exc.errors)} config errors, see the journal)"
        self._loaded = candidate
        return True, ""


STOP_REPORT_AFTER = 20.0  # s after SIGTERM: log what is still running (systemd kills at 30 s)


async def _report_slow_stop(stop: asyncio.Event) -> None:
    """A shutdown that takes too long says what it is waiting for, before systemd's SIGKILL."""
    await stop.wait()
    await asyncio.sleep(STOP_REPORT_AFTER)
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.error("still stopping after %.0f s: task %s at %s", STOP_REPORT_AFTER,
                  task.get_name(), where or "?")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def simulated_clock(start: float, rate: float, *, at: float | None = None) -> Callable[[], float]:
    """A clock that reads ``start`` at real time ``at`` (default: now) and runs ``rate`` times
    faster than real time, for running against a time-compressed simulation. Readings, rules,
    alarms and every schedule the daemon drives (polls, point polls, the pollers' stagger, rule
    ticks, panel health samples) use it, so a config's ``poll = "60s"`` is 60 simulated
    seconds; the Supervisor needs the same ``rate`` as ``clock_rate`` for that. Timeouts,
    backoff and link liveness stay real."""
    t0 = time.time() if at is None else at
    return lambda: start + (time.time() - t0) * rate


def run(loaded: LoadedConfig, clock: Callable[[], float] = time.time,
        clock_rate: float = 1.0) -> int:
    """Run the daemon in the foreground; SIGTERM/SIGINT stop it cleanly with exit code 0,
    SIGHUP reloads the config. A secret that cannot be read at start exits 2 with the reason.
    """

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        watch = asyncio.create_task(_report_slow_stop(stop), name="stop-watch")
        try:
            await Supervisor(loaded=loaded, clock=clock, clock_rate=clock_rate).run(stop, reload)
        finally:
            watch.cancel()

    if problems := check_secrets(loaded.config):
        for line in problems:
            log.error("cannot start: %s", line)
        return 2
    try:
        asyncio.run(main())
    except SecretError as exc:  # a secret that vanished between the check and its use
        log.error("cannot start: %s", exc)
        return 2
    return 0
