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
import faulthandler
import logging
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

from core.measurements import Quantity
from daemon import systemd
from daemon.assembly import device_rules, device_tags, flood_policy, policies, state_store_events
from daemon.config import ConfigError, LoadedConfig, load_config
from daemon.escalation import Escalator
from daemon.escalation import chains as escalation_chains
from daemon.metrics import SelfMetrics
from daemon.notify import homeassistant as ha
from daemon.notify import registry as notifiers
from daemon.notify.mqtt import MqttNotifier
from daemon.panels import PanelHost
from daemon.pipeline import AlarmDesk, Pipeline, Together
from daemon.report_io import ReportScheduler
from daemon.secrets import SecretError, check_secrets
from daemon.sinks.influx import InfluxSink
from daemon.sqlitefile import DiskReserve
from daemon.store import AlarmStore
from drivers.modbus.poller import BusPoller, PolledDevice
from rules.engine import RuleEngine

log = logging.getLogger("firewarden")

STATUS_INTERVAL = 10.0
MAINTENANCE_INTERVAL = 3600.0  # s between alarm store trims and compactions


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
            if config.escalations:
                desk.escalator = Escalator(chains=escalation_chains(config), store=store)
            for notifier in notifiers.build(config, outbox=store, on_command=desk.command):
                desk.notifiers.append(await stack.enter_async_context(notifier))
            mqtt = next(n for n in desk.notifiers if isinstance(n, MqttNotifier))
            if config.mqtt.homeassistant:
                desk.watchers.append(self._home_assistant(mqtt, engine))
            desk.publish(state_store_events(engine, [store.problem, influx.spool_problem],
                                            self._clock()))
            if config.report is not None:
                await stack.enter_async_context(ReportScheduler(
                    config=config, store=store, clock=self._clock,
                    wake=desk.wake_notifiers))
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
                                             emit_many=pipeline.submit_many,
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
