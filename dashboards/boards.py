"""firewarden's six Grafana dashboards: what each one asks and the panels that answer it.

Overview, distribution boxes, safety lighting, smoke and fire, illegal wiring suspects and
device health, each a function returning a ``Dashboard`` (``panels.py``); ``DASHBOARDS`` is
the list ``generate.py`` writes, in order.
"""

from __future__ import annotations

from dashboards.panels import (
    ACTIVE,
    BOX,
    BUILDING,
    EVERY,
    HIDE_TIME,
    SITE,
    Dashboard,
    Panel,
    Query,
    by_query,
    latest_alarms,
    multi,
    range_map,
    row,
    series,
    stat,
    table,
    transitions,
    value_map,
)


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
                     "Where is there smoke or fire, which detectors need service, and is "
                     "there water for the hydrants?", (
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
        # fire water: the hydrant main's pressure and the tank's level (rules/firewater.py)
        row(8,
            series("Fire-water pressure",
                   f'SELECT min("pressure_mpa") FROM "firewater" WHERE {where} {EVERY}, '
                   '"device" fill(null)', "$tag_device", "suffix: MPa", base="red",
                   thresholds=(("green", 0.07),), threshold_style="dashed",
                   description="GB 50974-2014 §5.2.2: at least 0.07 MPa at the most "
                               "unfavourable hydrant of a residential building (0.10 MPa for "
                               "class-1 high-rise public buildings); a dip that recovers is "
                               "a pump start.", width=8),
            series("Fire-water tank level",
                   f'SELECT min("level_m") FROM "firewater" WHERE {where} {EVERY}, "device" '
                   "fill(null)", "$tag_device", "lengthm", width=8),
            series("Transmitter loop current",
                   f'SELECT last("loop_ma") FROM "firewater" WHERE {where} {EVERY}, "device", '
                   '"channel" fill(null)', "$tag_device ch $tag_channel", "mamp",
                   base="red", thresholds=(("green", 3.8), ("red", 20.5)),
                   threshold_style="dashed",
                   description="NAMUR NE43: 3.8-20.5 mA is a measurement; outside it the "
                               "transmitter or its loop failed.", width=8)),
        row(8,
            table("Fire-water alarms and pump starts", transitions("^firewater-"), width=24)),
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
