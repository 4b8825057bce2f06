"""Webhook formatting and the pure rules around a send: which events page (``wanted``),
how they group into pages (``plan``: fire first, flood digests), the JSON bodies for
generic JSON, WeCom and DingTalk robots (``messages``), DingTalk signing, what an HTTP
answer means (``classify``) and how the logs may name an endpoint or quote an answer
(``redact_url``, ``redact``, ``log_excerpt``). No I/O: daemon/notify/webhook.py sends.

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

import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from daemon.config import WebhookConfig
from daemon.store import OutboxItem

SEVERITY_RANK = {"fire": 0, "critical": 1, "warning": 2, "info": 3}
MENTION_SEVERITIES = frozenset({"fire", "critical"})
WECOM_MARKDOWN_MAX = 4096  # bytes, UTF-8
WECOM_TEXT_MAX = 2048  # bytes, UTF-8
DINGTALK_TEXT_MAX = 4096  # bytes: conservative, see the module docstring
DIGEST_TOP = 5
TRUNCATED = "\n…(已截断)"

WECOM_RATE_LIMITED = frozenset({45009})
DINGTALK_RATE_LIMITED = frozenset({130101})
BAD_CREDENTIALS = frozenset({93000, 310000, 300001, 300005})
BAD_PAYLOAD = frozenset({40058, 44004, 40035, 460101})
_ENDPOINT_STATUS = frozenset({401, 403, 404, 410})  # about the URL or key, not this payload

# rows the daemon composes for one webhook by name: never filtered by ``events``
DIRECT = frozenset({"escalated", "escalation_ended", "report"})
_ENDED_LABEL = {"acknowledged": "已确认", "cleared": "已自行恢复(无人确认)", "shelved": "已搁置",
                "out_of_service": "已停用"}

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
    if payload.get("event") in DIRECT:
        return True  # composed for this webhook by name (escalation tiers, [report].notify)
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
    if page.items[0].payload.get("event") == "report":
        return report_messages(page.items[0].payload, style)
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
    if event == "escalation_ended":
        return _ended_markdown(payload, style, label, what)
    head = _EVENT_LABEL.get(event, event)
    if event == "escalated":
        head = f"升级 第 {payload.get('tier')} 级 ({payload.get('tier_name')})"
    lines = [f"### {label} {head}: {what}",
             f"> 站点: {style.site}",
             f"> 位置: {place(payload)}"]
    if event == "escalated":
        waited = _minutes(payload.get("waited"))
        before = "、".join(str(t) for t in payload.get("previous_tiers") or ())
        note = f"> 已 {waited} 分钟无人确认" + (f" (已通知: {before})" if before else "")
        if payload.get("off_hours"):
            note += " · 非工作时间"
        lines.append(note)
    value, limit = payload.get("value"), payload.get("limit")
    if value is not None or limit is not None:
        lines.append(f"> 测量值: {_number(value)} / 限值: {_number(limit)}")
    lines.append(f"> 时间: {local_time(payload.get('ts'), style.timezone)}")
    lines.append(f"> 规则: {payload.get('rule', '')} · 事件: {payload.get('event_id', '')}")
    if payload.get("state") in _UNACKED:
        lines.append("")
        lines.append(ack_hint(str(payload.get("alarm_id", "")), style, color=color))
    return "\n".join(lines)


def _minutes(value: object) -> str:
    return f"{float(value) / 60:.0f}" if isinstance(value, int | float) else "?"


def _ended_markdown(payload: Mapping[str, Any], style: Style, label: str, what: str) -> str:
    """The tiers already paged are told the chain ended: who, after how long."""
    reason = str(payload.get("reason", ""))
    by = f" 由 {payload['by']}" if payload.get("by") else ""
    tiers = "、".join(str(t) for t in payload.get("tiers") or ())
    return "\n".join([
        f"### {label} {_ENDED_LABEL.get(reason, reason)}: {what}",
        f"> {by.strip() + ' ' if by else ''}{_ENDED_LABEL.get(reason, reason)} "
        f"(告警 {_minutes(payload.get('after'))} 分钟后)，升级结束",
        f"> 已通知: {tiers}",
        f"> 位置: {place(payload)}",
        f"> 时间: {local_time(payload.get('ts'), style.timezone)}",
        f"> 告警: {payload.get('alarm_id', '')}"])


def report_messages(payload: Mapping[str, Any], style: Style) -> list[dict[str, Any]]:
    """The morning report: WeCom markdown plus the chart as an image message (base64 + md5);
    DingTalk markdown (it cannot embed a base64 image: the text says so); JSON: the report
    model and the chart."""
    markdown = str(payload.get("markdown", ""))
    title = str(payload.get("title", "report"))
    png = payload.get("png")
    zh = payload.get("language", "zh") == "zh"
    if style.format == "wecom":
        out: list[dict[str, Any]] = [{"msgtype": "markdown", "markdown": {
            "content": truncate_utf8(markdown, WECOM_MARKDOWN_MAX)}}]
        if isinstance(png, str) and png:
            raw = base64.b64decode(png)
            out.append({"msgtype": "image", "image": {
                "base64": png, "md5": hashlib.md5(raw).hexdigest()}})
        return out
    if style.format == "dingtalk":
        if png:
            markdown += ("\n\n(图表未附: 钉钉 markdown 不能内嵌图片; 用 `firewarden report "
                         "--format html` 查看)" if zh else "\n\n(chart not attached: DingTalk "
                         "markdown cannot embed images; see `firewarden report --format html`)")
        return [{"msgtype": "markdown",
                 "markdown": {"title": truncate_utf8(title, 128, marker="…"),
                              "text": truncate_utf8(markdown, DINGTALK_TEXT_MAX)},
                 "at": {"atMobiles": [], "isAtAll": False}}]
    return [{"site": style.site, "report": payload.get("report"),
             "chart_png_base64": png or None}]


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
