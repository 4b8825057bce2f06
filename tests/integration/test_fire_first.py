"""Fire first: a fire flag overtakes a backlog of bulk readings in the pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.measurements import Quantity, Reading
from daemon.config import InfluxConfig, MqttConfig
from daemon.notify.mqtt import MqttNotifier
from daemon.pipeline import BULK_SLICE, AlarmDesk, Pipeline
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from rules.engine import DeviceRules, RuleEngine
from rules.model import AlarmEvent
from simulator.services import free_port
from tests.services import eventually

BACKLOG = 20_000


class RecordingEngine(RuleEngine):
    """The real engine, noting the order readings reach it."""

    def __init__(self) -> None:
        super().__init__(devices={"panel": DeviceRules(), "meter": DeviceRules()})
        self.order: list[Quantity] = []

    def evaluate(self, reading: Reading) -> list[AlarmEvent]:
        self.order.append(reading.quantity)
        return super().evaluate(reading)


async def test_fire_overtakes_bulk_backlog(tmp_path: Path) -> None:
    engine = RecordingEngine()
    # Real sink and notifier pointed at closed ports: they buffer and retry, never block.
    influx = InfluxSink(config=InfluxConfig(url=f"http://127.0.0.1:{free_port()}"),
                        site="t", device_tags={}, close_timeout=0.2)
    store = AlarmStore(tmp_path / "alarms.db", sinks=["mqtt"])
    mqtt = MqttNotifier(config=MqttConfig(host="127.0.0.1", port=free_port()), site="t",
                        outbox=store, close_timeout=0.2)
    desk = AlarmDesk(engine=engine, store=store, influx=influx)
    desk.notifiers.append(mqtt)
    with store:
        await _run(engine, influx, mqtt, desk)


async def _run(engine: RecordingEngine, influx: InfluxSink, mqtt: MqttNotifier,
               desk: AlarmDesk) -> None:
    async with influx, mqtt, Pipeline(desk=desk, influx=influx,
                                      queue_size=BACKLOG) as pipeline:
        for i in range(BACKLOG):
            pipeline.submit(Reading(ts=float(i), device="meter", quantity=Quantity.CURRENT,
                                    value=10.0, channel="L1"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the bulk consumer is now working through the backlog
        pipeline.submit(Reading(ts=1.0, device="panel", quantity=Quantity.FIRE, value=1.0,
                                channel="2-3-25"))
        await eventually(lambda: Quantity.FIRE in engine.order, within=10)
        position = engine.order.index(Quantity.FIRE)
        assert position <= 3 * BULK_SLICE, f"fire handled after {position} bulk readings"
        assert engine.active_count == 1  # and it raised its alarm
        assert mqtt.stats.queued == 1  # the raise event, in the store, waiting for a broker
        await eventually(lambda: len(engine.order) == BACKLOG + 1, within=30)
        assert pipeline.refused == 0
