"""``firewarden`` command line: run, check, read, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from daemon.config import ConfigError, LoadedConfig, load_config
from daemon.plan import render_plan

EXIT_CONFIG = 2
EXIT_DEVICE = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    handler = {"run": _run, "check": _check, "read": _read, "demo": _demo}[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firewarden",
        description="Electrical and fire safety monitoring for residential communities.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (foreground; systemd Type=notify)")
    run.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    check = sub.add_parser("check", help="validate a config and print what will be polled")
    check.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")

    read = sub.add_parser("read", help="read one device once and print its values")
    read.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    read.add_argument("--device", required=True, help="device name from the config")
    read.add_argument("--json", action="store_true", help="print a JSON list")

    demo = sub.add_parser("demo", help="simulated community + private broker + InfluxDB + daemon")
    demo.add_argument("--var", type=Path, default=Path("var/demo"),
                      help="where the demo keeps its data and logs (default: var/demo)")
    demo.add_argument("--cross-after", type=float, default=8.0, metavar="SECONDS",
                      help="when the simulated current crosses the limit (default: 8)")
    demo.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                      help="stop after this long (default: run until Ctrl-C)")
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log transitions ourselves


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
    from daemon.app import run

    return run(loaded)


def _check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    print(render_plan(loaded))
    return 0


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


def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo  # the only place the daemon's CLI touches the simulator

    return run_demo(var=args.var, cross_after=args.cross_after, duration=args.duration)


if __name__ == "__main__":
    sys.exit(main())
