"""`firewarden run` as a process: sd_notify, the end-to-end alarm path, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto, free_port
from simulator.toml_writer import dump_toml
from tests.services import NotifySocket

pytestmark = pytest.mark.system
ROOT = Path(__file__).parents[2]


def _config(tmp: Path, mqtt: Mosquitto, influx: InfluxDB, modbus_port: int) -> Path:
    raw = {
        "site": {"id": "systest", "name": "系统测试"},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": influx.url, "database": "systest", "flush_interval": "200ms"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt.port},
        "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": modbus_port,
                 "timeout": "500ms"}],
        "device": [{"name": "b1-main", "bus": "gw", "unit": 1, "profile": "eastron-sdm630",
                    "poll": "250ms", "building": "1", "box": "1", "circuit": "main",
                    "kind": "incomer", "rated_current": 63}],
        "rules": {"overcurrent": {"on_delay": "500ms"}},
    }
    path = tmp / "fw.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


async def test_daemon_end_to_end(tmp_path: Path, mosquitto: Mosquitto,
                                 influxdb: InfluxDB) -> None:
    """READY, watchdog pings, an overcurrent alarm on MQTT, readings in InfluxDB, STOPPING."""
    meter = SimulatedDevice(profile=load_profile("eastron-sdm630"), unit=1)
    async with ModbusTcpSimulator(devices=[meter]) as sim:
        conf = _config(tmp_path, mosquitto, influxdb, sim.port)
        notify = NotifySocket(tmp_path / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.subscribe("firewarden/systest/#", qos=1)
                await notify.wait_for("READY=1", within=20)
                await notify.wait_for("WATCHDOG=1", within=10, count=3)
                assert any(m.startswith("STATUS=") for m in notify.messages)

                meter.set("current", 80.0, channel="L2")
                crossed = time.monotonic()
                event, retained = await _alarm_messages(client, within=15)
            latency = time.monotonic() - crossed
            assert event["event"] == "raised"
            assert event["alarm_id"] == "overcurrent:b1-main:L2"
            assert event["building"] == "1"
            assert event["severity"] == "critical"
            assert retained["state"] == "unacknowledged"
            assert latency < 5, f"alarm took {latency:.2f} s (on-delay 0.5 s, poll 0.25 s)"

            rows = await _wait_rows(influxdb, "systest",
                                    "SELECT current_a FROM power WHERE phase='L2' "
                                    "AND device='b1-main' AND current_a > 79")
            assert rows[0]["current_a"] == pytest.approx(80.0)
            alarms = await _wait_rows(influxdb, "systest", "SELECT * FROM alarms")
            assert alarms[0]["rule"] == "overcurrent"

            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 20)
            output = proc.stdout.read().decode() if proc.stdout else ""
            assert code == 0, output
            assert "STOPPING=1" in "\n".join(notify.drain())
            assert "Traceback" not in output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _alarm_messages(client: aiomqtt.Client,
                          within: float) -> tuple[dict[str, object], dict[str, object]]:
    event: dict[str, object] | None = None
    retained: dict[str, object] | None = None
    async with asyncio.timeout(within):
        async for msg in client.messages:
            topic = str(msg.topic)
            if topic == "firewarden/systest/events":
                event = json.loads(msg.payload)
            elif topic.startswith("firewarden/systest/alarms/") and msg.payload:
                retained = json.loads(msg.payload)
            if event is not None and retained is not None:
                return event, retained
    raise AssertionError("unreachable")


async def _wait_rows(influx: InfluxDB, db: str, query: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while True:
        rows = await asyncio.to_thread(influx.query, db, query)
        if rows:
            return rows
        assert time.monotonic() < deadline, f"no rows for {query}"
        await asyncio.sleep(0.3)


def test_check_example_exits_0() -> None:
    """`firewarden check -c examples/site-sample.toml` as a process prints the plan, exit 0."""
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "check", "-c",
                          str(ROOT / "examples" / "site-sample.toml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "device b13-box1-main" in out.stdout


def test_run_with_bad_config_exits_2(tmp_path: Path) -> None:
    """`firewarden run` refuses a bad config with exit 2 and the fault, starting nothing."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "Bad Id"\n', encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "-c", str(bad)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "site.id: String should match pattern" in out.stderr


def test_demo_plays_a_scenario_and_alarms_each_event(tmp_path: Path) -> None:
    """`firewarden demo` runs a community scenario end to end: every fire and fault event is
    alarmed on MQTT, fires within 2 s, and the data stays in the demo's InfluxDB."""
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--var", str(tmp_path / "var"),
         "--scenario", "smoke", "--compression", "120"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    raised = re.findall(r"ALARM raised\s+\[(\w+)\] (\S+) .*\((?:\d+ min simulated, )?"
                        r"(\d+\.\d+) s real after the ([\w-]+) began\)", out.stdout)
    assert {(severity, alarm_id) for severity, alarm_id, _, _ in raised} >= {
        ("fire", "fire:b1-fire-panel:1-1-2"), ("fire", "fire:b1-smoke2"),
        ("warning", "detector-fault:b1-fire-panel:1-2-7"),
        ("fire", "fire:b1-fire-panel:1-3-12")}, out.stdout
    assert all(float(delay) < 2.0 for severity, _, delay, _ in raised if severity == "fire")
    summary = out.stdout[out.stdout.index("what firewarden said, and why"):]
    assert "UNEXPLAINED" not in out.stdout, summary
    assert "every event got an alarm." in summary, summary
    assert re.search(r"(\d+) alarms raised, \1 explained by an event, 0 unexplained; "
                     r"3 of 3 events alarmed", summary), summary
    assert "mosquitto_sub -p" in out.stdout
    port = re.search(r"influxdb\s+127\.0\.0\.1:(\d+)", out.stdout)
    assert port, out.stdout
    datasource = tmp_path / "var" / "grafana" / "datasources" / "influxdb.yaml"
    assert f"url: http://127.0.0.1:{port.group(1)}" in datasource.read_text(encoding="utf-8")
    assert f"GF_PATHS_PROVISIONING={tmp_path / 'var' / 'grafana'}" in out.stdout
    truth = json.loads((tmp_path / "var" / "truth.json").read_text(encoding="utf-8"))
    assert [r["label"] for r in truth["events"]] == ["fire", "detector-fault", "fire"]
    # The demo's InfluxDB keeps its data under var/: restarted, the fire history is there.
    with InfluxDB(workdir=tmp_path / "var" / "influxd") as influx:
        rows = influx.query("firewarden", "SELECT * FROM smoke WHERE fire = 1")
    assert {r["device"] for r in rows} == {"b1-fire-panel", "b1-smoke2"}


def test_demo_evening_explains_every_alarm(tmp_path: Path) -> None:
    """`make demo`'s own scenario (the evening, here at twice its compression): every alarm
    raised is matched to the scenario event behind it (none unexplained: no comms-stale or
    flood from the compressed clock), and every event gets an alarm."""
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "demo", "--var", str(tmp_path / "var"),
         "--compression", "240"],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout[out.stdout.index("what firewarden said, and why"):]
    assert "UNEXPLAINED" not in out.stdout, summary
    assert not re.search(r"ALARM raised\s+\S+ (comms|comms-stale|alarm-flood):", out.stdout)
    counts = re.search(r"(\d+) alarms raised, (\d+) explained by an event, 0 unexplained; "
                       r"(\d+) of (\d+) events alarmed", summary)
    assert counts, summary
    raised, explained, alarmed, events = map(int, counts.groups())
    truth = json.loads((tmp_path / "var" / "truth.json").read_text(encoding="utf-8"))
    assert raised == explained >= events == alarmed == len(truth["events"]), summary
    fire = re.findall(r"ALARM raised\s+\[fire\] \S+ .*\((?:\d+ min simulated, )?"
                      r"(\d+\.\d+) s real after the fire", out.stdout)
    assert len(fire) == 2, out.stdout
    assert all(float(d) < 2.0 for d in fire), out.stdout


async def test_read_prints_every_quantity(tmp_path: Path, mosquitto: Mosquitto,
                                          influxdb: InfluxDB) -> None:
    """`firewarden read --json` lists each point with its value and unit; text mode too."""
    meter = SimulatedDevice(profile=load_profile("eastron-sdm630"), unit=1)
    meter.set("voltage", 231.5, channel="L3")
    async with ModbusTcpSimulator(devices=[meter]) as sim:
        conf = _config(tmp_path, mosquitto, influxdb, sim.port)
        cmd = [sys.executable, "-m", "daemon.cli", "read", "-c", str(conf), "--device", "b1-main"]
        as_json = await asyncio.to_thread(subprocess.run, [*cmd, "--json"], capture_output=True,
                                          text=True, timeout=60, check=False)
        as_text = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True,
                                          timeout=60, check=False)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert len(rows) == 23
    volts = next(r for r in rows if r["quantity"] == "voltage" and r["channel"] == "L3")
    assert volts["value"] == pytest.approx(231.5)
    assert volts["unit"] == "V"
    assert re.search(r"voltage/L3\s+231\.5 V", as_text.stdout), as_text.stdout


def test_read_unreachable_device_exits_3(tmp_path: Path, mosquitto: Mosquitto,
                                         influxdb: InfluxDB) -> None:
    """A device nobody answers for gives exit 3 and a reason, not a traceback."""
    conf = _config(tmp_path, mosquitto, influxdb, free_port())
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "read", "-c", str(conf),
                          "--device", "b1-main"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 3
    assert "error: reading b1-main failed" in out.stderr
    assert "Traceback" not in out.stderr
