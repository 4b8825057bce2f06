"""The MQTT broker stopped and started again while a fire panel keeps reporting: every alarm
event the daemon accepted arrives (event ids at least once, each alarm's events in order) and
the retained status goes online -> offline -> online without anyone restarting the daemon.

The witness is a persistent MQTT session (clean_session=False) on a broker with persistence:
what is published while the watcher reconnects is queued for it, and mosquitto sends the
daemon's last will ("offline") when it shuts down. The expected events are the ones the daemon
itself logged as accepted (``alarm <id> <kind>:``), in order; their ids are ``<alarm_id>#<n>``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from simulator.services import InfluxDB, Mosquitto, free_port
from tests.faults.harness import Daemon, events, fire_alarm, logged_events, send_fire, write_config
from tests.services import MqttCollector, Received, eventually

pytestmark = pytest.mark.faults
SITE = "mqtt-restart"
BASE = f"firewarden/{SITE}"
WATCHER = {"identifier": "fault-watcher", "clean_session": False}


async def test_broker_restart_while_alarms_fire(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb: InfluxDB) -> None:
    broker = mosquitto_factory(persistence=True)
    await asyncio.to_thread(broker.start)
    panel = free_port()
    conf = write_config(tmp_path, {
        "site": {"id": SITE},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "influxdb": {"url": influxdb.url, "database": "mqttrestart", "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 5},
        "fire_panel": [{"name": "b7-panel", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel, "building": "7"}],
        "alarms": {"flood_count": 1000},  # every fire is its own page here
    })
    received: list[Received] = []
    acked: list[tuple[int, bool]] = []  # (zone, fire) frames the daemon ACKed

    async def panel_reports() -> None:
        """A fire in a new zone, then its end, every 0.25 s, until cancelled."""
        i = 0
        while True:
            zone, fire = i // 2 + 1, i % 2 == 0
            await send_fire(panel, i + 1, zone, fire=fire)
            acked.append((zone, fire))
            i += 1
            await asyncio.sleep(0.25)

    daemon = Daemon(conf, tmp_path)
    reports: asyncio.Task[None] | None = None
    try:
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"],
                                 **WATCHER):  # type: ignore[arg-type]
            pass  # the persistent session exists from now on
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"],
                                 **WATCHER) as before:  # type: ignore[arg-type]
            await daemon.start()
            await before.wait_for(lambda m: m.topic == f"{BASE}/status"
                                  and m.payload == b"online")
            reports = asyncio.create_task(panel_reports())
            await eventually(lambda: len(acked) >= 8, within=15, what="8 panel reports")
            await asyncio.to_thread(broker.stop)
            received += before.messages
        during = len(acked)
        await asyncio.sleep(4)  # the panel goes on reporting, the daemon ACKs and stores
        assert len(acked) >= during + 8, "the panel link stalled while MQTT was down"
        await asyncio.to_thread(broker.start)
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"],
                                 **WATCHER) as after:  # type: ignore[arg-type]
            await asyncio.sleep(3)  # and more reports while the daemon reconnects
            reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reports
            await asyncio.sleep(0.5)
            expected = _expected(daemon.lines)

            def arrived() -> bool:
                got = {e["event_id"] for e in events(received + after.messages, BASE)}
                return set(expected) <= got

            await eventually(arrived, within=30, what="every accepted event on MQTT")
            received += after.messages
        assert await daemon.stop() == 0, daemon.tail()
    finally:
        if reports is not None:
            reports.cancel()
        daemon.ensure_dead()

    # every fire the panel reported (and we saw ACKed) was accepted as an alarm event
    raised = {a for a, kind in logged_events(daemon.lines) if kind == "raised"}
    assert raised >= {fire_alarm("b7-panel", z) for z, fire in acked if fire}
    got = events(received, BASE)
    ids = [e["event_id"] for e in got]
    assert set(ids) >= set(expected)
    # each alarm's events arrive in order (a redelivery may repeat one, never reorder)
    for alarm_id in {a for a, _ in expected.values()}:
        mine = [e["event"] for e in got if e["alarm_id"] == alarm_id]
        deduped = [k for i, k in enumerate(mine) if i == 0 or k != mine[i - 1]]
        assert deduped == [k for a, k in expected.values() if a == alarm_id], alarm_id
    statuses = [m.payload for m in received if m.topic == f"{BASE}/status"]
    assert b"offline" in statuses, statuses
    first_offline = statuses.index(b"offline")
    assert statuses[0] == b"online"
    assert b"online" in statuses[first_offline:], statuses
    assert not daemon.grep("Traceback")
    duplicates = len(ids) - len(set(ids))
    print(f"\n{len(acked)} panel reports, {len(expected)} alarm events, all on MQTT "
          f"({duplicates} redelivered); status {[s.decode() for s in statuses]}")


def _expected(lines: list[str]) -> dict[str, tuple[str, str]]:
    """event_id -> (alarm_id, kind) of every event the daemon logged, numbered per alarm."""
    out: dict[str, tuple[str, str]] = {}
    seq: dict[str, int] = {}
    for alarm_id, kind in logged_events(lines):
        seq[alarm_id] = seq.get(alarm_id, 0) + 1
        out[f"{alarm_id}#{seq[alarm_id]}"] = (alarm_id, kind)
    return out
