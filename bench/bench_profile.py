"""Where the daemon's CPU goes: ``python -m bench.bench_profile [--label after]``.

Runs ``bench_scale``'s fleet (1000 mixed devices at 1 s, rules, InfluxDB, MQTT), samples the
daemon with py-spy (``record --format raw``, 100 Hz, idle excluded) for ``--seconds`` after a
warm-up, and keeps the top functions by own time and by inclusive time under ``--label`` in
``bench/results/profile.json`` (other labels stay, so a "before" and an "after" sit side by
side; ``--from-raw FILE`` files an existing raw py-spy recording instead). ``bench.report``
prints them as the profile tables of ``bench/RESULTS.md``. Shares are of the sampled CPU, not
of a core.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "profile.json"
TOP = 15


def frame_name(frame: str) -> str:
    """``"decode (drivers/modbus/compiled.py:72)"`` -> ``"decode (compiled.py)"``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def aggregate(raw: str, top: int = TOP) -> dict[str, Any]:
    """Own and inclusive shares of the top functions in a py-spy raw (collapsed) recording."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n

    def shares(counts: Counter[str], below: float = 1.01) -> list[dict[str, Any]]:
        rows = [{"function": f, "share": round(n / total, 4)} for f, n in counts.most_common()
                if total and n / total < below]
        return rows[:top]

    # inclusive: without the frames every sample has (runpy, the event loop's run_forever)
    return {"samples": total, "own": shares(own), "inclusive": shares(inclusive, below=0.9)}


def record(devices: int, seconds: float, warmup: float) -> str:
    """A raw py-spy recording of the daemon polling ``devices`` simulated devices."""
    from bench.bench_scale import running_fleet, services

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="fw-profile-") as tmp:
        work = Path(tmp)
        out = work / "profile.txt"
        with services(work) as (influx, mqtt), \
                running_fleet(devices, influx, mqtt, work, "profile") as (daemon, *_):
            time.sleep(warmup)
            subprocess.run([spy, "record", "-p", str(daemon.pid), "-d", f"{seconds:g}",
                            "-r", "100", "-f", "raw", "-o", str(out), "--nonblocking"],
                           check=True, capture_output=True)
        return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_profile")
    parser.add_argument("--label", default="after")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--commit", default="", help="what was profiled (a commit)")
    parser.add_argument("--from-raw", type=Path, help="file this raw py-spy recording instead")
    args = parser.parse_args(argv)
    raw = (args.from_raw.read_text(encoding="utf-8") if args.from_raw
           else record(args.devices, args.seconds, args.warmup))
    result = aggregate(raw) | {"devices": args.devices, "commit": args.commit,
                               "date": time.strftime("%Y-%m-%d")}
    data = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    data[args.label] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for row in result["own"][:10]:
        print(f"{100 * row['share']:5.1f} %  {row['function']}")
    print(f"{result['samples']} samples; wrote {RESULTS} [{args.label}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
