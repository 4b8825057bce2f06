"""The InfluxDB spool (SQLite): batches the server did not take in time, kept on disk in order.

A batch goes here when a write fails (server down, timeouts, 5xx) and stays until it is
written; while the spool holds anything, new batches queue behind it, so points reach InfluxDB
in the order they were accepted and a daemon restart replays what was left. The spool is
bounded by ``max_bytes``: when a new batch would exceed it, the oldest *reading* batches are
dropped and counted; alarm batches are never dropped (they are few, and the only record of
what people were told). A replayed batch that was in fact written just before a crash is
written again: InfluxDB keeps one point per series and timestamp, so nothing shows twice.

Lines the server refuses as malformed are quarantined in their own table (kept for diagnosis,
never retried), with the server's reason.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from daemon.sqlitefile import MEMORY, DiskReserve, StateProblem, open_state, vacuum_if_sparse

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    alarms  INTEGER NOT NULL,
    points  INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    body    BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    line   TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
QUARANTINE_KEEP = 10_000  # rows; the oldest go first
MEMORY_MAX_BYTES = 32 << 20  # the bound of a spool kept in memory (state dir not writable)


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    seq: int
    lines: list[str]
    alarms: bool


class Spool:
    """SQLite-backed FIFO of line-protocol batches; a (synchronous) context manager."""

    def __init__(self, path: Path, *, max_bytes: int,
                 reserve: DiskReserve | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.reserve = reserve  # see writable()
        self.problem: StateProblem | None = None  # what open() found wrong with the file
        self.in_memory = path == MEMORY
        self._db: sqlite3.Connection | None = None
        self.bytes = 0
        self.points = 0
        self.batches = 0
        self.dropped = 0  # reading points dropped to stay under max_bytes, ever
        self.quarantined = 0  # lines refused as malformed, ever

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open (never fails for the file's sake: see ``open_state``; ``problem`` says what
        was done instead)."""
        db, self.problem = open_state(self.path, SCHEMA)
        if self.problem is not None and not self.problem.damaged:
            self.in_memory = True
            self.max_bytes = min(self.max_bytes, MEMORY_MAX_BYTES)
        self._db = db
        self._recount()
        self.dropped, self.quarantined = self._counter("dropped"), self._counter("quarantined")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return self._db

    def _recount(self) -> None:
        self.batches, points, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(bytes), 0) "
            "FROM batches").fetchone()
        self.points, self.bytes = int(points), int(size)

    # -- counters that survive restarts ---------------------------------------------------

    def _counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, by: int) -> None:
        self.db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                        "DO UPDATE SET value = value + excluded.value", (name, by))

    # -- the queue ------------------------------------------------------------------------

    def writable(self) -> bool:
        """May the spool take new batches? Not once a full disk made the reserve go, until it
        can be made again: the room the reserve gave back is for draining (and alarms), and
        new batches wait in the sink's memory until the disk has room."""
        reserve = self.reserve
        return self.in_memory or reserve is None or not reserve.spent or reserve.ensure()

    def put(self, lines: Sequence[str], *, alarms: bool) -> int:
        """Append a batch; returns how many reading points were dropped to make room."""
        if not lines:
            return 0
        body = ("\n".join(lines)).encode()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            dropped = self._make_room(len(body))
            db.execute("INSERT INTO batches (alarms, points, bytes, body, created) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (int(alarms), len(lines), len(body), body, time.time()))
            if dropped:
                self._bump("dropped", dropped)
            db.execute("COMMIT")
            self.dropped += dropped
        except BaseException:
            if db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                db.execute("ROLLBACK")
            raise
        self._recount()
        return dropped

    def _make_room(self, incoming: int) -> int:
        dropped = 0
        size = self.bytes
        while size + incoming > self.max_bytes:
            row = self.db.execute("SELECT seq, points, bytes FROM batches WHERE alarms = 0 "
                                  "ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break  # only alarms left: keep them, over the bound if need be
            self.db.execute("DELETE FROM batches WHERE seq = ?", (row[0],))
            dropped += int(row[1])
            size -= int(row[2])
        return dropped

    def oldest(self) -> SpooledBatch | None:
        row = self.db.execute("SELECT seq, alarms, body FROM batches ORDER BY seq LIMIT 1"
                              ).fetchone()
        if row is None:
            return None
        return SpooledBatch(seq=int(row[0]), lines=bytes(row[2]).decode().split("\n"),
                            alarms=bool(row[1]))

    def remove(self, seq: int) -> None:
        self.db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
        self._recount()

    def replace(self, seq: int, parts: Sequence[Sequence[str]], *, alarms: bool) -> None:
        """Swap one batch for smaller ones in its place (bisecting a refused batch)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            # New rows get higher seqs: move them to the front by giving them seqs below the
            # current head (free, since seqs only grow and the head is the smallest).
            head = db.execute("SELECT COALESCE(MIN(seq), ?) FROM batches", (seq,)).fetchone()[0]
            first = min(int(head), seq) - len(parts)
            for i, lines in enumerate(parts):
                body = "\n".join(lines).encode()
                db.execute("INSERT INTO batches (seq, alarms, points, bytes, body, created) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (first + i, int(alarms), len(lines), len(body), body, time.time()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                db.execute("ROLLBACK")
            raise
        self._recount()

    def maintain(self) -> bool:
        """Give the space of a drained spool back to the disk; True if it did."""
        return vacuum_if_sparse(self.db)

    def quarantine(self, lines: Sequence[str], reason: str) -> None:
        now = time.time()
        self.db.executemany("INSERT INTO quarantine (line, reason, at) VALUES (?, ?, ?)",
                            [(line, reason[:500], now) for line in lines])
        self._bump("quarantined", len(lines))
        self.quarantined += len(lines)
        self.db.execute("DELETE FROM quarantine WHERE seq <= (SELECT MAX(seq) FROM quarantine)"
                        " - ?", (QUARANTINE_KEEP,))
