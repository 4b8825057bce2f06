"""Fill an InfluxDB database with a simulated scenario's history, as the daemon would write it.

``fill(url, db, "evening")`` samples ``CommunityModel(scenario)`` every ``step`` simulated
seconds from the scenario's start to its end and, for every device of the simulator's daemon
config (``simulator.community.daemon_config``, validated by ``daemon.config.validate_config``):

- turns each served value into a ``Reading`` (profile order, the profile's sentinels mark bad
  quality) and each poll into device health (``online``, ``latency_ms``, ``errors``,
  ``crc_errors``); devices the scenario makes silent or answer garbage are offline for those
  polls (their ``errors`` count up);
- reports the fire panels' fires and faults at the moment they start and end (as the UITD
  would), plus the panel link's health every step;
- runs everything through the daemon's own rule engine (``daemon.assembly.device_rules``,
  ``policies``, ``flood_policy``; ``tick`` every step), so derived ``thermal_load_pct`` and
  every alarm transition exist; an operator acknowledges each raised alarm ``ack_after``
  seconds later (fire alarms are never acknowledged here: they stay latched until reset);
- adds the daemon's self-metrics (``firewarden``, every 10 s) with a short InfluxDB outage in
  the middle of the run, so the spool and write-health panels have something to show;
- formats with ``daemon.sinks.lineprotocol`` using ``daemon.assembly.device_tags`` and POSTs line
  protocol to ``/write?db=...&precision=ns`` in chunks.

The run is deterministic: the same scenario and step always write the same points.

    python -m simulator.history --url http://127.0.0.1:8086 --db firewarden --scenario evening
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.measurements import Quantity, Reading, checked_value
from daemon.assembly import device_rules, device_tags, flood_policy, policies
from daemon.config import LoadedConfig, validate_config
from daemon.sinks.lineprotocol import FieldValue, alarm_line, format_line, line, reading_series
from rules.alarm import CommandRefused
from rules.engine import RuleEngine
from rules.model import AlarmEvent, AlarmState, EventKind, Severity
from simulator.community import CommunityModel, load_scenario
from simulator.community.daemon_config import Endpoints, FirePanelEndpoint, daemon_config
from simulator.community.model import stream_id
from simulator.community.scenario import Scenario
from simulator.community.topology import locate

CHUNK_LINES = 5000  # lines per POST (well under influxd's default max body size)
METRICS_INTERVAL = 10.0  # s between the daemon's self-metric points
ACK_AFTER = 900.0  # s after raising that the simulated operator acknowledges an alarm
OUTAGE = (0.45, 0.50)  # fraction of the run during which InfluxDB is "down" (self-metrics)
UNACKED = {AlarmState.UNACKED, AlarmState.RTN_UNACKED}


@dataclass(slots=True)
class _Sink:
    """Collects line protocol and counts points per measurement."""

    site: str
    tags: dict[str, dict[str, str]]
    lines: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    _series: dict[tuple[str, Quantity, str | None], str] = field(default_factory=dict)

    def reading(self, reading: Reading) -> None:
        if not reading.good:
            self.counts["bad_quality"] += 1  # the daemon counts these and does not write them
            return
        key = (reading.device, reading.quantity, reading.channel)
        series = self._series.get(key)
        if series is None:  # the series key of a (device, quantity, channel) never changes
            series = self._series[key] = reading_series(
                reading, self.site, self.tags.get(reading.device, {}))
        spec = reading.quantity.spec
        self.lines.append(format_line(series, {spec.field: float(reading.value)}, reading.ts))
        self.counts[spec.measurement] += 1

    def alarm(self, event: AlarmEvent) -> None:
        self.lines.append(alarm_line(event, self.site, self.tags.get(event.alarm.device)))
        self.counts["alarms"] += 1

    def point(self, measurement: str, tags: dict[str, str], fields: dict[str, FieldValue],
              ts: float) -> None:
        self.lines.append(line(measurement, tags, fields, ts))
        self.counts[measurement] += 1


def community_config(scenario: Scenario, step: float) -> LoadedConfig:
    """The daemon config for the scenario's community, every device polled every ``step``.
    The endpoints are placeholders: nothing connects to them."""
    buildings = scenario.community.buildings
    endpoints = Endpoints(
        modbus={b.id: ("127.0.0.1", 15020 + i) for i, b in enumerate(buildings)},
        fire_panels={b.id: FirePanelEndpoint("tcp-server", 19000 + i, "127.0.0.1")
                     for i, b in enumerate(buildings)})
    raw = daemon_config(scenario.community, endpoints, poll=f"{step:g}s")
    return validate_config(raw, Path.cwd() / "history.toml")


@dataclass(frozen=True, slots=True)
class _PanelReport:
    """A component status the panel's UITD sends: fire and fault flags, as
    ``drivers.gb26875.mapping`` turns it into readings (both flags, every time)."""

    ts: float
    panel: str
    channel: str
    fire: bool
    fault: bool

    def readings(self) -> list[Reading]:
        return [Reading(ts=self.ts, device=self.panel, quantity=Quantity.FIRE,
                        value=float(self.fire), channel=self.channel),
                Reading(ts=self.ts, device=self.panel, quantity=Quantity.SMOKE_FAULT,
                        value=float(self.fault), channel=self.channel)]


def _panel_reports(scenario: Scenario, model: CommunityModel) -> list[_PanelReport]:
    """What the panels' UITDs report: each fire or fault when it starts, normal when it ends."""
    out: list[_PanelReport] = []
    for event in model.panel_events():
        target = locate(scenario.community, event.target).panel_target(event.params)
        fire = event.kind == "smoke-fire"
        out.append(_PanelReport(event.start, target.panel, target.channel, fire, not fire))
        if event.end <= scenario.end:
            out.append(_PanelReport(event.end, target.panel, target.channel, False, False))
    return sorted(out, key=lambda r: (r.ts, r.panel, r.channel))


class HistoryRun:
    """One pass over a scenario; ``lines`` and ``counts`` when ``run`` returns."""

    def __init__(self, scenario: Scenario, step: float = 60.0, *,
                 ack_after: float | None = ACK_AFTER) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        self.scenario = scenario
        self.step = step
        self.ack_after = ack_after
        self.loaded = community_config(scenario, step)
        config = self.loaded.config
        self.site = config.site.id
        self.engine = RuleEngine(devices=device_rules(self.loaded), policies=policies(config),
                                 flood=flood_policy(config))
        self.sink = _Sink(self.site, device_tags(config))
        self.model = CommunityModel(scenario)
        self.points = {d.name: [(p.quantity, p.channel, p.sentinels)
                                for p in self.loaded.profiles[d.name].points]
                       for d in config.devices if d.enabled}
        self.panels = [p.name for p in config.fire_panels if p.enabled]
        self.errors: Counter[str] = Counter()
        self.processed = 0
        self._to_ack: list[tuple[float, str]] = []  # (when, alarm_id)

    # -- the pipeline -------------------------------------------------------------------------

    def _handle(self, reading: Reading) -> None:
        """What ``daemon.pipeline.Pipeline._handle`` does: store, evaluate, store derived."""
        self.processed += 1
        self.sink.reading(reading)
        self._publish(self.engine.evaluate(reading))
        for derived in self.engine.take_derived():
            self.sink.reading(derived)

    def _publish(self, events: Iterable[AlarmEvent]) -> None:
        for event in events:
            self.sink.alarm(event)
            alarm = event.alarm
            if (self.ack_after is not None and event.kind is EventKind.RAISED
                    and alarm.severity is not Severity.FIRE):
                self._to_ack.append((event.ts + self.ack_after, alarm.alarm_id))

    def _acknowledge(self, now: float) -> None:
        due = [a for a in self._to_ack if a[0] <= now]
        self._to_ack = [a for a in self._to_ack if a[0] > now]
        for when, alarm_id in due:
            alarm = self.engine.alarms.get(alarm_id)
            if alarm is None or alarm.state not in UNACKED:
                continue
            try:
                self._publish(self.engine.acknowledge(alarm_id, "值班电工", when))
            except CommandRefused:
                continue

    # -- one poll ---------------------------------------------------------------------------

    def _poll(self, t: float, faulty: dict[str, str], fault_events: Sequence[int]) -> None:
        sample = self.model.sample(t, without=fault_events)
        for name, points in self.points.items():
            values = sample.get(name, {})
            if name in faulty:
                self.errors[name] += 1
                self._health(name, t, online=False)
                continue
            for quantity, channel, sentinels in points:
                raw = values.get((quantity.value, channel))
                if raw is None:
                    continue
                value, quality = checked_value(raw, sentinels)
                self._handle(Reading(ts=t, device=name, quantity=quantity, value=value,
                                     quality=quality, channel=channel))
            self._health(name, t, online=True)

    def _health(self, name: str, t: float, *, online: bool) -> None:
        self._handle(Reading(ts=t, device=name, quantity=Quantity.ONLINE,
                             value=1.0 if online else 0.0))
        if online:
            jitter = self.model.noise(stream_id(name, "latency"), math.floor(t))
            latency = 18.0 + 6.0 * self.model.constant(name, "latency") + 4.0 * jitter
            self._handle(Reading(ts=t, device=name, quantity=Quantity.LATENCY,
                                 value=round(latency, 3)))
        self._handle(Reading(ts=t, device=name, quantity=Quantity.ERRORS,
                             value=float(self.errors[name])))
        self._handle(Reading(ts=t, device=name, quantity=Quantity.CRC_ERRORS,
                             value=float(self.errors[name] // 4)))

    def _self_metrics(self, t0: float, t1: float) -> None:
        """The daemon's ``firewarden`` points in [t0, t1), every METRICS_INTERVAL."""
        scenario = self.scenario
        down_from = scenario.start + OUTAGE[0] * scenario.duration
        down_to = scenario.start + OUTAGE[1] * scenario.duration
        sid = stream_id("firewarden", "metrics")
        unacked = sum(1 for a in self.engine.alarms.values() if a.state in UNACKED)
        t = math.ceil(t0 / METRICS_INTERVAL) * METRICS_INTERVAL
        while t < t1:
            down = down_from <= t < down_to
            wobble = (self.model.noise(sid, math.floor(t)) + 1.0) / 2.0
            spooled = max(0.0, min(t, down_to) - down_from) if t >= down_from else 0.0
            if not down and t >= down_to:
                spooled = max(0.0, spooled - 20 * (t - down_to))  # drains after the outage
            spool_points = math.floor(spooled * 6)
            written = sum(self.sink.counts[m] for m in self.sink.counts if m != "bad_quality")
            fields: dict[str, FieldValue] = {
                "queue_depth": float(round(3 * wobble)),
                "fire_lane_depth": 0.0,
                "readings_processed": float(self.processed),
                "readings_refused": 0.0,
                "influx_pending": float(spool_points + round(40 * wobble)),
                "influx_written": float(written - spool_points),
                "influx_failed_writes": float(round((t - down_from) / 10)) if down else 0.0,
                "influx_rejected": 0.0,
                "spool_bytes": float(spool_points * 180),
                "spool_points": float(spool_points),
                "spool_dropped": 0.0,
                "write_latency_ms": round(6.0 + 12.0 * wobble, 3),
                "poll_lag_ms": round(40.0 * wobble, 3),
                "mqtt_queued": 0.0,
                "alarms_active": float(self.engine.active_count),
                "alarms_unacked": float(unacked),
            }
            self.sink.point("firewarden", {"site": self.site}, fields, t)
            t += METRICS_INTERVAL

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> HistoryRun:
        scenario, model = self.scenario, self.model
        reports = _panel_reports(scenario, model)
        fault_events = [e.index for e in scenario.events
                        if e.kind in ("device-silent", "device-garbage")]
        t = scenario.start
        while t <= scenario.end:
            while reports and reports[0].ts <= t:
                for reading in reports.pop(0).readings():
                    self._handle(reading)
            self._poll(t, model.faults(t), fault_events)
            for panel in self.panels:
                self._handle(Reading(ts=t, device=panel, quantity=Quantity.ONLINE, value=1.0))
                self._handle(Reading(ts=t, device=panel, quantity=Quantity.ERRORS, value=0.0))
            self._publish(self.engine.tick(t))
            for derived in self.engine.take_derived():
                self.sink.reading(derived)
            self._acknowledge(t)
            self._self_metrics(t, min(t + self.step, scenario.end + METRICS_INTERVAL / 2))
            t += self.step
        return self

    @property
    def lines(self) -> list[str]:
        return self.sink.lines

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.sink.counts)


# -- writing ---------------------------------------------------------------------------------

def _post(url: str, body: bytes, *, timeout: float = 30.0) -> None:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = int(response.status)
    if status not in (200, 204):
        raise RuntimeError(f"POST {url}: HTTP {status}")


def create_database(url: str, db: str) -> None:
    """``CREATE DATABASE`` (idempotent on 1.x)."""
    name = db.replace("\\", "\\\\").replace('"', '\\"')
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/query", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    for result in answer.get("results", []):
        if "error" in result:
            raise RuntimeError(f"CREATE DATABASE {db}: {result['error']}")


def write_lines(url: str, db: str, lines: Sequence[str], *, chunk: int = CHUNK_LINES) -> None:
    """POST line protocol to ``/write`` in chunks (nanosecond precision)."""
    target = f"{url.rstrip('/')}/write?" + urllib.parse.urlencode({"db": db, "precision": "ns"})
    for start in range(0, len(lines), chunk):
        _post(target, "\n".join(lines[start:start + chunk]).encode())


def fill(url: str, db: str, scenario_name: str, step: float = 60.0, *,
         create: bool = True, ack_after: float | None = ACK_AFTER) -> dict[str, int]:
    """Write ``scenario_name``'s simulated history into ``db`` at ``url``; points written per
    measurement (``bad_quality``: readings left out, as the daemon does)."""
    run = HistoryRun(load_scenario(scenario_name), step, ack_after=ack_after).run()
    if create:
        create_database(url, db)
    write_lines(url, db, run.lines)
    return run.counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="firewarden")
    parser.add_argument("--scenario", default="evening")
    parser.add_argument("--step", type=float, default=60.0, help="simulated s between polls")
    args = parser.parse_args(argv)
    counts = fill(args.url, args.db, args.scenario, args.step)
    written = sum(v for k, v in counts.items() if k != "bad_quality")
    print(f"{args.scenario}: {written} points into {args.db} at {args.url}")
    for measurement, count in sorted(counts.items()):
        print(f"  {measurement:14} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
