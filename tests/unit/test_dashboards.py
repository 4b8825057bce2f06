"""The Grafana dashboards as files: generated, well-formed, wired to the provisioned data source.

The queries themselves run against a real influxd in tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate
from dashboards.grafana_json import DATASOURCE_UID, SCHEMA_VERSION

ROOT = Path(generate.__file__).resolve().parent
JSON_DIR = ROOT / "json"
DATASOURCE_YAML = ROOT / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDER_YAML = ROOT / "provisioning" / "dashboards" / "firewarden.yaml"
GRAFANA_UNITS = {"amp", "mamp", "volt", "watt", "kwatth", "celsius", "percent", "percentunit",
                 "ms", "bytes", "short", "none", "lux", "h", "suffix: dB/m",
                 "suffix: MPa", "lengthm"}  # Grafana has kPa and bar, not MPa


def _boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(JSON_DIR.glob("*.json"))}


BOARDS = _boards()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_committed_json_is_the_generators_output() -> None:
    """Edit dashboards/boards.py and run ``python -m dashboards.generate``, never the JSON."""
    rendered = generate.render()
    assert sorted(rendered) == sorted(BOARDS), "json/ holds other files than the generator's"
    for name, text in rendered.items():
        assert (JSON_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale"
    assert generate.main(["--check"]) == 0


def test_the_six_dashboards_are_there() -> None:
    titles = {board["title"] for board in BOARDS.values()}
    for wanted in ("Community overview", "Distribution boxes", "Safety lighting",
                   "Smoke and fire", "Illegal wiring suspects", "Device health"):
        assert any(wanted in title for title in titles), wanted
    assert len({board["uid"] for board in BOARDS.values()}) == len(BOARDS)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_structure(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] == SCHEMA_VERSION >= 36
    assert board["uid"]
    assert len(board["uid"]) <= 40
    panels = board["panels"]
    assert panels
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["w"] > 0
        assert pos["h"] > 0
        assert pos["x"] >= 0
        assert pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in GRAFANA_UNITS, f"{panel['title']}: unit {unit!r}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs
        assert len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["rawQuery"] is True
            assert target["resultFormat"] in ("time_series", "table")
            assert "$timeFilter" in target["query"], f"{panel['title']}: unbounded query"
            assert "$site" in target["query"], f"{panel['title']}: not filtered by site"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_datasource_is_the_provisioned_one(name: str) -> None:
    refs = [node["datasource"] for node in _walk(BOARDS[name]) if "datasource" in node]
    assert refs
    for ref in refs:
        assert isinstance(ref, dict), f"datasource by name: {ref!r}"
        if ref["type"] == "grafana":
            continue  # the built-in annotations
        assert ref == {"type": "influxdb", "uid": DATASOURCE_UID}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_template_variables_and_annotations(name: str) -> None:
    board = BOARDS[name]
    variables = board["templating"]["list"]
    names = [v["name"] for v in variables]
    assert names[:2] == ["site", "building"]
    assert set(names) <= {"site", "building", "box"}
    for i, variable in enumerate(variables):
        assert variable["query"].startswith("SHOW TAG VALUES")
        assert variable["multi"]
        assert variable["includeAll"]
        # chained: each variable is filtered by the ones before it
        for upstream in names[:i]:
            assert f"/^${upstream}$/" in variable["query"]
    used = {m for node in _walk(board["panels"]) if "query" in node
            for m in re.findall(r"\$(\w+)", node["query"])}
    assert used <= {*names, "timeFilter", "__interval", "__interval_ms"}
    raised = [a for a in board["annotations"]["list"] if a.get("name") == "Alarms raised"]
    assert len(raised) == 1
    assert "\"event\" = 'raised'" in raised[0]["query"]  # raises, not re-alarms
    assert "$timeFilter" in raised[0]["query"]


def test_variables_are_used_as_regexes() -> None:
    """Multi-value and "All" only work with ``=~ /^$var$/``."""
    for board in BOARDS.values():
        for node in _walk(board):
            query = node.get("query")
            if isinstance(query, str):
                for var in ("site", "building", "box"):
                    for match in re.finditer(rf"\${var}\b", query):
                        before = query[max(0, match.start() - 6):match.start()]
                        assert before.endswith("=~ /^"), f"${var} not as a regex in {query}"


def _yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        return None


def _check_yaml_text(text: str) -> None:
    """Without PyYAML: no tabs, consistent two-space indentation, ``key: value`` lines."""
    for number, raw in enumerate(text.splitlines(), 1):
        assert "\t" not in raw, f"line {number}: tab"
        stripped = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not stripped:
            continue
        indent = len(stripped) - len(stripped.lstrip(" "))
        assert indent % 2 == 0, f"line {number}: odd indentation"
        body = stripped.lstrip(" ").removeprefix("- ")
        assert re.match(r"^[A-Za-z_][\w]*:( .*)?$", body), f"line {number}: {raw!r}"


def test_datasource_provisioning() -> None:
    text = DATASOURCE_YAML.read_text(encoding="utf-8")
    yaml = _yaml()
    if yaml is None:
        _check_yaml_text(text)
        assert re.search(r"^apiVersion: 1$", text, re.M)
        active = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert f"    uid: {DATASOURCE_UID}" in active
        assert "    type: influxdb" in active
        assert any(line.strip().startswith("url: http") for line in active)
    else:
        doc = yaml.safe_load(text)
        assert doc["apiVersion"] == 1
        (source,) = doc["datasources"]
        assert source["uid"] == DATASOURCE_UID
        assert source["type"] == "influxdb"
        assert source["jsonData"]["dbName"] == source["database"] == "firewarden"
    # the 2.x variant is there, commented out, with a token header and the DBRP hint
    assert "#     httpHeaderName1: Authorization" in text
    assert "httpHeaderValue1: Token " in text
    assert "dbrp create" in text


def test_dashboard_provider_provisioning() -> None:
    text = PROVIDER_YAML.read_text(encoding="utf-8")
    yaml = _yaml()
    if yaml is None:
        _check_yaml_text(text)
        assert re.search(r"^apiVersion: 1$", text, re.M)
        assert "    type: file" in text
        assert re.search(r"^      path: /\S+$", text, re.M)
    else:
        doc = yaml.safe_load(text)
        (provider,) = doc["providers"]
        assert provider["type"] == "file"
        assert provider["options"]["path"].startswith("/")
