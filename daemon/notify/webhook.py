"""Webhook notifier: alarm pages to an HTTP endpoint as generic JSON, a WeCom group robot
(企业微信群机器人) or a DingTalk custom robot (钉钉自定义机器人).

Like the MQTT notifier, it sends from the alarm store's outbox (sink ``webhook:<name>``) and
deletes a row only once the receiver took it, so nothing accepted is lost across an outage or a
restart. Rows whose event kind is not in ``events`` or whose severity ranks below
``min_severity`` are marked delivered without sending (counted as ``filtered``). Fire goes
first and is never digested; rows raised during an alarm flood (``flood: true``) are held for
``flood_hold`` seconds and then sent as one digest message instead of one page each.

Outcomes of one POST (``classify``):

- 2xx, and for the robots a JSON body with ``errcode`` 0: delivered, the rows are deleted.
- robot rate limits (WeCom 45009, DingTalk 130101), 429, and a 3xx (DingTalk answers a robot
  that keeps sending too fast with a 302 for 10 minutes): wait at least ``rate_delay``, retry.
- a bad key, token or signature (WeCom 93000; DingTalk 310000, 300001, 300005), 401, 403, 404,
  410: logged once and clearly, retried slowly (every ``retry_max``) rather than dropped: it
  affects every page, fixing the config must not lose the ones waiting.
- 5xx, 408, time-outs, connection errors, unknown non-zero errcodes: retried with capped,
  jittered exponential backoff, in order.
- other 4xx, and the robots' "this message is malformed" errcodes: the endpoint refuses this
  payload, which can never succeed: logged with the body, counted and dropped (quarantined),
  so one bad payload does not block the queue.

Secrets (the robot key or access_token in the URL, the DingTalk signing secret) are read once
at start from ``url_file``/``secret_file``. The logs name the endpoint only as ``redact_url``
gives it (no user:password, token-like path segments and query values as ``***``), and quote a
failing receiver's answer only as a short excerpt with the URL's secrets, and anything else
token-like, masked (``log_excerpt``): a receiver may echo the URL back.

Sources (public documentation and vendor-doc copies consulted; the vendors' own pages are
https://developer.work.weixin.qq.com/document/path/91770 and
https://open.dingtalk.com/document/orgapp/custom-robot-access):

- WeCom group robot: POST JSON to ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``;
  ``{"msgtype": "text", "text": {"content", "mentioned_list", "mentioned_mobile_list"}}`` with
  content at most 2048 bytes UTF-8; ``{"msgtype": "markdown", "markdown": {"content"}}`` at most
  4096 bytes, colours ``<font color="info|comment|warning">``; markdown cannot @ by mobile
  (only ``<@userid>``), hence a separate text message for mentions; at most 20 messages a minute
  per robot (copies of the official "群机器人配置说明" on cnblogs.com/tiandi/p/17768525.html,
  juejin.cn/post/7291125585668259840, the action-wecom-webhook README, skills.sh wecom-bot).
- DingTalk custom robot: ``{"msgtype": "markdown", "markdown": {"title", "text"},
  "at": {"atMobiles": [...], "isAtAll": false}}``, the @-ed mobiles also written as ``@mobile``
  in the text; 加签: ``timestamp`` in ms, ``sign`` = URL-encoded standard base64 of
  HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"), both appended to the webhook URL
  (the official Python sample as quoted on blog.csdn.net/weixin_31560545/article/details/
  116255918 and others); errcode 310000 "sign not match" / "keywords not in content"
  (issues timonwong/prometheus-webhook-dingtalk#197, x-cold/dingtalk-robot#7); at most 20
  messages a minute, then throttled for 10 minutes ("send too fast", then 302)
  (3fwork.com/kaifa200/001550MYM007109, blogweb.cn/article/3764291435420).
- Not re-confirmed here (from the vendors' error-code tables as remembered): WeCom 93000
  "invalid webhook url", 40058 and 44004 (invalid / empty content); DingTalk 130101 "send too
  fast", 300001/300005 token errors, 40035 (missing json), 460101 (message too long). The markdown
  size limit of DingTalk is not stated in what was found; we keep to WeCom's 4096 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import re
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
import yarl

from core.aio import finish_within
from daemon.config import WebhookConfig
from daemon.secrets import read_secret
from daemon.store import Outbox, OutboxItem

log = logging.getLogger(__name__)

SEVERITY_RANK = {"fire": 0, "critical": 1, "warning": 2, "info": 3}
MENTION_SEVERITIES = frozenset({"fire", "critical"})
WECOM_MARKDOWN_MAX = 4096  # bytes, UTF-8
WECOM_TEXT_MAX = 2048  # bytes, UTF-8
DINGTALK_TEXT_MAX = 4096  # bytes: conservative, see the module docstring
DIGEST_TOP = 5
TRUNCATED = "\n…(已截断)"
ANSWER_READ = 4096  # bytes of a receiver's answer read (for its errcode and the log)

WECOM_RATE_LIMITED = frozenset({45009})
DINGTALK_RATE_LIMITED = frozenset({130101})
BAD_CREDENTIALS = frozenset({93000, 310000, 300001, 300005})
BAD_PAYLOAD = frozenset({40058, 44004, 40035, 460101})
_ENDPOINT_STATUS = frozenset({401, 403, 404, 410})  # about the URL or key, not this payload

_SEVERITY_LABEL = {"fire": "🔥 火警", "critical": "严重", "warning": "警告", "info": "提示"}
_WECOM_COLOR = {"fire": "warning", "critical": "warning", "warning": "warning", "info": "comment"}
_EVENT_LABEL = {
    "raised": "告警", "realarm": "仍未确认", "chattering": "频繁告警", "cleared": "已恢复(未确认)",
    "acknowledged": "已确认", "removed": "已消除", "latched": "已锁存(需复位)", "reset": "已复位",
    "shelved": "已搁置", "unshelved": "取消搁置", "out_of_service": "停用",
    "in_service": "恢复启用",
    "chatter_ended": "频繁告警结束",
}
_PLACE = (("building", "楼栋"), ("floor", "楼层"), ("area", "区域"), ("zone", "防区"),
          ("box", "配电箱"), ("circuit", "回路"))
_UNACKED = frozenset({"unacknowledged", "returned_unacknowledged"})


# -- what to send (pure) ---------------------------------------------------------------------

def wanted(payload: Mapping[str, Any], config: WebhookConfig) -> bool:
    """Whether this event pages through this webhook: its kind is one of ``config.events``
    and its severity ranks at or above ``config.min_severity`` (fire > critical > warning >
    info)."""
    rank = SEVERITY_RANK.get(str(payload.get("severity")), len(SEVERITY_RANK))
    return (payload.get("event") in config.events
            and rank <= SEVERITY_RANK[config.min_severity])


@dataclass(frozen=True, slots=True)
class Page:
    """What one send covers: one event, or several flood events as one digest."""

    items: tuple[OutboxItem, ...]

    @property
    def digest(self) -> bool:
        return len(self.items) > 1

    @property
    def flood(self) -> bool:
        return any(item.payload.get("flood") for item in self.items)

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(item.seq for item in self.items)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [item.payload for item in self.items]


def plan(items: Sequence[OutboxItem]) -> list[Page]:
    """The pages for these pending (already filtered) rows, in send order.

    Fire first, whatever the input order; fire is never digested. The other rows keep their
    order; rows marked ``flood`` become one digest page where the first of them stood (a
    single flood row is just a page)."""
    fire = [i for i in items if i.payload.get("severity") == "fire"]
    rest = [i for i in items if i.payload.get("severity") != "fire"]
    flooded = [i for i in rest if i.payload.get("flood")]
    pages = [Page((i,)) for i in fire]
    placed = False
    for item in rest:
        if not item.payload.get("flood") or len(flooded) < 2:
            pages.append(Page((item,)))
        elif not placed:
            pages.append(Page(tuple(flooded)))
            placed = True
    return pages


@dataclass(frozen=True, slots=True)
class Style:
    """Everything formatting needs besides the events."""

    format: str  # json | wecom | dingtalk
    site: str
    timezone: str | None = None  # IANA name for local times; None: UTC
    mention: tuple[str, ...] = ()
    topic_prefix: str = "firewarden"


def messages(page: Page, style: Style) -> list[dict[str, Any]]:
    """The JSON bodies one page becomes, in send order (WeCom mentions: a second message)."""
    if style.format == "wecom":
        return wecom_messages(page, style)
    if style.format == "dingtalk":
        return [dingtalk_message(page, style)]
    if page.digest:
        return [json_digest(style.site, page.payloads)]
    return [json_body(style.site, page.items[0].payload)]


def json_body(site: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Generic JSON: ``{"site", "event"}``, the event exactly as stored."""
    return {"site": site, "event": dict(payload)}


def json_digest(site: str, payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Generic JSON for a flood: a summary and every event in full (machines can take it)."""
    stamps = [float(p["ts"]) for p in payloads if isinstance(p.get("ts"), int | float)]
    return {"site": site,
            "digest": {"count": len(payloads), "by_rule": dict(_by_rule(payloads)),
                       "since": min(stamps, default=None), "until": max(stamps, default=None)},
            "events": [dict(p) for p in payloads]}


def wecom_messages(page: Page, style: Style) -> list[dict[str, Any]]:
    """WeCom group robot: one markdown message, plus a text message that @-mentions
    ``style.mention`` by mobile when the page holds a fire or critical event (markdown
    cannot mention by mobile)."""
    if page.digest:
        content = digest_markdown(page.payloads, style, color=True)
    else:
        content = event_markdown(page.items[0].payload, style, color=True)
    out: list[dict[str, Any]] = [
        {"msgtype": "markdown",
         "markdown": {"content": truncate_utf8(content, WECOM_MARKDOWN_MAX)}}]
    if (mobiles := _mentions(page, style)):
        text = truncate_utf8(f"{_headline(page, style)}\n请尽快处理。", WECOM_TEXT_MAX)
        out.append({"msgtype": "text",
                    "text": {"content": text, "mentioned_mobile_list": mobiles}})
    return out


def dingtalk_message(page: Page, style: Style) -> dict[str, Any]:
    """DingTalk custom robot: markdown with a title; mentions both in ``at.atMobiles`` and as
    ``@mobile`` in the text (DingTalk shows the @ only when both are there)."""
    if page.digest:
        text = digest_markdown(page.payloads, style, color=False)
    else:
        text = event_markdown(page.items[0].payload, style, color=False)
    mobiles = _mentions(page, style)
    tail = ("\n\n" + " ".join(f"@{m}" for m in mobiles)) if mobiles else ""
    text = truncate_utf8(text, DINGTALK_TEXT_MAX - len(tail.encode())) + tail
    return {"msgtype": "markdown",
            "markdown": {"title": truncate_utf8(_headline(page, style), 128, marker="…"),
                         "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False}}


def event_markdown(payload: Mapping[str, Any], style: Style, *, color: bool) -> str:
    """One alarm event for people: what, where, how much, when, and how to acknowledge."""
    severity = str(payload.get("severity", ""))
    label = _SEVERITY_LABEL.get(severity, severity)
    if color:
        label = f'<font color="{_WECOM_COLOR.get(severity, "comment")}">{label}</font>'
    event = str(payload.get("event", ""))
    what = _text(payload.get("message")) or payload.get("rule", "")
    lines = [f"### {label} {_EVENT_LABEL.get(event, event)}: {what}",
             f"> 站点: {style.site}",
             f"> 位置: {place(payload)}"]
    value, limit = payload.get("value"), payload.get("limit")
    if value is not None or limit is not None:
        lines.append(f"> 测量值: {_number(value)} / 限值: {_number(limit)}")
    lines.append(f"> 时间: {local_time(payload.get('ts'), style.timezone)}")
    lines.append(f"> 规则: {payload.get('rule', '')} · 事件: {payload.get('event_id', '')}")
    if payload.get("state") in _UNACKED:
        lines.append("")
        lines.append(ack_hint(str(payload.get("alarm_id", "")), style, color=color))
    return "\n".join(lines)


def digest_markdown(payloads: Sequence[Mapping[str, Any]], style: Style, *, color: bool) -> str:
    """A flood as one message: how many, per rule, over how long, and the top few (most
    severe first, then oldest)."""
    stamps = [float(p["ts"]) for p in payloads if isinstance(p.get("ts"), int | float)]
    minutes = max(1, math.ceil((max(stamps) - min(stamps)) / 60)) if stamps else 1
    counts = "，".join(f"{rule} {n}" for rule, n in _by_rule(payloads).most_common())
    count = f"{len(payloads)} 条告警"
    if color:
        count = f'<font color="warning">{count}</font>'
    lines = [f"### 告警风暴: 最近 {minutes} 分钟 {count}", f"> 站点: {style.site}",
             f"> 按规则: {counts}"]
    if stamps:
        lines.append(f"> 时间: {local_time(min(stamps), style.timezone)} 至 "
                     f"{local_time(max(stamps), style.timezone)}")
    top = sorted(payloads, key=lambda p: (SEVERITY_RANK.get(str(p.get("severity")), 9),
                                          float(p.get("ts") or 0)))[:DIGEST_TOP]
    lines.append("")
    lines.append(f"前 {len(top)} 条:" if len(payloads) > len(top) else "全部:")
    for p in top:
        severity = str(p.get("severity", ""))
        lines.append(f"- [{_SEVERITY_LABEL.get(severity, severity)}] {place(p)}: "
                     f"{_text(p.get('message')) or p.get('rule', '')} ({p.get('alarm_id', '')})")
    lines.append("")
    lines.append(f"逐条确认: `firewarden alarms -c CONFIG list` 查看, 再 ack 每个 ID "
                 f"(MQTT: {style.topic_prefix}/{style.site}/cmd/ack)")
    return "\n".join(lines)


def ack_hint(alarm_id: str, style: Style, *, color: bool) -> str:
    """How an electrician acknowledges this alarm: over MQTT or with the CLI."""
    # ts: the daemon refuses a command without the time it was sent (daemon/commands.py)
    body = json.dumps({"alarm_id": alarm_id, "by": "NAME"}, ensure_ascii=False)[:-1]
    hint = (f"确认: `mosquitto_pub -t {style.topic_prefix}/{style.site}/cmd/ack "
            f"-m '{body}, \"ts\": '$(date +%s)'}}'`"
            f" 或 `firewarden alarms -c CONFIG ack {alarm_id}`")
    return f'<font color="comment">{hint}</font>' if color else hint


def place(payload: Mapping[str, Any]) -> str:
    """Where, for people: building, floor, box, circuit ... and the device."""
    parts = [f"{label} {payload[key]}" for key, label in _PLACE if payload.get(key)]
    device = str(payload.get("device", ""))
    if payload.get("channel"):
        device = f"{device} ({payload['channel']})"
    return " · ".join([*parts, f"设备 {device}"])


def local_time(ts: object, timezone: str | None) -> str:
    """``ts`` (epoch seconds) in the site's zone, or as UTC ISO 8601 without one."""
    if not isinstance(ts, int | float):
        return "?"
    if timezone:
        return datetime.fromtimestamp(ts, ZoneInfo(timezone)).strftime(
            "%Y-%m-%d %H:%M:%S (UTC%z)")
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_utf8(text: str, limit: int, *, marker: str = TRUNCATED) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (never inside a character), with
    ``marker`` at the end when it was cut."""
    if len(text.encode()) <= limit:
        return text
    room = max(0, limit - len(marker.encode()))
    return text.encode()[:room].decode(errors="ignore") + marker


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: standard base64 of HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")
    (not yet URL-encoded)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """The webhook URL with ``&timestamp=...&sign=...`` (sign URL-encoded) appended."""
    sep = "&" if urlsplit(url).query else "?"
    sign = quote_plus(dingtalk_sign(secret, timestamp_ms))
    return f"{url}{sep}timestamp={timestamp_ms}&sign={sign}"


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"  # transient: backoff
    RATE_LIMITED = "rate limited"  # wait at least rate_delay
    BAD_CREDENTIALS = "bad credentials"  # every page fails: log clearly, retry slowly
    REJECTED = "rejected"  # this payload can never succeed: quarantine


def classify(status: int, body: str, *, robot: bool) -> tuple[Outcome, int | None]:
    """What an HTTP answer means, and the robot's errcode if it gave one."""
    errcode: int | None = None
    if robot:
        with contextlib.suppress(ValueError):
            answer = json.loads(body)
            if isinstance(answer, dict) and isinstance(answer.get("errcode"), int):
                errcode = answer["errcode"]
    if 200 <= status < 300:
        if errcode is None or errcode == 0:
            return Outcome.OK, errcode
        if errcode in WECOM_RATE_LIMITED | DINGTALK_RATE_LIMITED:
            return Outcome.RATE_LIMITED, errcode
        if errcode in BAD_CREDENTIALS:
            return Outcome.BAD_CREDENTIALS, errcode
        if errcode in BAD_PAYLOAD:
            return Outcome.REJECTED, errcode
        return Outcome.RETRY, errcode  # -1 "system busy" and the unknown: never drop blindly
    if 300 <= status < 400 or status == 429:
        return Outcome.RATE_LIMITED, errcode
    if status in _ENDPOINT_STATUS:
        return Outcome.BAD_CREDENTIALS, errcode
    if 400 <= status < 500 and status != 408:
        return Outcome.REJECTED, errcode
    return Outcome.RETRY, errcode


_QUERY_SECRET = re.compile(r"([?&](?:key|access_token|token|secret|sign|timestamp)=)"
                           r"[^&\s'\"]*")
_USERINFO = re.compile(r"(?<=://)[^/?#@\s'\"]+@")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,}")
LOG_EXCERPT = 200  # characters of a receiver's answer in the log


def _token_like(segment: str) -> bool:
    """A URL path segment that may be a key (Feishu ``/bot/v2/hook/<uuid>``, Slack
    ``/services/T../B../<token>``): long, or mixing letters and digits."""
    return len(segment) >= 20 or (len(segment) >= 8 and any(c.isdigit() for c in segment)
                                  and any(c.isalpha() for c in segment))


def redact_url(url: str) -> str:
    """``url`` fit for the log, the one form in which a webhook URL is ever logged: scheme,
    host and port, the path with token-like segments as ``***``, every query value as ``***``;
    never the user:password."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "***"
    if not host:
        return "?"
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path = "/".join("***" if _token_like(s) else s for s in parts.path.split("/"))
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _secrets(url: str, secret: str | None) -> list[str]:
    """Every part of ``url`` (and the signing secret) that must not reach the log."""
    try:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        basic = base64.b64encode(unquote(userinfo).encode()).decode() if userinfo else ""
        found = [parts.query, userinfo, parts.password or "", unquote(userinfo), basic,
                 *(s for s in parts.path.split("/") if _token_like(s)),
                 *(v for _, v in parse_qsl(parts.query) if len(v) >= 4)]
    except ValueError:
        found = [url]
    return sorted({h for h in (*found, secret or "") if h}, key=len, reverse=True)


def redact(text: str, url: str, secret: str | None) -> str:
    """``text`` without the webhook URL's secrets (user:password, token path segments, the
    query: key, access_token), the signature or the signing secret."""
    for hidden in _secrets(url, secret):
        text = text.replace(hidden, "***")
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub("***@", text))


def log_excerpt(text: str, url: str, secret: str | None) -> str:
    """A receiver's answer (or an error) for the log: redacted, long token-like runs masked
    too (an echo of a URL we do not know, or cut mid-token), at most ``LOG_EXCERPT``
    characters."""
    text = _LONG_TOKEN.sub("***", redact(text, url, secret)).strip()
    return text if len(text) <= LOG_EXCERPT else f"{text[:LOG_EXCERPT]}…"


def _by_rule(payloads: Sequence[Mapping[str, Any]]) -> Counter[str]:
    return Counter(str(p.get("rule", "?")) for p in payloads)


def _mentions(page: Page, style: Style) -> list[str]:
    if any(p.get("severity") in MENTION_SEVERITIES for p in page.payloads):
        return list(style.mention)
    return []


def _headline(page: Page, style: Style) -> str:
    if page.digest:
        return f"[{style.site}] 告警风暴: {len(page.items)} 条告警"
    p = page.items[0].payload
    severity = str(p.get("severity", ""))
    return (f"[{style.site}] {_SEVERITY_LABEL.get(severity, severity)} {place(p)}: "
            f"{_text(p.get('message')) or p.get('rule', '')}")


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "-"


def _text(value: object) -> str:
    return "" if value is None else str(value)


# -- the notifier (I/O) ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebhookStats:
    """Counters since start."""

    queued: int  # rows waiting in this webhook's outbox
    sent: int  # events delivered (a digest counts all it covers)
    messages: int  # HTTP requests the receiver accepted
    digests: int  # flood digests sent
    failed: int  # failed attempts (retried)
    quarantined: int  # events the endpoint refused as invalid: dropped
    filtered: int  # events not for this webhook (kind, severity): dropped unsent


class WebhookNotifier:
    """Sends one webhook's outbox to its endpoint, retrying forever; an async context manager.
    Starting does not wait for the endpoint."""

    def __init__(self, *, config: WebhookConfig, site: str, outbox: Outbox,
                 timezone: str | None = None, topic_prefix: str = "firewarden",
                 flood_hold: float = 10.0, retry_initial: float = 1.0,
                 retry_max: float | None = None, rate_delay: float = 60.0,
                 max_per_window: int | None = None, rate_window: float = 60.0,
                 close_timeout: float | None = None) -> None:
        self._config = config
        self._sink = config.sink
        self._outbox = outbox
        self._style = Style(format=config.format, site=site, timezone=timezone,
                            mention=config.mention, topic_prefix=topic_prefix)
        self._flood_hold = flood_hold
        self._retry_initial = retry_initial
        self._retry_max = retry_max if retry_max is not None else config.retry_max
        self._rate_delay = rate_delay
        # The robots allow 20 messages a minute (DingTalk then blocks for 10 minutes): pace
        # ourselves rather than find out.
        robot = config.format != "json"
        self._max_per_window = max_per_window if max_per_window is not None else (
            20 if robot else None)
        self._rate_window = rate_window
        self._close_timeout = close_timeout if close_timeout is not None else config.timeout
        self._robot = robot
        self._url = ""
        self._secret: str | None = None
        self._host = ""
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._flood_since: float | None = None  # monotonic: when the held flood was first seen
        self._partial: tuple[tuple[int, ...], int] | None = None  # page seqs, messages sent
        self._recent: deque[float] = deque()  # monotonic send times, for pacing
        self._failing: Outcome | None = None
        self._sent = 0
        self._messages = 0
        self._digests = 0
        self._failed = 0
        self._quarantined = 0
        self._filtered = 0

    @property
    def stats(self) -> WebhookStats:
        return WebhookStats(queued=self._queued, sent=self._sent, messages=self._messages,
                            digests=self._digests, failed=self._failed,
                            quarantined=self._quarantined, filtered=self._filtered)

    @property
    def _queued(self) -> int:
        return len(self._outbox.pending(self._sink, 100_000))

    def wake(self) -> None:
        """New events are in the outbox: send them. Never blocks, never raises."""
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Return once the outbox is empty (bound it with ``asyncio.timeout``)."""
        await self._idle.wait()

    async def __aenter__(self) -> Self:
        # Read once at start: a missing secret is a startup error, not a retry loop.
        if self._config.url_file is not None:
            self._url = (read_secret(self._config.url_file,
                                     f"webhook {self._config.name} url_file") or "").strip()
        else:
            self._url = self._config.url or ""
        if self._config.secret_file is not None:
            self._secret = (read_secret(self._config.secret_file,
                                        f"webhook {self._config.name} secret_file") or "").strip()
        self._host = redact_url(self._url)  # how the logs name this endpoint
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.timeout))
        self._task = asyncio.create_task(self._run(), name=f"webhook-{self._config.name}")
        self._task.add_done_callback(self._log_crash)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            await finish_within(task, self._close_timeout)
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None
        if queued := self._queued:
            log.warning("webhook %s closed with %d events unsent: kept in the store, sent "
                        "after the restart", self._config.name, queued)

    # -- the send loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            # Cleared before reading the outbox: a wake() from here on is not lost.
            self._wake.clear()
            page, wait = self._next_page()
            if page is None:
                if wait is None:
                    self._idle.set()
                    if self._closing:
                        return
                await self._wait(wait)
                continue
            outcome = await self._send(page)
            if outcome in (Outcome.OK, Outcome.REJECTED):
                attempt = 0
                continue
            attempt += 1
            backoff = min(self._retry_max, self._retry_initial * 2 ** (attempt - 1))
            if outcome is Outcome.RATE_LIMITED:
                backoff = min(self._retry_max, max(backoff, self._rate_delay))
            elif outcome is Outcome.BAD_CREDENTIALS:
                backoff = self._retry_max
            await self._backoff(backoff * random.uniform(0.5, 1.0))

    def _next_page(self) -> tuple[Page | None, float | None]:
        """The next page to send, or (None, seconds until a held flood digest is due)."""
        items = self._outbox.pending(self._sink, 500)
        skipped = {i.seq for i in items if not wanted(i.payload, self._config)}
        if skipped:
            self._outbox.delivered(self._sink, sorted(skipped))
            self._filtered += len(skipped)
            items = [i for i in items if i.seq not in skipped]
        pages = plan(items)
        now = time.monotonic()
        held: float | None = None
        for page in pages:
            if page.flood and not self._closing:
                if self._flood_since is None:
                    self._flood_since = now
                due = self._flood_since + self._flood_hold - now
                if due > 0:
                    held = due  # gather more of the flood; send anything else meanwhile
                    continue
            return page, None
        return None, held

    async def _wait(self, delay: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _send(self, page: Page) -> Outcome:
        """Send one page's messages in order; deletes its rows once all were taken (or one was
        refused as invalid)."""
        bodies = messages(page, self._style)
        done = self._partial[1] if self._partial and self._partial[0] == page.seqs else 0
        index = done
        for index in range(done, len(bodies)):
            await self._pace()
            outcome = await self._post(bodies[index], page)
            if outcome is Outcome.REJECTED:
                break  # retrying cannot help; what went out before it counts as sent
            if outcome is not Outcome.OK:
                self._partial = (page.seqs, index)
                return outcome
        else:
            outcome = Outcome.OK
        self._partial = None
        self._outbox.delivered(self._sink, list(page.seqs))
        if outcome is Outcome.OK or index > 0:  # refused only the WeCom mention: delivered
            self._sent += len(page.items)
            self._digests += page.digest
        else:
            self._quarantined += len(page.items)
        if page.flood:
            self._flood_since = None
        return outcome

    async def _post(self, body: dict[str, Any], page: Page) -> Outcome:
        assert self._session is not None
        url = self._url
        if self._secret is not None:
            url = signed_url(url, self._secret, int(time.time() * 1000))
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            # Already encoded (the sign's %2B must stay); no redirects: DingTalk's 302 is a
            # throttle, not a new home.
            async with self._session.post(
                    yarl.URL(url, encoded=True), data=data, allow_redirects=False,
                    headers={"Content-Type": "application/json; charset=utf-8"}) as response:
                status = response.status
                # enough for an errcode; never the whole of what a broken server sends
                raw = await response.content.read(ANSWER_READ)
                text = raw.decode(response.charset or "utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._failure(Outcome.RETRY, self._redact(
                f"{type(exc).__name__}: {exc}".rstrip(": ")))
        outcome, errcode = classify(status, text, robot=self._robot)
        if outcome is Outcome.OK:
            self._messages += 1
            if self._failing is not None:
                log.info("webhook %s (%s) delivering again after %d failed attempts",
                         self._config.name, self._host, self._failed)
                self._failing = None
            return outcome
        why = f"HTTP {status}" + (f" errcode {errcode}" if errcode is not None else "")
        why = f"{why}: {self._redact(text)}"
        if outcome is Outcome.REJECTED:
            self._quarantine_log(page, why)
            return outcome
        return self._failure(outcome, why)

    def _failure(self, outcome: Outcome, why: str) -> Outcome:
        self._failed += 1
        if self._failing is not outcome:
            if outcome is Outcome.BAD_CREDENTIALS:
                log.error("webhook %s (%s) refuses our credentials (%s): check the key or "
                          "access_token in url_file%s; retrying every %.0f s, %d events "
                          "queued", self._config.name, self._host, why,
                          " and the secret_file (DingTalk 加签) and the robot's security "
                          "settings" if self._config.format == "dingtalk" else "",
                          self._retry_max, self._queued)
            elif outcome is Outcome.RATE_LIMITED:
                log.warning("webhook %s (%s) rate-limits us (%s); slowing down, %d events "
                            "queued", self._config.name, self._host, why, self._queued)
            else:
                log.error("webhook %s (%s) failed (%s); retrying, %d events queued",
                          self._config.name, self._host, why, self._queued)
            self._failing = outcome
        else:
            log.debug("webhook %s (%s) failed again (%s)", self._config.name, self._host, why)
        return outcome

    def _quarantine_log(self, page: Page, why: str) -> None:
        ids = ", ".join(i.event_id for i in page.items[:5])
        log.error("webhook %s (%s) refused %d event(s) as invalid (%s); dropped: %s",
                  self._config.name, self._host, len(page.items), why, ids)

    async def _pace(self) -> None:
        """At most ``max_per_window`` messages per ``rate_window`` seconds."""
        if self._max_per_window is None:
            return
        while True:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self._rate_window:
                self._recent.popleft()
            if len(self._recent) < self._max_per_window:
                self._recent.append(now)
                return
            await asyncio.sleep(self._recent[0] + self._rate_window - now)

    async def _backoff(self, delay: float) -> None:
        """Sleep before retrying, cut short by shutdown."""
        if self._closing:
            await asyncio.sleep(min(delay, 0.2))
            return
        deadline = time.monotonic() + delay
        while not self._closing and (remaining := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _redact(self, text: str) -> str:
        """Never log the key, token, password, secret or signature, nor a long answer."""
        return log_excerpt(text, self._url, self._secret)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        """A send loop that dies is a bug; say so at once rather than at shutdown."""
        if not task.cancelled() and (error := task.exception()) is not None:
            log.critical("webhook %s task crashed; events now only queue up",
                         self._config.name, exc_info=error)
