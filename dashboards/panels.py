"""Panels as data, and the InfluxQL pieces their queries are built from (stdlib only).

A ``Panel`` is a title, a visualisation, InfluxQL queries (raw mode), a unit and thresholds;
``row(...)`` lays panels out left to right in a 24-column grid, rows top to bottom, so
positions never overlap; a ``Dashboard`` is its rows and template variables. Queries use
Grafana's InfluxQL macros: ``$timeFilter``, ``$__interval`` and the template variables
``$site``, ``$building`` and ``$box``, always as regexes (``=~ /^$building$/``) so multi-value
and "All" selections work. The schema the queries read is ``daemon/sinks/lineprotocol.py``'s
(design.md §4). Turning these into Grafana's JSON is ``grafana_json.py``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
