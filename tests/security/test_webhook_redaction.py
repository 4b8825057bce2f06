"""Webhook URLs carry their secret (a robot key in the query, a token in the path, basic-auth
user:password): no log line may show it, not even when the receiver echoes the URL back in an
error answer. The notifier runs against a real aiohttp server in this process."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from daemon.config import WebhookConfig
from daemon.notify.webhook import LOG_EXCERPT, WebhookNotifier, log_excerpt, redact, redact_url
from daemon.store import AlarmStore
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from tests.services import eventually

PASSWORD = "pa55w0rdXYZ"
PATH_TOKEN = "0b6e1f7a-5b1c-4d1b-9c1e-8a6f6f0e2c11"
KEY = "k3yABCDEF123"


@pytest.mark.parametrize(("url", "shown"), [
    (f"https://ops:{PASSWORD}@hooks.example:8443/notify?key={KEY}",
     "https://hooks.example:8443/notify?key=***"),
    (f"https://open.feishu.cn/open-apis/bot/v2/hook/{PATH_TOKEN}",
     "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
    ("https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx",
     "https://hooks.slack.com/services/***/***/***"),
    (f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
     "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    (f"https://oapi.dingtalk.com/robot/send?access_token={KEY}&timestamp=1&sign=s%2B",
     "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=***"),
    ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ("not a url", "?"),
])
def test_redact_url(url: str, shown: str) -> None:
    """Only scheme, host, port and the harmless path segments are left."""
    assert redact_url(url) == shown


def test_redact_text_hides_userinfo_path_token_and_query() -> None:
    url = f"https://ops:{PASSWORD}@hooks.example/bot/v2/hook/{PATH_TOKEN}?key={KEY}"
    text = (f"POST {url} failed; user ops:{PASSWORD}; token {PATH_TOKEN}; "
            f"other https://a:b@elsewhere/x?access_token=zzz")
    out = redact(text, url, None)
    for secret in (PASSWORD, PATH_TOKEN, KEY, "a:b@", "zzz"):
        assert secret not in out, out
    short = "http://a:b@h/x"  # a short user:password's Basic header is no long token
    assert "YTpi" not in redact("Authorization: Basic YTpi", short, None)
    assert "hooks.example" in out
    # an excerpt: short, and a token cut off by the read limit is masked as well
    long = log_excerpt("x " * 1000 + PATH_TOKEN[:30], url, None)
    assert len(long) <= LOG_EXCERPT + 1
    assert PATH_TOKEN[:20] not in log_excerpt(f"... {PATH_TOKEN[:25]}", url, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def echoing() -> AsyncIterator[int]:
    """A receiver that refuses everything with 400 (and 401 on /auth), echoing the URL it was
    called with and the Authorization header in its answer, as some servers do."""

    async def handle(request: web.Request) -> web.Response:
        status = 401 if "auth" in request.path else 400
        return web.Response(status=status, text=(
            f"bad request to {request.url} (auth {request.headers.get('Authorization')}) "
            f"path {request.path_qs}"))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


def _event() -> AlarmEvent:
    alarm = Alarm(alarm_id="leakage:rcm-1:1", rule="leakage", device="rcm-1",
                  severity=Severity.CRITICAL, state=AlarmState.UNACKED, channel="1",
                  value=350.0, limit=300.0, message="剩余电流 350 mA", raised_at=101.0,
                  changed_at=101.0, seq=1)
    return AlarmEvent(kind=EventKind.RAISED, alarm=alarm, ts=101.0,
                      previous=AlarmState.NORMAL)


@pytest.mark.parametrize("path", ["hook", "auth"])
async def test_failing_webhook_logs_no_secret(
        echoing: int, tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str) -> None:
    """A JSON webhook whose receiver answers 400 (dropped) or 401 (retried) with the URL echoed:
    the log line names the endpoint and the status, never the password, path token or key."""
    caplog.set_level(logging.DEBUG, logger="daemon.notify.webhook")
    url_file = tmp_path / "url"
    url_file.write_text(f"http://ops:{PASSWORD}@127.0.0.1:{echoing}/{path}/{PATH_TOKEN}"
                        f"?key={KEY}\n")
    config = WebhookConfig(name="ops", url_file=url_file)
    with AlarmStore(tmp_path / "alarms.db", sinks=["webhook:ops"]) as store:
        async with WebhookNotifier(config=config, site="t", outbox=store, retry_initial=0.05,
                                   retry_max=0.2, close_timeout=1.0) as hook:
            store.record([_event()])
            hook.wake()
            await eventually(lambda: hook.stats.quarantined + hook.stats.failed >= 1,
                             what="the receiver's refusal")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, caplog.text
    status = "HTTP 401" if path == "auth" else "HTTP 400"
    assert status in errors[0]
    basic = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()  # the Authorization header
    # everything firewarden logged; the receiver's own access log (this test's server, which
    # logs once an earlier test has set the root logger to INFO) is not ours to redact
    ours = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records
                     if not r.name.startswith("aiohttp.access"))
    for secret in (PASSWORD, PATH_TOKEN, KEY, "ops:", basic):
        assert secret not in ours, ours
    assert f"127.0.0.1:{echoing}/{path}/***" in errors[0]
