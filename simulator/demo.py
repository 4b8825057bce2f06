"""``firewarden demo``: a thin orchestration of the simulated community and private services.

Starts a private mosquitto and influxd (own configs, data under ``var/``, free ports), the Modbus
simulator serving every device of ``examples/demo.toml``, and the daemon as a child process; then
plays a scenario (the b12 incomer's L1 current crosses its breaker rating) and prints each alarm
as it arrives on MQTT, with the delay since the crossing. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo.toml"
HOT_DEVICE = "b12-box1-main"
HOT_AMPS = 75.0
HOLD_SECONDS = 30.0


def run_demo(*, var: Path, cross_after: float, duration: float = 0.0,
             config: Path = EXAMPLE) -> int:
    """Run the demo until Ctrl-C (or ``duration`` seconds); return the exit code."""
    var = var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    try:
        return asyncio.run(_demo(var, raw, cross_after, duration))
    except KeyboardInterrupt:
        return 0


async def _demo(var: Path, raw: dict[str, Any], cross_after: float, duration: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    devices = _simulated_devices(raw)
    with Mosquitto(workdir=var / "mosquitto") as broker, \
            InfluxDB(workdir=var / "influxd") as influx:
        async with ModbusTcpSimulator(devices=list(devices.values())) as sim:
            site = raw["site"]["id"]
            conf = _write_config(var, raw, broker.port, influx.port, sim.port)
            daemon_log = var / "daemon.log"
            _banner(site, broker.port, influx.port, sim.port, conf, daemon_log)
            with daemon_log.open("ab") as log:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                crossed: dict[str, float] = {}
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_scenario(devices, cross_after, crossed, stop))
                    tg.create_task(_watch_alarms(broker.port, site, crossed, stop))
                    tg.create_task(_watch_daemon(daemon, daemon_log, stop))
                    if duration > 0:
                        tg.create_task(_stop_after(duration, stop))
            finally:
                _stop_daemon(daemon)
    print("demo stopped; data kept in", var)
    return 0 if daemon.returncode in (0, None) else 1


def _simulated_devices(raw: Mapping[str, Any]) -> dict[str, SimulatedDevice]:
    """One simulated meter per configured device; currents start at a third of the rating."""
    out: dict[str, SimulatedDevice] = {}
    for dev in raw.get("device", []):
        sim = SimulatedDevice(profile=load_profile(dev["profile"]), unit=dev["unit"])
        out[dev["name"]] = sim
    return out


async def _scenario(devices: Mapping[str, SimulatedDevice], cross_after: float,
                    crossed: dict[str, float], stop: asyncio.Event) -> None:
    """Loads wander with noise; the hot incomer crosses its limit, holds, returns, repeats."""
    start = time.monotonic()
    hot_since: float | None = None
    rng = random.Random(12)
    while not stop.is_set():
        elapsed = time.monotonic() - start
        cycle = (elapsed - cross_after) % (HOLD_SECONDS * 3) if elapsed >= cross_after else -1
        hot = 0 <= cycle < HOLD_SECONDS
        for name, sim in devices.items():
            for phase in ("L1", "L2", "L3"):
                base = 18 + 6 * math.sin(elapsed / 40 + len(name) + ord(phase[1]))
                amps = base + rng.uniform(-1.5, 1.5)
                if name == HOT_DEVICE and phase == "L1" and hot:
                    amps = HOT_AMPS + rng.uniform(-1, 1)
                sim.set("current", amps, channel=phase)
                sim.set("power", amps * 230 * 0.95, channel=phase)
        if hot and hot_since is None:
            hot_since = time.time()
            crossed[HOT_DEVICE] = hot_since
            print(f"{_clock()}  scenario: {HOT_DEVICE} L1 current crosses its 63 A rating "
                  f"({HOT_AMPS:g} A) for {HOLD_SECONDS:g} s", flush=True)
        elif not hot and hot_since is not None:
            hot_since = None
            print(f"{_clock()}  scenario: {HOT_DEVICE} L1 current back to normal", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.25)


async def _watch_alarms(port: int, site: str, crossed: Mapping[str, float],
                        stop: asyncio.Event) -> None:
    """Print every alarm event the daemon publishes, and how long after the crossing it came."""
    topic = f"firewarden/{site}/events"
    while not stop.is_set():
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client:
                await client.subscribe(topic, qos=1)
                reader = asyncio.create_task(_print_events(client, crossed))
                await stop.wait()
                reader.cancel()
                return
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


async def _print_events(client: aiomqtt.Client, crossed: Mapping[str, float]) -> None:
    async for message in client.messages:
        event = json.loads(bytes(message.payload).decode())
        delay = ""
        if event["event"] == "raised" and event["device"] in crossed:
            delay = f"  ({time.time() - crossed[event['device']]:.2f} s after the crossing)"
        print(f"{_clock()}  MQTT alarm {event['event']:<12} {event['alarm_id']}: "
              f"{event['message']}{delay}", flush=True)


async def _watch_daemon(daemon: subprocess.Popen[bytes], log: Path, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if daemon.poll() is not None:
            print(f"daemon exited with {daemon.returncode}; last lines of {log}:", file=sys.stderr)
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            print("\n".join(lines[-20:]), file=sys.stderr)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


async def _stop_after(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    stop.set()


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _write_config(var: Path, raw: dict[str, Any], mqtt_port: int, influx_port: int,
                  modbus_port: int) -> Path:
    """The example config with this run's private ports filled in."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    raw["mqtt"]["port"] = mqtt_port
    raw["influxdb"]["url"] = f"http://127.0.0.1:{influx_port}"
    raw.setdefault("daemon", {})["state_dir"] = str(var / "state")
    for bus in raw["bus"]:
        bus["port"] = modbus_port
    path = var / "demo.toml"
    path.write_text("# written by `firewarden demo` from examples/demo.toml\n" + dump_toml(raw),
                    encoding="utf-8")
    return path


def dump_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for configs: scalars, tables, nested tables and arrays of tables."""
    lines: list[str] = []
    _dump_table(lines, data, [])
    return "\n".join(lines) + "\n"


def _dump_table(lines: list[str], table: Mapping[str, Any], path: list[str]) -> None:
    for key, value in table.items():
        if not isinstance(value, dict | list) or (
                isinstance(value, list) and not all(isinstance(v, dict) for v in value)):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines.append(f"\n[{'.'.join([*path, key])}]")
            _dump_table(lines, value, [*path, key])
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"\n[[{'.'.join([*path, key])}]]")
                _dump_table(lines, item, [*path, key])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _banner(site: str, mqtt: int, influx: int, modbus: int, conf: Path, log: Path) -> None:
    print(f"""
firewarden demo: site '{site}', simulated Modbus TCP gateway on 127.0.0.1:{modbus}
  config       {conf}
  daemon log   {log}
  alarms       mosquitto_sub -h 127.0.0.1 -p {mqtt} -t 'firewarden/{site}/#' -v
  readings     influx -host 127.0.0.1 -port {influx} -database firewarden \\
                 -execute 'SELECT * FROM power ORDER BY time DESC LIMIT 12'
  one device   {_venv_bin()}firewarden read -c {conf} --device {HOT_DEVICE}
Ctrl-C stops everything.
""", flush=True)


def _venv_bin() -> str:
    bindir = Path(sys.executable).parent
    return f"{bindir}/" if (bindir / "firewarden").exists() else ""


def _clock() -> str:
    return time.strftime("%H:%M:%S")
