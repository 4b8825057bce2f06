"""The morning report's shell: ``firewarden report`` (reads the alarm store read-only, asks
InfluxDB for the poll counts) and ``ReportScheduler``, the daemon's async context manager that
sends the report through the ``[report]`` webhooks every day.

InfluxDB is optional: if it does not answer (or is a v2 API, which has no InfluxQL endpoint we
can rely on), completeness is estimated from the communication alarms and the report says so;
the report never fails for it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import sqlite3
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from core.durations import parse_duration
from daemon.config import Config, LoadedConfig
from daemon.report import (
    DeviceRef,
    Report,
    build_report,
    chart_png,
    render_html,
    render_markdown,
    report_due,
    report_json_text,
    title,
)
from daemon.secrets import SecretError, read_secret
from daemon.store import AlarmStore, read_history
from rules.model import Alarm

log = logging.getLogger("firewarden")

INFLUX_TIMEOUT = 5.0  # s: a slow InfluxDB must not hold up the report
META_KEY = "report_last"  # the local date of the last report queued (alarm store ``meta``)


def device_refs(config: Config) -> list[DeviceRef]:
    refs = [DeviceRef(name=d.name, building=d.building, area=d.area, floor=d.floor,
                      poll=d.poll, patrol_order=d.patrol_order)
            for d in config.devices if d.enabled]
    refs += [DeviceRef(name=p.name, building=p.building) for p in config.fire_panels
             if p.enabled]
    return refs


def influx_received(config: Config, since: float,
                    until: float) -> tuple[dict[str, int] | None, str | None]:
    """Polls answered per device (sum of ``device_health.online``) in the window, or (None,
    why not)."""
    influx = config.influxdb
    if influx.api != "v1":
        return None, "InfluxDB api v2: poll counts not queried; completeness estimated from " \
                     "the communication alarms"
    params = {"db": influx.database, "epoch": "s", "q": (
        f'SELECT sum("online") FROM "device_health" WHERE "site" = '
        f"'{config.site.id}' AND time >= {int(since)}s AND time < {int(until)}s "
        f'GROUP BY "device"')}
    if influx.username:
        params["u"] = influx.username
        params["p"] = read_secret(influx.password_file, "influxdb.password_file") or ""
    url = f"{influx.url}/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=INFLUX_TIMEOUT) as response:
            answer = json.loads(response.read())
        out: dict[str, int] = {}
        for result in answer.get("results", []):
            if "error" in result:
                raise ValueError(result["error"])
            for series in result.get("series", []):
                device = series.get("tags", {}).get("device", "")
                out[device] = int(series["values"][0][1] or 0)
        return out, None
    except (OSError, ValueError, KeyError, IndexError, TypeError, SecretError) as exc:
        return None, (f"InfluxDB unavailable ({type(exc).__name__}: {str(exc)[:80]}): "
                      f"completeness estimated from the communication alarms")


def compose(config: Config, alarms: Sequence[Alarm], events: Sequence[dict[str, Any]], *,
            since: float, until: float, language: str,
            received: dict[str, int] | None, note: str | None) -> Report:
    notes = [note] if note else []
    if config.report is not None:
        zone = config.report.timezone or config.site.timezone
    else:
        zone = config.site.timezone
    return build_report(site=config.site.id, site_name=config.site.name,
                        devices=device_refs(config), alarms=alarms, events=events,
                        since=since, until=until, timezone=zone, language=language,
                        received=received, notes=notes)


# -- the CLI -----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="24h", help="how far back (default 24h)")
    parser.add_argument("--until", type=_moment, metavar="TIME",
                        help="end of the period: epoch seconds or ISO 8601 (default: now)")
    parser.add_argument("--format", choices=["markdown", "html", "json"], default="markdown")
    parser.add_argument("--language", choices=["zh", "en"],
                        help="labels (default: [report] language, else zh)")
    parser.add_argument("--chart", metavar="FILE.png", help="also write the chart (PNG)")
    parser.add_argument("--no-influx", action="store_true",
                        help="do not ask InfluxDB; estimate completeness from the alarms")


def _moment(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"use epoch seconds or ISO 8601, e.g. 2024-11-14T08:00+08:00 (got {text!r})"
        ) from None


def run(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    config = loaded.config
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return 2
    until = args.until if args.until is not None else time.time()
    since = until - window
    path = config.daemon.state_dir / "alarms.db"
    try:
        alarms, events = read_history(path, since, until)
    except sqlite3.Error as exc:
        print(f"error: cannot read the alarm store {path}: {exc}", file=sys.stderr)
        return 2
    received, note = (None, "InfluxDB not asked (--no-influx): completeness estimated from "
                            "the communication alarms") if args.no_influx else \
        influx_received(config, since, until)
    language = args.language or (config.report.language if config.report else "zh")
    report = compose(config, alarms, events, since=since, until=until, language=language,
                     received=received, note=note)
    png = chart_png(report.per_hour)
    if args.chart:
        with open(args.chart, "wb") as out:
            out.write(png)
    if args.format == "json":
        print(report_json_text(report))
    elif args.format == "html":
        print(render_html(report, png), end="")
    else:
        print(render_markdown(report))
    return 0


# -- the daemon's schedule ----------------------------------------------------------------------

class ReportScheduler:
    """Queues the morning report in the ``[report].notify`` webhooks' outboxes every day at
    ``[report].at`` (local time), on the daemon's clock; an async context manager. What was
    queued is remembered in the alarm store (``meta``), in the same transaction, so a restart
    neither sends today's report twice nor skips it (a report missed while the daemon was down
    goes out up to 6 hours late)."""

    def __init__(self, *, config: Config, store: AlarmStore, wake: Callable[[], None],
                 clock: Callable[[], float] = time.time, check_every: float = 1.0) -> None:
        assert config.report is not None
        self._config = config
        self._report = config.report
        self._zone = config.report.timezone or config.site.timezone
        self._store = store
        self._wake = wake
        self._clock = clock
        self._check_every = check_every
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="morning-report")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a report must never take the daemon down
                log.exception("morning report failed; trying again at the next check")
                await asyncio.sleep(60)
            await asyncio.sleep(self._check_every)

    async def check(self) -> bool:
        """Queue the report if one is due now; True if it was."""
        now = self._clock()
        day = report_due(now, self._report.time_of_day, self._zone, self._store.meta(META_KEY))
        if day is None:
            return False
        since = now - self._report.since
        received, note = await asyncio.to_thread(influx_received, self._config, since, now)
        report = compose(self._config, self._store.load_alarms(),
                         self._store.history(since, now), since=since, until=now,
                         language=self._report.language, received=received, note=note)
        png = chart_png(report.per_hour) if self._report.chart else None
        payload: dict[str, Any] = {
            "event": "report", "event_id": f"report:{day}", "ts": now, "severity": "info",
            "language": report.language, "title": title(report),
            "markdown": render_markdown(report), "report": json.loads(report_json_text(report)),
            "png": base64.b64encode(png).decode() if png else None}
        self._store.notify([(f"webhook:{name}", payload["event_id"], payload, False)
                            for name in self._report.notify], meta={META_KEY: day})
        self.sent += 1
        log.info("morning report for %s queued for %s", day, ", ".join(self._report.notify))
        self._wake()
        return True
