"""Grafana's dashboard JSON model for firewarden's panels (stdlib only).

Turns a ``Dashboard`` of ``panels.py`` into the JSON Grafana loads: grid positions, field
config, per-visualisation options, template variables and the alarm annotations. Every query
runs on the InfluxDB data source the provisioning file ``provisioning/datasources/influxdb.yaml``
defines (uid ``DATASOURCE_UID``).
"""

from __future__ import annotations

from dashboards.panels import BUILDING, SITE, Dashboard, Json, Panel, Query

DATASOURCE_UID = "firewarden-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
TAG = "firewarden"


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


