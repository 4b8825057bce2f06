"""MqttNotifier against a real mosquitto: status and last will, event and alarm topics from
the store's outbox (which survives a broker restart), and operator commands."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.config import MqttConfig
from daemon.notify.mqtt import MqttNotifier
from daemon.store import AlarmStore
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from simulator.services import Mosquitto
from tests.services import MqttCollector, Received, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def _site() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"  # a fresh topic tree per test on the shared broker


def _event(kind: EventKind, alarm_id: str = "overcurrent:b12-main:L2", ts: float = 1.0,
           state: AlarmState = AlarmState.UNACKED, seq: int = 1) -> AlarmEvent:
    rule, device = alarm_id.split(":")[:2]
    alarm = Alarm(alarm_id=alarm_id, rule=rule, device=device, severity=Severity.CRITICAL,
                  state=state, channel="L2", value=80.0, limit=63.0, message="过流 80 A",
                  raised_at=1.0, changed_at=ts, context={"building": "12"}, seq=seq)
    return AlarmEvent(kind=kind, alarm=alarm, ts=ts, previous=AlarmState.NORMAL)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlarmStore]:
    with AlarmStore(tmp_path / "alarms.db", sinks=["mqtt"]) as opened:
        yield opened


def _publish(store: AlarmStore, notifier: MqttNotifier, *events: AlarmEvent) -> None:
    """What the daemon's AlarmDesk does: store first, then wake the notifier."""
    store.record(events)
    notifier.wake()


def _is(topic: str, payload: bytes | None = None,
        retain: bool | None = None) -> Callable[[Received], bool]:
    return lambda m: (m.topic == topic and (payload is None or m.payload == payload)
                      and (retain is None or m.retain == retain))


async def test_status_online_retained_then_offline(mosquitto: Mosquitto, store: AlarmStore) -> None:
    """``online`` is retained while connected; a clean shutdown leaves ``offline`` retained."""
    site = _site()
    status = f"firewarden/{site}/status"
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    async with MqttNotifier(config=config, site=site, outbox=store) as notifier:
        await eventually(lambda: notifier.connected, what="connected")
        async with MqttCollector(host=mosquitto.host, port=mosquitto.port,
                                 topics=[status]) as late:
            await late.wait_for(_is(status, b"online", retain=True))
        assert notifier.status_topic == status
    async with MqttCollector(host=mosquitto.host, port=mosquitto.port, topics=[status]) as after:
        await after.wait_for(_is(status, b"offline", retain=True))


async def test_last_will_on_hard_kill(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A notifier process killed with SIGKILL leaves ``offline`` via the broker's last will."""
    site = _site()
    status = f"firewarden/{site}/status"
    script = (
        "import asyncio\n"
        "from daemon.config import MqttConfig\n"
        "from pathlib import Path\n"
        "from daemon.notify.mqtt import MqttNotifier\n"
        "from daemon.store import AlarmStore\n"
        "async def main():\n"
        f"    config = MqttConfig(host={mosquitto.host!r}, port={mosquitto.port})\n"
        f"    store = AlarmStore(Path({str(tmp_path / 'a.db')!r}), sinks=['mqtt'])\n"
        "    store.open()\n"
        f"    async with MqttNotifier(config=config, site={site!r}, outbox=store):\n"
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


async def test_event_and_retained_alarm_then_removed(mosquitto: Mosquitto,
                                                     store: AlarmStore) -> None:
    """An event goes to ``events``; the alarm's state is retained until REMOVED clears it."""
    site = _site()
    base = f"firewarden/{site}"
    alarm_topic = f"{base}/alarms/overcurrent:b12-main:L2"
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    async with (
        MqttNotifier(config=config, site=site, outbox=store) as notifier,
        MqttCollector(host=mosquitto.host, port=mosquitto.port,
                      topics=[f"{base}/#"]) as live,
    ):
        _publish(store, notifier, _event(EventKind.RAISED))
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

        _publish(store, notifier, _event(EventKind.REMOVED, ts=2.0, state=AlarmState.NORMAL,
                                         seq=2))
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


async def test_unsafe_alarm_id_stays_one_topic_level(mosquitto: Mosquitto,
                                                     store: AlarmStore) -> None:
    """'/', '+' and '#' in an alarm id cannot add levels or wildcards to its topic."""
    site = _site()
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, topic_prefix="fw/test")
    async with (
        MqttNotifier(config=config, site=site, outbox=store) as notifier,
        MqttCollector(host=mosquitto.host, port=mosquitto.port,
                      topics=[f"fw/test/{site}/alarms/+"]) as collector,
    ):
        _publish(store, notifier, _event(EventKind.RAISED, alarm_id="smoke:b/12+#:1"))
        message = await collector.wait_for(lambda m: True)
    assert message.topic == f"fw/test/{site}/alarms/smoke:b_12__:1"
    assert json.loads(message.payload)["alarm_id"] == "smoke:b/12+#:1"


async def test_outbox_survives_broker_restart(
        mosquitto_factory: Callable[..., Mosquitto], store: AlarmStore) -> None:
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
    async with MqttNotifier(config=config, site=site, outbox=store, retry_initial=0.1,
                            retry_max=0.5) as notifier:
        await eventually(lambda: notifier.connected, what="connected")
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: not notifier.connected, what="disconnect noticed")
        for i in range(1, 4):
            _publish(store, notifier, _event(EventKind.RAISED, alarm_id=f"leakage:rcm-{i}:1",
                                          ts=float(i)))
        assert notifier.stats.queued == 3
        await asyncio.sleep(0.3)  # a few failed reconnects while the broker is down
        assert notifier.stats.queued == 3
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


async def test_commands_answer_on_the_result_topic(mosquitto: Mosquitto,
                                                  store: AlarmStore) -> None:
    """cmd/<verb> reaches the handler with its body; the answer goes to cmd/result; a
    handler that raises still answers."""
    site = _site()
    base = f"firewarden/{site}"
    seen: list[tuple[str, bytes]] = []

    def handler(verb: str, body: bytes) -> dict[str, object]:
        seen.append((verb, body))
        if verb == "reset":
            raise RuntimeError("boom")
        return {"ok": True, "verb": verb}

    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    async with (
        MqttNotifier(config=config, site=site, outbox=store, on_command=handler) as notifier,
        MqttCollector(host=mosquitto.host, port=mosquitto.port,
                      topics=[f"{base}/cmd/result"]) as results,
    ):
        await eventually(lambda: notifier.connected, what="connected")
        await asyncio.sleep(0.2)  # the notifier's subscription is in place
        async with MqttCollector(host=mosquitto.host, port=mosquitto.port) as sender:
            await sender.publish(f"{base}/cmd/ack", b'{"alarm_id": "x", "by": "li"}')
            await sender.publish(f"{base}/cmd/reset", b"{}")
        await results.wait_for(lambda m: len(results.messages) >= 2)
    answers = [json.loads(m.payload) for m in results.messages]
    assert answers[0] == {"ok": True, "verb": "ack"}
    assert answers[1]["ok"] is False
    assert "internal error: boom" in answers[1]["error"]
    assert seen == [("ack", b'{"alarm_id": "x", "by": "li"}'), ("reset", b"{}")]
    assert notifier.stats.commands == 2
