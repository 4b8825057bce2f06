"""The scheduled morning report through real HTTP servers playing a WeCom and a DingTalk robot:
queued once at 08:00 local time on the daemon's clock, WeCom gets the markdown and the chart
as an image message (base64 + md5), DingTalk the markdown saying the chart cannot be embedded;
a restart does not send it again."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.config import validate_config
from daemon.notify.webhook import WebhookNotifier
from daemon.report_io import ReportScheduler
from daemon.store import AlarmStore
from rules.alarm import transition
from rules.model import Alarm, Condition, Severity
from rules.policy import BY_SEVERITY
from simulator.services import free_port
from tests.integration.test_webhook import FakeReceiver
from tests.services import eventually

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")


async def test_scheduled_report_through_wecom_and_dingtalk(tmp_path: Path) -> None:
    """At 08:00:30 local the report is queued for both robots and delivered; checking again,
    or after a restart, queues nothing."""
    now = datetime(2024, 11, 14, 8, 0, 30, tzinfo=SH).timestamp()
    async with FakeReceiver(free_port()) as robots:
        hook = f"http://127.0.0.1:{robots.port}"
        loaded = validate_config({
            "site": {"id": "jp", "name": "江畔人家", "timezone": "Asia/Shanghai"},
            "daemon": {"state_dir": str(tmp_path)},
            "influxdb": {"url": f"http://127.0.0.1:{free_port()}"},
            "webhook": [{"name": "wecom", "format": "wecom", "url": f"{hook}/wecom?key=k"},
                        {"name": "ding", "format": "dingtalk",
                         "url": f"{hook}/ding?access_token=t"}],
            "report": {"at": "08:00", "notify": ["wecom", "ding"], "language": "zh"},
        }, tmp_path / "fw.toml")
        config = loaded.config
        sinks = [w.sink for w in config.webhooks]
        with AlarmStore(tmp_path / "alarms.db", sinks=sinks) as store:
            a = Alarm(alarm_id="lamp-out:b12-lights:1", rule="lamp-out", device="b12-lights",
                      channel="1", severity=Severity.WARNING,
                      context={"building": "12", "area": "north path"})
            t = now - 5 * 3600
            a, events = transition(a, Condition("lamp-out", "b12-lights", True,
                                                Severity.WARNING, t, channel="1"), t,
                                   BY_SEVERITY[Severity.WARNING])
            store.record(events)
            for sink in sinks:  # the raise itself was paged long ago
                store.delivered(sink, [i.seq for i in store.pending(sink)])
            hooks = WebhookNotifier.from_config(config, outbox=store)
            async with hooks[0] as wecom, hooks[1] as ding:
                def wake() -> None:
                    wecom.wake()
                    ding.wake()

                scheduler = ReportScheduler(config=config, store=store, wake=wake,
                                            clock=lambda: now)
                assert await scheduler.check()
                assert not await scheduler.check()
                await eventually(lambda: len(robots.requests) >= 3, what="report delivered")
                async with asyncio.timeout(5):
                    await wecom.drain()
                    await ding.drain()
            again = ReportScheduler(config=config, store=store, wake=lambda: None,
                                    clock=lambda: now + 600)
            assert not await again.check()
    wecom_in = [r for r in robots.requests if r.path == "/wecom"]
    ding_in = [r for r in robots.requests if r.path == "/ding"]
    markdown, image = wecom_in
    assert markdown.body["msgtype"] == "markdown"
    content = markdown.body["markdown"]["content"]
    assert "江畔人家 晨报 2024-11-14" in content
    assert "1. 楼栋 12 north path · b12-lights 1" in content
    assert "InfluxDB unavailable" in content
    assert image.body["msgtype"] == "image"
    png = base64.b64decode(image.body["image"]["base64"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.body["image"]["md5"] == hashlib.md5(png).hexdigest()
    (ding_page,) = ding_in
    assert ding_page.body["markdown"]["title"] == "江畔人家 晨报 2024-11-14"
    assert "钉钉 markdown 不能内嵌图片" in ding_page.body["markdown"]["text"]
