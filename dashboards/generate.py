"""Generate firewarden's Grafana dashboards (stdlib only).

    python -m dashboards.generate            # write dashboards/json/*.json
    python -m dashboards.generate --check    # exit 1 if the committed JSON is stale

Panels are data: a title, a visualisation, InfluxQL queries (raw mode), a unit, thresholds;
``row(...)`` lays panels out left to right in a 24-column grid, rows top to bottom, so
positions never overlap. Every query runs on the InfluxDB data source the provisioning file
``provisioning/datasources/influxdb.yaml`` defines (uid ``DATASOURCE_UID``) and uses Grafana's
InfluxQL macros: ``$timeFilter``, ``$__interval`` and the template variables ``$site``,
``$building`` and ``$box``, always as regexes (``=~ /^$building$/``) so multi-value and "All"
selections work. The schema the queries read is ``daemon/sinks/lineprotocol.py``'s (design.md §4).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE_UID = "firewarden-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
OUT = Path(__file__).resolve().parent / "json"
TAG = "firewarden"

Json = dict[str, Any]

# -- filters ----------------------------------------------------------------------------------

SITE = '"site" =~ /^$site$/'
BUILDING = f'{SITE} AND "building" =~ /^$building$/'
BOX = f'{BUILDING} AND "box" =~ /^$box$/'
ACTIVE = "\"state\" != 'normal'"
EVERY = "GROUP BY time($__interval)"


def latest_alarms(where: str = BUILDING, extra: str = "") -> str:
    """Each alarm's latest transition in the range: one series per alarm (building, device,
    rule, severity and channel are tags; ``alarm_id`` is a field, InfluxQL groups by tags)."""
    return (f'SELECT last("state") AS "state"{extra} FROM "alarms" WHERE {where} AND $timeFilter '
            'GROUP BY "building", "device", "rule", "severity", "channel"')


def transitions(rule_regex: str, *fields: str) -> str:
    """Alarm transitions of matching rules, newest first (tags selected as columns)."""
    columns = ", ".join(f'"{f}"' for f in ("building", "device", "rule", "severity", "state",
                                            *fields, "message"))
    return (f'SELECT {columns} FROM "alarms" WHERE "rule" =~ /{rule_regex}/ AND {BUILDING} '
            "AND $timeFilter ORDER BY time DESC LIMIT 500")


# -- panels as data ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    sql: str
    alias: str = ""
    table: bool = False  # resultFormat "table" instead of "time_series"


@dataclass(frozen=True)
class Panel:
    title: str
    type: str  # timeseries, table, stat, state-timeline, bargauge
    queries: tuple[Query, ...]
    unit: str = "none"
    width: int = 12
    description: str = ""
    thresholds: tuple[tuple[str, float], ...] = ()  # (color, from value) above the base green
    base: str = "green"
    threshold_style: str = "off"  # timeseries: off | line | dashed | line+area
    mappings: tuple[Json, ...] = ()
    overrides: tuple[Json, ...] = ()
    transformations: tuple[Json, ...] = ()
    options: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)  # fieldConfig.defaults.custom additions
    defaults: Json = field(default_factory=dict)  # fieldConfig.defaults additions
    interval: str = ""  # the panel's minimum $__interval


@dataclass(frozen=True)
class Row:
    height: int
    panels: tuple[Panel, ...]


def row(height: int, *panels: Panel) -> Row:
    if sum(p.width for p in panels) > 24:
        raise ValueError(f"row wider than 24 columns: {[p.title for p in panels]}")
    return Row(height, panels)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[str, ...] = ("site", "building")
    time_from: str = "now-24h"


# helpers for the repeated shapes

def series(title: str, sql: str, alias: str, unit: str, **kw: Any) -> Panel:
    """A time series panel of one query."""
    return Panel(title, "timeseries", (Query(sql, alias),), unit, **kw)


def multi(title: str, queries: Sequence[Query], unit: str, **kw: Any) -> Panel:
    return Panel(title, "timeseries", tuple(queries), unit, **kw)


def table(title: str, sql: str, **kw: Any) -> Panel:
    return Panel(title, "table", (Query(sql, table=True),), **kw)


def stat(title: str, sql: str, unit: str = "none", **kw: Any) -> Panel:
    return Panel(title, "stat", (Query(sql),), unit, width=kw.pop("width", 6), **kw)


def value_map(*entries: tuple[float, str, str]) -> Json:
    """Grafana value mappings: (value, text, color)."""
    return {"type": "value", "options": {
        f"{value:g}": {"text": text, "color": color, "index": i}
        for i, (value, text, color) in enumerate(entries)}}


def range_map(low: float | None, high: float | None, text: str, color: str) -> Json:
    return {"type": "range", "options": {"from": low, "to": high,
                                         "result": {"text": text, "color": color}}}


def by_query(ref: str, **properties: Any) -> Json:
    """An override for every field of one query (by refId)."""
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": key, "value": value} for key, value in properties.items()]}


HIDE_TIME = {"id": "organize", "options": {"excludeByName": {"Time": True}}}


# -- the dashboards ---------------------------------------------------------------------------

def overview() -> Dashboard:
    needs_attention = "/^(unacknowledged|returned_unacknowledged|latched)$/"
    latest_with_id = latest_alarms(extra=', "alarm_id", "value", "message"')
    return Dashboard("firewarden-overview", "firewarden · Community overview",
                     "Is anything wrong in the community right now, and where?", (
        row(4,
            stat("Active alarms", f'SELECT count("state") FROM ({latest_alarms()}) '
                                  f"WHERE {ACTIVE}",
                 thresholds=(("orange", 1),), description="Alarms whose latest transition in "
                 "the range is not normal (raised in the selected time range)."),
            stat("Need attention", f'SELECT count("state") FROM ({latest_alarms()}) '
                                   f'WHERE "state" =~ {needs_attention}',
                 thresholds=(("red", 1),),
                 description="Unacknowledged, returned unacknowledged or latched (a fire that "
                             "has gone but was not reset)."),
            stat("Fire alarms", f'SELECT count("state") FROM ({latest_alarms()}) '
                                f"WHERE {ACTIVE} AND \"severity\" = 'fire'",
                 thresholds=(("red", 1),)),
            stat("Devices online", 'SELECT mean("online") * 100 FROM (SELECT last("online") '
                                   f'AS "online" FROM "device_health" WHERE {BUILDING} AND '
                                   '$timeFilter GROUP BY "device")', "percent", base="red",
                 thresholds=(("orange", 95), ("green", 100)))),
        row(9,
            Panel("Buildings by status", "table", (
                Query('SELECT sum("online") AS "online", count("online") AS "devices" FROM '
                      '(SELECT last("online") AS "online" FROM "device_health" WHERE '
                      f'{BUILDING} AND $timeFilter GROUP BY "building", "device") '
                      'GROUP BY "building"', table=True),
                Query(_per_severity(), table=True)),
                width=10, description="Per building: devices answering their last poll and "
                "active alarms by severity (empty: none).",
                transformations=({"id": "joinByField",
                                  "options": {"byField": "building", "mode": "outer"}},
                                 {"id": "organize", "options": {"excludeByName": {
                                     "Time": True, "Time 1": True, "Time 2": True}}}),
                overrides=tuple(
                    {"matcher": {"id": "byName", "options": sev},
                     "properties": [{"id": "custom.cellOptions",
                                     "value": {"type": "color-background"}},
                                    {"id": "color", "value": {"mode": "fixed",
                                                              "fixedColor": color}}]}
                    for sev, color in (("fire", "red"), ("critical", "orange"),
                                       ("warning", "yellow")))),
            table("Active alarms",
                  f'SELECT "state", "alarm_id", "value", "message" FROM ({latest_with_id}) '
                  f"WHERE {ACTIVE}", width=14, transformations=(HIDE_TIME,),
                  description="Latest state of every alarm not back to normal.")),
        row(8,
            series("Devices online by building",
                   f'SELECT mean("online") * 100 FROM "device_health" WHERE {BUILDING} AND '
                   f'$timeFilter {EVERY}, "building" fill(null)', "building $tag_building",
                   "percent", defaults={"min": 0, "max": 100}),
            Panel("Alarms raised by rule", "timeseries", (Query(
                f'SELECT count("state") FROM "alarms" WHERE "event" = \'raised\' AND '
                f'{BUILDING} AND $timeFilter {EVERY}, "rule" fill(none)', "$tag_rule"),),
                "short", custom={"drawStyle": "bars", "fillOpacity": 80, "stacking":
                                 {"mode": "normal", "group": "A"}},
                description="Alarms raised (re-alarms of the same alarm not counted).")),
        row(9,
            table("Alarm log", transitions(".*", "value"), width=24,
                  description="Every alarm transition, newest first.")),
    ), time_from="now-24h")


def _per_severity() -> str:
    """Active alarms per building, one column per severity."""
    parts = [f'(SELECT count("state") AS "{sev}" FROM ({latest_alarms()}) WHERE {ACTIVE} '
             f"AND \"severity\" = '{sev}' GROUP BY \"building\")"
             for sev in ("fire", "critical", "warning")]
    return ('SELECT sum("fire") AS "fire", sum("critical") AS "critical", '
            f'sum("warning") AS "warning" FROM {", ".join(parts)} GROUP BY "building"')


def boxes() -> Dashboard:
    incomer = f"\"kind\" = 'incomer' AND {BOX} AND $timeFilter"
    circuits = f"\"kind\" != 'incomer' AND {BOX} AND $timeFilter"
    return Dashboard("firewarden-boxes", "firewarden · Distribution boxes",
                     "How loaded, how warm and how leaky is each distribution box?", (
        row(8,
            series("Incomer current per phase",
                   f'SELECT mean("current_a") FROM "power" WHERE {incomer} AND "phase" =~ '
                   f'/^L[123]$/ {EVERY}, "building", "box", "phase" fill(null)',
                   "$tag_building-$tag_box $tag_phase", "amp",
                   thresholds=(("red", 63),), threshold_style="dashed",
                   description="The dashed line is the incomer rating (63 A in the simulated "
                               "community; edit the threshold to your breakers' In)."),
            series("Thermal load (I²t model, % of the breaker's trip heat)",
                   f'SELECT max("thermal_load_pct") FROM "power" WHERE {BOX} AND $timeFilter '
                   f'{EVERY}, "device", "phase" fill(null)', "$tag_device $tag_phase",
                   "percent", thresholds=(("orange", 80), ("red", 90)),
                   threshold_style="line+area",
                   description="Relative to each breaker's rating: overload-warning at 80 %, "
                               "overload at 90 %, the breaker trips near 100 %.")),
        row(8,
            series("Sub-circuit current",
                   f'SELECT mean("current_a") FROM "power" WHERE {circuits} '
                   f'{EVERY}, "device" fill(null)', "$tag_device", "amp",
                   thresholds=(("red", 16),), threshold_style="dashed",
                   description="The dashed line is a 16 A sub-circuit breaker."),
            series("Voltage per phase",
                   f'SELECT mean("voltage_v") FROM "power" WHERE {incomer} AND "phase" =~ '
                   f'/^L[123]$/ {EVERY}, "building", "box", "phase" fill(null)',
                   "$tag_building-$tag_box $tag_phase", "volt", base="red",
                   thresholds=(("green", 207), ("red", 253)), threshold_style="dashed")),
        row(8,
            series("Residual current",
                   f'SELECT max("residual_ma") FROM "leakage" WHERE {BOX} AND $timeFilter '
                   f'{EVERY}, "device", "channel" fill(null)', "$tag_device ch$tag_channel",
                   "mamp", thresholds=(("orange", 210), ("red", 300)),
                   threshold_style="line+area",
                   description="Pre-alarm at 70 % and alarm at 300 mA (GB 50116)."),
            series("Cable and terminal temperatures",
                   f'SELECT max("temperature_c") FROM "leakage" WHERE {BOX} AND $timeFilter '
                   f'{EVERY}, "device", "channel" fill(null)', "$tag_device probe $tag_channel",
                   "celsius", thresholds=(("orange", 60), ("red", 80)),
                   threshold_style="line+area")),
        row(8,
            Panel("Energy per interval", "timeseries", (Query(
                f'SELECT non_negative_difference(last("energy_kwh")) FROM "power" WHERE {BOX} '
                f'AND $timeFilter {EVERY}, "device" fill(none)', "$tag_device"),),
                "kwatth", interval="15m", custom={"drawStyle": "bars", "fillOpacity": 60},
                description="Consumption per interval from each meter's energy counter "
                            "(counter resets are skipped)."),
            series("Power factor",
                   f'SELECT mean("pf") FROM "power" WHERE {BOX} AND $timeFilter '
                   f'{EVERY}, "device", "phase" fill(null)', "$tag_device $tag_phase", "none",
                   base="orange", thresholds=(("green", 0.85),), defaults={"min": 0, "max": 1},
                   description="Low power factor on a small circuit often means switched-mode "
                               "chargers.")),
    ), variables=("site", "building", "box"))


def lighting() -> Dashboard:
    lit = f'{BUILDING} AND $timeFilter'
    return Dashboard("firewarden-lighting", "firewarden · Safety lighting",
                     "Are the dark-area safety lamps (平安照明灯) lit when they should be?", (
        row(12,
            Panel("Lamp channels: commanded and lit", "state-timeline", (
                Query(f'SELECT last("commanded_on") FROM "lighting" WHERE {lit} '
                      f'{EVERY}, "device", "channel" fill(previous)',
                      "$tag_device ch$tag_channel commanded"),
                Query(f'SELECT last("current_a") FROM "lighting" WHERE {lit} '
                      f'{EVERY}, "device", "channel" fill(previous)',
                      "$tag_device ch$tag_channel current")),
                width=24, options={"mergeValues": True, "showValue": "never",
                                   "alignValue": "left", "rowHeight": 0.8},
                custom={"fillOpacity": 80, "lineWidth": 0},
                overrides=(
                    by_query("A", mappings=[value_map((0, "off", "transparent"),
                                                      (1, "commanded on", "blue"))]),
                    by_query("B", unit="amp", mappings=[
                        range_map(None, 0.05, "no current", "transparent"),
                        range_map(0.05, None, "lit", "green")])),
                description="Per channel: whether the controller commands the lamps on, and "
                            "whether current flows (above 0.05 A). Commanded on without "
                            "current: lamps out; current while off: a stuck relay.")),
        row(9,
            table("Lamp failures", transitions("^lamp-"), description="lamp-out, lamp-partial, "
                  "lamp-day-burning and lamp-cycling alarms, newest first."),
            Panel("Burning hours", "bargauge", (
                Query(f'SELECT integral("commanded_on", 1h) FROM "lighting" WHERE {lit} '
                      'GROUP BY "device", "channel"', "$tag_device ch$tag_channel commanded"),
                Query('SELECT count("lit") / 60 FROM (SELECT max("current_a") AS "lit" FROM '
                      f'"lighting" WHERE {lit} GROUP BY time(1m), "device", "channel") '
                      'WHERE "lit" > 0.05 GROUP BY "device", "channel"',
                      "$tag_device ch$tag_channel lit")),
                "h", options={"orientation": "horizontal", "displayMode": "gradient",
                              "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                                "values": False}},
                description="Hours commanded on, and hours with current flowing (minutes with "
                            "more than 0.05 A), over the selected range.")),
        row(8,
            series("Day burning: current while commanded off",
                   f'SELECT max("current_a") FROM "lighting" WHERE "commanded_on" = 0 AND {lit} '
                   f'{EVERY}, "device", "channel" fill(none)', "$tag_device ch$tag_channel",
                   "amp", thresholds=(("red", 0.05),), threshold_style="dashed",
                   description="Any current above the line while the relay is off is a lamp "
                               "burning by day (stuck relay contact)."),
            series("Ambient light",
                   f'SELECT mean("lux") FROM "lighting" WHERE {lit} {EVERY}, "device" '
                   "fill(null)", "$tag_device", "lux",
                   thresholds=(("blue", 28), ("yellow", 55)), base="dark-blue",
                   threshold_style="dashed",
                   description="The lighting rule counts it dark below 28 lx and light above "
                               "55 lx.")),
    ))


def smoke() -> Dashboard:
    where = f'{BUILDING} AND $timeFilter'
    states = (value_map((0, "normal", "green"), (1, "fault", "orange"), (2, "FIRE", "red"),
                        (3, "FIRE + fault", "red")),)
    return Dashboard("firewarden-fire", "firewarden · Smoke and fire",
                     "Where is there smoke or fire, and which detectors need service?", (
        row(9,
            table("Detectors now",
                  'SELECT last("fire") AS "fire", last("fault") AS "fault", '
                  'last("obscuration_db_m") AS "obscuration dB/m", last("battery_pct") AS '
                  f'"battery %" FROM "smoke" WHERE "kind" = \'smoke\' AND {where} '
                  'GROUP BY "building", "floor", "device"',
                  transformations=(HIDE_TIME,),
                  mappings=(value_map((0, "ok", "green"), (1, "YES", "red")),)),
            table("Fire and fault reports from the panels",
                  'SELECT "building", "channel", "fire", "fault" FROM "smoke" WHERE '
                  f'"kind" = \'fire-panel\' AND {where} ORDER BY time DESC LIMIT 500',
                  mappings=(value_map((0, "normal", "green"), (1, "YES", "red")),),
                  description="What the fire panels' transmission devices (GB/T 26875.3) "
                              "reported, per component (system-zone-position).")),
        row(8,
            Panel("Detector states", "state-timeline", (Query(
                f'SELECT max("fire") * 2 + max("fault") FROM "smoke" WHERE "kind" = \'smoke\' '
                f'AND {where} {EVERY}, "device" fill(previous)', "$tag_device"),),
                mappings=states, options={"mergeValues": True, "showValue": "auto",
                                          "rowHeight": 0.8},
                custom={"fillOpacity": 80, "lineWidth": 0}),
            Panel("Panel components", "state-timeline", (Query(
                f'SELECT max("fire") * 2 + max("fault") FROM "smoke" WHERE '
                f'"kind" = \'fire-panel\' AND {where} {EVERY}, "device", "channel" '
                "fill(previous)", "$tag_device $tag_channel"),),
                mappings=states, options={"mergeValues": True, "showValue": "auto",
                                          "rowHeight": 0.8},
                custom={"fillOpacity": 80, "lineWidth": 0},
                description="Components appear from their first report on.")),
        row(8,
            table("Fire alarms", transitions("^(fire|detector-fault|electrical-fire)$"),
                  width=24)),
        row(8,
            series("Smoke obscuration",
                   f'SELECT max("obscuration_db_m") FROM "smoke" WHERE {where} {EVERY}, '
                   '"device" fill(null)', "$tag_device", "suffix: dB/m",
                   thresholds=(("orange", 0.1),), threshold_style="dashed",
                   description="At or above 0.1 dB/m for an hour without fire: dirty chamber."),
            series("Detector battery",
                   f'SELECT min("battery_pct") FROM "smoke" WHERE {where} {EVERY}, "device" '
                   "fill(null)", "$tag_device", "percent", base="red",
                   thresholds=(("green", 20),), threshold_style="dashed",
                   defaults={"min": 0, "max": 100})),
    ))


def wiring() -> Dashboard:
    watched = f"\"kind\" =~ /^(lighting|public)$/ AND {BOX} AND $timeFilter"
    incomer = (f'SELECT mean("power_w") AS "p" FROM "power" WHERE "kind" = \'incomer\' AND '
               f"\"phase\" = 'total' AND {BOX} AND $timeFilter {EVERY}, \"building\", \"box\"")
    metered = (f'SELECT mean("power_w") AS "p" FROM "power" WHERE "kind" != \'incomer\' AND '
               f'{BOX} AND $timeFilter {EVERY}, "building", "box", "device"')
    unmetered = metered.replace('mean("power_w") AS "p"', '-1 * mean("power_w") AS "p"')
    return Dashboard("firewarden-wiring", "firewarden · Illegal wiring suspects",
                     "Who charges an e-bike in the stairwell, and is power leaving a box "
                     "unmetered?", (
        row(8,
            series("Load on stairwell-lighting and public circuits",
                   f'SELECT mean("power_w") FROM "power" WHERE {watched} {EVERY}, "device" '
                   "fill(null)", "$tag_device", "watt", width=14,
                   description="At night these circuits carry lamps and little else: a step "
                               "of 60-400 W for hours is the signature of a charger."),
            series("Power factor on watched circuits",
                   f'SELECT mean("pf") FROM "power" WHERE {watched} {EVERY}, "device" '
                   "fill(null)", "$tag_device", "none", width=10, base="orange",
                   thresholds=(("green", 0.85),), defaults={"min": 0, "max": 1})),
        row(8,
            table("E-bike charging sessions",
                  'SELECT "building", "device", "state", "value" AS "confidence", "message" '
                  "FROM \"alarms\" WHERE \"rule\" = 'ebike-charging' AND "
                  f"{BUILDING} AND $timeFilter ORDER BY time DESC LIMIT 500",
                  overrides=({"matcher": {"id": "byName", "options": "confidence"},
                              "properties": [{"id": "unit", "value": "percentunit"}]},)),
            table("Wiring alarms",
                  transitions("^(ebike-charging|resistive-load|unexpected-load|unmetered-tap)$",
                              "value"),
                  description="E-bike charging, heaters (resistive loads), unexpected loads "
                              "and unmetered taps.")),
        row(9,
            multi("Incomer against its metered sub-circuits", (
                Query(f'SELECT sum("p") FROM ({incomer}) WHERE $timeFilter {EVERY}, '
                      '"building", "box" fill(none)', "$tag_building-$tag_box incomer"),
                Query(f'SELECT sum("p") FROM ({metered}) WHERE $timeFilter {EVERY}, '
                      '"building", "box" fill(none)', "$tag_building-$tag_box sub-circuits")),
                "watt", description="Total incomer power and the sum of the same box's "
                "sub-circuit meters. InfluxQL cannot join, so both are drawn."),
            multi("Unmetered gap per box", (
                Query(f'SELECT sum("p") FROM ({incomer}), ({unmetered}) WHERE $timeFilter '
                      f'{EVERY}, "building", "box" fill(none)', "$tag_building-$tag_box gap"),),
                "watt", thresholds=(("red", 250),), threshold_style="dashed",
                description="Incomer minus the sum of its sub-circuits (one query over two "
                            "subqueries). The box's own draw (~40 W a phase) is always "
                            "there; above the line for 5 min raises unmetered-tap.")),
    ), variables=("site", "building", "box"))


def health() -> Dashboard:
    where = f'{BUILDING} AND $timeFilter'
    daemon = f'{SITE} AND $timeFilter'
    return Dashboard("firewarden-health", "firewarden · Device health",
                     "Is every device answering, and is the data reaching InfluxDB?", (
        row(10,
            Panel("Devices online", "state-timeline", (Query(
                f'SELECT min("online") FROM "device_health" WHERE {where} {EVERY}, "device" '
                "fill(null)", "$tag_device"),),
                width=24, mappings=(value_map((0, "offline", "red"), (1, "online", "green")),),
                options={"mergeValues": True, "showValue": "never", "rowHeight": 0.8},
                custom={"fillOpacity": 80, "lineWidth": 0})),
        row(8,
            series("Poll latency",
                   f'SELECT mean("latency_ms") FROM "device_health" WHERE {where} {EVERY}, '
                   '"device" fill(null)', "$tag_device", "ms"),
            multi("Poll errors per interval", (
                Query(f'SELECT non_negative_difference(max("errors")) FROM "device_health" '
                      f'WHERE {where} {EVERY}, "device" fill(none)', "$tag_device errors"),
                Query(f'SELECT non_negative_difference(max("crc_errors")) FROM "device_health" '
                      f'WHERE {where} {EVERY}, "device" fill(none)', "$tag_device CRC")),
                "short", custom={"drawStyle": "bars", "fillOpacity": 60},
                description="CRC errors point at RS-485 wiring: termination, shielding, "
                            "baud rate.")),
        row(8,
            series("Daemon queues",
                   'SELECT max("queue_depth") AS "readings", max("fire_lane_depth") AS '
                   '"fire lane", max("mqtt_queued") AS "MQTT" FROM "firewarden" WHERE '
                   f"{daemon} {EVERY} fill(null)", "$col", "short", width=8),
            multi("InfluxDB writes", (
                Query('SELECT non_negative_derivative(last("influx_written"), 1s) AS '
                      f'"written/s" FROM "firewarden" WHERE {daemon} {EVERY} fill(none)', "$col"),
                Query('SELECT non_negative_difference(last("influx_failed_writes")) AS '
                      '"failed writes", non_negative_difference(last("influx_rejected")) AS '
                      f'"rejected points" FROM "firewarden" WHERE {daemon} {EVERY} fill(none)',
                      "$col")),
                "short", width=8),
            multi("Spool (points kept while InfluxDB is unreachable)", (
                Query('SELECT max("spool_bytes") AS "spool" FROM "firewarden" WHERE '
                      f"{daemon} {EVERY} fill(null)", "$col"),
                Query('SELECT max("spool_points") AS "points", max("influx_pending") AS '
                      '"pending", max("spool_dropped") AS "dropped" FROM "firewarden" WHERE '
                      f"{daemon} {EVERY} fill(null)", "$col")),
                "bytes", width=8,
                overrides=(by_query("B", unit="short"),),
                description="Dropped must stay 0: points are only dropped when the spool is "
                            "full.")),
        row(8,
            series("Write latency and poll lag",
                   'SELECT mean("write_latency_ms") AS "InfluxDB write", mean("poll_lag_ms") '
                   f'AS "poll lag" FROM "firewarden" WHERE {daemon} {EVERY} fill(null)',
                   "$col", "ms"),
            multi("Readings and alarms", (
                Query('SELECT non_negative_derivative(last("readings_processed"), 1s) AS '
                      '"readings/s", non_negative_difference(last("readings_refused")) AS '
                      f'"refused" FROM "firewarden" WHERE {daemon} {EVERY} fill(none)', "$col"),
                Query('SELECT last("alarms_active") AS "active alarms", last("alarms_unacked") '
                      f'AS "unacknowledged" FROM "firewarden" WHERE {daemon} {EVERY} '
                      "fill(previous)", "$col")),
                "short")),
    ))


DASHBOARDS = (overview, boxes, lighting, smoke, wiring, health)


# -- JSON model -------------------------------------------------------------------------------

def variable(name: str) -> Json:
    """A chained, multi-value query variable with "All" (as ``.*``)."""
    query = {
        "site": 'SHOW TAG VALUES WITH KEY = "site"',
        "building": f'SHOW TAG VALUES WITH KEY = "building" WHERE {SITE}',
        "box": f'SHOW TAG VALUES FROM "power" WITH KEY = "box" WHERE {BUILDING}',
    }[name]
    return {"name": name, "label": name.capitalize(), "type": "query", "datasource": DATASOURCE,
            "query": query, "definition": query, "refresh": 1, "multi": True,
            "includeAll": True, "allValue": ".*", "current": {}, "options": [], "regex": "",
            "sort": 1, "hide": 0, "skipUrlSync": False}


def annotation_list() -> Json:
    raised = ('SELECT "message", "rule", "severity", "device" FROM "alarms" WHERE '
              f"\"event\" = 'raised' AND {BUILDING} AND $timeFilter")
    return {"list": [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
         "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
         "name": "Annotations & Alerts", "type": "dashboard"},
        {"datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": "red",
         "name": "Alarms raised", "query": raised, "textColumn": "message",
         "tagsColumn": "severity", "titleColumn": "rule"},
    ]}


def target(query: Query, ref: str) -> Json:
    return {"refId": ref, "datasource": DATASOURCE, "query": query.sql, "rawQuery": True,
            "resultFormat": "table" if query.table else "time_series", "alias": query.alias}


def thresholds(panel: Panel) -> Json:
    steps: list[Json] = [{"color": panel.base, "value": None}]
    steps += [{"color": color, "value": value} for color, value in panel.thresholds]
    return {"mode": "absolute", "steps": steps}


def panel_json(panel: Panel, pid: int, x: int, y: int, height: int) -> Json:
    custom: Json = {}
    if panel.type == "timeseries":
        custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False,
                  "showPoints": "never", "thresholdsStyle": {"mode": panel.threshold_style}}
    custom |= panel.custom
    defaults: Json = {"unit": panel.unit, "thresholds": thresholds(panel),
                      "color": {"mode": "thresholds" if panel.type in (
                          "stat", "state-timeline", "table") else "palette-classic"},
                      "mappings": list(panel.mappings), "custom": custom}
    defaults |= panel.defaults
    out: Json = {
        "id": pid, "type": panel.type, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE, "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
        "targets": [target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": list(panel.overrides)},
        "options": _options(panel),
    }
    if panel.transformations:
        out["transformations"] = list(panel.transformations)
    if panel.interval:
        out["interval"] = panel.interval
    return out


def _options(panel: Panel) -> Json:
    by_type: dict[str, Json] = {
        "timeseries": {"legend": {"displayMode": "list", "placement": "bottom",
                                  "showLegend": True},
                       "tooltip": {"mode": "multi", "sort": "desc"}},
        "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "colorMode": "background", "graphMode": "none", "textMode": "value",
                 "justifyMode": "auto", "orientation": "auto"},
        "table": {"showHeader": True, "cellHeight": "sm",
                  "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
        "state-timeline": {"legend": {"displayMode": "list", "placement": "bottom",
                                      "showLegend": False},
                           "tooltip": {"mode": "single", "sort": "none"}},
        "bargauge": {},
    }
    return by_type[panel.type] | panel.options


def dashboard_json(board: Dashboard) -> Json:
    panels: list[Json] = []
    y = 0
    for r in board.rows:
        x = 0
        for panel in r.panels:
            panels.append(panel_json(panel, len(panels) + 1, x, y, r.height))
            x += panel.width
        y += r.height
    return {
        "id": None, "uid": board.uid, "title": board.title, "description": board.description,
        "tags": [TAG], "timezone": "browser", "editable": True, "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "1m",
        "time": {"from": board.time_from, "to": "now"}, "fiscalYearStartMonth": 0,
        "liveNow": False, "weekStart": "",
        "links": [{"title": "firewarden", "type": "dashboards", "tags": [TAG],
                   "asDropdown": True, "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "",
                   "url": ""}],
        "annotations": annotation_list(),
        "templating": {"list": [variable(name) for name in board.variables]},
        "panels": panels,
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    out: dict[str, str] = {}
    for make in DASHBOARDS:
        board = make()
        name = board.uid.removeprefix("firewarden-") + ".json"
        out[name] = json.dumps(dashboard_json(board), indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate",
                                     description="Write firewarden's Grafana dashboard JSON.")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out instead of writing them")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (args.out / name).exists()
                 or (args.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.out / name} is not the generator's output", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
