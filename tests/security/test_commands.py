"""Operator commands that must not act: retained, stale, replayed or oversized ones, against
the daemon as a process (``firewarden run``) with a real mosquitto and InfluxDB.

- A ``cmd/out-of-service`` left retained on the broker while the daemon was down is not
  applied when it starts (a later fire from that detector still raises an event) and is
  deleted from the broker.
- A retained ``cmd/ack`` is not applied when the broker restarts (with persistence) and hands
  it over again: the new fire stays unacknowledged.
- A command with an old ``ts``, and the same command sent again (its ``id``), are refused
  with the reason on ``cmd/result``, logged (rate-limited) and counted in the daemon's
  self-metrics (``firewarden`` measurement, ``commands_refused``).
- A 1 MB command gets a short refusal that quotes none of it.

The retained commands here carry no ``ts``, as the daemon used to accept them: what refuses
them is the retain flag (``"refused": "retained"``), whatever the body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.services import InfluxDB, Mosquitto, free_port
from tests.faults.harness import (
    Daemon,
    fire_alarm,
    is_event,
    payload,
    query,
    send_fire,
    stored_alarms,
    write_config,
)
from tests.services import MqttCollector, Received, eventually

pytestmark = pytest.mark.system

ALARM = fire_alarm("b7-panel", 1)  # zone 1 of the panel


def _config(tmp: Path, site: str, broker: Mosquitto, influx: InfluxDB, panel: int) -> Path:
    return write_config(tmp, {
        "site": {"id": site},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": "security", "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 5},
        "fire_panel": [{"name": "b7-panel", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel, "building": "7"}],
    })


def _result(base: str, refused: str) -> Callable[[Received], bool]:
    return lambda m: (m.topic == f"{base}/cmd/result" and bool(m.payload)
                      and payload(m).get("refused") == refused)


def _fresh(**body: object) -> bytes:
    return json.dumps({**body, "ts": time.time()}).encode()


async def _retained(broker: Mosquitto, topic: str) -> list[bytes]:
    """What a new subscriber to ``topic`` is handed as retained."""
    async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[topic]) as probe:
        await asyncio.sleep(1.0)  # retained messages come at once on subscribe
        return [m.payload for m in probe.messages if m.retain and m.payload]


async def test_retained_out_of_service_is_not_applied_at_start(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb: InfluxDB) -> None:
    broker = mosquitto_factory()
    await asyncio.to_thread(broker.start)
    site, panel = "sec-oos", free_port()
    base = f"firewarden/{site}"
    daemon = Daemon(_config(tmp_path, site, broker, influxdb, panel), tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=broker.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            await send_fire(panel, 1, 1)
            await mqtt.wait_for(is_event(base, ALARM, "raised"))
            await send_fire(panel, 2, 1, fire=False)
            await mqtt.wait_for(is_event(base, ALARM, "latched"))
            assert await daemon.stop() == 0
            # while the daemon is down, someone leaves a command retained on the broker
            await mqtt.publish(f"{base}/cmd/out-of-service", json.dumps(
                {"alarm_id": ALARM, "by": "ghost", "id": "oos-1"}).encode(), retain=True)
            await daemon.start()
            refusal = await mqtt.wait_for(_result(base, "retained"), timeout=20)
            assert payload(refusal)["ok"] is False
            assert "retained" in str(payload(refusal)["error"])
            # the detector fires again: that is an alarm, not silence
            await send_fire(panel, 3, 1)
            raised = [m for m in mqtt.messages if is_event(base, ALARM, "raised")(m)]
            await eventually(lambda: len([m for m in mqtt.messages
                                          if is_event(base, ALARM, "raised")(m)]) > len(raised),
                             what="a new raised event after the restart")
            assert not [m for m in mqtt.messages if is_event(base, ALARM, "out_of_service")(m)]
        assert await _retained(broker, f"{base}/cmd/out-of-service") == []
        assert not stored_alarms(tmp_path / "state" / "alarms.db")[ALARM]["out_of_service"]
        assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()
    assert not daemon.grep("Traceback")


async def test_retained_ack_is_not_applied_after_a_broker_restart(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb: InfluxDB) -> None:
    broker = mosquitto_factory(persistence=True)
    await asyncio.to_thread(broker.start)
    site, panel = "sec-ack", free_port()
    base = f"firewarden/{site}"
    # a persistent session: what the daemon answers while we reconnect is kept for us
    watcher: dict[str, Any] = {"identifier": "sec-ack-watcher", "clean_session": False}
    daemon = Daemon(_config(tmp_path, site, broker, influxdb, panel), tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{base}/#"],
                                 **watcher) as before:
            await daemon.start()
            await before.wait_for(lambda m: m.topic == f"{base}/status"
                                  and m.payload == b"online")
            await asyncio.sleep(0.5)  # the daemon's cmd/+ subscription is in place
            await before.publish(f"{base}/cmd/ack", json.dumps(
                {"alarm_id": ALARM, "by": "ghost", "id": "ghost-1"}).encode(), retain=True)
            await before.wait_for(lambda m: m.topic == f"{base}/cmd/result")  # not applied
            await send_fire(panel, 1, 1)
            await before.wait_for(is_event(base, ALARM, "raised"))
            await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{base}/#"],
                                 **watcher) as after:
            refusal = await after.wait_for(_result(base, "retained"), timeout=60)
            assert payload(refusal)["verb"] == "ack"
            assert not [m for m in before.messages + after.messages
                        if is_event(base, ALARM, "acknowledged")(m)]
        alarm = stored_alarms(tmp_path / "state" / "alarms.db")[ALARM]
        assert (alarm["state"], alarm["acked_by"]) == ("unacknowledged", None), alarm
        assert await _retained(broker, f"{base}/cmd/ack") == []
        assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()
    assert not daemon.grep("Traceback")


async def test_stale_and_replayed_commands_are_refused_and_counted(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    site, panel = "sec-stale", free_port()
    base = f"firewarden/{site}"
    daemon = Daemon(_config(tmp_path, site, mosquitto, influxdb, panel), tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            await send_fire(panel, 1, 1)
            await mqtt.wait_for(is_event(base, ALARM, "raised"))

            async def command(verb: str, raw: bytes) -> dict[str, Any]:
                seen = len(mqtt.on(f"{base}/cmd/result"))
                await mqtt.publish(f"{base}/cmd/{verb}", raw)
                await eventually(lambda: len(mqtt.on(f"{base}/cmd/result")) > seen)
                return payload(mqtt.on(f"{base}/cmd/result")[seen])

            stale = await command("ack", json.dumps({"alarm_id": ALARM, "by": "li",
                                                     "ts": time.time() - 3600,
                                                     "id": "c-stale"}).encode())
            assert (stale["ok"], stale["refused"], stale["id"]) == (False, "stale", "c-stale")
            assert "3600 s ago" in stale["error"]
            out = _fresh(alarm_id=ALARM, by="li", id="c-1")
            assert (await command("out-of-service", out))["ok"] is True
            assert (await command("in-service", _fresh(alarm_id=ALARM, by="li",
                                                       id="c-2")))["ok"] is True
            replay = await command("out-of-service", out)  # the very same message again
            assert (replay["ok"], replay["refused"]) == (False, "replayed"), replay
            assert "c-1" in replay["error"]
            # nothing changed: still in service and unacknowledged
            alarm = stored_alarms(tmp_path / "state" / "alarms.db")[ALARM]
            assert (alarm["out_of_service"], alarm["acked_by"]) == (False, None), alarm

            def counted() -> float:
                rows = query(influxdb, "security",
                             f"SELECT last(commands_refused) FROM firewarden "
                             f"WHERE site = '{site}'")
                return float(rows[0]["last"]) if rows else -1.0

            await eventually(lambda: counted() == 2.0, within=30,
                             what="commands_refused = 2 in the self-metrics")
        assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()
    # one log line for the two refusals a second apart (rate-limited), naming the reason
    lines = daemon.grep("MQTT command")
    assert len(lines) == 1, lines
    assert "refused (stale)" in lines[0]
    assert not daemon.grep("Traceback")


async def test_a_1mb_command_gets_a_short_refusal(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    site, panel = "sec-big", free_port()
    base = f"firewarden/{site}"
    daemon = Daemon(_config(tmp_path, site, mosquitto, influxdb, panel), tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            await mqtt.wait_for(lambda m: m.topic == f"{base}/status"
                                and m.payload == b"online")
            await asyncio.sleep(0.5)  # the daemon's cmd/+ subscription is in place
            filler = "Q" * 1_000_000
            await mqtt.publish(f"{base}/cmd/ack", json.dumps(
                {"alarm_id": filler, "by": filler, "ts": time.time()}).encode())
            answer = await mqtt.wait_for(_result(base, "too-large"), timeout=20)
            assert len(answer.payload) < 512, len(answer.payload)
            assert b"Q" * 20 not in answer.payload
            # the daemon still takes the next command (here: a fire nobody raised yet)
            await mqtt.publish(f"{base}/cmd/ack", _fresh(alarm_id=ALARM, by="li", id="d-1"))
            after = await mqtt.wait_for(lambda m: m.topic == f"{base}/cmd/result"
                                        and b'"d-1"' in m.payload)
            assert payload(after)["error"] == f"no alarm {ALARM!r}"
        assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()
    assert "Q" * 20 not in daemon.output()
    assert not daemon.grep("Traceback")
