"""InfluxDB sink benchmark: ``python -m bench.bench_influx [--points N] [--rounds R]``.

Against one private influxd 1.x, in the same run and alternating rounds:

- **raw**: pre-formatted line protocol POSTed in batches of ``BATCH`` lines, one request after
  the other (the best a client can do over one connection; formatting not counted);
- **sink**: ``InfluxSink.add`` of the same number of Readings (formatting, batching, gzip and
  the spool machinery included) until ``drain`` returns;
- **replay**: the spool filled while the server is away, then drained to the server.

Prints points/s per round, the medians and the median of the rounds' sink/raw ratios
(target >= 0.9; rounds alternate which goes first), and writes
``bench/results/influx.json``. Exits 1 if the ratio misses the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from core.measurements import Quantity, Reading
from daemon.config import InfluxConfig
from daemon.sinks.influx import InfluxSink
from daemon.sinks.lineprotocol import reading_line
from simulator.services import InfluxDB

BATCH = 5000
FEED = 500  # readings added between yields to the loop (a poll cycle's worth)
TARGET = 0.9
RESULTS = Path(__file__).parent / "results" / "influx.json"
T0 = 1731661200.0
DEVICES = 50
TAGS = {f"b{i // 10}-box{i % 10}-main": {"building": str(i // 10), "box": str(i % 10),
                                         "circuit": "main", "kind": "incomer", "bus": "gw"}
        for i in range(DEVICES)}
NAMES = list(TAGS)
QUANTITIES = (Quantity.CURRENT, Quantity.VOLTAGE, Quantity.POWER, Quantity.POWER_FACTOR)


def readings(n: int, offset: float) -> list[Reading]:
    """``n`` readings like a community's meters produce them (4 quantities x 3 phases)."""
    out = []
    for i in range(n):
        device = NAMES[i % DEVICES]
        quantity = QUANTITIES[(i // DEVICES) % len(QUANTITIES)]
        phase = ("L1", "L2", "L3")[(i // (DEVICES * len(QUANTITIES))) % 3]
        ts = T0 + offset + (i // (DEVICES * len(QUANTITIES) * 3)) * 1.0
        out.append(Reading(ts=ts, device=device, quantity=quantity, value=float(i % 997),
                           channel=phase))
    return out


async def raw_rate(server: InfluxDB, db: str, lines: list[str]) -> float:
    server.create_database(db)
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for i in range(0, len(lines), BATCH):
            body = ("\n".join(lines[i:i + BATCH]) + "\n").encode()
            async with session.post(f"{server.url}/write", params={"db": db, "precision": "ns"},
                                    data=body) as response:
                assert response.status == 204, await response.text()
        return len(lines) / (time.perf_counter() - started)


async def sink_rate(server: InfluxDB, db: str, batch: list[Reading], spool: Path) -> float:
    server.create_database(db)
    config = InfluxConfig(url=server.url, database=db, batch_size=BATCH, flush_interval=0.05)
    async with InfluxSink(config=config, site="bench", device_tags=TAGS, spool=spool) as sink:
        started = time.perf_counter()
        # Readings arrive in bursts as polls complete; the writer works in between.
        for i in range(0, len(batch), FEED):
            for reading in batch[i:i + FEED]:
                sink.add(reading)
            await asyncio.sleep(0)
        await sink.drain()
        elapsed = time.perf_counter() - started
        assert sink.stats.written == len(batch), sink.stats
    return len(batch) / elapsed


async def replay_rate(server: InfluxDB, db: str, batch: list[Reading], spool: Path) -> float:
    """Fill the spool with the server stopped, then time draining it."""
    server.stop()
    config = InfluxConfig(url=server.url, database=db, batch_size=BATCH, flush_interval=0.05,
                          timeout=1.0)
    async with InfluxSink(config=config, site="bench", device_tags=TAGS, spool=spool,
                          retry_initial=0.05, retry_max=0.1, close_timeout=0.2) as sink:
        for reading in batch:
            sink.add(reading)
    # leaving the context spills what the failing writer had not spooled yet
    server.start()
    server.create_database(db)
    async with InfluxSink(config=config, site="bench", device_tags=TAGS, spool=spool) as sink:
        started = time.perf_counter()
        await sink.drain()
        elapsed = time.perf_counter() - started
    return len(batch) / elapsed


async def run(points: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB(workdir=Path(tmp) / "influxd")
        with server:
            raws: list[float] = []
            sinks: list[float] = []
            for r in range(rounds):
                batch = readings(points, offset=r * 100_000.0)
                lines = [reading_line(x, "bench", TAGS[x.device]) for x in batch]
                # alternate who goes first: the server slows as its databases grow
                if r % 2 == 0:
                    raws.append(await raw_rate(server, f"raw{r}", lines))
                sinks.append(await sink_rate(server, f"sink{r}", batch,
                                             Path(tmp) / f"spool{r}.db"))
                if r % 2 == 1:
                    raws.append(await raw_rate(server, f"raw{r}", lines))
                print(f"round {r + 1}: raw {raws[-1]:>9,.0f} points/s   sink "
                      f"{sinks[-1]:>9,.0f} points/s", flush=True)
            replay = await replay_rate(server, "replay", readings(points, 10_000_000.0),
                                       Path(tmp) / "replay.db")
    raw, sink = statistics.median(raws), statistics.median(sinks)
    ratio = statistics.median(s / r for s, r in zip(sinks, raws, strict=True))
    return {"points": points, "rounds": rounds, "batch": BATCH,
            "raw_points_per_s": round(raw), "sink_points_per_s": round(sink),
            "ratio": round(ratio, 3), "target": TARGET,
            "spool_replay_points_per_s": round(replay),
            "raw_rounds": [round(x) for x in raws], "sink_rounds": [round(x) for x in sinks]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_influx")
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.points, args.rounds))
    print(f"\n{'':<28}{'points/s':>12}")
    print(f"{'raw line-protocol POSTs':<28}{result['raw_points_per_s']:>12,}")
    print(f"{'InfluxSink (ours)':<28}{result['sink_points_per_s']:>12,}")
    print(f"{'ratio ours/raw (median)':<28}{result['ratio']:>12.3f}   (target >= {TARGET})")
    print(f"{'spool replay':<28}{result['spool_replay_points_per_s']:>12,}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0 if result["ratio"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
