"""``firewarden simulate --scenario NAME``: run a scenario's community on real sockets.

``add_arguments(parser)`` and ``run(args)`` are what ``daemon/cli.py`` wires in; ``main`` is
``python -m simulator.community``. The run writes the ground truth (``truth.json``) before
it starts, optionally the daemon config for the running community, then prints each event as
it starts and ends (simulated and real time) until the scenario ends or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.durations import parse_duration
from simulator.community.daemon_config import daemon_config
from simulator.community.events import Event
from simulator.community.scenario import Scenario, ScenarioError, available, load_scenario
from simulator.community.timeparse import format_duration, local_clock
from simulator.community.topology import locate
from simulator.community.truth import write_truth
from simulator.toml_writer import dump_toml

if TYPE_CHECKING:  # the runner pulls in pymodbus: imported when a scenario really runs
    from simulator.community.runner import CommunityRunner, TimelineEntry, UitdMode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options."""
    parser.add_argument("--scenario", default="evening",
                        help="a shipped scenario name (see --list) or a TOML file path")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios")
    parser.add_argument("--compression", type=float, default=None, metavar="X",
                        help="simulated seconds per real second (default: the scenario's)")
    parser.add_argument("--duration", default=None, metavar="SPAN",
                        help="run this long in simulated time instead, e.g. 30m, 2h")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve Modbus TCP on")
    parser.add_argument("--port", type=int, default=0,
                        help="first building's Modbus TCP port, the next buildings count up "
                             "(default: free ports)")
    parser.add_argument("--uitd", default="none", metavar="MODE",
                        help="fire panels: none, pty (socat pairs) or tcp-client:HOST:PORT "
                             "(building i connects to PORT+i)")
    parser.add_argument("--config-out", type=Path, default=None, metavar="FILE",
                        help="write a firewarden config for the running community")
    parser.add_argument("--truth-out", type=Path, default=None, metavar="FILE",
                        help="ground truth JSON (default: var/simulate/NAME/truth.json)")
    parser.add_argument("--tick", type=float, default=0.5, metavar="SECONDS",
                        help="real seconds between device updates (default: 0.5)")


def run(args: argparse.Namespace) -> int:
    """Run ``simulate``; 0 when the scenario ran to its end (or Ctrl-C), 2 on bad input."""
    if args.list:
        for name, description in available().items():
            print(f"{name:16} {description}")
        return 0
    from simulator.community.runner import UitdMode

    try:
        scenario = load_scenario(args.scenario)
        duration = parse_duration(args.duration) if args.duration else None
        scenario = scenario.with_overrides(compression=args.compression, duration=duration)
        uitd = UitdMode.parse(args.uitd)
    except ScenarioError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    truth_path = args.truth_out or Path("var/simulate") / scenario.name / "truth.json"
    write_truth(scenario, truth_path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(scenario, args, uitd, truth_path))
    return 0


async def _serve(scenario: Scenario, args: argparse.Namespace, uitd: UitdMode,
                 truth_path: Path) -> None:
    from simulator.community.runner import CommunityRunner

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with CommunityRunner(scenario, host=args.host, port=args.port, uitd=uitd,
                               tick=args.tick, on_timeline=_printer(scenario)) as runner:
        if args.config_out is not None:
            config = daemon_config(scenario.community, runner.endpoints)
            args.config_out.parent.mkdir(parents=True, exist_ok=True)
            args.config_out.write_text(dump_toml(
                config, f"written by `firewarden simulate --scenario {scenario.name}`"),
                encoding="utf-8")
        _banner(scenario, runner, truth_path, args.config_out)
        finished = asyncio.create_task(runner.wait_finished())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (finished, stopped):
            task.cancel()
        for b, panel in runner.panels.items():
            s = panel.stats
            print(f"panel b{b}: {s.sent} reports sent, {s.acks} ACKed, {s.resends} resent, "
                  f"{s.heartbeats} heartbeats", flush=True)
        print("scenario finished" if runner.finished.is_set() else "stopped", flush=True)


def _banner(scenario: Scenario, runner: CommunityRunner, truth: Path,
            config: Path | None) -> None:
    c = scenario.community
    zone = scenario.zone
    real = scenario.duration / scenario.compression
    summary = scenario.description.splitlines()[0] if scenario.description else ""
    print(f"scenario {scenario.name}: {summary}")
    print(f"  site {c.site} ({c.latitude:.2f}, {c.longitude:.2f}, {c.timezone}), "
          f"{len(c.buildings)} buildings, {len(c.devices())} Modbus devices")
    print(f"  {local_clock(scenario.start, zone)} -> {local_clock(scenario.end, zone)} "
          f"({format_duration(scenario.duration)}) at x{scenario.compression:g}: "
          f"{format_duration(real)} real, {len(scenario.events)} events")
    for b, (host, port) in runner.endpoints.modbus.items():
        panel = runner.endpoints.fire_panels.get(b)
        where = f", fire panel {panel.transport} {panel.port}" if panel else ""
        print(f"  building {b}: Modbus TCP {host}:{port}{where}")
    print(f"  truth   {truth}")
    if config is not None:
        print(f"  config  {config}")
    print(flush=True)


def describe(event: Event) -> str:
    """One line for people: what the event does."""
    p = event.params
    if event.kind == "ebike":
        return (f"e-bike charging, CC {float(p['cc_w']):.0f} W for "
                f"{format_duration(float(p['cc']))}, CV taper "
                f"{format_duration(float(p['cv']))}, PF {float(p['pf']):.2f}")
    if event.kind == "heater":
        return f"heater {float(p['watts']):.0f} W, PF {float(p['pf']):.2f}"
    if event.kind == "unmetered-tap":
        return f"unmetered tap {float(p['amps']):.1f} A on {p['phase']}"
    if event.kind == "lamp-failure":
        return f"lamp failure ({p['mode']}) on channel {p['channel']}"
    if event.kind == "leakage-creep":
        return f"residual current creeping to {float(p['to_ma']):.0f} mA"
    if event.kind == "cable-heating":
        return f"cable heating to {float(p['to_c']):.0f} °C on probe {p['channel']}"
    if event.kind == "device-garbage":
        return f"device answering garbage ({p['mode']})"
    return {"smoke-fire": "smoke fire", "detector-fault": "detector fault",
            "device-silent": "device silent"}.get(event.kind, event.kind)


def _printer(scenario: Scenario) -> Callable[[TimelineEntry], None]:
    zone = scenario.zone

    def show(entry: TimelineEntry) -> None:
        e = entry.event
        where = locate(scenario.community, e.target)
        text = describe(e) if entry.phase == "start" else e.kind
        print(f"[{local_clock(entry.sim_time, zone)} | real {entry.real_offset:7.1f}s] "
              f"{entry.phase.upper():5} {text} on {e.target} (building {where.building})",
              flush=True)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.community --scenario evening``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.community",
                                     description="Run a simulated residential community.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
