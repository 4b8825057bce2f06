"""MqttNotifier against a real mosquitto: status and last will, event and alarm topics, and
an outbox that survives a broker restart."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import MqttConfig
from daemon.notify.mqtt import MqttNotifier
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from simulator.services import Mosquitto
from tests.services import MqttCollector, Received, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def _site() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"  # a fresh topic tree per test on the shared broker


def _event(kind: EventKind, alarm_id: str = "overcurrent:b12-main:L2", ts: float = 1.0,
           state: AlarmState = AlarmState.UNACKED) -> AlarmEvent:
    rule, device = alarm_id.split(":")[:2]
    alarm = Alarm(alarm_id=alarm_id, rule=rule, device=device, severity=Severity.CRITICAL,
                  state=state, channel="L2", value=80.0, limit=63.0, message="过流 80 A",
                  raised_at=1.0, changed_at=ts, context={"building": "12"})
    return AlarmEvent(kind=kind, alarm=alarm, ts=ts, previous=AlarmState.NORMAL)


def _is(topic: str, payload: bytes | None = None,
        retain: bool | None = None) -> Callable[[Received], bool]:
    return lambda m: (m.topic == topic and (payload is None or m.payload == payload)
                      and (retain is None or m.retain == retain))


async def test_status_online_retained_then_offline(mosquitto: Mosquitto) -> None:
    """``online`` is retained while connected; a clean shutdown leaves ``offline`` retained."""
    site = _site()
    status = f"firewarden/{site}/status"
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    async with MqttNotifier(config=config, site=site) as notifier:
        await eventually(lambda: notifier.connected, what="connected")
        async with MqttCollector(host=mosquitto.host, port=mosquitto.port,
                                 topics=[status]) as late:
            await late.wait_for(_is(status, b"online", retain=True))
        assert notifier.status_topic == status
    async with MqttCollector(host=mosquitto.host, port=mosquitto.port, topics=[status]) as after:
        await after.wait_for(_is(status, b"offline", retain=True))


async def test_last_will_on_hard_kill(mosquitto: Mosquitto) -> None:
    """A notifier process killed with SIGKILL leaves ``offline`` via the broker's last will."""
    site = _site()
    status = f"firewarden/{site}/status"
    script = (
        "import asyncio\n"
        "from daemon.config import MqttConfig\n"
        "from daemon.notify.mqtt import MqttNotifier\n"
        "async def main():\n"
        f"    config = MqttConfig(host={mosquitto.host!r}, port={mosquitto.port})\n"
        f"    async with MqttNotifier(config=config, site={site!r}):\n"
        "        await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    async with MqttCollector(host=mosquitto.host, port=mosquitto.port,
                             topics=[status]) as collector:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
        try:
            await collector.wait_for(_is(status, b"online"), timeout=20)
            proc.kill()  # no DISCONNECT, no goodbye: only the will can tell
            await proc.wait()
            offline = await collector.wait_for(_is(status, b"offline"), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert offline.payload == b"offline"
    async with MqttCollector(host=mosquitto.host, port=mosquitto.port, topics=[status]) as late:
        await late.wait_for(_is(status, b"offline", retain=True))


async def test_event_and_retained_alarm_then_removed(mosquitto: Mosquitto) -> None:
    """An event goes to ``events``; the alarm's state is retained until REMOVED clears it."""
    site = _site()
    base = f"firewarden/{site}"
    alarm_topic = f"{base}/alarms/overcurrent:b12-main:L2"
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    async with (
        MqttNotifier(config=config, site=site) as notifier,
        MqttCollector(host=mosquitto.host, port=mosquitto.port,
                      topics=[f"{base}/#"]) as live,
    ):
        notifier.publish_event(_event(EventKind.RAISED))
        event = await live.wait_for(_is(f"{base}/events"))
        body = json.loads(event.payload)
        assert (body["event"], body["alarm_id"], body["building"]) == (
            "raised", "overcurrent:b12-main:L2", "12")
        assert not event.retain
        async with asyncio.timeout(10):
            await notifier.drain()
        async with MqttCollector(host=mosquitto.host, port=mosquitto.port,
                                 topics=[alarm_topic]) as late:
            retained = await late.wait_for(_is(alarm_topic, retain=True))
        state = json.loads(retained.payload)
        assert (state["state"], state["value"], state["message"]) == (
            "unacknowledged", 80.0, "过流 80 A")
        assert "event" not in state

        notifier.publish_event(_event(EventKind.REMOVED, ts=2.0, state=AlarmState.NORMAL))
        await live.wait_for(_is(alarm_topic, b""))
        async with asyncio.timeout(10):
            await notifier.drain()
        # Retained messages for the first subscription arrive before those of the second, so
        # once the retained status is here, a retained alarm would have been too.
        async with MqttCollector(host=mosquitto.host, port=mosquitto.port,
                                 topics=[alarm_topic, f"{base}/status"]) as after:
            await after.wait_for(_is(f"{base}/status", b"online", retain=True))
            assert after.on(alarm_topic) == []
    assert notifier.stats.published == 4


async def test_unsafe_alarm_id_stays_one_topic_level(mosquitto: Mosquitto) -> None:
    """'/', '+' and '#' in an alarm id cannot add levels or wildcards to its topic."""
    site = _site()
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, topic_prefix="fw/test")
    async with (
        MqttNotifier(config=config, site=site) as notifier,
        MqttCollector(host=mosquitto.host, port=mosquitto.port,
                      topics=[f"fw/test/{site}/alarms/+"]) as collector,
    ):
        notifier.publish_event(_event(EventKind.RAISED, alarm_id="smoke:b/12+#:1"))
        message = await collector.wait_for(lambda m: True)
    assert message.topic == f"fw/test/{site}/alarms/smoke:b_12__:1"
    assert json.loads(message.payload)["alarm_id"] == "smoke:b/12+#:1"


async def test_outbox_survives_broker_restart(
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    """Events accepted while the broker is down arrive, in order, after it comes back."""
    broker = mosquitto_factory(persistence=True)
    await asyncio.to_thread(broker.start)
    site = _site()
    base = f"firewarden/{site}"
    watcher_id = f"watcher-{site}"
    # A persistent session (saved by the broker across its restart) queues what we miss.
    async with MqttCollector(host=broker.host, port=broker.port, topics=[f"{base}/#"],
                             identifier=watcher_id, clean_session=False):
        pass
    config = MqttConfig(host=broker.host, port=broker.port)
    async with MqttNotifier(config=config, site=site, retry_initial=0.1,
                            retry_max=0.5) as notifier:
        await eventually(lambda: notifier.connected, what="connected")
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: not notifier.connected, what="disconnect noticed")
        for i in range(1, 4):
            notifier.publish_event(_event(EventKind.RAISED, alarm_id=f"leakage:rcm-{i}:1",
                                          ts=float(i)))
        assert notifier.stats.queued == 6
        await asyncio.sleep(0.3)  # a few failed reconnects while the broker is down
        assert notifier.stats.queued == 6
        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(20):
            await notifier.drain()
        assert notifier.stats.connects == 2
    async with MqttCollector(host=broker.host, port=broker.port, topics=[f"{base}/#"],
                             identifier=watcher_id, clean_session=False) as collector:
        await collector.wait_for(lambda m: m.topic == f"{base}/alarms/leakage:rcm-3:1")
        await collector.wait_for(lambda m: len(collector.on(f"{base}/events")) >= 3)
    events = [json.loads(m.payload) for m in collector.on(f"{base}/events")]
    assert [e["alarm_id"] for e in events] == [f"leakage:rcm-{i}:1" for i in range(1, 4)]
