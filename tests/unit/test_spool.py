"""The InfluxDB spool's queue semantics, bound and compaction (real SQLite files)."""

from __future__ import annotations

from pathlib import Path

from daemon.sinks.spool import Spool


def test_fifo_bound_and_counters_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, max_bytes=10_000) as spool:
        spool.put(["alarm 1"], alarms=True)
        for i in range(30):
            spool.put([f"reading {i} " + "x" * 490], alarms=False)
        head = spool.oldest()
        assert head is not None
        assert head.alarms  # alarms are never dropped to make room
        assert spool.bytes <= 10_000 + 600
        dropped = spool.dropped
        assert dropped > 0
    with Spool(path, max_bytes=10_000) as again:
        assert again.dropped == dropped
        lines = []
        while (batch := again.oldest()) is not None:
            lines += batch.lines
            again.remove(batch.seq)
        assert lines[0] == "alarm 1"
        assert lines[-1].startswith("reading 29 ")  # the newest readings kept, in order
        assert len(lines) == 1 + 30 - dropped


def test_drained_spool_gives_its_space_back(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, max_bytes=1 << 30) as spool:
        for _ in range(40):
            spool.put(["y" * 1000] * 1000, alarms=False)
        while (batch := spool.oldest()) is not None:
            spool.remove(batch.seq)
        spool.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        assert spool.maintain()
        after = path.stat().st_size
    assert before > 30 << 20
    assert after < 1 << 20
