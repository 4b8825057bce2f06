"""A short corpus run through the real daemon on a simulated clock (``bench.bench_corpus_daemon``
in small): no communication alarms that only a clock bug would raise, the labelled lamp and
e-bike events reported, and the readings in InfluxDB stamped with the simulated time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.bench_corpus_daemon import clock_bugs, run_daemon
from bench.corpus import build
from bench.corpus_score import Window, score
from simulator.services import InfluxDB, Mosquitto
from tests.services import require

pytestmark = pytest.mark.system

HOUR = 3600.0
# One building of holdout seed 32 (11 devices on one gateway) from 19:00 to midnight of its
# first day: an unmetered tap from 19:22, an e-bike charging on the stairwell circuit from
# 20:26 and a lamp out on channel 5 from 21:44 (dark by then), after an 80-minute warm-up.
FAMILY, SEED = "holdout", 32
BEGIN, END = 19 * HOUR, 24 * HOUR
RATE = 960.0  # 5 simulated hours in under 20 s real; a 60 s poll every 62.5 ms


async def test_corpus_through_the_daemon(tmp_path: Path) -> None:
    """At 960x: polls keep their simulated 60 s, no comms/comms-stale/alarm-flood alarm the
    corpus does not explain, the e-bike and the lamp out are alarmed, and InfluxDB holds the
    readings at their simulated times."""
    require(Mosquitto)
    require(InfluxDB)
    corpus = build(FAMILY, SEED, days=1.0, buildings=1)
    began = time.monotonic()
    run = await run_daemon(corpus, workdir=tmp_path, rate=RATE, begin=BEGIN, end=END)
    real = time.monotonic() - began
    assert run.daemon_rc == 0, run.log_tail
    assert real < 60, f"took {real:.0f} s"

    assert clock_bugs(corpus, run.alarms, run.silent_at) == [], [vars(a) for a in run.alarms]
    window = Window(corpus, run.start, run.end)
    kinds = {lab.kind for lab in window.labels}
    assert {"ebike-charging", "lamp-out"} <= kinds, kinds
    result = score(window, run.scored_alarms, poll=60.0)
    for row in result["kinds"]:
        if row["kind"] == "ebike-charging" or row["kind"].startswith("lamp-"):
            assert row["detected"] == row["observable"], row

    figures = run.influx
    # every 60 simulated s; a device that lost two answers in a row backs off ~1 s real
    assert figures["poll_ratio_median"] >= 0.98, figures
    assert figures["poll_ratio_min"] >= 0.85, figures
    assert figures["readings_refused"] == 0, figures
    assert figures["power_points"] > 0, figures
    # stamped with the corpus' clock (November 2026 evening), not the machine's
    assert run.start - 2 * HOUR <= figures["first_power_ts"] <= run.start, figures
    # (the daemon runs on for a few real seconds after the window: the last alarms' drain)
    assert run.end - 600 <= figures["last_power_ts"] <= run.end + 2 * HOUR, figures
