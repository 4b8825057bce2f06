"""RTU bus throughput: the achieved poll cycle against the wire time of the plans.

Over a socat pty pair with the RTU simulator pacing its answers to 9600 baud, N SDM630 meters
plus detectors are read in full, cycle after cycle, through the production transport. The
theoretical cycle is ``wire_time_ms`` of every device's plan (both frames of every request and
their silent intervals); the ratio theoretical / achieved says how much of the bus the master
actually uses (target >= 0.85). Run with ``python -m bench.bench_rtu_bus``; writes
``bench/results/rtu_bus.json``.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from drivers.modbus.planner import ReadRequest, wire_time_ms
from drivers.modbus.poller import plan_points
from drivers.modbus.serial import ModbusRtuTransport
from drivers.profile import Profile, load_profile
from simulator.modbus import SimulatedDevice
from simulator.pty import SocatPair
from simulator.rtu import RtuSimulator

BAUD = 9600
TARGET = 0.85
RESULTS = Path(__file__).parent / "results" / "rtu_bus.json"
# (meters, detectors, cycles): fewer cycles for big buses keeps the run under a minute
CONFIGS = [(1, 1, 6), (4, 2, 3), (8, 4, 2)]


@dataclass(frozen=True)
class Row:
    meters: int
    detectors: int
    requests: int
    cycles: int
    theoretical_ms: float
    achieved_ms: float
    ratio: float


async def measure(pair: SocatPair, meters: int, detectors: int, cycles: int) -> Row:
    meter, detector = load_profile("eastron-sdm630"), load_profile("residual-current-temperature")
    profiles: list[Profile] = [meter] * meters + [detector] * detectors
    units = list(range(1, len(profiles) + 1))
    plans: list[tuple[int, list[ReadRequest]]] = [
        (unit, plan_points(profile, profile.points)) for unit, profile in zip(units, profiles,
                                                                           strict=True)]
    theoretical = sum(wire_time_ms(requests, baudrate=BAUD) for _, requests in plans)
    devices = [SimulatedDevice(p, u) for u, p in zip(units, profiles, strict=True)]
    async with (RtuSimulator(pair.b, devices, baudrate=BAUD, pace=True),
                ModbusRtuTransport(port=str(pair.a), baudrate=BAUD, timeout=1.0) as link):
        async def cycle() -> None:
            for unit, requests in plans:
                for request in requests:
                    await link.read(request.table, request.address, request.count, unit)

        await cycle()  # warm-up: first opens, caches
        started = time.perf_counter()
        for _ in range(cycles):
            await cycle()
        achieved = (time.perf_counter() - started) * 1000.0 / cycles
    return Row(meters, detectors, sum(len(r) for _, r in plans), cycles,
               round(theoretical, 1), round(achieved, 1), round(theoretical / achieved, 3))


async def run() -> list[Row]:
    rows = []
    with SocatPair() as pair:
        for meters, detectors, cycles in CONFIGS:
            rows.append(await measure(pair, meters, detectors, cycles))
    return rows


def main() -> None:
    rows = asyncio.run(run())
    print(f"Modbus RTU over a pty, simulator paced to {BAUD} baud (8N1)")
    print(f"{'meters':>6} {'detectors':>9} {'requests':>8} {'wire ms':>9} {'cycle ms':>9} "
          f"{'ratio':>6}")
    for row in rows:
        print(f"{row.meters:>6} {row.detectors:>9} {row.requests:>8} {row.theoretical_ms:>9.1f} "
              f"{row.achieved_ms:>9.1f} {row.ratio:>6.3f}")
    worst = min(row.ratio for row in rows)
    verdict = "meets" if worst >= TARGET else "misses"
    print(f"worst ratio {worst:.3f} {verdict} the target {TARGET}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "baudrate": BAUD, "target": TARGET, "worst_ratio": worst,
        "python": sys.version.split()[0], "machine": platform.machine(),
        "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
