"""The supervisor: builds the pipeline from a config and runs it until told to stop.

    pollers --Reading--> queue --> pipeline --> influx sink (every reading)
                                         \\--> rule engine --AlarmEvent--> MQTT + influx "alarms"

Components are async context managers entered in dependency order, so shutdown runs in reverse:
pollers stop first, the pipeline drains what they queued, then MQTT and InfluxDB flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

from daemon import systemd
from daemon.config import Config, DeviceConfig, LoadedConfig
from daemon.notify.mqtt import MqttNotifier
from daemon.sinks.influx import InfluxSink
from drivers.measurements import Quantity, Reading
from drivers.modbus.poller import BusPoller, PolledDevice
from rules.engine import DeviceRules, RuleEngine
from rules.model import AlarmEvent
from rules.overload import OvercurrentParams

log = logging.getLogger("firewarden")

STATUS_INTERVAL = 10.0


def device_rules(config: Config) -> dict[str, DeviceRules]:
    """Resolve each device's rule parameters from the [rules] defaults and its own config."""
    oc = config.rules.overcurrent
    out: dict[str, DeviceRules] = {}
    for device in config.devices:
        overcurrent = None
        if oc.enabled and device.rated_current is not None:
            overcurrent = OvercurrentParams(
                rated_current=device.rated_current, factor=oc.factor,
                clear_factor=oc.clear_factor, on_delay=oc.on_delay)
        out[device.name] = DeviceRules(overcurrent=overcurrent, context=_context(device))
    return out


def device_tags(config: Config) -> dict[str, dict[str, str]]:
    """InfluxDB tags per device: its location plus the bus it hangs on."""
    return {d.name: {**d.tags(), "bus": d.bus} for d in config.devices}


def _context(device: DeviceConfig) -> dict[str, str]:
    return {**device.tags(), "kind": device.kind}


class Pipeline:
    """Consumes readings: stores every one, runs the rules, sends alarm events on.

    ``submit`` is what pollers call: synchronous, never blocks, never raises. A full queue
    refuses (and counts) rather than stalls a bus.
    """

    def __init__(self, *, engine: RuleEngine, influx: InfluxSink, mqtt: MqttNotifier,
                 queue_size: int) -> None:
        self._engine = engine
        self._influx = influx
        self._mqtt = mqtt
        self._queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.refused = 0
        self.processed = 0
        self.online: dict[str, bool] = {}

    def submit(self, reading: Reading) -> None:
        try:
            self._queue.put_nowait(reading)
        except asyncio.QueueFull:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.error("reading queue full: %d readings refused so far", self.refused)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def __aenter__(self) -> Pipeline:
        self._task = asyncio.create_task(self._consume(), name="pipeline")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # Drain what the (already stopped) pollers queued, then stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _consume(self) -> None:
        while True:
            reading = await self._queue.get()
            try:
                self._handle(reading)
            except Exception:  # a bug in one reading's path must not stop the daemon
                log.exception("failed to process %s", reading)
            finally:
                self._queue.task_done()

    def _handle(self, reading: Reading) -> None:
        self.processed += 1
        if reading.quantity is Quantity.ONLINE:
            self.online[reading.device] = reading.value >= 1
        self._influx.add(reading)
        for event in self._engine.evaluate(reading):
            self._publish(event)

    def _publish(self, event: AlarmEvent) -> None:
        alarm = event.alarm
        log.warning("alarm %s %s: %s", alarm.alarm_id, event.kind.value, alarm.message)
        self._mqtt.publish_event(event)
        self._influx.add_alarm(event)


class Supervisor:
    """Runs one config until ``stop`` is set."""

    def __init__(self, *, loaded: LoadedConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self._loaded = loaded
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        config = self._loaded.config
        engine = RuleEngine(devices=device_rules(config))
        async with AsyncExitStack() as stack:
            influx = await stack.enter_async_context(InfluxSink(
                config=config.influxdb, site=config.site.id, device_tags=device_tags(config)))
            mqtt = await stack.enter_async_context(
                MqttNotifier(config=config.mqtt, site=config.site.id))
            pipeline = await stack.enter_async_context(Pipeline(
                engine=engine, influx=influx, mqtt=mqtt, queue_size=config.daemon.queue_size))
            for bus in config.buses:
                devices = [PolledDevice(config=d, profile=self._loaded.profiles[d.name])
                           for d in config.devices if d.bus == bus.name and d.enabled]
                if devices:
                    await stack.enter_async_context(BusPoller(
                        bus=bus, devices=devices, emit=pipeline.submit, clock=self._clock))
            await stack.enter_async_context(systemd.Watchdog())
            systemd.ready()
            log.info("running: site %s, %d buses, %d devices", config.site.id,
                     len(config.buses), len(config.devices))
            await self._report_until(stop, pipeline, engine)
            systemd.stopping()
            log.info("stopping: flushing readings and alarms")
        log.info("stopped")

    async def _report_until(self, stop: asyncio.Event, pipeline: Pipeline,
                            engine: RuleEngine) -> None:
        n_devices = len(self._loaded.config.devices)
        while not stop.is_set():
            online = sum(pipeline.online.values())
            systemd.status(
                f"{online}/{n_devices} devices online, {engine.active_count} alarms active, "
                f"queue {pipeline.depth}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=STATUS_INTERVAL)


def run(loaded: LoadedConfig) -> int:
    """Run the daemon in the foreground; SIGTERM/SIGINT stop it cleanly with exit code 0."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Supervisor(loaded=loaded).run(stop)

    asyncio.run(main())
    return 0
