"""bench/bench_peers.py's pure parts: medians, ratios, targets and tables from result dicts."""

from __future__ import annotations

from typing import Any

import pytest

from bench import bench_peers as bp


def run(contender: str, n: int, cpu: float, rss: float, *, rep: int = 1, silent: float = 0.0,
        polls: float | None = None, gap: float = 1.05) -> dict[str, Any]:
    """A harness result dict (perf.py's keys) with the figures the summary reads."""
    expected = n * (1 - silent)
    achieved = expected if polls is None else polls
    return {"contender": contender, "n": n, "rep": rep, "silent": silent, "cpu_pct": cpu,
            "rss_mb": rss, "rss_max_mb": rss + 5, "expected_polls_per_s": expected,
            "healthy_polls_per_s": achieved, "poll_ratio": round(achieved / expected, 4),
            "healthy_max_gap_s": gap, "healthy_devices_gap_over_2s": 0}


RUNS = [
    run("firewarden", 100, 12.0, 66.0, rep=1), run("firewarden", 100, 14.0, 64.0, rep=2),
    run("nodered", 100, 6.0, 170.0, rep=1), run("nodered", 100, 5.0, 200.0, rep=2),
    run("firewarden", 1000, 40.0, 100.0), run("nodered", 1000, 50.0, 600.0),
    run("tbgw", 100, 24.0, 70.0),
    {"contender": "tbgw", "n": 1000, "rep": 1, "silent": 0.0, "error": "exit 1: boom"},
]


def test_median_skips_missing_values() -> None:
    assert bp.median([3, None, 1, 2]) == 2
    assert bp.median([1.0, 2.0]) == 1.5
    assert bp.median([None]) is None


def test_summary_takes_medians_per_point_and_leaves_failed_runs_out() -> None:
    summary = bp.summarise(RUNS)
    keys = [(s["contender"], s["n"]) for s in summary]
    assert keys == [("firewarden", 100), ("nodered", 100), ("tbgw", 100),
                    ("firewarden", 1000), ("nodered", 1000)]
    fw = summary[0]
    assert fw["runs"] == 2
    assert fw["cpu_pct"] == 13.0
    assert fw["cpu_pct_range"] == [12.0, 14.0]
    assert fw["rss_mb"] == 65.0
    assert fw["cpu_per_meter"] == pytest.approx(0.13)
    assert fw["polls_per_s"] == 100.0
    assert fw["sustained"] is True


def test_ratios_against_nodered_have_targets_and_tbgw_is_info() -> None:
    rows = {(r["peer"], r["n"], r["figure"].split()[1]): r for r in bp.ratios(bp.summarise(RUNS))}
    cpu100 = rows[("nodered", 100, "CPU")]
    assert cpu100["value"] == pytest.approx(13.0 / 5.5, abs=1e-3)
    assert cpu100["limit"] == bp.TARGET_CPU_RATIO
    assert cpu100["met"] is False
    assert rows[("nodered", 100, "RSS")]["value"] == pytest.approx(65.0 / 185.0, abs=1e-3)
    cpu1000 = rows[("nodered", 1000, "CPU")]
    assert cpu1000["value"] == pytest.approx(0.8)
    assert cpu1000["met"] is True
    assert rows[("nodered", 1000, "RSS")]["met"] is True  # 100 / 600 <= 0.25
    tb = rows[("tbgw", 100, "CPU")]
    assert tb["limit"] is None
    assert tb["met"] is None
    assert ("tbgw", 1000, "CPU") not in rows  # its run failed


def test_silent_targets_for_firewarden() -> None:
    runs = [run("firewarden", 100, 11.0, 66.0, silent=0.1, polls=81.0, gap=4.5),
            run("firewarden", 100, 11.0, 66.0, silent=0.1, polls=89.0, gap=1.9, rep=2),
            run("nodered", 100, 2.0, 170.0, silent=0.1, polls=38.0, gap=4.0)]
    got = {t["figure"].split(": ")[1]: t for t in bp.silent_targets(bp.summarise(runs))}
    frac = got["healthy-meter poll fraction"]
    assert frac["value"] == pytest.approx((0.9 + 0.9889) / 2)
    assert frac["met"] is False
    gap = got["max gap of a healthy meter (s)"]
    assert gap["value"] == pytest.approx(3.2)
    assert gap["limit"] == 2.0
    assert gap["met"] is False
    assert bp.silent_targets(bp.summarise(RUNS)) == []  # no silent run: nothing to judge


def test_targets_and_tables() -> None:
    summary = bp.summarise(RUNS)
    measured = bp.targets(summary)
    assert [t["met"] for t in measured] == [False, False, True, True]
    text = bp.table(summary, {"tbgw-exact": "not installed: no venv"})
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["contender", "N"]
    assert any(line.startswith("firewarden") and "13.0 (12.0–14.0)" in line
               and "100.0 / 100" in line for line in lines)
    assert lines[-1].split() == ["tbgw-exact", "not", "installed:", "no", "venv"]
    md = bp.table(summary, markdown=True)
    assert md.splitlines()[1].startswith("|---|")
    assert md.count("\n") == len(summary) + 1
    assert any("MISSED" in line and "N=100" in line for line in bp.ratio_lines(summary))


def test_markdown_section_says_why_a_peer_did_not_run() -> None:
    doc = {"generated": "2026-12-06 10:00", "options": {"reps": 2, "warmup_s": 20.0,
                                                        "window_s": 60.0},
           "install": {"firewarden": {"installed": True},
                       "tbgw": {"installed": False, "reason": "pip found no matching "
                                                              "distribution"}},
           "summary": bp.summarise(RUNS[:4]), "notes": ["a smoke run"]}
    text = "\n".join(bp.render_markdown(doc))
    assert "## Against the peers" in text
    assert "tbgw: pip found no matching distribution" in text
    assert "firewarden CPU per meter ÷ nodered CPU per meter | 100 | 2.36 | ≤ 1 | **MISSED**" \
        in text
    assert "- a smoke run" in text


def test_install_failure_causes() -> None:
    assert "cannot be reached" in bp.why_failed("npm error code ENOTFOUND\nnpm error "
                                                "getaddrinfo ENOTFOUND dl.example.org")
    assert "no matching distribution" in bp.why_failed(
        "ERROR: No matching distribution found for thingsboard-gateway==9.9")
    assert bp.why_failed("something else") == "see the log"


def test_tag_matches_the_harness() -> None:
    assert bp.tag("nodered", 100, 2, 0.1) == "nodered-n100-silent10-r2"
    assert bp.tag("firewarden", 1000, 1, 0.0) == "firewarden-n1000-r1"
    assert bp.peer_of("tbgw-exact") == "tbgw"
