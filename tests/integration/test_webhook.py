"""WebhookNotifier against a real local HTTP server playing the receiver: a generic endpoint,
a WeCom group robot and a DingTalk robot (which checks the 加签 signature as DingTalk does).
The robot answers are shaped on the documented responses (``{"errcode": 0, "errmsg": "ok"}``,
45009 "api freq out of limit", 310000 "sign not match")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from aiohttp import web

from daemon.config import WebhookConfig
from daemon.notify.webhook import WebhookNotifier
from daemon.store import AlarmStore
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from tests.services import eventually

pytestmark = pytest.mark.integration

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
TOKEN = "c0ffee0123456789"
SECRET = "SEC5a3ecf88f2b3eb50db30ecfc00f53033"
MOBILE = "13800001111"
OK = {"errcode": 0, "errmsg": "ok"}


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    query: dict[str, str]
    content_type: str
    body: dict[str, Any]
    status: int
    at: float = field(default_factory=time.monotonic)


class FakeReceiver:
    """A real aiohttp server on 127.0.0.1 recording every POST. ``script`` holds the answers
    to give first (status, JSON body); then 200 with ``{"errcode": 0, "errmsg": "ok"}``. With
    ``secret`` it checks DingTalk's timestamp + sign and answers 310000 when they are wrong."""

    def __init__(self, port: int, *, secret: str | None = None) -> None:
        self.port = port
        self.secret = secret
        self.script: deque[tuple[int, dict[str, Any] | str]] = deque()
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None

    @property
    def accepted(self) -> list[Received]:
        """Requests answered with success (what reached people)."""
        return [r for r in self.requests if r.status == 200 and "bad" not in r.query]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = dict(request.query)
        status, answer = self.script.popleft() if self.script else (200, OK)
        if self.secret is not None and not _signature_ok(query, self.secret):
            status, answer = 200, {"errcode": 310000, "errmsg": "sign not match"}
            query["bad"] = "sign"
        if isinstance(answer, dict) and answer.get("errcode"):
            query["bad"] = str(answer["errcode"])
        self.requests.append(Received(request.path, query, request.content_type, body, status))
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)


def _signature_ok(query: dict[str, str], secret: str) -> bool:
    """DingTalk's check, from its documented algorithm: HMAC-SHA256 over "ts\\nsecret", base64,
    timestamp within an hour."""
    try:
        ts = int(query["timestamp"])
    except (KeyError, ValueError):
        return False
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    fresh = abs(time.time() * 1000 - ts) < 3_600_000
    return fresh and hmac.compare_digest(query.get("sign", ""), base64.b64encode(digest).decode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver(_free_port()) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlarmStore]:
    sinks = ["webhook:ops"]
    with AlarmStore(tmp_path / "alarms.db", sinks=sinks) as opened:
        yield opened


def _event(n: int, *, severity: Severity = Severity.CRITICAL, rule: str = "leakage",
           kind: EventKind = EventKind.RAISED, flood: bool = False) -> AlarmEvent:
    alarm = Alarm(alarm_id=f"{rule}:rcm-{n}:1", rule=rule, device=f"rcm-{n}",
                  severity=severity, state=AlarmState.UNACKED, channel="1", value=350.0,
                  limit=300.0, message=f"剩余电流 350 mA ({n})", raised_at=100.0 + n,
                  changed_at=100.0 + n, context={"building": "12", "box": str(n)}, seq=1)
    return AlarmEvent(kind=kind, alarm=alarm, ts=100.0 + n, previous=AlarmState.NORMAL,
                      flood=flood)


def _config(port: int, fmt: str = "json", tmp_path: Path | None = None,
            **extra: Any) -> WebhookConfig:
    if fmt == "json":
        return WebhookConfig(name="ops", url=f"http://127.0.0.1:{port}/hook", **extra)
    assert tmp_path is not None
    url_file = tmp_path / "url"
    path = (f"/cgi-bin/webhook/send?key={KEY}" if fmt == "wecom"
            else f"/robot/send?access_token={TOKEN}")
    url_file.write_text(f"http://127.0.0.1:{port}{path}\n")
    return WebhookConfig(name="ops", format=fmt, url_file=url_file, **extra)


def _hook(config: WebhookConfig, store: AlarmStore, *, timezone: str | None = None,
          flood_hold: float = 0.0, max_per_window: int | None = None,
          rate_window: float = 60.0) -> WebhookNotifier:
    """A notifier with test-sized delays (the whole file runs in a few seconds)."""
    return WebhookNotifier(config=config, site="jiangpan", outbox=store, timezone=timezone,
                           flood_hold=flood_hold, retry_initial=0.05, retry_max=0.2,
                           rate_delay=0.1, max_per_window=max_per_window,
                           rate_window=rate_window, close_timeout=1.0)


def _publish(store: AlarmStore, notifier: WebhookNotifier, *events: AlarmEvent) -> None:
    """What the daemon's AlarmDesk does: store first, then wake the notifier."""
    store.record(events)
    notifier.wake()


async def _drained(notifier: WebhookNotifier) -> None:
    async with asyncio.timeout(5):
        await notifier.drain()


async def test_json_delivery(receiver: FakeReceiver, store: AlarmStore) -> None:
    """Generic JSON: ``{"site", "event"}`` as application/json, one POST per event, in order,
    and the outbox is emptied."""
    config = _config(receiver.port)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1), _event(2))
        await _drained(hook)
        stats = hook.stats
    assert [r.content_type for r in receiver.requests] == ["application/json"] * 2
    assert [r.body["event"]["event_id"] for r in receiver.requests] == [
        "leakage:rcm-1:1#1", "leakage:rcm-2:1#1"]
    assert receiver.requests[0].body["site"] == "jiangpan"
    assert receiver.requests[0].body["event"]["message"] == "剩余电流 350 mA (1)"
    assert (stats.sent, stats.messages, stats.queued, stats.failed) == (2, 2, 0, 0)


async def test_wecom_markdown_and_mention(receiver: FakeReceiver, store: AlarmStore,
                                          tmp_path: Path) -> None:
    """WeCom: the key comes from url_file; a critical alarm is a markdown message followed by
    a text message @-ing the mobiles."""
    config = _config(receiver.port, "wecom", tmp_path, mention=(MOBILE,))
    async with _hook(config, store, timezone="Asia/Shanghai") as hook:
        _publish(store, hook, _event(1))
        await _drained(hook)
    markdown, text = receiver.requests
    assert markdown.path == "/cgi-bin/webhook/send"
    assert markdown.query == {"key": KEY}
    assert markdown.body["msgtype"] == "markdown"
    content = markdown.body["markdown"]["content"]
    assert '<font color="warning">严重</font>' in content
    assert "1970-01-01 08:01:41 (UTC+0800)" in content
    assert text.body["msgtype"] == "text"
    assert text.body["text"]["mentioned_mobile_list"] == [MOBILE]


async def test_dingtalk_signed_markdown(store: AlarmStore, tmp_path: Path) -> None:
    """DingTalk with 加签: every request carries a fresh timestamp and a sign that verifies;
    the body is markdown with at.atMobiles and the @mobile in the text."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    async with FakeReceiver(_free_port(), secret=SECRET) as robot:
        config = _config(robot.port, "dingtalk", tmp_path, secret_file=secret_file,
                         mention=(MOBILE,))
        async with _hook(config, store) as hook:
            _publish(store, hook, _event(1, severity=Severity.FIRE, rule="smoke"))
            await _drained(hook)
            stats = hook.stats
    (request,) = robot.requests
    assert request.query["access_token"] == TOKEN
    assert _signature_ok(request.query, SECRET)
    assert request.body["at"] == {"atMobiles": [MOBILE], "isAtAll": False}
    assert f"@{MOBILE}" in request.body["markdown"]["text"]
    assert "smoke" in request.body["markdown"]["text"]
    assert (stats.sent, stats.failed) == (1, 0)


async def test_dingtalk_wrong_secret_kept_and_logged_once_without_secrets(
        store: AlarmStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong secret (310000) keeps the event queued and retries; one clear ERROR line
    names the host, never the token, secret or sign."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("SECwrong")
    caplog.set_level(logging.DEBUG, logger="daemon.notify.webhook")
    async with FakeReceiver(_free_port(), secret=SECRET) as robot:
        config = _config(robot.port, "dingtalk", tmp_path, secret_file=secret_file)
        async with _hook(config, store) as hook:
            _publish(store, hook, _event(1))
            await eventually(lambda: len(robot.requests) >= 3, what="three attempts")
            stats = hook.stats
    assert stats.queued == 1
    assert stats.sent == 0
    assert stats.failed >= 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "310000" in errors[0].getMessage()
    assert "127.0.0.1" in errors[0].getMessage()
    # what firewarden logs (the fake receiver's own aiohttp access log shows the URL it got)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("daemon"))
    assert "webhook ops" in ours
    for secret in (TOKEN, "SECwrong", "sign="):
        assert secret not in ours
    assert store.pending("webhook:ops")  # kept for after the fix


async def test_filtered_by_kind_and_severity(receiver: FakeReceiver,
                                             store: AlarmStore) -> None:
    """Kinds not in ``events`` and severities below ``min_severity`` are dropped unsent."""
    config = _config(receiver.port, min_severity="critical")
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1, severity=Severity.WARNING),
                 _event(2, kind=EventKind.CLEARED), _event(3, severity=Severity.INFO),
                 _event(4))
        await _drained(hook)
        stats = hook.stats
    assert [r.body["event"]["event_id"] for r in receiver.requests] == ["leakage:rcm-4:1#1"]
    assert (stats.filtered, stats.sent, stats.queued) == (3, 1, 0)


async def test_retry_after_500_keeps_order(receiver: FakeReceiver, store: AlarmStore) -> None:
    """Two 500s: the first event is retried, then all arrive once each, in order."""
    receiver.script.extend([(500, "boom"), (503, "busy")])
    config = _config(receiver.port)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1), _event(2), _event(3))
        await _drained(hook)
        stats = hook.stats
    ids = [r.body["event"]["event_id"] for r in receiver.requests]
    assert ids == ["leakage:rcm-1:1#1"] * 3 + ["leakage:rcm-2:1#1", "leakage:rcm-3:1#1"]
    assert (stats.failed, stats.sent, stats.quarantined) == (2, 3, 0)


async def test_refused_connection_until_the_server_starts(store: AlarmStore) -> None:
    """Nothing listens at first: events wait in the store; once the server is up all arrive,
    in order, nothing lost."""
    port = _free_port()
    config = _config(port)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1), _event(2))
        await eventually(lambda: hook.stats.failed >= 2, what="failed attempts")
        _publish(store, hook, _event(3))
        async with FakeReceiver(port) as late:
            await _drained(hook)
        stats = hook.stats
    assert [r.body["event"]["event_id"] for r in late.requests] == [
        "leakage:rcm-1:1#1", "leakage:rcm-2:1#1", "leakage:rcm-3:1#1"]
    assert stats.sent == 3
    assert stats.queued == 0


async def test_wecom_rate_limit_errcode_then_ok(receiver: FakeReceiver, store: AlarmStore,
                                                tmp_path: Path) -> None:
    """WeCom answers HTTP 200 errcode 45009, then 0: the page is retried and delivered once."""
    receiver.script.append((200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
    config = _config(receiver.port, "wecom", tmp_path)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1, severity=Severity.WARNING))
        await _drained(hook)
        stats = hook.stats
    assert len(receiver.requests) == 2
    assert len(receiver.accepted) == 1
    assert receiver.requests[0].body == receiver.requests[1].body
    assert (stats.failed, stats.sent, stats.messages) == (1, 1, 1)


async def test_400_quarantines_one_event_and_the_queue_moves_on(
        receiver: FakeReceiver, store: AlarmStore, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 drops that event (logged with the body, counted); the next is delivered."""
    receiver.script.append((400, "field 'event' not understood"))
    config = _config(receiver.port)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1), _event(2))
        await _drained(hook)
        stats = hook.stats
    assert [r.status for r in receiver.requests] == [400, 200]
    assert (stats.quarantined, stats.sent, stats.queued) == (1, 1, 0)
    assert "field 'event' not understood" in caplog.text
    assert "leakage:rcm-1:1#1" in caplog.text


async def test_flood_is_one_digest_and_fire_goes_first(receiver: FakeReceiver,
                                                       store: AlarmStore,
                                                       tmp_path: Path) -> None:
    """Six flood rows become one digest message; the fire event (also in the flood) goes
    first and alone."""
    config = _config(receiver.port, "wecom", tmp_path)
    flood = [_event(n, severity=Severity.WARNING, rule="comms" if n % 2 else "leakage",
                    flood=True) for n in range(1, 7)]
    async with _hook(config, store) as hook:
        store.record(flood)
        _publish(store, hook, _event(9, severity=Severity.FIRE, rule="smoke", flood=True))
        await _drained(hook)
        stats = hook.stats
    first, digest = receiver.requests
    assert "smoke" in first.body["markdown"]["content"]
    content = digest.body["markdown"]["content"]
    assert "6 条告警" in content
    assert "comms 3，leakage 3" in content
    assert (stats.sent, stats.digests, stats.messages) == (7, 1, 2)


async def test_flood_rows_arriving_within_the_hold_join_one_digest(
        receiver: FakeReceiver, store: AlarmStore) -> None:
    """Flood rows are held briefly so a flood that arrives over time is still one message;
    an ordinary event meanwhile is not held."""
    config = _config(receiver.port)
    async with _hook(config, store, flood_hold=0.5) as hook:
        _publish(store, hook, *(_event(n, flood=True) for n in (1, 2, 3)))
        await asyncio.sleep(0.1)
        _publish(store, hook, _event(4))
        _publish(store, hook, *(_event(n, flood=True) for n in (5, 6)))
        await _drained(hook)
    single, digest = receiver.requests
    assert single.body["event"]["event_id"] == "leakage:rcm-4:1#1"
    assert digest.body["digest"]["count"] == 5
    assert [e["event_id"] for e in digest.body["events"]] == [
        f"leakage:rcm-{n}:1#1" for n in (1, 2, 3, 5, 6)]


async def test_paced_to_the_robot_rate(receiver: FakeReceiver, store: AlarmStore) -> None:
    """With at most 2 messages per 0.4 s, the third waits for the window."""
    config = _config(receiver.port)
    async with _hook(config, store, max_per_window=2, rate_window=0.4) as hook:
        _publish(store, hook, _event(1), _event(2), _event(3))
        await _drained(hook)
    first, _, third = receiver.requests
    assert third.at - first.at >= 0.35


async def test_unsent_events_survive_a_restart(store: AlarmStore) -> None:
    """Closed while the endpoint is down, the events stay in the store; the next notifier
    sends them."""
    port = _free_port()
    config = _config(port)
    async with _hook(config, store) as hook:
        _publish(store, hook, _event(1))
        await eventually(lambda: hook.stats.failed >= 1, what="a failed attempt")
    assert len(store.pending("webhook:ops")) == 1
    async with FakeReceiver(port) as late, _hook(config, store) as again:
        again.wake()
        await _drained(again)
    assert [r.body["event"]["event_id"] for r in late.requests] == ["leakage:rcm-1:1#1"]
