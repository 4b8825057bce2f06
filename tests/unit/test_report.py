"""The morning report, pure (daemon/report.py): the model from store rows, the renderers, the
PNG chart and the schedule; and ``firewarden report`` against a real alarm store file."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.cli import main
from daemon.report import (
    DeviceRef,
    build_report,
    chart_png,
    render_html,
    render_json,
    render_markdown,
    report_due,
)
from daemon.store import AlarmStore
from rules.alarm import Ack, transition
from rules.model import Alarm, AlarmEvent, Condition, Severity
from rules.policy import BY_SEVERITY
from simulator.toml_writer import dump_toml

SH = ZoneInfo("Asia/Shanghai")
UNTIL = datetime(2024, 11, 14, 8, 0, tzinfo=SH).timestamp()
SINCE = UNTIL - 86_400
H = 3600.0


def ev(kind: str, hours_ago: float, rule: str, device: str, building: str = "12",
       **extra: Any) -> dict[str, Any]:
    return {"event": kind, "ts": UNTIL - hours_ago * H, "alarm_id": f"{rule}:{device}",
            "rule": rule, "device": device, "building": building, **extra}


DEVICES = [DeviceRef("b12-lights", "12", "north path", poll=2.0),
           DeviceRef("b9-lights", "9", "garden", poll=2.0),
           DeviceRef("b3-lights", "3", "gate", poll=2.0, patrol_order=1),
           DeviceRef("b12-meter", "12", poll=10.0)]


def alarm(rule: str, device: str, t: float, building: str, *, active: bool = True) -> Alarm:
    a = Alarm(alarm_id=f"{rule}:{device}", rule=rule, device=device, severity=Severity.WARNING,
              context={"building": building})
    a, _ = transition(a, Condition(rule, device, True, Severity.WARNING, t), t,
                      BY_SEVERITY[Severity.WARNING])
    return a


def sample() -> tuple[list[Alarm], list[dict[str, Any]]]:
    events = [
        ev("raised", 10, "lamp-out", "b12-lights", area="north path", channel="1"),
        ev("raised", 9, "lamp-out", "b9-lights", "9", area="garden"),
        ev("raised", 8, "lamp-out", "b3-lights", "3", area="gate"),
        ev("cleared", 1, "lamp-out", "b9-lights", "9"),
        ev("raised", 6, "ebike-charging", "b12-stair", value=0.9,
           evidence={"step_w": 180.0, "pf": 0.62}),
        ev("cleared", 4, "ebike-charging", "b12-stair"),
        ev("raised", 3, "comms", "b12-meter"),
        ev("raised", 30, "leakage", "b12-rcm"),  # before the window: not counted
    ]
    alarms = [alarm("lamp-out", "b12-lights", UNTIL - 10 * H, "12"),
              alarm("lamp-out", "b3-lights", UNTIL - 8 * H, "3"),
              alarm("comms", "b12-meter", UNTIL - 3 * H, "12")]
    return alarms, events


def test_model_counts_patrol_incidents_offline_and_completeness() -> None:
    """Counts by building and rule (inside the window only); the lamp patrol in walking order
    (patrol_order first, then building 9 before 12); the e-bike incident with its evidence and
    end; the meter offline for 3 h; completeness estimated from that (7/8 of the polls)."""
    alarms, events = sample()
    r = build_report(site="jp", devices=DEVICES, alarms=alarms, events=events, since=SINCE,
                     until=UNTIL, timezone="Asia/Shanghai")
    assert [(c.building, c.rule, c.raised, c.cleared, c.open) for c in r.counts] == [
        ("12", "comms", 1, 0, 1), ("12", "ebike-charging", 1, 1, 0), ("12", "lamp-out", 1, 0, 1),
        ("3", "lamp-out", 1, 0, 1), ("9", "lamp-out", 1, 1, 0)]
    assert r.totals == (5, 2, 3)
    assert [(s.device, s.still_open) for s in r.lamps] == [
        ("b3-lights", True), ("b9-lights", False), ("b12-lights", True)]
    (ebike,) = r.incidents
    assert (ebike.evidence, ebike.end) == ({"step_w": 180.0, "pf": 0.62}, UNTIL - 4 * H)
    (off,) = r.offline
    assert (off.device, off.seconds, off.still) == ("b12-meter", 3 * H, True)
    meter = next(c for c in r.completeness if c.device == "b12-meter")
    assert (meter.expected, meter.received, meter.source) == (8640, 7560, "alarms")
    assert sum(r.per_hour) == 5
    assert r.per_hour[24 - 10] == 1


def test_influx_counts_are_used_when_given() -> None:
    """With InfluxDB's counts, received is what it counted; a device it never saw is 0."""
    alarms, events = sample()
    r = build_report(site="jp", devices=DEVICES, alarms=alarms, events=events, since=SINCE,
                     until=UNTIL, received={"b12-lights": 43_000})
    got = {c.device: (c.received, round(c.pct, 1), c.source) for c in r.completeness}
    assert got["b12-lights"] == (43_000, 99.5, "influxdb")
    assert got["b9-lights"] == (0, 0.0, "influxdb")


@pytest.mark.parametrize(("language", "expected"), [
    ("zh", ["晨报 2024-11-14", "告警: 新增 5，恢复 2，仍未关闭 3", "照明巡检清单", "1. 楼栋 3 gate",
            "依据 pf 0.62, step_w 180", "3 小时 0 分", "按通信告警估算", "⚠ InfluxDB unavailable"]),
    ("en", ["Morning report 2024-11-14", "Alarms: 5 raised, 2 cleared, 3 still open",
            "Lamp patrol (walking order)", "Evidence pf 0.62",
            "3 h 0 min", "estimated from communication alarms"]),
])
def test_markdown_in_both_languages(language: str, expected: list[str]) -> None:
    """Labels follow ``language``; notes (InfluxDB unavailable) are shown, not hidden."""
    alarms, events = sample()
    r = build_report(site="jp", devices=DEVICES, alarms=alarms, events=events, since=SINCE,
                     until=UNTIL, timezone="Asia/Shanghai", language=language,
                     notes=["InfluxDB unavailable (x)"])
    text = render_markdown(r)
    for part in expected:
        assert part in text, (part, text)


def test_html_and_json() -> None:
    """HTML escapes what it shows and embeds the chart; JSON carries the totals and rows."""
    alarms, events = sample()
    events.append(ev("raised", 2, "lamp-out", "<script>", area="x"))
    r = build_report(site="jp", devices=DEVICES, alarms=alarms, events=events, since=SINCE,
                     until=UNTIL)
    page = render_html(r, chart_png(r.per_hour))
    assert "&lt;script&gt;" in page
    assert "<script>" not in page
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page
    data = json.loads(json.dumps(render_json(r)))
    assert data["totals"] == {"raised": 6, "cleared": 2, "open": 3}
    assert data["incidents"][0]["evidence"] == {"step_w": 180.0, "pf": 0.62}


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    idat = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[idat - 4:idat])
    return width, height, zlib.decompress(png[idat + 4:idat + 4 + length])


def test_chart_is_a_valid_png_with_bars_in_proportion() -> None:
    """24 bars; the tallest reaches near the top, a zero-count hour has no red."""
    counts = [0] * 24
    counts[3], counts[10] = 2, 4
    width, height, raw = _png_pixels(chart_png(counts))
    assert (width, height) == (24 * 15 + 3, 120)
    stride = 1 + width * 3

    def red_rows(bar: int) -> int:
        x = 3 + bar * 15 + 5
        return sum(raw[y * stride + 1 + x * 3:y * stride + 4 + x * 3] == b"\xd9\x48\x3b"
                   for y in range(height))

    assert red_rows(10) == 112
    assert red_rows(3) == 56
    assert red_rows(0) == 0


@pytest.mark.parametrize(("now", "last", "due"), [
    ("07:59", None, None), ("08:00", None, "2024-11-14"), ("13:59", None, "2024-11-14"),
    ("14:01", None, None), ("09:00", "2024-11-14", None), ("09:00", "2024-11-13", "2024-11-14"),
])
def test_report_due_once_a_day_in_local_time(now: str, last: str | None,
                                             due: str | None) -> None:
    """Due at 08:00 Shanghai (00:00 UTC), once per local day, up to 6 h late."""
    h, m = map(int, now.split(":"))
    ts = datetime(2024, 11, 14, h, m, tzinfo=SH).timestamp()
    assert report_due(ts, time(8), "Asia/Shanghai", last) == due


def test_cli_report_against_a_real_store(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``firewarden report --format json`` reads the store the daemon wrote; InfluxDB down is
    said in the report, not an error."""
    state = tmp_path / "state"
    with AlarmStore(state / "alarms.db", sinks=[]) as store:
        import time as clock

        t = clock.time() - 3600
        a = Alarm(alarm_id="lamp-out:b12-lights:1", rule="lamp-out", device="b12-lights",
                  channel="1", severity=Severity.WARNING,
                  context={"building": "12", "area": "north path"})
        policy = BY_SEVERITY[Severity.WARNING]
        a, raised = transition(a, Condition("lamp-out", "b12-lights", True, Severity.WARNING, t,
                                            channel="1", message="lamps out"), t, policy)
        a, acked = transition(a, Ack("li"), t + 60, policy)
        store.record([*raised, *acked])
        assert all(isinstance(e, AlarmEvent) for e in raised)
    conf = tmp_path / "fw.toml"
    conf.write_text(dump_toml({
        "site": {"id": "jp", "timezone": "Asia/Shanghai"},
        "daemon": {"state_dir": str(state)},
        "influxdb": {"url": "http://127.0.0.1:9"}}), encoding="utf-8")
    assert main(["report", "-c", str(conf), "--format", "json",
                 "--chart", str(tmp_path / "c.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"] == {"raised": 1, "cleared": 0, "open": 1}
    assert data["lamps"][0]["device"] == "b12-lights"
    assert data["lamps"][0]["area"] == "north path"
    assert "InfluxDB unavailable" in data["notes"][0]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "-c", str(conf), "--since", "2x"]) == 2
