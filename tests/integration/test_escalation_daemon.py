"""An escalation chain with the daemon as a process on a simulated clock (60x), a UITD
reporting a fire over TCP, real mosquitto for the ack and a real HTTP server playing two WeCom
robots: tier 1 paged at once, tier 2 after its delay, the ack tells both, nothing more."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from simulator.services import Mosquitto, free_port
from simulator.toml_writer import dump_toml
from simulator.uitd import UitdPeer, fire_frame
from tests.integration.test_webhook import FakeReceiver, Received
from tests.services import MqttCollector, eventually

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
SITE = "esc-test"
RATE = 60.0  # simulated seconds per real second: "2m" is 2 s real
# a Wednesday, 10:00 in Shanghai: inside working hours
START = datetime(2024, 11, 13, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def _config(tmp: Path, mqtt_port: int, hook_port: int, panel_port: int) -> Path:
    hook = f"http://127.0.0.1:{hook_port}"
    raw = {
        "site": {"id": SITE, "timezone": "Asia/Shanghai"},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "flush_interval": "1s"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 5},
        "fire_panel": [{"name": "b7-panel", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel_port, "building": "7"}],
        "webhook": [{"name": "electricians", "format": "wecom",
                     "url": f"{hook}/electricians?key=e"},
                    {"name": "manager", "format": "wecom", "url": f"{hook}/manager?key=m"},
                    {"name": "street", "format": "wecom", "url": f"{hook}/street?key=s"}],
        "escalation": [{"name": "site", "working_hours": "08:00-18:00",
                        "off_hours_start": "manager",
                        "tier": [{"name": "electricians", "notify": ["electricians"]},
                                 {"name": "manager", "notify": ["manager"],
                                  "after": {"fire": "2m", "critical": "10m", "warning": "30m"}},
                                 {"name": "street", "notify": ["street"], "after": "4m"}]}],
    }
    path = tmp / "fw.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


def _text(r: Received) -> str:
    return str(r.body.get("markdown", {}).get("content", "")) + str(
        r.body.get("text", {}).get("content", ""))


def _on(receiver: FakeReceiver, path: str) -> list[Received]:
    return [r for r in receiver.requests if r.path == f"/{path}"]


async def test_tier_1_then_tier_2_then_ack_tells_both(tmp_path: Path,
                                                      mosquitto: Mosquitto) -> None:
    """Fire at 10:00 (working hours): electricians are paged at once (their plain "raised"
    page is left to the chain), the manager 2 simulated minutes later; the ack over MQTT tells
    both who acknowledged and after how long, and the street tier is never paged."""
    panel = free_port()
    async with FakeReceiver(free_port()) as hooks:
        conf = _config(tmp_path, mosquitto.port, hooks.port, panel)
        log = (tmp_path / "daemon.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf),
             "--simulated-clock", f"{START}:{RATE:g}:{time.time():.3f}"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": ""})
        try:
            base = f"firewarden/{SITE}"
            async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                     topics=[f"{base}/#"]) as mqtt:
                await eventually(lambda: proc.poll() is None and _port_open(panel), within=20,
                                 what="the daemon listening for the UITD")
                uitd = await UitdPeer.tcp("127.0.0.1", panel)
                await uitd.write(fire_frame(1, zone=3, fire=True))
                assert (await uitd.reply(within=5)).header.serial == 1
                await uitd.close()
                raised_real = time.monotonic()
                await eventually(lambda: _on(hooks, "electricians"), what="tier 1 page")
                (first,) = _on(hooks, "electricians")
                assert "升级 第 1 级 (electricians)" in _text(first)
                assert not _on(hooks, "manager")
                manager = await eventually(lambda: _on(hooks, "manager"), what="tier 2 page")
                waited = (manager[0].at - raised_real) * RATE  # simulated seconds
                assert 110 <= waited <= 200, waited
                assert "升级 第 2 级 (manager)" in _text(manager[0])
                assert "已 2 分钟无人确认 (已通知: electricians)" in _text(manager[0])

                alarm_id = "fire:b7-panel:2-3-25"
                await mqtt.publish(f"{base}/cmd/ack", json.dumps(
                    {"alarm_id": alarm_id, "by": "电工李", "ts": time.time()}).encode())
                await eventually(lambda: len(_on(hooks, "manager")) >= 2, what="ack told")
                await eventually(lambda: len(_on(hooks, "electricians")) >= 2, what="ack told")
                for path in ("electricians", "manager"):
                    told = _text(_on(hooks, path)[-1])
                    assert "由 电工李 已确认" in told, told
                    assert "升级结束" in told
                await asyncio.sleep(5.0)  # 5 simulated minutes: street would be due by now
                assert not _on(hooks, "street")
                assert len(_on(hooks, "electricians")) == 2
                assert len(_on(hooks, "manager")) == 2
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    output = (tmp_path / "daemon.log").read_text(errors="replace")
    assert "Traceback" not in output


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
