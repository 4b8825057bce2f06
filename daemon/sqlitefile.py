"""SQLite files the daemon keeps (alarm store, InfluxDB spool): opened the same way, kept
small the same way, and never a reason not to run.

A damaged file (power cut on an SD card: truncated, garbage, zero-length, a directory in its
place) is moved aside as ``<name>.corrupt-<UTC time>`` and replaced by an empty one; a state
dir that cannot be written (read-only filesystem, cannot be created) gives an in-memory
database holding a copy of what could still be read. Either way ``open_state`` says what
happened, and the daemon raises a ``state-store`` alarm: running without history beats not
running, as a daemon that exits at start listens to no fire panel.

A full disk: SQLite needs free space to *delete* (the WAL grows before anything is freed), so
a spool that filled the disk could not drain. ``DiskReserve`` keeps a preallocated file in the
state dir that is deleted when a write fails for lack of space, which gives the deletes (and
the alarm store) room; it is made again once the disk has room for it twice over.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_LIMIT = 8 << 20  # bytes the WAL file is truncated to after checkpoints
VACUUM_SLACK = 8 << 20  # free bytes in the file that make vacuum_if_sparse() VACUUM
RESERVE_BYTES = 8 << 20  # the full-disk reserve: room for the WAL of a drain
QUICK_CHECK_MAX = 64 << 20  # bytes: bigger files get a length check, not a full quick_check
MEMORY = Path(":memory:")
_FULL_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})


def open_db(path: Path) -> sqlite3.Connection:
    """Autocommit (explicit BEGIN where needed), WAL, ``synchronous=NORMAL``: a committed
    transaction survives the process dying; the WAL file shrinks back after checkpoints."""
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=2000")  # readers (`firewarden alarms list`) may hold locks
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
    return db


@dataclass(frozen=True, slots=True)
class StateProblem:
    """What ``open_state`` had to do instead of simply opening the file."""

    path: Path
    damaged: bool  # True: moved aside and started empty; False: not writable, in memory
    detail: str  # the error that showed it
    moved_to: Path | None = None

    @property
    def message(self) -> str:
        if self.damaged:
            return (f"{self.path} was damaged ({self.detail}); moved aside to "
                    f"{self.moved_to.name if self.moved_to else '?'} and started empty: what it "
                    f"held before is lost")
        return (f"{self.path} cannot be written ({self.detail}); running with it in memory "
                f"only: lost on restart")


class _Damaged(Exception):
    """The file is there but is not a sound SQLite database."""


_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def open_state(path: Path, schema: str) -> tuple[sqlite3.Connection, StateProblem | None]:
    """Open ``path`` (WAL, as ``open_db``) with ``schema`` created, checked with ``PRAGMA
    quick_check`` and a write. Never raises for the file's sake: a damaged file is moved aside
    and a fresh one made; a place that cannot be written gives ``:memory:``."""
    if path == MEMORY:
        db = open_db(path)
        db.executescript(schema)
        return db, None
    try:
        return _open_checked(path, schema), None
    except _Damaged as exc:
        error: Exception = exc
        damaged = True
    except (sqlite3.Error, OSError) as exc:
        error = exc
        damaged = (isinstance(exc, sqlite3.Error)
                   and getattr(exc, "sqlite_errorcode", None) in _DAMAGE_CODES)
    detail = _describe(error)
    if damaged:
        try:
            moved = _move_aside(path)
            db = _open_checked(path, schema)
        except (_Damaged, sqlite3.Error, OSError) as exc:
            detail = f"{detail}; and then: {_describe(exc)}"
        else:
            log.critical("state file %s is damaged (%s): moved aside to %s, started empty",
                         path, detail, moved)
            return db, StateProblem(path, damaged=True, detail=detail, moved_to=moved)
    log.critical("state file %s cannot be used (%s): keeping it in memory only, lost on "
                 "restart", path, detail)
    return _memory_copy(path, schema), StateProblem(path, damaged=False, detail=detail)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open_checked(path: Path, schema: str) -> sqlite3.Connection:
    size = 0
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise _Damaged("not a regular file")
        size = path.stat().st_size
        wal = path.with_name(path.name + "-wal")
        in_wal = wal.is_file() and wal.stat().st_size > 0  # pages the file does not hold yet
        if size == 0 and not in_wal:
            # sqlite would take it for a new database; ours always hold a header page, so
            # the content was lost (a power cut before the filesystem wrote it)
            raise _Damaged("empty file")
        if size > QUICK_CHECK_MAX and not in_wal:
            _check_length(path, size)
    db = open_db(path)
    try:
        # quick_check reads every page: for a big spool on an SD card that is seconds before
        # the fire panels listen, so big files get the header's length check instead
        if size <= QUICK_CHECK_MAX:
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise _Damaged(f"quick_check: {check[0][0]}")
        db.executescript(schema)
        # a write, so a file or dir that became read-only shows now, not at the first alarm
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        try:
            db.execute(f"PRAGMA user_version = {version}")
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise
            # full, not broken: keep the file; writes are retried as when it fills mid-run
            log.error("state file %s: cannot write (%s): disk full?", path, exc)
    except BaseException:
        db.close()
        raise
    return db


def _check_length(path: Path, size: int) -> None:
    """A file cut short: shorter than the page count its header vouches for (the header's
    count is valid when its version-valid-for number equals the change counter)."""
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return  # not ours to judge here: sqlite says "not a database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages * page_size > size:
        raise _Damaged(f"cut short: {size} of {pages * page_size} bytes")


def _move_aside(path: Path) -> Path:
    """``alarms.db`` -> ``alarms.db.corrupt-20260101T000000Z`` (its -wal and -shm alongside,
    so the pair still opens for someone who wants to recover rows by hand)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(moved)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(moved.with_name(moved.name + suffix))
    return moved


def _memory_copy(path: Path, schema: str) -> sqlite3.Connection:
    """An in-memory database with what can still be read of ``path`` (read-only, ignoring a
    WAL it cannot open: the last transactions may be missing), else empty."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        if path.is_file() and path.stat().st_size:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1",
                                     uri=True)
            try:
                if source.execute("PRAGMA quick_check").fetchall() == [("ok",)]:
                    source.backup(db)
            finally:
                source.close()
    except (sqlite3.Error, OSError) as exc:
        log.warning("could not read %s into memory (%s): starting empty", path, exc)
    db.executescript(schema)
    return db


def is_full(exc: BaseException) -> bool:
    """A write failed for lack of space (or an I/O error, which a full disk may show as)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and (code & 0xFF) in _FULL_CODES


class DiskReserve:
    """``size`` bytes preallocated in the state dir: given back to the filesystem when a write
    fails for lack of space (so deletes, which need journal space, can drain the spool and the
    alarm store can still commit), made again once the disk has twice that free."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size
        self.releases = 0  # times it was given back (self-metrics, tests)
        self.spent = False  # given back and not made again yet: the disk is (nearly) full

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve if the disk has room for it twice over; True if held."""
        if self.held:
            self.spent = False
            return True
        try:
            if shutil.disk_usage(self.path.parent).free < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.size)  # real blocks, not a sparse file
                except OSError as exc:
                    # not supported here (or filtered by a seccomp policy): write it
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS,
                                         errno.EPERM):
                        raise
                    os.pwrite(fd, b"\0" * self.size, 0)
            finally:
                os.close(fd)
        except OSError:
            self._remove()
            return False
        if self.spent:
            log.info("state disk %s has room again: the %d MB full-disk reserve is back",
                     self.path.parent, self.size >> 20)
        self.spent = False
        return True

    def release(self) -> bool:
        """Give the reserve back; True if there was one to give."""
        if not self.path.exists():
            return False
        if not self._remove():
            return False
        self.releases += 1
        self.spent = True
        log.error("state disk %s is full: released the %d MB reserve so the spool can drain "
                  "and alarms can be stored; the spool takes no new batches until the disk "
                  "has room again", self.path.parent, self.size >> 20)
        return True

    def _remove(self) -> bool:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            return False
        return True


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
