"""The morning report, pure: ``build_report`` turns the alarm store's rows (current alarms and
the event history) and ``until`` into a ``Report``; ``render_markdown``, ``render_html`` and
``render_json`` render it; ``chart_png`` draws alarms per hour as a small PNG. No I/O and no
clock: daemon/report_io.py reads the store and InfluxDB, the CLI prints, the daemon sends.

Contents: alarms raised / cleared / still open by building and rule; lamp failures as a
patrol list in walking order (``patrol_order``, then building, area, device); e-bike and
illegal-wiring incidents with their evidence; devices offline and for how long; data
completeness per device (polls expected against received: counted by InfluxDB where it
answers, otherwise estimated from the communication alarms in the store, and the report says
which).
"""

from __future__ import annotations

import html
import json
import math
import struct
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from rules.model import Alarm, AlarmState

LAMP_RULES = frozenset({"lamp-out", "lamp-partial", "lamp-cycling", "lamp-day-burning"})
WIRING_RULES = frozenset({"ebike-charging", "resistive-load", "unexpected-load",
                          "unmetered-tap"})
COMMS_RULE = "comms"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What the report knows of a configured device."""

    name: str
    building: str = ""
    area: str = ""
    floor: str = ""
    poll: float = 0.0  # s; 0: not polled (a fire panel)
    patrol_order: int | None = None


@dataclass(frozen=True, slots=True)
class CountRow:
    building: str
    rule: str
    raised: int
    cleared: int
    open: int


@dataclass(frozen=True, slots=True)
class LampStop:
    """One stop of the lamp patrol."""

    building: str
    area: str
    device: str
    channel: str
    rule: str
    since: float
    still_open: bool
    message: str


@dataclass(frozen=True, slots=True)
class Incident:
    rule: str
    device: str
    building: str
    start: float
    end: float | None
    value: float | None
    evidence: dict[str, float]
    message: str


@dataclass(frozen=True, slots=True)
class Offline:
    device: str
    building: str
    since: float
    seconds: float
    still: bool


@dataclass(frozen=True, slots=True)
class Completeness:
    device: str
    expected: int
    received: int
    source: str  # "influxdb" | "alarms"

    @property
    def pct(self) -> float:
        return 100.0 if self.expected <= 0 else min(100.0, 100.0 * self.received / self.expected)


@dataclass(frozen=True, slots=True)
class Report:
    site: str
    site_name: str
    since: float
    until: float
    timezone: str
    language: str
    counts: tuple[CountRow, ...]
    lamps: tuple[LampStop, ...]
    incidents: tuple[Incident, ...]
    offline: tuple[Offline, ...]
    completeness: tuple[Completeness, ...]
    per_hour: tuple[int, ...]  # alarms raised in each hour of the window, oldest first
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. "InfluxDB unavailable: ..."

    @property
    def totals(self) -> tuple[int, int, int]:
        return (sum(r.raised for r in self.counts), sum(r.cleared for r in self.counts),
                sum(r.open for r in self.counts))


def _building(row: Mapping[str, Any]) -> str:
    return str(row.get("building") or "-")


def _cleared(event: Mapping[str, Any]) -> bool:
    kind = event.get("event")
    return kind in ("cleared", "reset") or (
        kind == "removed" and event.get("previous") == "acknowledged")


def build_report(*, site: str, site_name: str = "", devices: Sequence[DeviceRef],
                 alarms: Sequence[Alarm], events: Sequence[Mapping[str, Any]], since: float,
                 until: float, timezone: str = "UTC", language: str = "zh",
                 received: Mapping[str, int] | None = None,
                 notes: Sequence[str] = ()) -> Report:
    """The report for ``since``..``until`` from the stored alarms and the history.
    ``received``: polls counted per device by InfluxDB (None: unavailable, estimate)."""
    events = [e for e in events if since <= float(e.get("ts") or 0) <= until]
    where = {d.name: d for d in devices}
    raised: Counter[tuple[str, str]] = Counter()
    cleared: Counter[tuple[str, str]] = Counter()
    opened: Counter[tuple[str, str]] = Counter()
    hours = max(1, math.ceil((until - since) / 3600))
    per_hour = [0] * hours
    for e in events:
        key = (_building(e), str(e.get("rule", "?")))
        if e.get("event") == "raised":
            raised[key] += 1
            per_hour[min(hours - 1, int((float(e["ts"]) - since) // 3600))] += 1
        elif _cleared(e):
            cleared[key] += 1
    for a in alarms:
        if a.state is not AlarmState.NORMAL:
            opened[(a.context.get("building") or "-", a.rule)] += 1
    keys = sorted(set(raised) | set(cleared) | set(opened))
    counts = tuple(CountRow(b, r, raised[(b, r)], cleared[(b, r)], opened[(b, r)])
                   for b, r in keys)
    return Report(site=site, site_name=site_name, since=since, until=until, timezone=timezone,
                  language=language, counts=counts, lamps=_lamps(alarms, events, where),
                  incidents=_incidents(events), offline=_offline(alarms, events, until),
                  completeness=_completeness(devices, alarms, events, since, until, received),
                  per_hour=tuple(per_hour), notes=tuple(notes))


def _lamps(alarms: Sequence[Alarm], events: Sequence[Mapping[str, Any]],
           where: Mapping[str, DeviceRef]) -> tuple[LampStop, ...]:
    """Lamps out now or at any time in the window, once each, in walking order."""
    stops: dict[str, LampStop] = {}
    current = {a.alarm_id: a for a in alarms}
    for e in events:
        if e.get("event") == "raised" and e.get("rule") in LAMP_RULES:
            alarm_id = str(e["alarm_id"])
            a = current.get(alarm_id)
            stops.setdefault(alarm_id, LampStop(
                building=_building(e), area=str(e.get("area") or ""), device=str(e["device"]),
                channel=str(e.get("channel") or ""), rule=str(e["rule"]), since=float(e["ts"]),
                still_open=a is not None and a.state is not AlarmState.NORMAL,
                message=str(e.get("message", ""))))
    for a in alarms:
        if a.rule in LAMP_RULES and a.state is not AlarmState.NORMAL and a.alarm_id not in stops:
            stops[a.alarm_id] = LampStop(
                building=a.context.get("building") or "-", area=a.context.get("area", ""),
                device=a.device, channel=a.channel or "", rule=a.rule,
                since=a.raised_at or a.changed_at, still_open=True, message=a.message)

    def walk(s: LampStop) -> tuple[int, int, str, str, str, str]:
        ref = where.get(s.device)
        order = ref.patrol_order if ref is not None and ref.patrol_order is not None else None
        return (0 if order is not None else 1, order or 0, _natural(s.building), s.area,
                s.device, s.channel)

    return tuple(sorted(stops.values(), key=walk))


def _natural(text: str) -> str:
    """Building "9" before "12"."""
    return text.zfill(8) if text.isdigit() else text


def _incidents(events: Sequence[Mapping[str, Any]]) -> tuple[Incident, ...]:
    open_: dict[str, Incident] = {}
    done: list[Incident] = []
    for e in events:
        if e.get("rule") not in WIRING_RULES:
            continue
        alarm_id = str(e["alarm_id"])
        if e.get("event") == "raised":
            open_[alarm_id] = Incident(
                rule=str(e["rule"]), device=str(e["device"]), building=_building(e),
                start=float(e["ts"]), end=None, value=e.get("value"),
                evidence={str(k): float(v) for k, v in (e.get("evidence") or {}).items()},
                message=str(e.get("message", "")))
        elif alarm_id in open_ and (_cleared(e) or e.get("event") == "cleared"):
            i = open_.pop(alarm_id)
            done.append(Incident(i.rule, i.device, i.building, i.start, float(e["ts"]),
                                 i.value, i.evidence, i.message))
    return tuple(sorted([*done, *open_.values()], key=lambda i: i.start))


def _offline(alarms: Sequence[Alarm], events: Sequence[Mapping[str, Any]],
             until: float) -> tuple[Offline, ...]:
    out: dict[str, Offline] = {}
    for e in events:  # offline for a while in the window, answering again since
        if e.get("rule") == COMMS_RULE and e.get("event") == "raised":
            out[str(e["device"])] = Offline(str(e["device"]), _building(e), float(e["ts"]),
                                            until - float(e["ts"]), False)
        elif e.get("rule") == COMMS_RULE and _cleared(e) and str(e["device"]) in out:
            o = out[str(e["device"])]
            out[o.device] = Offline(o.device, o.building, o.since, float(e["ts"]) - o.since,
                                    False)
    for a in alarms:  # still offline now
        if a.rule == COMMS_RULE and a.in_alarm and a.raised_at is not None:
            out[a.device] = Offline(a.device, a.context.get("building") or "-", a.raised_at,
                                    until - a.raised_at, True)
    return tuple(sorted(out.values(), key=lambda o: (not o.still, -o.seconds)))


def _completeness(devices: Sequence[DeviceRef], alarms: Sequence[Alarm],
                  events: Sequence[Mapping[str, Any]], since: float, until: float,
                  received: Mapping[str, int] | None) -> tuple[Completeness, ...]:
    rows: list[Completeness] = []
    down = _down_seconds(alarms, events, since, until)
    for d in devices:
        if d.poll <= 0:
            continue
        expected = int((until - since) // d.poll)
        if received is not None:
            # ONLINE is written per request: a profile polling some points faster than the
            # device's poll writes more than one per poll; more than expected is complete
            rows.append(Completeness(d.name, expected,
                                     min(expected, int(received.get(d.name, 0))), "influxdb"))
        else:
            got = int(expected * max(0.0, 1 - down.get(d.name, 0.0) / (until - since)))
            rows.append(Completeness(d.name, expected, got, "alarms"))
    return tuple(sorted(rows, key=lambda c: (c.pct, c.device)))


def _down_seconds(alarms: Sequence[Alarm], events: Sequence[Mapping[str, Any]], since: float,
                  until: float) -> dict[str, float]:
    """Seconds each device spent with a communication alarm inside the window."""
    down: dict[str, float] = {}
    start: dict[str, float] = {}
    for e in events:
        if e.get("rule") != COMMS_RULE:
            continue
        device = str(e["device"])
        if e.get("event") == "raised":
            start[device] = float(e["ts"])
        elif _cleared(e) or e.get("event") == "cleared":
            began = start.pop(device, since)
            down[device] = down.get(device, 0.0) + float(e["ts"]) - began
    for a in alarms:
        if a.rule == COMMS_RULE and a.in_alarm and a.raised_at is not None:
            began = max(since, start.pop(a.device, a.raised_at))
            down[a.device] = down.get(a.device, 0.0) + until - began
    return down


# -- rendering ---------------------------------------------------------------------------------

_LABELS = {
    "title": ("晨报", "Morning report"),
    "window": ("时段", "Period"),
    "totals": ("告警: 新增 {0}，恢复 {1}，仍未关闭 {2}", "Alarms: {0} raised, {1} cleared, "
                                                      "{2} still open"),
    "counts": ("按楼栋和规则", "By building and rule"),
    "building": ("楼栋", "Building"), "rule": ("规则", "Rule"), "raised": ("新增", "Raised"),
    "cleared": ("恢复", "Cleared"), "open": ("未关闭", "Open"),
    "lamps": ("照明巡检清单 (按巡检顺序)", "Lamp patrol (walking order)"),
    "area": ("区域", "Area"), "device": ("设备", "Device"), "since": ("起始", "Since"),
    "still": ("仍故障", "still out"), "back": ("已恢复", "back on"),
    "incidents": ("电动车充电与违规接线", "E-bike charging and illegal wiring"),
    "evidence": ("依据", "Evidence"), "until": ("至", "until"), "ongoing": ("持续中", "ongoing"),
    "offline": ("离线设备", "Devices offline"), "for": ("离线时长", "For"),
    "now": ("仍离线", "still offline"), "recovered": ("已恢复", "recovered"),
    "completeness": ("数据完整性 (应收/实收轮询)", "Data completeness (polls expected/received)"),
    "source_influxdb": ("InfluxDB 计数", "counted in InfluxDB"),
    "source_alarms": ("按通信告警估算", "estimated from communication alarms"),
    "none": ("无", "none"),
    "chart": ("每小时新增告警", "Alarms raised per hour"),
    "worst": ("最低 {0} 台", "lowest {0}"),
}


CATCH_UP = 6 * 3600.0  # s: a report missed (daemon down at its time) is sent this late at most


def report_due(now: float, at: time, timezone: str, last_sent: str | None,
               catch_up: float = CATCH_UP) -> str | None:
    """The local date of the report due at ``now`` (sent once a day, at ``at`` local time or
    up to ``catch_up`` later if the daemon was down then), or None."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    scheduled = datetime.combine(local.date(), at, tzinfo=zone)
    day = local.date().isoformat()
    if local < scheduled or last_sent == day or (local - scheduled).total_seconds() > catch_up:
        return None
    return day


def label(key: str, language: str) -> str:
    zh, en = _LABELS[key]
    return zh if language == "zh" else en


def _time(ts: float, zone: str, fmt: str = "%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime(fmt)


def _duration(seconds: float, language: str) -> str:
    minutes = int(seconds // 60)
    h, m = divmod(minutes, 60)
    if language == "zh":
        return f"{h} 小时 {m} 分" if h else f"{m} 分钟"
    return f"{h} h {m} min" if h else f"{m} min"


def _evidence(evidence: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(evidence.items())) or "-"


def title(report: Report) -> str:
    name = report.site_name or report.site
    day = _time(report.until, report.timezone, "%Y-%m-%d")
    return f"{name} {label('title', report.language)} {day}"


COMPLETENESS_ROWS = 15  # the least complete devices listed in the markdown


def render_markdown(report: Report) -> str:
    """Markdown (WeCom/DingTalk flavour: headings, lists, quotes; tables kept to lists, as
    robots render tables poorly)."""
    lang, tz = report.language, report.timezone
    lines = [f"## {title(report)}",
             f"> {label('window', lang)}: {_time(report.since, tz)} – {_time(report.until, tz)}",
             f"> {label('totals', lang).format(*report.totals)}"]
    lines += [f"> ⚠ {note}" for note in report.notes]
    lines += ["", f"### {label('counts', lang)}"]
    lines += [f"- {label('building', lang)} {r.building} · {r.rule}: {label('raised', lang)} "
              f"{r.raised} / {label('cleared', lang)} {r.cleared} / {label('open', lang)} "
              f"{r.open}" for r in report.counts] or [f"- {label('none', lang)}"]
    lines += ["", f"### {label('lamps', lang)}"]
    lines += [f"{i}. {label('building', lang)} {s.building} {s.area} · {s.device}"
              f"{' ' + s.channel if s.channel else ''} ({s.rule}, {_time(s.since, tz)}, "
              f"{label('still' if s.still_open else 'back', lang)})"
              for i, s in enumerate(report.lamps, 1)] or [f"- {label('none', lang)}"]
    lines += ["", f"### {label('incidents', lang)}"]
    lines += [f"- {_time(i.start, tz)}–"
              f"{_time(i.end, tz, '%H:%M') if i.end else label('ongoing', lang)} "
              f"{label('building', lang)} {i.building} · {i.device} · {i.rule}: "
              f"{label('evidence', lang)} {_evidence(i.evidence)}"
              for i in report.incidents] or [f"- {label('none', lang)}"]
    lines += ["", f"### {label('offline', lang)}"]
    lines += [f"- {o.device} ({label('building', lang)} {o.building}): "
              f"{_duration(o.seconds, lang)} {label('since', lang)} {_time(o.since, tz)}, "
              f"{label('now' if o.still else 'recovered', lang)}"
              for o in report.offline] or [f"- {label('none', lang)}"]
    lines += ["", f"### {label('completeness', lang)}"]
    shown = report.completeness[:COMPLETENESS_ROWS]
    if shown:
        source = label(f"source_{shown[0].source}", lang)
        lines.append(f"> {source}; {label('worst', lang).format(len(shown))}")
    lines += [f"- {c.device}: {c.received}/{c.expected} ({c.pct:.1f}%)" for c in shown] or [
        f"- {label('none', lang)}"]
    return "\n".join(lines)


def render_json(report: Report) -> dict[str, Any]:
    """The report as plain data (``--format json``, generic JSON webhooks)."""
    data = asdict(report)
    data["totals"] = dict(zip(("raised", "cleared", "open"), report.totals, strict=True))
    data["completeness"] = [{**asdict(c), "pct": round(c.pct, 1)} for c in report.completeness]
    return data


def render_html(report: Report, png: bytes | None = None) -> str:
    """A self-contained HTML page (the chart inline as a data: URI)."""
    lang, tz = report.language, report.timezone
    e = html.escape

    def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
        if not rows:
            return f"<p>{e(label('none', lang))}</p>"
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
                       for row in rows)
        return f"<table><tr>{th}</tr>{body}</table>"

    parts = [f"<!doctype html><html lang=\"{lang}\"><meta charset=\"utf-8\">"
             f"<title>{e(title(report))}</title><style>body{{font-family:sans-serif}}"
             f"table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}"
             f"</style><h1>{e(title(report))}</h1>",
             f"<p>{e(label('window', lang))}: {e(_time(report.since, tz))} – "
             f"{e(_time(report.until, tz))}<br>{e(label('totals', lang).format(*report.totals))}"
             "</p>"]
    parts += [f"<p><b>⚠ {e(note)}</b></p>" for note in report.notes]
    if png:
        import base64

        parts.append(f"<h2>{e(label('chart', lang))}</h2><img alt=\"chart\" "
                     f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">")
    parts += [f"<h2>{e(label('counts', lang))}</h2>", table(
        [label(k, lang) for k in ("building", "rule", "raised", "cleared", "open")],
        [(r.building, r.rule, r.raised, r.cleared, r.open) for r in report.counts])]
    parts += [f"<h2>{e(label('lamps', lang))}</h2>", table(
        ["#", label("building", lang), label("area", lang), label("device", lang),
         label("rule", lang), label("since", lang), ""],
        [(i, s.building, s.area, f"{s.device} {s.channel}".strip(), s.rule,
          _time(s.since, tz), label("still" if s.still_open else "back", lang))
         for i, s in enumerate(report.lamps, 1)])]
    parts += [f"<h2>{e(label('incidents', lang))}</h2>", table(
        [label("since", lang), label("until", lang), label("building", lang),
         label("device", lang), label("rule", lang), label("evidence", lang)],
        [(_time(i.start, tz), _time(i.end, tz) if i.end else label("ongoing", lang),
          i.building, i.device, i.rule, _evidence(i.evidence)) for i in report.incidents])]
    parts += [f"<h2>{e(label('offline', lang))}</h2>", table(
        [label("device", lang), label("building", lang), label("since", lang),
         label("for", lang), ""],
        [(o.device, o.building, _time(o.since, tz), _duration(o.seconds, lang),
          label("now" if o.still else "recovered", lang)) for o in report.offline])]
    parts += [f"<h2>{e(label('completeness', lang))}</h2>", table(
        [label("device", lang), "expected", "received", "%", ""],
        [(c.device, c.expected, c.received, f"{c.pct:.1f}", label(f"source_{c.source}", lang))
         for c in report.completeness])]
    return "".join(parts) + "</html>\n"


def report_json_text(report: Report) -> str:
    return json.dumps(render_json(report), ensure_ascii=False, indent=1)


# -- the chart: a PNG without a plotting library --------------------------------------------

def chart_png(counts: Sequence[int], *, bar: int = 12, gap: int = 3, height: int = 120) -> bytes:
    """Bars of ``counts`` (alarms per hour, oldest left) on a white background with a base
    line and a grey tick every 6 bars; 8-bit RGB PNG. Pure and dependency-free (matplotlib is
    a dev dependency only): the edge box draws it."""
    n = max(1, len(counts))
    width = n * (bar + gap) + gap
    top = max(1, max(counts, default=0))
    white, red, grey, black = b"\xff\xff\xff", b"\xd9\x48\x3b", b"\xcc\xcc\xcc", b"\x33\x33\x33"
    rows = []
    plot = height - 4
    for y in range(height):
        row = bytearray()
        for x in range(width):
            i, off = divmod(x - gap, bar + gap)
            pixel = white
            if y >= plot:
                pixel = black if y == plot else white
            elif 0 <= i < len(counts) and 0 <= off < bar:
                if counts[i] and y >= plot - max(1, round(counts[i] / top * (plot - 4))):
                    pixel = red
            elif i >= 0 and off >= bar and (i + 1) % 6 == 0 and y % 4 < 2:
                pixel = grey
            row += pixel
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
