"""``firewarden`` command line: run, check, read, scan, alarms, gb26875, simulate, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import logs
from daemon.config import ConfigError, LoadedConfig, load_config
from daemon.plan import render_plan, secret_problems

if TYPE_CHECKING:  # the scan's I/O stack loads only when scanning
    from daemon.scan import ScanResult

EXIT_CONFIG = 2
EXIT_DEVICE = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    builtin = {"run": _run, "check": _check, "read": _read, "scan": _scan, "gb26875": _gb26875,
               "alarms": _alarms, "report": _report}
    handler: Callable[[argparse.Namespace], int] = builtin.get(args.command) or args.handler
    return handler(args)


def _add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands from installed packages (entry-point group ``firewarden.commands``): each is a
    ``register(sub)`` that adds its parser with ``handler`` set. The simulator's ``demo`` and
    ``simulate`` come this way, so the daemon never imports the simulator."""
    for entry in sorted(entry_points(group="firewarden.commands"), key=lambda e: e.name):
        entry.load()(sub)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firewarden",
        description="Electrical and fire safety monitoring for residential communities.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (foreground; systemd Type=notify)")
    run.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--simulated-clock", metavar="START:RATE[:AT]", type=_clock_spec,
                     help="for simulations only: stamp readings and run the rules on a clock "
                          "that reads epoch START at real epoch AT (default: now) and runs "
                          "RATE times real time")

    check = sub.add_parser("check", help="validate a config and print what will be polled")
    check.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")

    read = sub.add_parser("read", help="read one device once and print its values")
    read.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    read.add_argument("--device", required=True, help="device name from the config")
    read.add_argument("--json", action="store_true", help="print a JSON list")

    scan = sub.add_parser(
        "scan", help="find the devices on a bus and guess their profiles",
        description="Probe unit ids on a serial bus (--port DEVICE) or a Modbus TCP gateway "
                    "(--host HOST [--port 502]) and list the responders with a guessed profile. "
                    "Exit 0 if any device answered, 1 if none did, 2 on bad arguments.")
    scan.add_argument("--host", help="Modbus TCP device or gateway (then --port is a TCP port)")
    scan.add_argument("--port", help="serial device (e.g. /dev/ttyUSB0), or the TCP port with "
                                     "--host (default 502)")
    scan.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    scan.add_argument("--parity", choices=["N", "E", "O"], default="N",
                      help="serial parity (default N)")
    scan.add_argument("--units", help="unit ids, e.g. 1-10,15 (default 1-247)")
    scan.add_argument("--timeout", type=float, default=0.3, metavar="SECONDS",
                      help="wait per unit before calling it silent (default 0.3)")
    scan.add_argument("--rtu-over-tcp", action="store_true",
                      help="the gateway at --host forwards RTU frames as they are")
    scan.add_argument("--json", action="store_true", help="print a JSON list")

    gb = sub.add_parser("gb26875", help="GB/T 26875.3 fire-panel frames (field debugging)")
    gb_sub = gb.add_subparsers(dest="gb_command", metavar="ACTION", required=True)
    decode = gb_sub.add_parser("decode", help="decode one captured frame given in hex")
    decode.add_argument("hex", nargs="+", help="frame bytes in hex (spaces, ':' and 0x allowed)")
    decode.add_argument("--json", action="store_true", help="print nested JSON")

    alarms = sub.add_parser(
        "alarms", help="list alarms, or ack/shelve/reset one through the running daemon",
        description="list reads the alarm store (works while the daemon is down); the other "
                    "actions are sent to the running daemon over MQTT. Exit 0 done, 1 refused "
                    "(the reason is printed), 2 bad config, 3 daemon unreachable.")
    alarms.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    from daemon.alarmctl import add_arguments as alarm_arguments

    alarm_arguments(alarms)

    report = sub.add_parser(
        "report", help="the morning report: alarms, lamp patrol, wiring, offline, completeness",
        description="Builds the report from the alarm store (read-only) and, where it answers, "
                    "InfluxDB; prints markdown, HTML or JSON. Exit 0 done, 2 bad config or "
                    "unreadable store.")
    report.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    from daemon.report_io import add_arguments as report_arguments

    report_arguments(report)

    _add_plugin_commands(sub)
    return parser


def _setup_logging(level: str) -> None:
    logs.setup(level)


def _load(path: Path) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s); nothing was started", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    if args.log_level is None:
        logging.getLogger().setLevel(loaded.config.daemon.log_level)
    from daemon.app import run, simulated_clock

    if args.simulated_clock is not None:
        start, rate, at = args.simulated_clock
        logging.getLogger("firewarden").warning(
            "simulated clock: reads %.0f at %.3f, runs %gx real time", start, at, rate)
        return run(loaded, simulated_clock(start, rate, at=at), clock_rate=rate)
    return run(loaded)


def _clock_spec(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(part) for part in text.split(":")]
        start, rate = parts[:2]
        at = parts[2] if len(parts) == 3 else time.time()
        if len(parts) not in (2, 3):
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"use START:RATE, e.g. 1731661200:120 (got {text!r})") from None
    if not 0 < rate <= 10_000 or start < 0:
        raise argparse.ArgumentTypeError(f"START must be >= 0 and RATE in (0, 10000] "
                                         f"(got {text!r})")
    return start, rate, at


def _check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    print(render_plan(loaded))
    problems = secret_problems(loaded)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    from daemon.probe import probe

    for finding in probe(loaded.config):  # listeners bind, state is writable (or why not)
        if finding.level == "ok":
            print(f"probe: {finding.text}")
        else:
            print(f"{finding.level}: {finding.text}", file=sys.stderr)
            if finding.level == "error":
                problems.append(finding.text)
    return EXIT_CONFIG if problems else 0


def _read(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    config = loaded.config
    names = [d.name for d in config.devices]
    if args.device not in names:
        print(f"error: --device: {args.device!r} is not in {args.config} "
              f"(devices: {', '.join(names) or 'none'})", file=sys.stderr)
        return EXIT_CONFIG
    from drivers.modbus.poller import PolledDevice, read_once

    device = config.device(args.device)
    polled = PolledDevice(config=device, profile=loaded.profiles[device.name])
    try:
        readings = asyncio.run(read_once(config.bus(device.bus), polled, time.time))
    except Exception as exc:  # the user wants the reason, not a traceback
        print(f"error: reading {device.name} failed: {exc}", file=sys.stderr)
        return EXIT_DEVICE
    values = [r for r in readings if r.quantity.spec.measurement != "device_health"]
    if not values:
        print(f"error: {device.name} did not answer", file=sys.stderr)
        return EXIT_DEVICE
    if args.json:
        print(json.dumps([{
            "quantity": r.quantity.value, "channel": r.channel, "value": r.value,
            "unit": r.unit, "quality": r.quality.value, "ts": r.ts,
        } for r in values], ensure_ascii=False, indent=2))
    else:
        for r in values:
            name = f"{r.quantity.value}{'/' + r.channel if r.channel else ''}"
            flag = "" if r.good else "  (bad quality)"
            print(f"{name:<24} {r.value:>14.4g} {r.unit}{flag}")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from daemon import scan
    from drivers.modbus.errors import ModbusError, UnsupportedBusError

    try:
        bus = scan.scan_bus(host=args.host, port=args.port, baudrate=args.baudrate,
                            parity=args.parity, timeout=args.timeout,
                            rtu_over_tcp=args.rtu_over_tcp)
        lowest, highest = scan.unit_range(bus)
        units = scan.parse_units(args.units or "1-247", lowest=lowest, highest=highest)
    except ValueError as exc:  # pydantic's ValidationError is one too
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    found = 0
    with Progress(TextColumn("scanning {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[found]} found"), TimeElapsedColumn(), console=err,
                  transient=True, disable=args.json or not err.is_terminal) as bar:
        task = bar.add_task(bus.endpoint, total=len(units), found=0)

        def advance(unit: int, result: scan.ScanResult | None) -> None:
            nonlocal found
            found += result is not None
            bar.update(task, advance=1, found=found)

        try:
            results = asyncio.run(scan.scan(bus, units, progress=advance))
        except (UnsupportedBusError, ValueError) as exc:  # settings no transport accepts
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except (ModbusError, OSError) as exc:  # the bus itself could not be opened
            print(f"error: scanning {bus.endpoint} failed: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2))
    else:
        _print_scan(results, bus.endpoint, len(units))
    return 0 if results else 1


def _one_line(exc: ValueError) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                         for e in exc.errors())
    return str(exc)


def _print_scan(results: Sequence[ScanResult], endpoint: str, probed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if not out.is_terminal:  # piped: rich would assume 80 columns and wrap every row
        out = Console(width=160)
    if not results:
        out.print(f"no device answered on {endpoint} ({probed} unit ids probed)")
        return
    table = Table(title=f"{len(results)} device(s) on {endpoint}")
    numbers = ("unit", "score", "confidence")
    for column in ("unit", "profile", "score", "confidence", "values", "runner-up"):
        table.add_column(column, justify="right" if column in numbers else "left",
                         no_wrap=column != "values")
    for result in results:
        best, second = result.best, result.runner_up
        values = ", ".join(f"{r.quantity.value}{'/' + r.channel if r.channel else ''} "
                           f"{r.value:.4g}{(' ' + r.unit) if r.unit else ''}"
                           for r in result.key_values())
        table.add_row(str(result.unit), best.profile if best else "unknown",
                      f"{best.score:.1f}" if best else "-", f"{result.confidence:.2f}", values,
                      f"{second.profile} ({second.score:.1f})" if second else "-")
    out.print(table)


def _gb26875(args: argparse.Namespace) -> int:
    from drivers.gb26875.codec import decode_hex, describe, frame_to_json

    try:
        frame = decode_hex(" ".join(args.hex))
    except ValueError as exc:  # FrameError is a ValueError carrying the reason
        reason = getattr(getattr(exc, "reason", None), "value", "not_hex")
        print(f"error: {reason}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(frame_to_json(frame), ensure_ascii=False, indent=2))
    else:
        print(describe(frame))
    return 0


def _alarms(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    from daemon.alarmctl import run as run_alarms

    return run_alarms(loaded, args)


def _report(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    from daemon.report_io import run as run_report

    return run_report(loaded, args)


if __name__ == "__main__":
    sys.exit(main())
