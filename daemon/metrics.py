"""The daemon's self-metrics: one ``firewarden`` point every status interval."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.notify.mqtt import MqttNotifier
from daemon.pipeline import Pipeline
from daemon.sinks.influx import InfluxSink
from drivers.modbus.poller import BusPoller
from rules.engine import RuleEngine

log = logging.getLogger("firewarden")


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

