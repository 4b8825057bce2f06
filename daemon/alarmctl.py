"""``firewarden alarms -c FILE list|ack|shelve|unshelve|reset|out-of-service|in-service``.

``list`` reads the alarm store (SQLite, read-only: safe while the daemon runs, and the only
source while it is down). Commands go to the running daemon over MQTT (``cmd/<verb>`` with the
time sent and a unique id, so the daemon can refuse stale or replayed ones) and wait for its
answer on ``cmd/result``: the daemon is the only writer of
the store, so a command is refused rather than applied behind its back when it is down.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sqlite3
import sys
import time
import uuid
from datetime import datetime

import aiomqtt

from daemon.commands import VERBS
from daemon.config import LoadedConfig
from daemon.secrets import SecretError, read_secret
from daemon.store import read_alarms
from rules.model import Alarm, AlarmState

EXIT_OK, EXIT_REFUSED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
ANSWER_TIMEOUT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="alarms that need attention (from the store)")
    listing.add_argument("--all", action="store_true", help="include normal (cleared) ones")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    for verb in VERBS:
        cmd = sub.add_parser(verb, help=f"{verb} an alarm (through the running daemon)")
        cmd.add_argument("alarm_id", help="e.g. fire:b12-fire-panel:2-3-25")
        cmd.add_argument("--by", default=_operator(), help="who is doing this (default: you)")
        if verb == "shelve":
            cmd.add_argument("--minutes", type=float, required=True,
                             help="how long to shelve (1 to 10080)")


def run(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(loaded, show_all=args.all, as_json=args.json)
    # ts and a new id: the daemon applies a command only while fresh, and only once
    body: dict[str, object] = {"alarm_id": args.alarm_id, "by": args.by,
                               "ts": round(time.time(), 3), "id": uuid.uuid4().hex}
    if args.action == "shelve":
        body["minutes"] = args.minutes
    try:
        answer = asyncio.run(_command(loaded, args.action, body))
    except SecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        print(f"error: the daemon did not answer over MQTT ({_describe(exc)}); nothing was "
              f"changed. Is it running? (systemctl status firewarden)", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not answer.get("ok"):
        print(f"refused: {answer.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{args.action}: {args.alarm_id} is now {answer.get('state')}")
    return EXIT_OK


def _list(loaded: LoadedConfig, *, show_all: bool, as_json: bool) -> int:
    path = loaded.config.daemon.state_dir / "alarms.db"
    try:
        alarms = read_alarms(path)
    except sqlite3.Error as exc:
        print(f"error: cannot read the alarm store {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    shown = [a for a in alarms if show_all or a.state is not AlarmState.NORMAL]
    shown.sort(key=lambda a: (a.severity.rank, -(a.raised_at or 0)))
    if as_json:
        print(json.dumps([a.as_dict() for a in shown], ensure_ascii=False, indent=1))
        return EXIT_OK
    if not shown:
        print("no alarms need attention")
        return EXIT_OK
    for alarm in shown:
        print(_line(alarm))
    return EXIT_OK


def _line(alarm: Alarm) -> str:
    since = (datetime.fromtimestamp(alarm.raised_at).strftime("%m-%d %H:%M")
             if alarm.raised_at else "-")
    where = " ".join(f"{k}={v}" for k, v in alarm.context.items()
                     if k in ("building", "floor", "area", "box", "circuit", "zone"))
    extra = f" (shelved by {alarm.shelved_by})" if alarm.shelved_by else ""
    extra += f" (acked by {alarm.acked_by})" if alarm.acked_by else ""
    return (f"{alarm.state.value:<24} {alarm.severity.value:<8} {since}  {alarm.alarm_id}  "
            f"{where}  {alarm.message}{extra}")


async def _command(loaded: LoadedConfig, verb: str,
                   body: dict[str, object]) -> dict[str, object]:
    config = loaded.config
    mqtt = config.mqtt
    base = f"{mqtt.topic_prefix}/{config.site.id}"
    password = read_secret(mqtt.password_file, "mqtt.password_file")
    # as the daemon's own client (daemon/notify/mqtt.py): TLS verifying tls_ca when set
    tls = (aiomqtt.TLSParameters(ca_certs=str(mqtt.tls_ca))
           if mqtt.tls_ca is not None else None)
    async with aiomqtt.Client(mqtt.host, mqtt.port, username=mqtt.username,
                              password=password, tls_params=tls,
                              timeout=ANSWER_TIMEOUT) as client:
        await client.subscribe(f"{base}/cmd/result", qos=1)
        await client.publish(f"{base}/cmd/{verb}", json.dumps(body).encode(), qos=1)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + ANSWER_TIMEOUT):
            async for message in client.messages:
                raw = message.payload
                try:
                    answer = json.loads(raw if isinstance(raw, bytes | bytearray) else str(raw))
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("id") == body["id"]:
                    return answer
                if time.monotonic() > deadline:
                    break
    raise TimeoutError(f"no answer within {ANSWER_TIMEOUT:g} s")


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

