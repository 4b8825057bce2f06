"""The simulator's ``firewarden`` subcommands, ``demo`` and ``simulate``, registered through
the ``firewarden.commands`` entry point so the daemon's CLI never imports the simulator."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="simulated community + private broker + InfluxDB + daemon")
    demo.add_argument("--var", type=Path, default=Path("var/demo"),
                      help="where the demo keeps its data and logs (default: var/demo)")
    demo.add_argument("--scenario", default="evening",
                      help="scenario to play (default: evening; see simulate --list)")
    demo.add_argument("--compression", type=float, default=None, metavar="X",
                      help="simulated seconds per real second (default: the scenario's)")
    demo.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                      help="stop after this many real seconds (default: when the scenario "
                           "ends, or Ctrl-C)")
    demo.set_defaults(handler=_demo)

    from simulator.community.cli import add_arguments

    simulate = sub.add_parser("simulate", help="run a simulated community scenario (Modbus "
                                               "gateways, fire panels, ground truth)")
    add_arguments(simulate)
    simulate.set_defaults(handler=_simulate)


def _demo(args: argparse.Namespace) -> int:
    from simulator.demo import run_demo

    return run_demo(var=args.var, scenario=args.scenario, compression=args.compression,
                    duration=args.duration)


def _simulate(args: argparse.Namespace) -> int:
    from simulator.community.cli import run

    return run(args)
