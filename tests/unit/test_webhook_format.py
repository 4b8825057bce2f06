"""Webhook formatting (pure): generic JSON, WeCom and DingTalk robot bodies, mentions, flood
digests, size limits, the DingTalk signature, filtering, planning and answer classification."""

from __future__ import annotations

import base64
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from daemon.config import WebhookConfig
from daemon.notify.webhook import (
    WECOM_MARKDOWN_MAX,
    WECOM_TEXT_MAX,
    Outcome,
    Page,
    Style,
    classify,
    dingtalk_sign,
    local_time,
    messages,
    plan,
    redact,
    signed_url,
    truncate_utf8,
    wanted,
)
from daemon.store import OutboxItem
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity

TS = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC = 2023-11-15 06:13:20 Asia/Shanghai
MOBILE = "13800001111"


def item(seq: int = 1, *, rule: str = "leakage", device: str = "rcm-1",
         severity: Severity = Severity.CRITICAL, kind: EventKind = EventKind.RAISED,
         state: AlarmState = AlarmState.UNACKED, ts: float = TS, flood: bool = False,
         message: str = "剩余电流 350 mA 超过 300 mA", value: float | None = 350.0,
         limit: float | None = 300.0) -> OutboxItem:
    """An outbox row exactly as the store keeps it (``AlarmEvent.as_dict()`` via JSON)."""
    alarm = Alarm(alarm_id=f"{rule}:{device}:{seq}", rule=rule, device=device,
                  severity=severity, state=state, channel=str(seq), value=value, limit=limit,
                  message=message, raised_at=ts, changed_at=ts, seq=1,
                  context={"building": "12", "floor": "3", "box": "1", "circuit": "sockets",
                           "kind": "sockets"})
    event = AlarmEvent(kind=kind, alarm=alarm, ts=ts, previous=AlarmState.NORMAL, flood=flood)
    payload = json.loads(json.dumps(event.as_dict(), ensure_ascii=False))
    return OutboxItem(seq=seq, event_id=event.event_id, payload=payload)


def style(fmt: str = "wecom", *, mention: tuple[str, ...] = (MOBILE,),
          timezone: str | None = "Asia/Shanghai") -> Style:
    return Style(format=fmt, site="jiangpan", timezone=timezone, mention=mention)


def one(*items: OutboxItem) -> Page:
    return Page(tuple(items))


def test_json_body_is_site_and_the_stored_event() -> None:
    """Generic JSON: ``{"site", "event"}`` with the outbox payload untouched."""
    row = item()
    (body,) = messages(one(row), style("json"))
    assert body == {"site": "jiangpan", "event": row.payload}
    assert body["event"]["event_id"] == "leakage:rcm-1:1#1"


def test_json_digest_carries_every_event() -> None:
    """A generic-JSON flood digest summarises and still carries each event in full."""
    rows = [item(i, rule="comms" if i % 2 else "leakage", ts=TS + i, flood=True)
            for i in range(1, 6)]
    (body,) = messages(Page(tuple(rows)), style("json"))
    assert body["digest"] == {"count": 5, "by_rule": {"comms": 3, "leakage": 2},
                              "since": TS + 1, "until": TS + 5}
    assert body["events"] == [r.payload for r in rows]


def test_wecom_markdown_says_what_where_how_much_when_and_how_to_ack() -> None:
    """WeCom markdown: coloured severity, location, message, value/limit, local time,
    event id and the acknowledge commands."""
    bodies = messages(one(item(severity=Severity.WARNING)), style())
    assert len(bodies) == 1  # warning: nobody is @-ed
    assert bodies[0]["msgtype"] == "markdown"
    content = bodies[0]["markdown"]["content"]
    assert '<font color="warning">警告</font>' in content
    assert "楼栋 12 · 楼层 3 · 配电箱 1 · 回路 sockets · 设备 rcm-1 (1)" in content
    assert "剩余电流 350 mA 超过 300 mA" in content
    assert "测量值: 350 / 限值: 300" in content
    assert "2023-11-15 06:13:20 (UTC+0800)" in content
    assert "leakage:rcm-1:1#1" in content
    assert ("mosquitto_pub -t firewarden/jiangpan/cmd/ack -m "
            '\'{"alarm_id": "leakage:rcm-1:1", "by": "NAME", "ts": \'$(date +%s)\'}\'') in content
    assert "firewarden alarms -c CONFIG ack leakage:rcm-1:1" in content


def test_no_ack_hint_once_acknowledged() -> None:
    """An acknowledged alarm's event does not ask anyone to acknowledge it."""
    (body,) = messages(one(item(kind=EventKind.ACKED, state=AlarmState.ACKED)),
                       style(mention=()))
    assert "mosquitto_pub" not in body["markdown"]["content"]


def test_wecom_mentions_by_mobile_in_a_second_text_message() -> None:
    """Fire/critical with ``mention``: markdown cannot @ by mobile, so a text message does."""
    markdown, text = messages(one(item(severity=Severity.CRITICAL)), style())
    assert markdown["msgtype"] == "markdown"
    assert text["msgtype"] == "text"
    assert text["text"]["mentioned_mobile_list"] == [MOBILE]
    assert "剩余电流" in text["text"]["content"]
    assert len(text["text"]["content"].encode()) <= WECOM_TEXT_MAX


def test_wecom_no_mention_configured_means_one_message() -> None:
    """Without ``mention`` even a fire is a single markdown message."""
    assert len(messages(one(item(severity=Severity.FIRE)), style(mention=()))) == 1


def test_dingtalk_markdown_at_mobiles_in_both_places() -> None:
    """DingTalk: title + markdown text; the mobiles in ``at.atMobiles`` and as @mobile in
    the text."""
    (body,) = messages(one(item(severity=Severity.FIRE, rule="smoke", message="3 层烟感报警")),
                       style("dingtalk"))
    assert body["msgtype"] == "markdown"
    assert body["at"] == {"atMobiles": [MOBILE], "isAtAll": False}
    assert body["markdown"]["text"].endswith(f"@{MOBILE}")
    assert "3 层烟感报警" in body["markdown"]["title"]
    assert "<font" not in body["markdown"]["text"]
    assert "🔥 火警" in body["markdown"]["text"]


def test_dingtalk_warning_mentions_nobody() -> None:
    """Below critical nobody is @-ed: empty atMobiles and no @ in the text."""
    (body,) = messages(one(item(severity=Severity.WARNING)), style("dingtalk"))
    assert body["at"] == {"atMobiles": [], "isAtAll": False}
    assert f"@{MOBILE}" not in body["markdown"]["text"]


def test_time_is_utc_iso_without_a_site_zone() -> None:
    """No site time zone: the time is UTC ISO 8601."""
    assert local_time(TS, None) == "2023-11-14T22:13:20Z"
    (body,) = messages(one(item(severity=Severity.WARNING)), style(timezone=None))
    assert "2023-11-14T22:13:20Z" in body["markdown"]["content"]


def test_dingtalk_signature_known_vector() -> None:
    """The sign matches a vector made with ``openssl dgst -sha256 -hmac`` and an independent
    HMAC here, both from the documented algorithm."""
    # printf '1700000000000\nSECtest' | openssl dgst -sha256 -hmac SECtest -binary | base64
    assert dingtalk_sign("SECtest", 1_700_000_000_000) == (
        "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g=")
    secret, ts = "SEC0123456789abcdef", 1_712_345_678_901
    expected = base64.standard_b64encode(
        hmac.digest(secret.encode("utf-8"), f"{ts}\n{secret}".encode(), "sha256"))
    assert dingtalk_sign(secret, ts) == expected.decode("ascii")


def test_signed_url_appends_timestamp_and_url_encoded_sign() -> None:
    """``&timestamp=...&sign=...`` after the access_token; the sign decodes back exactly."""
    url = signed_url("https://oapi.dingtalk.com/robot/send?access_token=T0K", "SECtest",
                     1_700_000_000_000)
    parts = urlsplit(url)
    assert parts.query.startswith("access_token=T0K&timestamp=1700000000000&sign=")
    assert "+" not in parts.query
    assert "/" not in parts.query.split("sign=")[1]
    assert parse_qs(parts.query)["sign"] == ["aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g="]
    assert signed_url("http://h/robot", "s", 1).startswith("http://h/robot?timestamp=1&sign=")


def test_truncate_utf8_never_splits_a_character() -> None:
    """Chinese text is cut on a character boundary, within the byte limit, marked."""
    text = "电" * 2000  # 6000 bytes
    cut = truncate_utf8(text, 4096)
    assert len(cut.encode()) <= 4096
    assert cut.endswith("(已截断)")
    assert cut.rstrip("\n…(已截断)").strip("电") == ""
    assert truncate_utf8("短", 10) == "短"


def test_long_messages_stay_within_robot_limits() -> None:
    """A huge message still fits WeCom's 4096-byte markdown and 2048-byte text, and
    DingTalk keeps the @mobile after truncation."""
    huge = item(message="漏电" * 3000)
    markdown, text = messages(one(huge), style())
    assert len(markdown["markdown"]["content"].encode()) <= WECOM_MARKDOWN_MAX
    assert len(text["text"]["content"].encode()) <= WECOM_TEXT_MAX
    (ding,) = messages(one(huge), style("dingtalk"))
    assert len(ding["markdown"]["text"].encode()) <= 4096
    assert ding["markdown"]["text"].endswith(f"@{MOBILE}")


def test_digest_text_counts_per_rule_and_lists_the_top_five() -> None:
    """23 flood rows: one message with the count, the span, per-rule counts and 5 listed,
    the most severe first."""
    rows = [item(i, rule="comms", severity=Severity.WARNING, ts=TS + 20 * i, flood=True,
                 message=f"通信中断 {i}") for i in range(1, 16)]
    rows += [item(i, rule="leakage-prealarm", severity=Severity.WARNING, ts=TS + 20 * i,
                  flood=True, message=f"漏电预警 {i}") for i in range(16, 23)]
    rows.append(item(23, rule="overcurrent", severity=Severity.CRITICAL, ts=TS + 500,
                     flood=True, message="过流 80 A"))
    (page,) = plan(rows)
    assert page.digest
    assert len(page.items) == 23
    markdown, text = messages(page, style())  # one critical inside: mention
    content = markdown["markdown"]["content"]
    assert '最近 8 分钟 <font color="warning">23 条告警</font>' in content
    assert "comms 15，leakage-prealarm 7，overcurrent 1" in content
    assert "前 5 条:" in content
    listed = [line for line in content.splitlines() if line.startswith("- [")]
    assert len(listed) == 5
    assert "过流 80 A" in listed[0]
    assert "通信中断 1 " in listed[1]
    assert text["text"]["mentioned_mobile_list"] == [MOBILE]
    (ding,) = messages(page, style("dingtalk"))
    assert "23 条告警" in ding["markdown"]["title"]


def test_plan_fire_first_never_digested_flood_rows_become_one_page() -> None:
    """Fire goes first and alone; flood rows become one digest where the first stood;
    other rows keep their order."""
    a = item(1, severity=Severity.WARNING)
    b, c, d = (item(i, severity=Severity.WARNING, flood=True) for i in (2, 3, 4))
    e = item(5, severity=Severity.CRITICAL)
    fire = item(6, severity=Severity.FIRE, flood=True)
    pages = plan([a, b, c, e, d, fire])
    assert [p.seqs for p in pages] == [(6,), (1,), (2, 3, 4), (5,)]
    assert [p.digest for p in pages] == [False, False, True, False]


def test_plan_single_flood_row_is_an_ordinary_page() -> None:
    """One flood row alone is not a digest."""
    assert [p.digest for p in plan([item(1, flood=True), item(2)])] == [False, False]


@pytest.mark.parametrize(("kind", "severity", "expected"), [
    (EventKind.RAISED, Severity.FIRE, True),
    (EventKind.RAISED, Severity.CRITICAL, True),
    (EventKind.RAISED, Severity.WARNING, True),
    (EventKind.RAISED, Severity.INFO, False),  # below min_severity = warning
    (EventKind.REALARM, Severity.WARNING, True),
    (EventKind.CHATTERING, Severity.CRITICAL, True),
    (EventKind.CLEARED, Severity.FIRE, False),  # not in events
    (EventKind.ACKED, Severity.CRITICAL, False),
])
def test_wanted_by_kind_and_severity(kind: EventKind, severity: Severity,
                                     expected: bool) -> None:
    """Defaults page raised/realarm/chattering at warning and above."""
    config = WebhookConfig(name="ops", url="http://h/")
    assert wanted(item(kind=kind, severity=severity).payload, config) is expected


def test_wanted_respects_min_severity_and_events() -> None:
    """``min_severity = "critical"`` and ``events = ["cleared"]`` are honoured."""
    config = WebhookConfig(name="ops", url="http://h/", min_severity="critical",
                           events=("cleared",))
    assert wanted(item(kind=EventKind.CLEARED, severity=Severity.FIRE).payload, config)
    assert not wanted(item(kind=EventKind.CLEARED, severity=Severity.WARNING).payload, config)
    assert not wanted(item(kind=EventKind.RAISED, severity=Severity.FIRE).payload, config)


def _answer(errcode: int, errmsg: str = "") -> str:
    return json.dumps({"errcode": errcode, "errmsg": errmsg})


@pytest.mark.parametrize(("status", "body", "robot", "expected"), [
    (200, _answer(0, "ok"), True, Outcome.OK),
    (204, "", False, Outcome.OK),
    (200, "<html>", True, Outcome.OK),  # no errcode: HTTP decides
    (200, _answer(45009, "api freq out of limit"), True, Outcome.RATE_LIMITED),
    (200, _answer(130101, "send too fast"), True, Outcome.RATE_LIMITED),
    (200, _answer(93000, "invalid webhook url"), True, Outcome.BAD_CREDENTIALS),
    (200, _answer(310000, "sign not match"), True, Outcome.BAD_CREDENTIALS),
    (200, _answer(300001, "token is not exist"), True, Outcome.BAD_CREDENTIALS),
    (200, _answer(44004, "empty content"), True, Outcome.REJECTED),
    (200, _answer(-1, "system busy"), True, Outcome.RETRY),
    (200, _answer(12345, "unknown"), True, Outcome.RETRY),
    (200, _answer(45009), False, Outcome.OK),  # generic JSON: errcode means nothing
    (302, "", True, Outcome.RATE_LIMITED),  # DingTalk's throttle
    (429, "", False, Outcome.RATE_LIMITED),
    (500, "", False, Outcome.RETRY),
    (503, "", True, Outcome.RETRY),
    (408, "", False, Outcome.RETRY),
    (401, "", False, Outcome.BAD_CREDENTIALS),
    (404, "", False, Outcome.BAD_CREDENTIALS),
    (400, "bad json", False, Outcome.REJECTED),
    (413, "", False, Outcome.REJECTED),
    (422, "", False, Outcome.REJECTED),
])
def test_classify(status: int, body: str, robot: bool, expected: Outcome) -> None:
    """How each documented answer is treated."""
    assert classify(status, body, robot=robot)[0] is expected


def test_redact_hides_key_token_sign_and_secret() -> None:
    """Log text keeps the host, never the key, token, signature or secret."""
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"
    text = redact(f"Cannot connect {url}&timestamp=1&sign=abc%2B SECxyz", url, "SECxyz")
    assert "qyapi.weixin.qq.com" in text
    for secret in ("693a91f6", "abc%2B", "SECxyz", "timestamp=1"):
        assert secret not in text
    assert redact("x?access_token=abc&y=1", "http://h/", None) == "x?access_token=***&y=1"
