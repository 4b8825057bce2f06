"""The alarm lifecycle with the daemon as a process, a UITD on TCP and real brokers:
ack/reset over MQTT, a broker outage while alarms fire, and kill -9 with a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from simulator.services import InfluxDB, Mosquitto, free_port
from simulator.toml_writer import dump_toml
from simulator.uitd import UitdPeer, fire_frame
from tests.services import MqttCollector, NotifySocket, Received, eventually

pytestmark = pytest.mark.system
ROOT = Path(__file__).parents[2]
SITE = "alarm-test"
BASE = f"firewarden/{SITE}"


def _config(tmp: Path, mqtt_port: int, influx: InfluxDB, panel_port: int) -> Path:
    raw = {
        "site": {"id": SITE},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": "alarmtest", "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 5},
        "fire_panel": [{"name": "b7-panel", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel_port, "building": "7"}],
    }
    path = tmp / "fw.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


class Daemon:
    """`firewarden run` as a child process, with its own NOTIFY_SOCKET."""

    def __init__(self, conf: Path, tmp: Path) -> None:
        self.conf = conf
        self.log = tmp / "daemon.log"
        self.notify = NotifySocket(tmp / f"notify-{free_port()}.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "run", "-c", str(self.conf)],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        await self.notify.wait_for("READY=1", within=20, count=self.starts)

    @property
    def starts(self) -> int:
        return sum("READY=1" in m.splitlines() for m in self.notify.drain()) + 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 20)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@asynccontextmanager
async def running(conf: Path, tmp: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(conf, tmp)
    try:
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


def _json(m: Received) -> dict[str, object]:
    return dict(json.loads(m.payload)) if m.payload else {}


def _events(collector: MqttCollector) -> list[dict[str, object]]:
    return [_json(m) for m in collector.on(f"{BASE}/events")]


def _event_is(kind: str, alarm_id: str) -> Callable[[Received], bool]:
    return lambda m: (m.topic == f"{BASE}/events" and _json(m)["event"] == kind
                      and _json(m)["alarm_id"] == alarm_id)


async def _fire(port: int, serial: int, zone: int, *, fire: bool = True) -> None:
    uitd = await UitdPeer.tcp("127.0.0.1", port)
    await uitd.write(fire_frame(serial, zone=zone, fire=fire))
    assert (await uitd.reply(within=5)).header.serial == serial  # ACKed
    await uitd.close()


async def test_ack_and_reset_over_mqtt(tmp_path: Path, mosquitto: Mosquitto,
                                       influxdb: InfluxDB) -> None:
    """cmd/ack and cmd/reset change the retained state; refusals say why and change nothing."""
    port = free_port()
    conf = _config(tmp_path, mosquitto.port, influxdb, port)
    alarm_id = "fire:b7-panel:2-3-25"
    async with running(conf, tmp_path) as daemon, \
            MqttCollector(host="127.0.0.1", port=mosquitto.port, topics=[f"{BASE}/#"]) as mqtt:
        await daemon.start()
        await _fire(port, 1, 3)
        await mqtt.wait_for(_event_is("raised", alarm_id))

        async def command(verb: str, body: dict[str, object] | bytes) -> dict[str, object]:
            seen = len(mqtt.on(f"{BASE}/cmd/result"))
            # our own commands are fresh: the time sent (the daemon refuses old ones)
            raw = body if isinstance(body, bytes) else json.dumps(
                {**body, "ts": time.time()}).encode()
            await mqtt.publish(f"{BASE}/cmd/{verb}", raw)
            await eventually(lambda: len(mqtt.on(f"{BASE}/cmd/result")) > seen)
            return _json(mqtt.on(f"{BASE}/cmd/result")[seen])

        assert (await command("ack", {"alarm_id": "nope", "by": "li"}))["error"] == \
            "no alarm 'nope'"
        bad = await command("ack", b"{not json")
        assert bad["ok"] is False
        assert str(bad["error"]).startswith("body is not JSON")
        refused = await command("reset", {"alarm_id": alarm_id, "by": "li"})
        assert refused["ok"] is False
        assert "still present" in str(refused["error"])

        result = await command("ack", {"alarm_id": alarm_id, "by": "电工李", "id": "a1"})
        assert (result["ok"], result["state"], result["id"]) == (True, "acknowledged", "a1")
        retained = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/alarms/{alarm_id}"
            and _json(m).get("state") == "acknowledged")
        assert _json(retained)["acked_by"] == "电工李"

        await _fire(port, 2, 3, fire=False)
        await mqtt.wait_for(_event_is("latched", alarm_id))
        reset = await command("reset", {"alarm_id": alarm_id, "by": "电工李"})
        assert (reset["ok"], reset["state"]) == (True, "normal")
        await mqtt.wait_for(lambda m: m.topic == f"{BASE}/alarms/{alarm_id}" and not m.payload)
        kinds = [e["event"] for e in _events(mqtt) if e["alarm_id"] == alarm_id]
        assert kinds == ["raised", "acknowledged", "latched", "reset"]
        ids = [e["event_id"] for e in _events(mqtt)]
        assert len(ids) == len(set(ids))
        assert await daemon.stop() == 0
    assert "Traceback" not in daemon.output()


async def test_broker_outage_loses_no_alarm_event(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb: InfluxDB) -> None:
    """Alarms raised while the broker is down all arrive when it is back (ids at least once)."""
    broker = mosquitto_factory(persistence=True)
    await asyncio.to_thread(broker.start)
    port = free_port()
    conf = _config(tmp_path, broker.port, influxdb, port)
    # A persistent session (kept by the broker across its restart) queues what we miss.
    watcher = {"identifier": "outage-watcher", "clean_session": False}
    async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"],
                             **watcher):  # type: ignore[arg-type]
        pass
    async with running(conf, tmp_path) as daemon:
        await daemon.start()
        await asyncio.to_thread(broker.stop)
        for zone in (1, 2, 3):
            await _fire(port, zone, zone)  # ACKed by the daemon while MQTT is down
        await _fire(port, 4, 1, fire=False)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(broker.start)
        async with MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"],
                                 **watcher) as mqtt:  # type: ignore[arg-type]
            for zone in (1, 2, 3):
                await mqtt.wait_for(_event_is("raised", f"fire:b7-panel:2-{zone}-25"),
                                    timeout=30)
            await mqtt.wait_for(_event_is("latched", "fire:b7-panel:2-1-25"), timeout=30)
        got = {e["event_id"] for e in _events(mqtt)}
        assert got >= {f"fire:b7-panel:2-{z}-25#1" for z in (1, 2, 3)} | {
            "fire:b7-panel:2-1-25#2"}
        assert await daemon.stop() == 0


async def test_kill_9_keeps_alarms_and_pages_nothing_twice(
        tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
        influxdb: InfluxDB) -> None:
    """kill -9 after delivery: restarted, the unacknowledged alarm is still there and nothing
    delivered is sent again; an event stored but not delivered before the kill is sent."""
    broker = mosquitto_factory()
    await asyncio.to_thread(broker.start)
    port = free_port()
    conf = _config(tmp_path, broker.port, influxdb, port)
    async with running(conf, tmp_path) as daemon, \
            MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"]) as mqtt:
        await daemon.start()
        await _fire(port, 1, 1)
        await mqtt.wait_for(_event_is("raised", "fire:b7-panel:2-1-25"))
        await asyncio.sleep(0.5)  # the PUBACK is in and the outbox row deleted
        daemon.kill()
    # While the daemon is down, the store answers `firewarden alarms list`.
    listed = subprocess.run([sys.executable, "-m", "daemon.cli", "alarms", "-c", str(conf),
                             "list", "--json"], capture_output=True, text=True, timeout=30,
                            cwd=ROOT, check=False)
    assert listed.returncode == 0, listed.stderr
    stored = json.loads(listed.stdout)
    assert [(a["alarm_id"], a["state"]) for a in stored] == [
        ("fire:b7-panel:2-1-25", "unacknowledged")]

    async with running(conf, tmp_path) as again, \
            MqttCollector(host="127.0.0.1", port=broker.port, topics=[f"{BASE}/#"]) as mqtt:
        await again.start()
        await _fire(port, 2, 1)  # the panel repeats the same fire: not a new page
        await _fire(port, 3, 2)  # a new fire is
        await mqtt.wait_for(_event_is("raised", "fire:b7-panel:2-2-25"))
        retained = await mqtt.wait_for(
            lambda m: m.topic == f"{BASE}/alarms/fire:b7-panel:2-1-25" and m.retain)
        assert _json(retained)["state"] == "unacknowledged"
        await asyncio.sleep(0.5)
        events = [(e["event"], e["alarm_id"]) for e in _events(mqtt)]
        assert events == [("raised", "fire:b7-panel:2-2-25")], events

        acked = await _cli(conf, "ack", "fire:b7-panel:2-2-25", "--by", "li")
        assert (acked.returncode, acked.stdout.strip()) == (
            0, "ack: fire:b7-panel:2-2-25 is now acknowledged"), acked.stderr
        refused = await _cli(conf, "shelve", "fire:b7-panel:2-2-25", "--minutes", "30")
        assert refused.returncode == 1
        assert "cannot be shelved" in refused.stderr
        assert await again.stop() == 0
    down = await _cli(conf, "ack", "fire:b7-panel:2-1-25")
    assert down.returncode == 3
    assert "nothing was changed" in down.stderr


async def _cli(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "daemon.cli", "alarms", "-c", str(conf), *args],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)


async def test_home_assistant_discovery_and_states(tmp_path: Path, mosquitto: Mosquitto,
                                                   influxdb: InfluxDB) -> None:
    """With [mqtt] homeassistant, retained discovery configs describe the panel's entities
    and its Fire sensor turns ON with a fire."""
    port = free_port()
    conf = _config(tmp_path, mosquitto.port, influxdb, port)
    conf.write_text(conf.read_text(encoding="utf-8").replace(
        "keepalive = 5", "keepalive = 5\nhomeassistant = true"), encoding="utf-8")
    fire_config = "homeassistant/binary_sensor/firewarden_alarm_test_b7_panel_fire/config"
    state_topic = f"{BASE}/devices/b7-panel/state"
    async with running(conf, tmp_path) as daemon, \
            MqttCollector(host="127.0.0.1", port=mosquitto.port,
                          topics=["homeassistant/#", f"{BASE}/#"]) as mqtt:
        await daemon.start()
        config = _json(await mqtt.wait_for(lambda m: m.topic == fire_config))
        assert (config["device_class"], config["state_topic"], config["value_template"]) == (
            "smoke", state_topic, "{{ value_json.fire }}")
        assert config["availability_topic"] == f"{BASE}/status"
        assert config["device"] == {
            "identifiers": ["firewarden_alarm_test_b7_panel_device"], "name": "b7-panel",
            "manufacturer": "firewarden", "model": "GB/T 26875.3 fire panel",
            "suggested_area": "7"}
        await mqtt.wait_for(lambda m: m.topic == state_topic and _json(m)["fire"] == "OFF")
        await _fire(port, 1, 3)
        on = await mqtt.wait_for(lambda m: m.topic == state_topic and _json(m)["fire"] == "ON")
        assert _json(on)["alarms"] == ["fire:b7-panel:2-3-25"]
        summary = await mqtt.wait_for(lambda m: m.topic == f"{BASE}/summary"
                                      and _json(m)["active"] == 1)
        assert _json(summary)["fire"] == 1
        assert await daemon.stop() == 0


async def test_webhook_page_from_the_daemon(tmp_path: Path, mosquitto: Mosquitto,
                                            influxdb: InfluxDB) -> None:
    """A [[webhook]] in the config pages a panel fire to a local HTTP receiver."""
    from aiohttp import web

    received: list[dict[str, object]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    try:
        port = free_port()
        conf = _config(tmp_path, mosquitto.port, influxdb, port)
        conf.write_text(conf.read_text(encoding="utf-8") + (
            f'\n[[webhook]]\nname = "ops"\nformat = "json"\n'
            f'url = "http://127.0.0.1:{hook_port}/hook"\n'), encoding="utf-8")
        async with running(conf, tmp_path) as daemon:
            await daemon.start()
            await _fire(port, 1, 3)
            await eventually(lambda: received, within=10, what="a webhook page")
            assert await daemon.stop() == 0
    finally:
        await runner.cleanup()
    (page,) = received
    event = page["event"]
    assert isinstance(event, dict)
    assert (page["site"], event["event"], event["alarm_id"], event["severity"]) == (
        SITE, "raised", "fire:b7-panel:2-3-25", "fire")
