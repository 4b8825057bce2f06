"""Request planner benchmark: ``python -m bench.bench_planner``.

For every shipped profile read in full at 9600 baud 8N1 (no device turnaround), prints the
requests and bus milliseconds per cycle of (a) one request per quantity, (b) Telegraf's
``max_insert`` with fill 50 and (c) firewarden's optimal plan, with the ratios, and writes them
to ``bench/results/planner.json``. Exits 1 if the optimal plan costs more than max_insert
anywhere, which the planner's optimality rules out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.modbus.planner import (
    BusCost,
    ReadRequest,
    plan_max_insert,
    plan_per_point,
    plan_requests,
)
from drivers.profile import load_profile, shipped_profiles

BAUDRATE = 9600
MAX_FILL = 50
RESULTS = Path(__file__).parent / "results" / "planner.json"


def _summary(requests: Sequence[ReadRequest], cost: BusCost) -> dict[str, Any]:
    return {"requests": len(requests), "bus_ms": round(cost.cycle_ms(requests), 3),
            "plan": [f"{r.table.value}@{r.address}+{r.count}" for r in requests]}


def measure(name: str, cost: BusCost) -> dict[str, Any]:
    """The three plans of one shipped profile, read in full, under ``cost``."""
    profile = load_profile(name)
    quirks = profile.workarounds
    limits: dict[str, Any] = {"max_registers": quirks.max_registers,
                              "max_bits": quirks.max_bits, "holes": profile.holes}
    per_point = _summary(plan_per_point(profile.points), cost)
    max_insert = _summary(plan_max_insert(profile.points, max_fill=MAX_FILL, **limits), cost)
    ours = _summary(plan_requests(profile.points, cost=cost, **limits), cost)
    return {"profile": name, "points": len(profile.points), "per_point": per_point,
            "max_insert": max_insert, "ours": ours,
            "ours_vs_max_insert": round(ours["bus_ms"] / max_insert["bus_ms"], 4),
            "ours_vs_per_point": round(ours["bus_ms"] / per_point["bus_ms"], 4)}


def render(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table: requests / bus ms per cycle for each plan, and the ratios."""
    head = (f"{'profile':<30} {'pts':>3}  {'per-point':>13}  {'max_insert(50)':>14}  "
            f"{'ours':>13}  {'ours/mi':>7}  {'ours/pp':>7}")
    lines = [f"full read of each shipped profile at {BAUDRATE} baud 8N1, "
             f"requests / bus ms per cycle", head, "-" * len(head)]
    for row in rows:
        cells = [f"{row[k]['requests']:>3} / {row[k]['bus_ms']:>7.1f}"
                 for k in ("per_point", "max_insert", "ours")]
        lines.append(f"{row['profile']:<30} {row['points']:>3}  {cells[0]:>13}  {cells[1]:>14}  "
                     f"{cells[2]:>13}  {row['ours_vs_max_insert']:>7.3f}  "
                     f"{row['ours_vs_per_point']:>7.3f}")
    return "\n".join(lines)


def main() -> int:
    cost = BusCost(baudrate=BAUDRATE)
    rows = [measure(name, cost) for name in shipped_profiles()]
    print(render(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"baudrate": BAUDRATE, "bits_per_char": cost.bits_per_char,
                                   "turnaround_ms": cost.turnaround_ms, "max_fill": MAX_FILL,
                                   "profiles": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    worse = [r["profile"] for r in rows
             if r["ours"]["bus_ms"] > r["max_insert"]["bus_ms"] + 1e-9]
    if worse:
        print(f"FAIL: optimal plan costs more than max_insert on {', '.join(worse)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
