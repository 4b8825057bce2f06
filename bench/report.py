"""The benchmarks' published results: ``python -m bench.report``.

Reads every ``bench/results/*.json`` the benchmarks wrote (planner, rtu_bus, detection, influx,
rules, scale, latency; and peers, the optional comparison with Node-RED and the ThingsBoard
gateway, as its own section when present) and writes ``bench/RESULTS.md``: one table of
every figure with its target or baseline, the ratio and whether the target is met, the notes
the benchmarks left (why a target is missed, when they know), the machine and the date; and
``bench/results/chart.png`` (matplotlib, Agg): the daemon's CPU and RSS against the number of
devices, and the alarm latencies. A benchmark without its JSON is listed as "not run".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS_DIR = HERE / "results"
REPORT = HERE / "RESULTS.md"
CHART = RESULTS_DIR / "chart.png"


@dataclass(frozen=True, slots=True)
class Row:
    bench: str
    figure: str
    value: str
    reference: str  # the target or the baseline
    ratio: str
    status: str  # met, MISSED, info


def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        text = f"{value:,.{digits}f}" if isinstance(value, float) or digits else f"{value:,}"
        return f"{text}{unit}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.3f}"


def _met(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def planner(d: dict[str, Any]) -> list[Row]:
    return [Row("planner", f"{p['profile']}: bus ms per cycle at {d['baudrate']} baud",
                _f(p["ours"]["bus_ms"]), f"≤ max_insert {_f(p['max_insert']['bus_ms'])}",
                _ratio(p["ours"]["bus_ms"], p["max_insert"]["bus_ms"]),
                _met(p["ours"]["bus_ms"] <= p["max_insert"]["bus_ms"] + 1e-9))
            for p in d["profiles"]]


def rtu_bus(d: dict[str, Any]) -> list[Row]:
    return [Row("rtu_bus", f"{r['meters']} SDM630 + {r['detectors']} detectors: wire time / "
                f"achieved cycle", f"{_f(r['theoretical_ms'])} / {_f(r['achieved_ms'])} ms",
                f"≥ {d['target']}", f"{r['ratio']:.3f}", _met(r["ratio"] >= d["target"]))
            for r in d["rows"]]


def detection(d: dict[str, Any]) -> list[Row]:
    return [Row("detection", t["target"], t["detail"], "target", "-", _met(t["met"]))
            for t in d["targets"]]


def influx(d: dict[str, Any]) -> list[Row]:
    return [
        Row("influx", "InfluxSink points/s (median)", _f(d["sink_points_per_s"], 0),
            f"raw POSTs {_f(d['raw_points_per_s'], 0)}", f"{d['ratio']:.3f}",
            _met(d["ratio"] >= d["target"]) + f" (target ≥ {d['target']})"),
        Row("influx", "spool replay points/s", _f(d["spool_replay_points_per_s"], 0),
            f"raw POSTs {_f(d['raw_points_per_s'], 0)}",
            _ratio(d["spool_replay_points_per_s"], d["raw_points_per_s"]), "info"),
    ]


def rules(d: dict[str, Any]) -> list[Row]:
    events = sum(d.get("events", {}).values())
    return [Row("rules", f"readings/s through the rule engine ({d['scenario']}, "
                f"{events} alarm events per pass)", _f(d["readings_per_s"], 0),
                f"≥ {_f(d['target'], 0)}", _ratio(d["readings_per_s"], d["target"]),
                _met(d["readings_per_s"] >= d["target"]))]


FLEET_TARGET = 3000  # devices sustained at 1 s (issue 16); the search stops at its budget


def scale(d: dict[str, Any]) -> list[Row]:
    out = []
    for m in d["sizes"]:
        n = m["devices"]
        out += [
            Row("scale", f"{n} devices at 1 s: daemon CPU", _f(m["cpu_pct"], 1, " %"),
                "one core", _ratio(m["cpu_pct"], 100.0), "info"),
            Row("scale", f"{n} devices: RSS now / peak", f"{_f(m['rss_mb'])} / "
                f"{_f(m['hwm_mb'])} MB", "-", "-", "info"),
            Row("scale", f"{n} devices: readings/s written to InfluxDB",
                _f(m["readings_per_s"], 0), "-", "-", "info"),
            Row("scale", f"{n} devices: successful polls/s", _f(m["polls_ok_per_s"]),
                f"≥ 0.98 × {_f(m['configured_polls_per_s'])}",
                _ratio(m["polls_ok_per_s"], m["configured_polls_per_s"]),
                _met(bool(m["sustained"]))),
            Row("scale", f"{n} devices: poll start lag p50 / p99 / max",
                f"{_f(m['lag_p50_ms'])} / {_f(m['lag_p99_ms'])} / {_f(m['lag_max_ms'])} ms",
                f"self-metric max {_f(m['selfmetric_poll_lag_max_ms'])} ms", "-", "info"),
        ]
    for t in d.get("targets", []):
        out.append(Row("scale", t["target"], f"{_f(t['value'])} {t['unit']}",
                       f"< {_f(t['limit'])}", _ratio(t["value"], t["limit"]), _met(t["met"])))
    for m in d.get("search", []):
        refused = m.get("readings_refused") or 0
        out.append(Row("scale", f"search: {m['devices']} devices, CPU {m['cpu_pct']} %, "
                       f"peak RSS {m['hwm_mb']} MB" + (f", {refused:,.0f} readings refused"
                                                       if refused else ""),
                       f"{_f(m['polls_ok_per_s'])} polls/s",
                       f"≥ 0.98 × {_f(m['configured_polls_per_s'])}",
                       _ratio(m["polls_ok_per_s"], m["configured_polls_per_s"]),
                       "sustained" if m["sustained"] else "falls behind"))
    best = d.get("max_sustained_devices")
    out.append(Row("scale", f"largest fleet found sustained at 1 s under {d['cpu_limit_pct']:g} "
                   "% of a core", _f(best, 0) if best else "not found", f"≥ {FLEET_TARGET}",
                   _ratio(best, FLEET_TARGET) if best else "-",
                   _met(best is not None and best >= FLEET_TARGET)))
    return out


def latency(d: dict[str, Any]) -> list[Row]:
    out = []
    by_target = {t["target"]: t for t in d.get("targets", [])}
    fire_t = next((t for k, t in by_target.items() if k.startswith("panel")), None)
    leak_t = next((t for k, t in by_target.items() if k.startswith("polled")), None)
    for key, label, target in (("fire", "panel fire → MQTT", fire_t),
                               ("leakage_raised", "polled leakage → MQTT", leak_t),
                               ("leakage_cleared", "leakage back to normal → MQTT cleared",
                                None)):
        s = d[key]
        out.append(Row("latency", f"{label} p50 ({s['n']} samples, {d['devices']} devices)",
                       _f(s["p50_ms"], 1, " ms"), "-", "-", "info"))
        if target is not None:
            out.append(Row("latency", f"{label} p99", _f(s["p99_ms"], 1, " ms"),
                           f"< {_f(target['limit'], 0)} ms", _ratio(s["p99_ms"], target["limit"]),
                           _met(target["met"])))
        else:
            out.append(Row("latency", f"{label} p99", _f(s["p99_ms"], 1, " ms"), "-", "-",
                           "info"))
    return out


def corpus(d: dict[str, Any]) -> list[Row]:
    """Per family the targets of issue 12; the holdout family's are the ones that count."""
    out = []
    for family in ("holdout", "tune"):
        part = d.get("families", {}).get(family)
        if part is None:
            continue
        for t in part["targets"]:
            status = _met(t["met"]) if family == "holdout" else ("info (tuned on)")
            out.append(Row("corpus", f"{family}: {t['target']}", t["detail"], "target", "-",
                           status))
    return out


def corpus_daemon(d: dict[str, Any]) -> list[Row]:
    total = next((t for t in d.get("score", {}).get("totals", [])
                  if t.get("group") == "wiring+lighting"), None)
    bugs = d.get("clock_bugs", [])
    rows = [Row("corpus_daemon", "simulated-clock alarms (comms-stale, flood, unexplained comms)",
                str(len(bugs)), "0", "-", _met(not bugs))]
    if total is not None:
        rows.append(Row("corpus_daemon", "wiring+lighting FA / 100 circuit-days (daemon)",
                        _f(total.get("fa_per_100_circuit_days"), 2), "<= 2", "-", "info"))
    return rows


BENCHES: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "planner": ("bench_planner", planner),
    "rtu_bus": ("bench_rtu_bus", rtu_bus),
    "detection": ("bench_detection", detection),
    "corpus": ("bench_corpus", corpus),
    "corpus_daemon": ("bench_corpus_daemon", corpus_daemon),
    "influx": ("bench_influx", influx),
    "rules": ("bench_rules", rules),
    "scale": ("bench_scale", scale),
    "latency": ("bench_latency", latency),
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "os": platform.platform()}


def chart(data: dict[str, dict[str, Any] | None]) -> bool:
    """Draw ``CHART``; False when there is nothing to draw."""
    scale_d, latency_d = data.get("scale"), data.get("latency")
    if scale_d is None and latency_d is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(11, 4.2))
    if scale_d is not None:
        points = sorted(scale_d["sizes"] + scale_d.get("search", []),
                        key=lambda m: m["devices"])
        n = [m["devices"] for m in points]
        ax1.plot(n, [m["cpu_pct"] for m in points], "o-", color="tab:red", label="CPU % of a core")
        ax1.axhline(50, color="tab:red", ls=":", lw=1, label="CPU target (1000 devices)")
        ax1.set_xlabel("devices polled every second")
        ax1.set_ylabel("daemon CPU, % of one core", color="tab:red")
        ax2 = ax1.twinx()
        ax2.plot(n, [m["hwm_mb"] for m in points], "s--", color="tab:blue", label="peak RSS MB")
        ax2.axhline(80, color="tab:blue", ls=":", lw=1)
        ax2.set_ylabel("daemon peak RSS, MB", color="tab:blue")
        ax1.set_title("daemon cost against fleet size")
        lines = ax1.get_legend_handles_labels()
        more = ax2.get_legend_handles_labels()
        ax1.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    else:
        ax1.text(0.5, 0.5, "bench_scale not run", ha="center", transform=ax1.transAxes)
    if latency_d is not None:
        labels, p50, p99 = [], [], []
        for key, label in (("fire", "panel fire"), ("leakage_raised", "leakage raised"),
                           ("leakage_cleared", "leakage cleared")):
            s = latency_d[key]
            labels.append(label)
            p50.append(s["p50_ms"] or 0.0)
            p99.append(s["p99_ms"] or 0.0)
        x = range(len(labels))
        ax3.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
        ax3.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
        ax3.set_yscale("log")
        ax3.set_xticks(list(x), labels)
        ax3.set_ylabel("ms to the MQTT event (log)")
        ax3.set_title(f"alarm latency, {latency_d['devices']} devices polled at 1 s")
        ax3.axhline(50, color="gray", ls=":", lw=1)
        ax3.axhline(1100, color="gray", ls="--", lw=1)
        ax3.legend(fontsize=8)
    else:
        ax3.text(0.5, 0.5, "bench_latency not run", ha="center", transform=ax3.transAxes)
    fig.tight_layout()
    CHART.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    return True


def corpus_details(d: dict[str, Any] | None, sweep: list[dict[str, Any]] | None) -> list[str]:
    """The corpus score in full: tables, false alarms by cause, the operating curve."""
    if d is None:
        return []
    from bench.corpus_score import render as render_score

    lines = ["", "## Detection on the independent corpus", "",
             "Rules tuned on the `tune` family only; `holdout` was run once at the end. "
             "Each false alarm names every kind of confounder that ran on its circuit in the "
             "two hours before, so one alarm may count for several causes.", ""]
    for family in ("holdout", "tune"):
        part = d.get("families", {}).get(family)
        if part is None:
            continue
        result = part["result"]
        lines += [f"### {family}", "", "```", render_score(result), "```", ""]
        if family == "holdout" and result.get("false_alarms"):
            lines += ["<details><summary>every held-out false alarm</summary>", ""]
            for fa in result["false_alarms"]:
                causes = ", ".join(fa.get("causes", [])) or "nothing else on the circuit"
                lines.append(f"- {fa['rule']}: {fa['message']} (also running: {causes})")
            lines += ["", "</details>", ""]
    if sweep:
        lines += ["### Operating curve (tune family, one threshold varied at a time)", "",
                  "| threshold | value | FA / 100 circuit-days | recall |", "|---|---|---|---|"]
        for point in sweep:
            recalls = ", ".join(f"{kind} {r:.2f}" for kind, r in point["recall"].items()
                                if not (point["group"] == "wiring" and kind.startswith("lamp"))
                                and not (point["group"] == "lighting"
                                         and not kind.startswith("lamp")))
            lines.append(f"| {point['param']} | {point['value']:g} | "
                         f"{point['fa_per_100_circuit_days']:.2f} | {recalls} |")
        if (RESULTS_DIR / "corpus_curve.png").exists():
            lines += ["", "![operating curves on the tune family](results/corpus_curve.png)"]
    return lines


def peers_details(d: dict[str, Any] | None) -> list[str]:
    """"Against the peers" from ``peers.json`` (``make bench PEERS=1``); nothing without it."""
    if d is None:
        return []
    from bench.bench_peers import render_markdown

    try:
        return render_markdown(d)
    except (KeyError, TypeError, ValueError) as exc:
        return ["", "## Against the peers", "", f"Unreadable `peers.json` ({exc!r})."]


def profile_details(d: dict[str, Any] | None) -> list[str]:
    """Where the daemon's CPU goes, before and after (``bench.bench_profile``)."""
    if not d:
        return []
    labels = [k for k in ("before", "after") if k in d] + [k for k in d
                                                          if k not in ("before", "after")]
    out = ["", "## Where the CPU goes (py-spy, 1000 devices at 1 s)", "",
           "Share of the sampled CPU by function, own time and inclusive "
           "(`python -m bench.bench_profile --label L`):", ""]
    for kind in ("own", "inclusive"):
        out.append(f"| rank | {' | '.join(f'{k} ({kind})' for k in labels)} |")
        out.append("|---|" + "---|" * len(labels))
        for i in range(max(len(d[k][kind]) for k in labels)):
            cells = [f"{100 * d[k][kind][i]['share']:.1f} % {d[k][kind][i]['function']}"
                     if i < len(d[k][kind]) else "" for k in labels]
            out.append(f"| {i + 1} | {' | '.join(cells)} |")
        out.append("")
    out += [f"- {k}: {d[k].get('samples', '?')} samples, {d[k].get('commit') or 'unstated'}, "
            f"{d[k].get('date', '?')}" for k in labels]
    return out


def render(data: dict[str, dict[str, Any] | None], drawn: bool) -> str:
    info = machine()
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench.report` on {dt.date.today().isoformat()} from "
        "`bench/results/*.json` (`make bench` runs every benchmark, then this).",
        "",
        f"Machine: {info['cores']} cores, {info['cpu'] or 'unknown CPU'}, Python "
        f"{info['python']}, {info['os']}. The daemon, the simulators, influxd and mosquitto "
        "share these cores; other load on the box while the benchmarks ran disturbs the CPU "
        "and latency figures.",
        "",
        "| bench | figure | value | target / baseline | ratio | status |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    missing: list[str] = []
    missed: list[str] = []
    for name, (module, fn) in BENCHES.items():
        d = data.get(name)
        if d is None:
            missing.append(module)
            lines.append(f"| {name} | `python -m bench.{module}` | not run | - | - | not run |")
            continue
        try:
            rows = fn(d)
        except (KeyError, TypeError, ValueError) as exc:
            lines.append(f"| {name} | unreadable results ({exc!r}) | - | - | - | - |")
            continue
        for r in rows:
            lines.append(f"| {r.bench} | {r.figure} | {r.value} | {r.reference} | {r.ratio} | "
                         f"{r.status} |")
            if "MISSED" in r.status:
                missed.append(f"{r.bench}: {r.figure}")
        for note in d.get("notes", []):
            notes.append(f"{name}: {note}")
        for m in d.get("sizes", []) + d.get("search", []):
            for note in m.get("notes", []):
                notes.append(f"{name} ({m['devices']} devices): {note}")
    lines.append("")
    if missed:
        lines.append("Targets missed: " + "; ".join(missed) + ".")
    else:
        lines.append("Every target in the table is met.")
    if missing:
        lines.append("")
        lines.append("Not run: " + ", ".join(f"`{m}`" for m in missing) + ".")
    if notes:
        lines += ["", "Notes from the benchmarks:", ""] + [f"- {n}" for n in notes]
    runtimes = [(name, d["runtime_s"]) for name, d in data.items()
                if d is not None and "runtime_s" in d]
    if runtimes:
        lines += ["", "Runtimes: " + ", ".join(f"{n} {s:.0f} s" for n, s in runtimes) + "."]
    if drawn:
        lines += ["", "![daemon CPU and RSS against devices; alarm latencies]"
                      "(results/chart.png)"]
    sweep_path = RESULTS_DIR / "corpus_sweep.json"
    sweep = json.loads(sweep_path.read_text(encoding="utf-8")) if sweep_path.exists() else None
    lines += corpus_details(data.get("corpus"), sweep)
    lines += peers_details(load("peers"))
    lines += peers_details(load("peers_silent"))
    lines += profile_details(load("profile"))
    return "\n".join(lines) + "\n"


def main() -> int:
    data = {name: load(name) for name in BENCHES}
    drawn = chart(data)
    REPORT.write_text(render(data, drawn), encoding="utf-8")
    print(f"wrote {REPORT}" + (f" and {CHART}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
