"""Rule engine throughput: ``python -m bench.bench_rules [--repeats R]``.

Readings per second through ``rules.engine.RuleEngine`` and the alarm state machine on one
core, in process. The engine is exactly the daemon's: the simulated community of the
``evening`` scenario (three buildings: incomers, sub-circuit meters, residual-current
detectors, Modbus smoke detectors, lighting controllers) becomes a config with
``simulator.community.daemon_config``, is validated with ``daemon.config.validate_config`` and
turned into rules with ``daemon.assembly.device_rules``/``policies``/``flood_policy``, so every
catalog rule (overload, thermal, leakage, temperature, smoke, lighting, wiring, comms, ...)
runs at its configured parameters.

The readings are built beforehand (not timed): every ``POLL`` s of the scenario's 6 simulated
hours, ``CommunityModel.sample`` gives each device's values, in its profile's point order, plus
the four health readings a poll emits (online, latency, errors, CRC errors). On top of the
scenario's own events (leakage creeping up, a lamp failing, an e-bike, a heater), every
detector's residual current jumps to 420 mA for ``PULSE`` s every ``PULSE_EVERY`` s, so
alarms are raised and cleared throughout. Timed, like ``daemon.pipeline.Pipeline``: ``evaluate``
and ``take_derived`` for every reading, ``tick`` once per poll cycle. The rate is the median
of ``--repeats`` passes, each with a fresh engine; target >= ``TARGET`` readings/s. Writes
``bench/results/rules.json``; exits 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from core.measurements import Quantity, Reading
from daemon.assembly import device_rules, flood_policy, policies
from daemon.config import LoadedConfig, validate_config
from rules.engine import RuleEngine
from simulator.community import CommunityModel, load_scenario
from simulator.community.daemon_config import Endpoints, daemon_config

SCENARIO = "evening"
POLL = 10.0  # s of simulated time between polls
PULSE = 120.0  # s a detector's leakage pulse lasts
PULSE_EVERY = 1800.0  # s between one detector's pulses
PULSE_MA = 420.0
TARGET = 100_000.0
RESULTS = Path(__file__).parent / "results" / "rules.json"
HEALTH = (Quantity.ONLINE, Quantity.LATENCY, Quantity.ERRORS, Quantity.CRC_ERRORS)


def loaded_config() -> tuple[LoadedConfig, Any]:
    """The daemon's validated config for the scenario's community, and the scenario."""
    scenario = load_scenario(SCENARIO)
    community = scenario.community
    endpoints = Endpoints(modbus={b.id: ("127.0.0.1", 1502 + i)
                                  for i, b in enumerate(community.buildings)}, fire_panels={})
    raw = daemon_config(community, endpoints, poll=f"{POLL:g}s")
    return validate_config(raw, Path("bench-rules.toml")), scenario


def build_readings(loaded: LoadedConfig, scenario: Any) -> list[tuple[float, list[Reading]]]:
    """(poll time, that poll's readings) for the whole scenario."""
    model = CommunityModel(scenario)
    profiles = loaded.profiles
    names = [d.name for d in loaded.config.devices if d.enabled]
    detectors = [d.name for d in loaded.config.devices if d.kind == "detector"]
    cycles: list[tuple[float, list[Reading]]] = []
    t = scenario.start
    while t < scenario.end:
        sample = model.sample(t)
        batch: list[Reading] = []
        for name in names:
            values = sample.get(name)
            if values is None:
                continue
            for point in profiles[name].points:
                value = values.get((point.quantity.value, point.channel))
                if value is None:
                    continue
                if name in detectors and point.quantity is Quantity.RESIDUAL_CURRENT:
                    phase = (t - scenario.start + detectors.index(name) * 300.0) % PULSE_EVERY
                    if phase < PULSE:
                        value = PULSE_MA
                batch.append(Reading(ts=t, device=name, quantity=point.quantity, value=value,
                                     channel=point.channel))
            for quantity, value in zip(HEALTH, (1.0, 12.5, 0.0, 0.0), strict=True):
                batch.append(Reading(ts=t, device=name, quantity=quantity, value=value))
        cycles.append((t, batch))
        t += POLL
    return cycles


def one_pass(loaded: LoadedConfig,
             cycles: list[tuple[float, list[Reading]]]) -> tuple[float, collections.Counter[str]]:
    """Seconds to run every reading through a fresh engine, and the events by kind."""
    engine = RuleEngine(devices=device_rules(loaded), policies=policies(loaded.config),
                        flood=flood_policy(loaded.config))
    kinds: collections.Counter[str] = collections.Counter()
    evaluate, take_derived, tick = engine.evaluate, engine.take_derived, engine.tick
    gc.collect()
    started = time.perf_counter()
    for t, batch in cycles:
        for reading in batch:
            for event in evaluate(reading):
                kinds[event.kind.value] += 1
            take_derived()
        for event in tick(t):
            kinds[event.kind.value] += 1
        take_derived()
    return time.perf_counter() - started, kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_rules")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    loaded, scenario = loaded_config()
    cycles = build_readings(loaded, scenario)
    n = sum(len(b) for _, b in cycles)
    rules = sum(len(r.rules) for r in device_rules(loaded).values())
    print(f"{SCENARIO}: {len(loaded.config.devices)} devices, {rules} rule instances, "
          f"{len(cycles)} polls every {POLL:g} s, {n:,} readings per pass "
          f"(built in {time.perf_counter() - started:.1f} s)")
    rates: list[float] = []
    kinds: collections.Counter[str] = collections.Counter()
    for r in range(args.repeats):
        seconds, kinds = one_pass(loaded, cycles)
        rates.append(n / seconds)
        print(f"pass {r + 1}: {seconds:6.2f} s  {n / seconds:>10,.0f} readings/s", flush=True)
    rate = statistics.median(rates)
    elapsed = time.perf_counter() - started
    met = rate >= TARGET
    events = dict(sorted(kinds.items()))
    print(f"\n{'readings/s (median)':<24}{rate:>12,.0f}   (target >= {TARGET:,.0f}: "
          f"{'met' if met else 'MISSED'})")
    print(f"{'µs per reading':<24}{1e6 / rate:>12.2f}")
    print(f"{'alarm events per pass':<24}{sum(kinds.values()):>12,}   "
          + ", ".join(f"{k} {v}" for k, v in events.items()))
    print(f"runtime {elapsed:.1f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "scenario": SCENARIO, "poll_s": POLL, "devices": len(loaded.config.devices),
        "rule_instances": rules, "readings_per_pass": n, "repeats": args.repeats,
        "readings_per_s": round(rate), "rounds": [round(x) for x in rates],
        "us_per_reading": round(1e6 / rate, 3), "target": TARGET, "met": met,
        "events": events, "runtime_s": round(elapsed, 1)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
