"""``firewarden demo``: a simulated community, private services and the daemon, end to end.

Starts a private mosquitto and influxd (own configs, data under ``var/``, free ports), runs a
scenario's community (``evening`` by default: three buildings, 17:00-23:00 in three real
minutes) with its Modbus gateways and the buildings' fire-panel UITDs dialling in, writes the
daemon config for it and runs ``firewarden run`` as a child process. It prints the scenario's
events as they start and end, every alarm the daemon publishes on MQTT with the delay since the
event behind it started, and at the end which events were alarmed. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from simulator.community.cli import describe
from simulator.community.daemon_config import daemon_config
from simulator.community.explain import RaisedAlarm, cause_of, explain, unalarmed
from simulator.community.runner import CommunityRunner, TimelineEntry, UitdMode
from simulator.community.scenario import Scenario, load_scenario
from simulator.community.timeparse import format_duration, local_clock
from simulator.community.truth import TruthRecord, write_truth
from simulator.demo_extras import EscalationPrinter, escalation_config, print_report
from simulator.services import InfluxDB, Mosquitto, port_open
from simulator.toml_writer import dump_toml

DEMO_POLL_REAL = 1.0  # real s between a device's polls, at any compression


def demo_poll(compression: float) -> str:
    """The devices' ``poll`` for the demo's config: one real second (``DEMO_POLL_REAL``)
    expressed on the scenario's clock, which the daemon's schedules run on (at compression
    120, "120s"). Profile points with their own poll (smoke flags "1s", energy "60s") keep
    it, in simulated time too."""
    return f"{max(1.0, DEMO_POLL_REAL * compression):g}s"


@dataclass
class Watch:
    """What the demo has seen: when each event started and every alarm raised."""

    scenario: Scenario
    truth: Sequence[TruthRecord]
    started: set[str] = field(default_factory=set)  # truth ids
    raised: list[RaisedAlarm] = field(default_factory=list)
    sim_time: Callable[[], float] = time.time

    def clock(self) -> str:
        return local_clock(self.sim_time(), self.scenario.zone)


def run_demo(*, var: Path, scenario: str = "evening", compression: float | None = None,
             duration: float = 0.0) -> int:
    """Run the demo until the scenario ends, Ctrl-C, or ``duration`` real seconds."""
    logging.getLogger("simulator").setLevel(logging.ERROR)  # the demo prints what matters
    var = var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    chosen = load_scenario(scenario).with_overrides(compression=compression)
    try:
        return asyncio.run(_demo(var, chosen, duration))
    except KeyboardInterrupt:
        return 0


async def _demo(var: Path, scenario: Scenario, duration: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    panel_base = _free_port_block(len(scenario.community.buildings))
    with Mosquitto(workdir=var / "mosquitto") as broker, \
            InfluxDB(workdir=var / "influxd") as influx:
        watch = Watch(scenario=scenario, truth=())
        uitd = UitdMode("tcp-client", "127.0.0.1", panel_base)
        async with EscalationPrinter(watch.clock) as pages, \
                CommunityRunner(scenario, uitd=uitd, on_timeline=_printer(watch)) as runner:
            watch.truth, watch.sim_time = runner.truth, runner.sim_time
            write_truth(scenario, var / "truth.json")
            conf = _write_config(var, daemon_config(scenario.community, runner.endpoints,
                                                    poll=demo_poll(scenario.compression))
                                 | escalation_config(pages.port), broker.port, influx.port)
            daemon_log = var / "daemon.log"
            grafana = _grafana_provisioning(var / "grafana", influx.port)
            _banner(scenario, broker.port, influx.port, conf, daemon_log, var / "truth.json",
                    grafana)
            # The daemon runs on the scenario's clock, so dusk, night hours and durations
            # ("charging for 20 min") mean what they say at any compression.
            clock = f"{runner.sim_time():.3f}:{scenario.compression:g}:{time.time():.3f}"
            with daemon_log.open("ab") as log:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf),
                     "--simulated-clock", clock],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_watch_alarms(broker.port, scenario.community.site, watch,
                                                 stop, conf))
                    tg.create_task(_watch_daemon(daemon, daemon_log, stop))
                    tg.create_task(_stop_when(runner.wait_finished(), stop, grace=5.0))
                    if duration > 0:
                        tg.create_task(_stop_when(asyncio.sleep(duration), stop))
            finally:
                _stop_daemon(daemon)
        _summary(watch)
        if watch.truth:
            print_report(conf, since=scenario.start, until=watch.sim_time())
    print("demo stopped; data kept in", var)
    return 0 if daemon.returncode in (0, None) else 1


def _free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """A first port with ``n`` consecutive free ones (the UITDs dial base+i)."""
    for base in range(19100, 29000, 37):
        if not any(port_open(host, base + i) for i in range(n)):
            return base
    raise RuntimeError("no block of free ports for the fire panels")


def _write_config(var: Path, raw: dict[str, Any], mqtt_port: int, influx_port: int) -> Path:
    raw = {**raw,
           "influxdb": {"url": f"http://127.0.0.1:{influx_port}", "database": "firewarden",
                        "flush_interval": "1s"},
           "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
           "daemon": {"state_dir": str(var / "state")},
           # The daemon's polls and rules run on the scenario's clock (silence detection
           # follows the configured poll by itself); keep the 5-minute fire re-alarm from
           # paging every few real seconds of a compressed evening.
           "alarms": {"rule": {"fire": {"realarm_after": "2h"}}}}
    path = var / "demo.toml"
    path.write_text(dump_toml(raw, "written by `firewarden demo` for the simulated community"),
                    encoding="utf-8")
    return path


def _printer(watch: Watch) -> Callable[[TimelineEntry], None]:
    def show(entry: TimelineEntry) -> None:
        e = entry.event
        if entry.phase == "start":
            watch.started.add(e.id)
        text = describe(e) if entry.phase == "start" else e.kind
        print(f"{local_clock(entry.sim_time, watch.scenario.zone)}  scenario {entry.phase:5} "
              f"{text} on {e.target}", flush=True)
    return show


async def _watch_alarms(port: int, site: str, watch: Watch, stop: asyncio.Event,
                        conf: Path) -> None:
    """Print every alarm event the daemon publishes, with the delay since its cause began."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client:
                await client.subscribe(f"firewarden/{site}/events", qos=1)
                reader = asyncio.create_task(_print_events(client, watch, conf))
                await stop.wait()
                reader.cancel()
                return
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


async def _print_events(client: aiomqtt.Client, watch: Watch, conf: Path) -> None:
    told = False
    async for message in client.messages:
        event = json.loads(bytes(message.payload).decode())
        note = ""
        if event["event"] == "raised":
            at = event.get("ts")
            alarm = RaisedAlarm(str(event["alarm_id"]), str(event["device"]),
                                float(at) if isinstance(at, int | float) else watch.sim_time())
            watch.raised.append(alarm)
            cause = cause_of(alarm, watch.truth)
            note = (f"  ({_after(alarm.at - cause.start, watch.scenario)} after the "
                    f"{cause.label} began)" if cause else "  (UNEXPLAINED: no scenario event "
                    "caused it)")
        where = ", ".join(f"{k} {event[k]}" for k in ("building", "floor", "area", "box",
                                                        "circuit") if event.get(k))
        print(f"{watch.clock()}  ALARM {event['event']:<12} [{event['severity']}] "
              f"{event['alarm_id']} ({where or '-'}): {event['message']}{note}", flush=True)
        if event["event"] == "raised" and not told:
            told = True
            print(f"      acknowledge it: firewarden alarms -c {conf} ack "
                  f"'{event['alarm_id']}' --by YOUR-NAME   (or list them: "
                  f"firewarden alarms -c {conf} list)", flush=True)


def _after(simulated: float, scenario: Scenario) -> str:
    """A delay on the scenario's clock, with its real duration when that differs."""
    real = simulated / scenario.compression
    if simulated >= 120:
        return f"{simulated / 60:.0f} min simulated, {real:.1f} s real"
    return f"{real:.2f} s real"


def _summary(watch: Watch) -> int:
    """Print every alarm raised with the event behind it (or UNEXPLAINED) and the events that
    got none; the number of unexplained alarms is returned."""
    verdicts = explain(watch.raised, watch.truth)
    print("\nwhat firewarden said, and why:")
    for v in verdicts:
        when = local_clock(v.alarm.at, watch.scenario.zone)[-8:-3]
        why = (f"{v.cause.label} on {v.cause.target} at {v.cause.start_local[11:16]}, "
               f"{_after(v.delay, watch.scenario)} after it began" if v.cause
               else "UNEXPLAINED: no scenario event on this device could cause it")
        print(f"  {when} {v.alarm.alarm_id:<40} {why}")
    if not verdicts:
        print("  (no alarm)")
    missed = unalarmed([r for r in watch.truth if r.id in watch.started], verdicts,
                       watch.sim_time())
    print("events that got no alarm:" if missed else "every event got an alarm.")
    for r in missed:
        print(f"  {r.start_local[11:16]} {r.label:<22} {r.target}")
    unexplained = sum(v.cause is None for v in verdicts)
    print(f"{len(verdicts)} alarms raised, {len(verdicts) - unexplained} explained by an event, "
          f"{unexplained} unexplained; {len(watch.started) - len(missed)} of "
          f"{len(watch.started)} events alarmed")
    return unexplained


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


async def _stop_when(done: Any, stop: asyncio.Event, grace: float = 0.0) -> None:
    """Set ``stop`` once ``done`` completes (plus ``grace`` seconds for the last alarms)."""
    waiter = asyncio.ensure_future(done)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if waiter.done() and grace:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=grace)
    for task in (waiter, stopped):
        task.cancel()
    stop.set()


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"


def _grafana_provisioning(where: Path, influx_port: int) -> Path:
    """A copy of dashboards/provisioning pointing at this run's InfluxDB and at the
    dashboard JSON in the checkout, for ``GF_PATHS_PROVISIONING``."""
    source = DASHBOARDS / "provisioning"
    for sub, replace in (("datasources/influxdb.yaml",
                          ("http://127.0.0.1:8086", f"http://127.0.0.1:{influx_port}")),
                         ("dashboards/firewarden.yaml",
                          ("/var/lib/grafana/dashboards/firewarden", str(DASHBOARDS / "json")))):
        target = where / sub
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (source / sub).read_text(encoding="utf-8")
        target.write_text(text.replace(*replace), encoding="utf-8")
    return where


def _iso(epoch: float, scenario: Scenario) -> str:
    return datetime.fromtimestamp(epoch, scenario.zone).isoformat(timespec="minutes")


def _banner(scenario: Scenario, mqtt: int, influx: int, conf: Path, log: Path,
            truth: Path, grafana: Path) -> None:
    site = scenario.community.site
    real = scenario.duration / scenario.compression
    print(f"""firewarden demo: scenario {scenario.name}, {len(scenario.community.buildings)} \
buildings, {format_duration(scenario.duration)} of simulated time in {format_duration(real)}
  {scenario.description.splitlines()[0] if scenario.description else ''}
  mosquitto  127.0.0.1:{mqtt}    watch: mosquitto_sub -p {mqtt} -t 'firewarden/{site}/#' -v
  influxdb   127.0.0.1:{influx}   query: influx -port {influx} -database firewarden \
-execute 'SELECT * FROM alarms'
  config     {conf}   (firewarden check -c {conf})
  daemon log {log}
  truth      {truth}
  grafana    GF_PATHS_PROVISIONING={grafana} grafana-server  (or copy {grafana}/* into
             /etc/grafana/provisioning/): six dashboards over this run's InfluxDB; the data is
             stamped with the scenario's clock, so set the time range to
             {_iso(scenario.start, scenario)} .. {_iso(scenario.end, scenario)}
  Ctrl-C stops everything.
""", flush=True)
