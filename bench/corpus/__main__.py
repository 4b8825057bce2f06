"""Command line: summarise a generated corpus or plot one device's registers.

    python -m bench.corpus --family tune --seed 1 --days 2 --summary
    python -m bench.corpus --family tune --seed 1 --plot b1A-public --out public.png
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from bench.corpus import FAMILIES, Corpus, build

COLOURS = {"ebike-charging": "tab:green", "resistive-load": "tab:red",
           "unmetered-tap": "tab:purple", "lamp-out": "tab:gray", "lamp-partial": "tab:olive",
           "lamp-day-burning": "tab:orange", "lamp-cycling": "tab:cyan"}


def summary(corpus: Corpus, elapsed: float) -> str:
    """A plain-text overview: devices, labels and confounders per kind."""
    lines = [f"corpus {corpus.family}/{corpus.seed}: {len(corpus.devices)} devices, "
             f"{(corpus.end - corpus.start) / 86400:.1f} days, built in {elapsed:.2f} s"]
    for d in corpus.devices:
        extra = f" lamps={list(d.lamps)} plate={d.lamp_current} A" if d.lamps else ""
        lines.append(f"  {d.name:24s} {d.profile:20s} {d.kind:20s} phase={d.phase} "
                     f"breaker={d.rated_current} var={d.var_method}{extra}")
    lines.append("labels:")
    for kind, n in sorted(Counter(lb.kind for lb in corpus.labels).items()):
        lines.append(f"  {kind:24s} {n}")
    lines.append("confounders:")
    for kind, n in sorted(Counter(lb.kind for lb in corpus.confounders).items()):
        lines.append(f"  {kind:24s} {n}")
    return "\n".join(lines)


def plot(corpus: Corpus, device: str, out: str, step: float,
         window: tuple[float, float] | None = None) -> None:
    """Draw a device's registers over the run (or a window of hours) with labels shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev = corpus.device(device)
    lo, hi = window if window else (0.0, (corpus.end - corpus.start) / 3600.0)
    t = np.arange(corpus.start + lo * 3600.0, min(corpus.end, corpus.start + hi * 3600.0), step)
    regs = corpus.series(device, t)
    hours = (t - corpus.start) / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(16, 9), sharex=True)
    if dev.profile == "lighting-controller":
        for ch in range(1, 9):
            if dev.lamps[ch - 1]:
                axes[0].plot(hours, regs[("lamp_current", str(ch))], lw=0.8, label=f"ch{ch}")
                axes[1].plot(hours, regs[("relay", str(ch))] + 0.02 * ch, lw=0.8)
        axes[0].set_ylabel("lamp current (A)")
        axes[0].legend(loc="upper right", fontsize=7)
        axes[1].set_ylabel("relay")
        axes[2].plot(hours, regs[("lux", None)], lw=0.6)
        axes[2].set_yscale("symlog", linthresh=10)
        axes[2].set_ylabel("lux")
    else:
        tot = "L1" if dev.profile == "eastron-sdm120" else "total"
        axes[0].plot(hours, regs[("power", tot)], lw=0.6, label="P (W)")
        axes[0].plot(hours, regs[("apparent_power", tot)], lw=0.6, alpha=0.7, label="S (VA)")
        axes[0].plot(hours, regs[("reactive_power", tot)], lw=0.6, alpha=0.7,
                     label=f"Q ({dev.var_method})")
        axes[0].legend(loc="upper right", fontsize=7)
        axes[0].set_ylabel("W / VA / var")
        axes[1].plot(hours, regs[("power_factor", tot)], lw=0.6)
        axes[1].set_ylabel("PF")
        axes[1].set_ylim(0, 1.05)
        vkeys = [k for k in regs if k[0] == "voltage"]
        for k in vkeys:
            axes[2].plot(hours, regs[k], lw=0.6, label=str(k[1]))
        axes[2].set_ylabel("V")
    for lb in corpus.labels:
        if lb.device == device and lb.end > t[0] and lb.start < t[-1]:
            for ax in axes:
                ax.axvspan((lb.start - corpus.start) / 3600, (lb.end - corpus.start) / 3600,
                           color=COLOURS.get(lb.kind, "yellow"), alpha=0.15)
            axes[0].text(max(lb.start - corpus.start, t[0] - corpus.start) / 3600,
                         axes[0].get_ylim()[1] * 0.95,
                         lb.kind, fontsize=6, rotation=90, va="top")
    axes[2].set_xlim(hours[0], hours[-1])
    axes[2].set_xlabel("hours since start (local midnight)")
    fig.suptitle(f"{device} ({dev.profile}, {dev.kind}) — {corpus.family}/{corpus.seed}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=FAMILIES, default="tune")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--buildings", type=int, default=4)
    ap.add_argument("--start", default="2026-11-02")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--plot", metavar="DEVICE")
    ap.add_argument("--out", default="corpus.png")
    ap.add_argument("--step", type=float, default=60.0, help="poll spacing for --plot (s)")
    ap.add_argument("--window", help="plot only hours A,B since the start, e.g. 66,80")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    corpus = build(args.family, args.seed, days=args.days, buildings=args.buildings,
                   start=args.start)
    elapsed = time.perf_counter() - t
    if args.summary or not args.plot:
        print(summary(corpus, elapsed))
    if args.plot:
        win = tuple(float(x) for x in args.window.split(",")) if args.window else None
        plot(corpus, args.plot, args.out, args.step,
             (win[0], win[1]) if win and len(win) == 2 else None)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
