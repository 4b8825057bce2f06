"""State files that cannot be used as they are (real SQLite files): damaged ones are moved
aside and replaced, unwritable places give memory; the full-disk reserve; the
``state-store`` conditions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon import sqlitefile
from daemon.sqlitefile import DiskReserve, is_full, open_state
from daemon.store import SCHEMA, AlarmStore
from rules import statestore
from rules.engine import RuleEngine
from rules.model import AlarmState


def _good(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO alarms VALUES (?, ?, 0)", [(str(i), "x" * 400)
                                                          for i in range(300)])
    db.commit()
    db.close()


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage": lambda p: p.write_bytes(os.urandom(8192)),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zero-length": lambda p: p.write_bytes(b""),
    "directory": _directory,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_file_is_moved_aside_and_replaced(tmp_path: Path, damage: str) -> None:
    """The damaged file is kept as ``<name>.corrupt-<UTC>``; a fresh, writable one is used."""
    path = tmp_path / "alarms.db"
    _good(path)
    DAMAGE[damage](path)
    db, problem = open_state(path, SCHEMA)
    assert problem is not None
    assert problem.damaged
    assert problem.moved_to is not None
    assert problem.moved_to.name.startswith("alarms.db.corrupt-")
    assert problem.moved_to.exists()
    db.execute("INSERT INTO alarms VALUES ('a', '{}', 0)")
    assert db.execute("SELECT COUNT(*) FROM alarms").fetchone() == (1,)
    assert "moved aside" in problem.message


def test_big_file_cut_short_is_found_without_a_full_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past QUICK_CHECK_MAX only the header's page count is checked against the length."""
    monkeypatch.setattr(sqlitefile, "QUICK_CHECK_MAX", 0)
    path = tmp_path / "influx-spool.db"
    _good(path)
    DAMAGE["truncated"](path)
    _, problem = open_state(path, SCHEMA)
    assert problem is not None
    assert "cut short" in problem.detail
    _good(sound := tmp_path / "sound.db")
    assert open_state(sound, SCHEMA)[1] is None


def test_sound_file_opens_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    _good(path)
    db, problem = open_state(path, SCHEMA)
    assert problem is None
    assert db.execute("SELECT COUNT(*) FROM alarms").fetchone() == (300,)
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []


def test_state_dir_that_cannot_be_created_gives_memory() -> None:
    """Nobody can make a directory under /proc: the store runs in memory, and says so."""
    with AlarmStore(Path(f"/proc/firewarden-{os.getpid()}/alarms.db"), sinks=["mqtt"]) as store:
        assert store.problem is not None
        assert not store.problem.damaged
        assert store.backlog() == {}
        assert "in memory" in store.problem.message


def test_reserve_is_given_back_once_and_made_again(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path / "disk-reserve", size=1 << 20)
    assert reserve.ensure()
    assert reserve.held
    assert os.stat(reserve.path).st_blocks * 512 >= 1 << 20  # allocated, not sparse
    assert reserve.release()
    assert reserve.spent
    assert not reserve.held
    assert not reserve.release()  # nothing left to give
    assert reserve.ensure()
    assert not reserve.spent


def test_is_full_knows_sqlite_full_errors(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db")
    db.execute("CREATE TABLE t (v BLOB)")
    db.execute("PRAGMA max_page_count = 3")  # a "disk" of three pages
    with pytest.raises(sqlite3.Error) as caught:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert is_full(caught.value)
    assert not is_full(sqlite3.OperationalError("no such table"))


def test_state_store_alarm_for_a_damaged_file_waits_for_an_ack() -> None:
    """Raised and back to normal at once (the fresh file works): unacknowledged."""
    engine = RuleEngine(devices={})
    events = []
    for condition in statestore.conditions("alarms.db", damaged=True, message="lost",
                                           now=100.0):
        events += engine.apply(condition, 100.0)
    assert events[0].kind.value == "raised"
    alarm = engine.alarms["state-store:firewarden:alarms.db"]
    assert alarm.state is AlarmState.RTN_UNACKED


def test_state_store_alarm_in_memory_stays_active() -> None:
    engine = RuleEngine(devices={})
    for condition in statestore.conditions("influx-spool.db", damaged=False,
                                           message="memory", now=5.0):
        engine.apply(condition, 5.0)
    assert engine.alarms["state-store:firewarden:influx-spool.db"].state.active
