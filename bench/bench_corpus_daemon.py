"""The corpus through the real daemon: ``python -m bench.bench_corpus_daemon``.

Builds one ``bench.corpus`` instance (default ``holdout`` seed 7, 2 days, 2 buildings), serves
every device over Modbus TCP (``bench.corpus_serve``: one gateway per building, registers from
``corpus.series`` at each read's simulated second), writes a daemon config for it (site from
the corpus, one tcp bus per building, every device polled every 60 simulated seconds, lighting
controllers with their lamps; MQTT to a private mosquitto, InfluxDB to a private influxd) and
runs ``firewarden run --simulated-clock START:RATE:AT`` as a child process, ``RATE`` simulated
seconds per real second (default 720: two days in four minutes, a 60 s poll every 83 ms). Every
alarm the daemon raises on ``firewarden/<site>/events`` is scored with
``bench.corpus_score.score``, the same scoring as the offline benchmark.

Prints the score table, every alarm that matched no label (false or related) with its message,
how the daemon kept up (polls achieved per device against the schedule, refused readings, poll
lag) and writes ``bench/results/corpus_daemon.json``. Exits 1 when the daemon raised a
``comms-stale`` or ``alarm-flood`` alarm, or a ``comms`` alarm the corpus does not explain:
at this compression those are simulated-clock bugs, not detections. The corpus explains a
``comms`` alarm when it had the device offline (NaN) for a minute or more in the 15 minutes
before, or when the gateway answered two of its polls in a row with "no response" (two lost
answers: the daemon's silence limit is 2.5 polls, on a real site too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from bench.corpus_score import Alarm, CorpusLike, Window, render, score
from bench.corpus_serve import CorpusServer, ServedCorpus, daemon_config
from simulator.services import InfluxDB, Mosquitto
from simulator.toml_writer import dump_toml

RESULTS = Path(__file__).parent / "results" / "corpus_daemon.json"
SITE = "corpus"
POLL = 60.0  # simulated s between polls
RATE = 720.0  # simulated s per real s
LEAD = 5.0  # real s from starting the services to the scored window's start: the daemon
# starts meanwhile and runs LEAD * rate simulated seconds before it as a warm-up (not scored)
DRAIN = 3.0  # real s after the end for the last alarms to arrive
CLOCK_BUGS = ("comms-stale", "alarm-flood")  # any of these fails the run
COMMS = "comms"
OFFLINE_LOOKBACK = 900.0  # s before a comms alarm in which the corpus should show the outage
OFFLINE_MIN = 60.0  # s of NaN in a row: the device (or its bus) was offline, not one lost poll
LOST_PAIR = 130.0  # s: two lost answers at most this far apart are consecutive 60 s polls


@dataclass
class Run:
    """What one daemon run produced."""

    start: float  # simulated epoch s of the scored window
    end: float
    rate: float
    events: list[dict[str, Any]] = field(default_factory=list)  # MQTT events payloads
    daemon_rc: int | None = None
    real_s: float = 0.0
    influx: dict[str, Any] = field(default_factory=dict)
    served: dict[str, dict[str, int]] = field(default_factory=dict)
    silent_at: dict[str, list[float]] = field(default_factory=dict)  # "no response" answers
    log_tail: str = ""

    @property
    def alarms(self) -> list[Alarm]:
        """Every raised alarm (the "raised" transitions)."""
        return [Alarm(rule=str(e["rule"]), device=str(e["device"]),
                      channel=None if e.get("channel") is None else str(e["channel"]),
                      ts=float(e["ts"]), message=str(e.get("message", "")))
                for e in self.events if e.get("event") == "raised"]

    @property
    def scored_alarms(self) -> list[Alarm]:
        """The raised alarms in the scored window (not those of the warm-up before it)."""
        return [a for a in self.alarms if self.start <= a.ts <= self.end]


async def run_daemon(corpus: ServedCorpus, *, workdir: Path, rate: float = RATE,
                     begin: float = 0.0, end: float | None = None, poll: float = POLL,
                     log_level: str = "INFO") -> Run:
    """Serve ``corpus`` from ``begin`` to ``end`` (simulated s after its start; default: to its
    end) to ``firewarden run`` on a clock ``rate`` times real time; collect its alarms."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    start = corpus.start + begin
    stop_at = corpus.end if end is None else min(corpus.end, corpus.start + end)
    run = Run(start=start, end=stop_at, rate=rate)
    with Mosquitto(workdir=workdir / "mosquitto") as broker, \
            InfluxDB(workdir=workdir / "influxd") as influx:
        at = time.time() + LEAD

        def sim_now() -> float:
            return start + (time.time() - at) * rate

        async with CorpusServer(corpus, clock=sim_now) as server:
            conf = _write_config(workdir, corpus, server, broker.port, influx.port, poll)
            log_path = workdir / "daemon.log"
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.subscribe(f"firewarden/{SITE}/events", qos=1)
                reader = asyncio.create_task(_collect(client, run.events), name="events")
                daemon = await asyncio.to_thread(
                    _spawn, conf, log_path, log_level, f"{start:.3f}:{rate:g}:{at:.3f}")
                began = time.monotonic()
                try:
                    while sim_now() < stop_at:
                        if daemon.poll() is not None:
                            break
                        await asyncio.sleep(min(1.0, max(0.05, (stop_at - sim_now()) / rate)))
                    if daemon.poll() is None:
                        await asyncio.sleep(DRAIN)
                finally:
                    run.daemon_rc = await asyncio.to_thread(_stop, daemon)
                    run.real_s = time.monotonic() - began
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
            run.served = {name: {"reads": f.reads, "silent": len(f.silent_at)}
                          for name, f in server.feeds.items()}
            run.silent_at = {name: list(f.silent_at) for name, f in server.feeds.items()}
        run.log_tail = await asyncio.to_thread(_tail, log_path)
        run.influx = _influx_figures(influx, run, poll)
    return run


async def _collect(client: aiomqtt.Client, into: list[dict[str, Any]]) -> None:
    async for message in client.messages:
        payload = message.payload
        if isinstance(payload, bytes | bytearray):
            into.append(json.loads(bytes(payload).decode()))


def _spawn(conf: Path, log_path: Path, log_level: str, clock: str) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf), "--log-level",
             log_level, "--simulated-clock", clock],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stop(daemon: subprocess.Popen[bytes]) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return int(daemon.returncode)


def _write_config(workdir: Path, corpus: ServedCorpus, server: CorpusServer, mqtt_port: int,
                  influx_port: int, poll: float) -> Path:
    raw = daemon_config(corpus, server.endpoints, site=SITE, poll=f"{poll:g}s")
    raw |= {"influxdb": {"url": f"http://127.0.0.1:{influx_port}", "database": "firewarden",
                         "flush_interval": "1s"},
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
            "daemon": {"state_dir": str(workdir / "state")}}
    path = workdir / "corpus.toml"
    path.write_text(dump_toml(raw, "written by bench.bench_corpus_daemon"), encoding="utf-8")
    return path


def _influx_figures(influx: InfluxDB, run: Run, poll: float) -> dict[str, Any]:
    """Polls per device in the window against the schedule, and the daemon's own figures."""
    window = f"time >= {int(run.start * 1e9)} AND time < {int(run.end * 1e9)}"
    try:
        polls = influx.query("firewarden", f"SELECT count(online) FROM device_health "
                                           f"WHERE {window} GROUP BY device")
        own = influx.query("firewarden", "SELECT max(readings_refused) AS refused, "
                                         "max(poll_lag_ms) AS lag_ms, max(queue_depth) AS queue, "
                                         f"max(influx_lost) AS lost FROM firewarden WHERE {window}")
        span = influx.query("firewarden", f"SELECT count(voltage_v) AS n FROM power "
                                          f"WHERE {window}")
        first = influx.query("firewarden", "SELECT first(voltage_v) FROM power", epoch="s")
        last = influx.query("firewarden", "SELECT last(voltage_v) FROM power", epoch="s")
    except Exception as exc:  # a figure we could not get must not lose the score
        return {"error": repr(exc)}
    expected = (run.end - run.start) / poll
    per_device = {str(r.get("device")): int(r.get("count", 0)) for r in polls}
    ratios = [n / expected for n in per_device.values()] if expected else []
    return {
        "expected_polls_per_device": round(expected, 1),
        "polls_per_device": per_device,
        "poll_ratio_min": round(min(ratios), 3) if ratios else None,
        "poll_ratio_median": round(float(np.median(ratios)), 3) if ratios else None,
        "readings_refused": own[0].get("refused") if own else None,
        "poll_lag_ms_max": own[0].get("lag_ms") if own else None,
        "queue_depth_max": own[0].get("queue") if own else None,
        "influx_lost": own[0].get("lost") if own else None,
        "power_points": int(span[0].get("n", 0)) if span else 0,
        "first_power_ts": first[0].get("time") if first else None,
        "last_power_ts": last[0].get("time") if last else None,
    }


def offline_before(corpus: ServedCorpus, device: str, ts: float) -> float:
    """The longest run (s) in which the corpus has ``device`` not answering (NaN) in the
    ``OFFLINE_LOOKBACK`` before ``ts``, on a 10 s grid."""
    times = np.arange(ts - OFFLINE_LOOKBACK, ts + 10.0, 10.0, dtype=np.float64)
    times = times[(times >= corpus.start) & (times < corpus.end)]
    if times.size == 0:
        return 0.0
    values = corpus.series(device, times)
    nan = np.zeros(times.shape, bool)
    for v in values.values():
        nan |= np.isnan(np.asarray(v, dtype=np.float64))
    longest = current = 0
    for missing in nan:
        current = current + 1 if missing else 0
        longest = max(longest, current)
    return 10.0 * longest


def lost_twice(silent_at: Sequence[float], ts: float) -> bool:
    """Two "no response" answers in a row (at most ``LOST_PAIR`` apart) shortly before ``ts``."""
    recent = sorted(t for t in silent_at if ts - OFFLINE_LOOKBACK <= t <= ts)
    return any(b - a <= LOST_PAIR for a, b in itertools.pairwise(recent))


def clock_bugs(corpus: ServedCorpus, alarms: Sequence[Alarm],
               silent_at: Mapping[str, Sequence[float]]) -> list[dict[str, Any]]:
    """Alarms that only a simulated-clock bug explains (see the module docstring)."""
    out = []
    for a in alarms:
        if a.rule in CLOCK_BUGS:
            out.append({"rule": a.rule, "device": a.device, "ts": a.ts, "message": a.message,
                        "why": "never expected"})
        elif a.rule == COMMS and not lost_twice(silent_at.get(a.device, ()), a.ts) and (
                off := offline_before(corpus, a.device, a.ts)) < OFFLINE_MIN:
            out.append({"rule": a.rule, "device": a.device, "ts": a.ts, "message": a.message,
                        "why": f"the corpus has it offline for only {off:.0f} s before and "
                               f"no two polls in a row unanswered"})
    return out


def report(corpus: ServedCorpus, run: Run, result: dict[str, Any]) -> str:
    """The score table, the unmatched alarms, the daemon's pace and the clock-bug verdict."""
    lines = [render(result), ""]
    unmatched = sorted(result["false_alarms"] + result["related_alarms"],
                       key=lambda a: a["ts"])
    lines.append(f"alarms that matched no label ({len(result['false_alarms'])} false, "
                 f"{len(result['related_alarms'])} related):")
    for a in unmatched:
        kind = (f"false, {'+'.join(a['causes'])}" if "causes" in a
                else f"related to {', '.join(a['labels'])}")
        lines.append(f"  {_local(corpus, a['ts'])} {a['rule']} {a['device']}"
                     f"{':' + a['channel'] if a['channel'] else ''} ({kind}): {a['message']}")
    comms = [a for a in run.scored_alarms if a.rule not in result_rules(result)]
    if comms:
        lines.append("other alarms:")
        lines += [f"  {_local(corpus, a.ts)} {a.rule} {a.device}: {a.message}" for a in comms]
    fig = run.influx
    silent = sum(s["silent"] for s in run.served.values())
    reads = sum(s["reads"] for s in run.served.values())
    lines.append(
        f"daemon: {(run.end - run.start) / 3600:.1f} simulated hours in {run.real_s:.0f} s real "
        f"at {run.rate:g}x, exit {run.daemon_rc}; polls per device "
        f"{fig.get('poll_ratio_min')} (worst) / {fig.get('poll_ratio_median')} (median) of the "
        f"{fig.get('expected_polls_per_device')} scheduled; readings refused "
        f"{fig.get('readings_refused')}, worst poll lag {fig.get('poll_lag_ms_max')} ms real, "
        f"queue depth max {fig.get('queue_depth_max')}; served {reads} poll-seconds, {silent} "
        f"of them 'no response' (corpus NaN)")
    bugs = clock_bugs(corpus, run.alarms, run.silent_at)
    lines.append(f"simulated-clock bugs (comms-stale, alarm-flood, comms without an outage): "
                 f"{len(bugs)}")
    lines += [f"  {_local(corpus, b['ts'])} {b['rule']} {b['device']}: {b['message']} "
              f"({b['why']})" for b in bugs]
    return "\n".join(lines)


def result_rules(result: dict[str, Any]) -> set[str]:
    return {row["kind"] for row in result["kinds"]}


def _local(corpus: ServedCorpus, ts: float) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo
    return datetime.fromtimestamp(ts, ZoneInfo(corpus.timezone)).strftime("%m-%d %H:%M")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_corpus_daemon",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="holdout")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--buildings", type=int, default=2)
    parser.add_argument("--rate", type=float, default=RATE,
                        help=f"simulated seconds per real second (default {RATE:g})")
    parser.add_argument("--begin", type=float, default=0.0, metavar="HOURS",
                        help="start this many simulated hours into the corpus")
    parser.add_argument("--hours", type=float, default=None,
                        help="simulated hours to run (default: to the corpus' end)")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-corpus-daemon"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench.corpus import build

    # pymodbus reports the daemon's connections dropping at the end (the gateways stop last)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    corpus = build(args.family, args.seed, days=args.days, buildings=args.buildings)
    begin = args.begin * 3600.0
    end = None if args.hours is None else begin + args.hours * 3600.0
    run = asyncio.run(run_daemon(corpus, workdir=args.workdir.resolve(), rate=args.rate,
                                 begin=begin, end=end))
    scored: CorpusLike = Window(corpus, run.start, run.end)
    result = score(scored, run.scored_alarms, poll=POLL, name=f"{args.family}/{args.seed}")
    print(report(corpus, run, result))
    bugs = clock_bugs(corpus, run.alarms, run.silent_at)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "corpus": {"family": args.family, "seed": args.seed, "days": args.days,
                   "buildings": args.buildings, "devices": len(corpus.devices)},
        "window": {"start": run.start, "end": run.end},
        "rate": args.rate, "poll_s": POLL, "real_s": round(run.real_s, 1),
        "daemon_exit": run.daemon_rc, "daemon": run.influx, "served": run.served,
        "clock_bugs": bugs, "score": result,
        "alarms": [vars(a) for a in run.alarms],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=1, default=_json_default), encoding="utf-8")
    print(f"wrote {args.out}")
    if run.daemon_rc not in (0, None):
        print(f"daemon exited with {run.daemon_rc}; last log lines:\n{run.log_tail}")
        return 1
    return 1 if bugs else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
