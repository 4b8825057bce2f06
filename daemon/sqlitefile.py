"""SQLite files the daemon keeps (alarm store, InfluxDB spool): opened the same way, kept
small the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

JOURNAL_LIMIT = 8 << 20  # bytes the WAL file is truncated to after checkpoints
VACUUM_SLACK = 8 << 20  # free bytes in the file that make vacuum_if_sparse() VACUUM


def open_db(path: Path) -> sqlite3.Connection:
    """Autocommit (explicit BEGIN where needed), WAL, ``synchronous=NORMAL``: a committed
    transaction survives the process dying; the WAL file shrinks back after checkpoints."""
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=2000")  # readers (`firewarden alarms list`) may hold locks
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
    return db


def vacuum_if_sparse(db: sqlite3.Connection, slack: int = VACUUM_SLACK) -> bool:
    """VACUUM when more than ``slack`` bytes are free pages (a big outbox or spool drained):
    the file shrinks back instead of staying at its high-water mark. True if it did."""
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    if free * size <= slack:
        return False
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return True
