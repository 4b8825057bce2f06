"""`firewarden run` as a process with a fire panel's UITD on TCP: a fire reaches MQTT in < 1 s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.gb26875.codec import Command
from simulator.services import InfluxDB, Mosquitto, free_port
from simulator.toml_writer import dump_toml
from simulator.uitd import UitdPeer, fire_frame
from tests.services import MqttCollector, NotifySocket, Received, eventually

pytestmark = pytest.mark.system
ROOT = Path(__file__).parents[2]
EVENTS = "firewarden/panel-test/events"


def _config(tmp: Path, mqtt: Mosquitto, influx: InfluxDB, panel_port: int) -> Path:
    raw = {
        "site": {"id": "panel-test"},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": "paneltest", "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt.port},
        "fire_panel": [{"name": "b12-fire-panel", "transport": "tcp-server",
                        "host": "127.0.0.1", "port": panel_port, "building": "12",
                        "zone": [{"zone": 3, "floor": "3", "area": "east stairwell"}]}],
    }
    path = tmp / "fw.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


def _event(message: Received) -> dict[str, object]:
    return dict(json.loads(message.payload))


async def test_panel_fire_reaches_mqtt_within_1s(tmp_path: Path, mosquitto: Mosquitto,
                                                 influxdb: InfluxDB) -> None:
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "-c",
         str(_config(tmp_path, mosquitto, influxdb, port))],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=["firewarden/panel-test/#"]) as mqtt:
            await notify.wait_for("READY=1", within=20)
            uitd = await UitdPeer.tcp("127.0.0.1", port)

            sent = time.monotonic()
            await uitd.write(fire_frame(7))
            ack = await uitd.reply(within=1.0)
            acked = time.monotonic() - sent
            message = await mqtt.wait_for(lambda m: m.topic == EVENTS, timeout=5)
            latency = time.monotonic() - sent
            print(f"\nfire frame -> ACK {acked * 1000:.1f} ms, -> MQTT event "
                  f"{latency * 1000:.1f} ms")
            assert ack.header.command == Command.CONFIRM
            assert ack.header.serial == 7
            assert latency < 1.0, f"fire took {latency:.3f} s to reach MQTT"
            event = _event(message)
            assert event["alarm_id"] == "fire:b12-fire-panel:2-3-25"
            assert event["event"] == "raised"
            assert event["severity"] == "fire"
            assert (event["building"], event["floor"], event["area"], event["zone"]) == (
                "12", "3", "east stairwell", "3")
            retained = await mqtt.wait_for(lambda m: m.topic.endswith(
                "/alarms/fire:b12-fire-panel:2-3-25") and bool(m.payload))
            assert _event(retained)["state"] == "unacknowledged"

            # The UITD missed our ACK and resends: ACKed again, no second page.
            await uitd.write(fire_frame(7))
            again = await uitd.reply(within=1.0)
            assert again.header.serial == 7
            # A later frame (serial 8) with the fire bit clear is delivered: the resend was not.
            await uitd.write(fire_frame(8, fire=False))
            assert (await uitd.reply(within=1.0)).header.serial == 8
            latched = await mqtt.wait_for(
                lambda m: m.topic == EVENTS and _event(m)["event"] == "latched")
            assert _event(latched)["state"] == "latched"  # fire stays until reset
            assert [_event(m)["event"] for m in mqtt.on(EVENTS)] == ["raised", "latched"]
            await uitd.close()

        def fire_rows() -> list[dict[str, object]]:
            rows = influxdb.query(
                "paneltest", "SELECT fire, channel FROM smoke WHERE device='b12-fire-panel'")
            return rows if len(rows) >= 2 else []

        rows = await eventually(fire_rows, within=15)
        assert [r["fire"] for r in rows][:2] == [1.0, 0.0]
        assert rows[0]["channel"] == "2-3-25"

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, output
        assert "fire panel b12-fire-panel: listening on 127.0.0.1" in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
