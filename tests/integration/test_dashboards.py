"""Every dashboard query against a real influxd filled with a simulated evening.

``simulator.history.fill`` writes the ``evening`` scenario (three buildings, 17:00-23:00, a
60 s poll) the way the daemon would; then every panel target, template variable and
annotation of every dashboard is run with Grafana's macros substituted the way Grafana does
(``$timeFilter`` -> ``time >= ...ms and time <= ...ms``, ``$__interval``, multi-value
variables as ``(a|b)`` inside ``/^...$/``), and must return data.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate
from simulator.community import load_scenario
from simulator.history import fill
from simulator.services import InfluxDB

pytestmark = pytest.mark.integration

SCENARIO = load_scenario("evening")
JSON_DIR = Path(generate.__file__).resolve().parent / "json"
BOARDS = {p.stem: json.loads(p.read_text(encoding="utf-8"))
          for p in sorted(JSON_DIR.glob("*.json"))}
# Grafana's rendering of the variables: "All" is the allValue ".*"; several values a group.
SELECTIONS = {
    "all": {"site": ".*", "building": ".*", "box": ".*"},
    "some": {"site": "demo", "building": "(12|13)", "box": "(1|2)"},
}


@pytest.fixture(scope="module")
def evening(influxdb: InfluxDB) -> str:
    """A fresh database holding the simulated evening."""
    db = f"dash_{uuid.uuid4().hex[:10]}"
    counts = fill(influxdb.url, db, "evening")
    assert counts["alarms"] > 0
    assert counts["power"] > 0
    return db


def grafana(query: str, selection: dict[str, str]) -> str:
    """The query as Grafana sends it for the scenario's time range."""
    start_ms, end_ms = round(SCENARIO.start * 1000), round(SCENARIO.end * 1000)
    out = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    out = out.replace("$__interval_ms", "60000").replace("$__interval", "1m")
    for name, value in selection.items():
        out = out.replace(f"${name}", value)
    assert not re.search(r"\$\w", out), f"unsubstituted macro in {out}"
    return out


def run(server: InfluxDB, db: str, query: str) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement over HTTP (as Grafana's proxy sends it)."""
    params = urllib.parse.urlencode({"db": db, "q": query, "epoch": "ms"})
    with urllib.request.urlopen(f"{server.url}/query?{params}", timeout=30) as response:
        body = json.load(response)
    (result,) = body["results"]
    assert "error" not in result, f"{result.get('error')}\n{query}"
    return list(result.get("series", []))


def has_values(series: list[dict[str, Any]]) -> bool:
    """At least one non-null value that is not the time column."""
    for s in series:
        for row in s.get("values", []):
            if any(v is not None for col, v in zip(s["columns"], row, strict=True)
                   if col != "time"):
                return True
    return False


def _targets() -> list[Any]:
    out = []
    for board, doc in BOARDS.items():
        for panel in doc["panels"]:
            for target in panel["targets"]:
                out.append(pytest.param(target["query"],
                                        id=f"{board}/{panel['title']}/{target['refId']}"))
        for annotation in doc["annotations"]["list"]:
            if "query" in annotation:
                out.append(pytest.param(annotation["query"],
                                        id=f"{board}/annotation/{annotation['name']}"))
    return out


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize("query", _targets())
def test_panel_query_returns_data(influxdb: InfluxDB, evening: str, query: str,
                                  selection: str) -> None:
    series = run(influxdb, evening, grafana(query, SELECTIONS[selection]))
    assert has_values(series), f"no data from {grafana(query, SELECTIONS[selection])}"


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_template_variables_resolve(influxdb: InfluxDB, evening: str, board: str) -> None:
    """Each variable lists values, given the upstream selection (chained)."""
    found: dict[str, set[str]] = {}
    for variable in BOARDS[board]["templating"]["list"]:
        series = run(influxdb, evening, grafana(variable["query"], SELECTIONS["some"]))
        found[variable["name"]] = {row[1] for s in series for row in s["values"]}
    assert found["site"] == {"demo"}
    assert found["building"] == {"12", "13", "14"}
    if "box" in found:
        assert found["box"] == {"1", "2"}  # building 12 has two boxes


def test_history_has_what_the_dashboards_show(influxdb: InfluxDB, evening: str) -> None:
    """The simulated evening's events reach InfluxDB as the daemon would write them."""
    rules = {row[1] for s in run(influxdb, evening,
                                  'SHOW TAG VALUES FROM "alarms" WITH KEY = "rule"')
             for row in s["values"]}
    assert {"fire", "ebike-charging", "lamp-partial", "leakage", "resistive-load"} <= rules
    fields = {row[0] for s in run(influxdb, evening, 'SHOW FIELD KEYS FROM "power"')
              for row in s["values"]}
    assert "thermal_load_pct" in fields  # derived by the overload rule
    panel = run(influxdb, evening, "SELECT \"fire\" FROM \"smoke\" WHERE \"kind\" = "
                                   "'fire-panel' AND \"fire\" = 1")
    assert has_values(panel), "the panel's fire report is missing"
    metrics = run(influxdb, evening, 'SELECT max("spool_points") FROM "firewarden"')
    assert metrics[0]["values"][0][1] > 0  # the simulated outage spooled
