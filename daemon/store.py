"""The alarm store (SQLite): every alarm's state, and an outbox of events per notifier.

Why SQLite: an unacknowledged alarm must survive a restart, ``kill -9`` included, and an event
a notifier has already delivered must not page again after one. Each batch of alarm events
is one transaction that writes the alarms' new states and one outbox row per event and sink;
a notifier deletes its rows only once the receiver has taken them. WAL with
``synchronous=NORMAL`` makes a committed transaction survive the process dying (not a power
cut mid-write, which costs at most the last transaction).

Outbox order: by priority (fire first), then insertion; an alarm's events never change lanes
(its severity picks the lane), so each alarm's events stay in order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from daemon.sqlitefile import DiskReserve, StateProblem, is_full, open_state, vacuum_if_sparse
from rules.model import Alarm, AlarmEvent, AlarmState, Severity

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY,
    data     TEXT NOT NULL,
    changed  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    sink     TEXT NOT NULL,
    priority INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    payload  TEXT NOT NULL,
    created  REAL NOT NULL,
    UNIQUE (sink, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (sink, priority, seq);
CREATE TABLE IF NOT EXISTS history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       REAL NOT NULL,
    alarm_id TEXT NOT NULL,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_ts ON history (ts);
CREATE TABLE IF NOT EXISTS escalations (
    alarm_id TEXT PRIMARY KEY,
    data     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
HISTORY_DAYS = 35  # days of alarm events kept for reports (``history``)
# what the history keeps of each event (the report's needs, not the whole alarm)
HISTORY_FIELDS = ("event", "ts", "previous", "alarm_id", "rule", "device", "channel",
                  "severity", "state", "value", "limit", "message", "raised_at", "acked_by",
                  "evidence", "by",
                  "building", "floor", "area", "box", "circuit", "zone", "kind")


MAX_OUTBOX = 100_000  # events per sink
_Row = tuple[str, int, str, str, float]  # sink, priority, event_id, payload, created


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One event waiting for one notifier."""

    seq: int
    event_id: str
    payload: dict[str, Any]  # AlarmEvent.as_dict()

    @property
    def alarm(self) -> dict[str, Any]:
        """The alarm's state as the event left it (the retained-state payload)."""
        return {k: v for k, v in self.payload.items() if k not in _EVENT_ONLY}


_EVENT_ONLY = frozenset({"event", "event_id", "ts", "previous", "by", "flood"})


class Outbox(Protocol):
    """What a notifier needs: its pending events, and a way to say they arrived."""

    def pending(self, sink: str, limit: int = 100) -> list[OutboxItem]: ...

    def delivered(self, sink: str, seqs: Sequence[int]) -> None: ...


class AlarmStore:
    """SQLite-backed alarms and outbox; a (synchronous) context manager.

    ``sinks`` are the notifiers that get every event (e.g. ``"mqtt"``, ``"webhook:wecom"``);
    rows for sinks no longer configured are dropped on open, so removing a webhook does not
    leave events behind forever.
    """

    def __init__(self, path: Path, *, sinks: Sequence[str],
                 reserve: DiskReserve | None = None) -> None:
        self.path = path
        self.sinks = tuple(sinks)
        self.reserve = reserve  # given back when the disk is full, so alarms still commit
        self.problem: StateProblem | None = None  # what open() found wrong with the file
        self._db: sqlite3.Connection | None = None
        # events and alarm states the disk refused (full): still delivered, stored later
        self._overflow: list[tuple[int, _Row]] = []
        self._overflow_alarms: dict[str, Alarm] = {}
        self._overflow_seq = 0

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open (never fails for the file's sake: see ``open_state``; ``problem`` says what
        was done instead)."""
        db, self.problem = open_state(self.path, SCHEMA)
        if self.sinks:
            marks = ",".join("?" * len(self.sinks))
            with contextlib.suppress(sqlite3.Error):  # a full disk: they wait for next time
                db.execute(f"DELETE FROM outbox WHERE sink NOT IN ({marks})", self.sinks)
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"alarm store {self.path} is not open")
        return self._db

    # -- writing ------------------------------------------------------------------------------

    def record(self, events: Iterable[AlarmEvent]) -> None:
        """Persist a batch of events: the alarms' new states and an outbox row per sink.

        If the disk refuses (full, read-only, I/O error), the batch is kept in memory and
        still handed to the notifiers (``pending``): an alarm is delivered even when it cannot
        be made durable; the store retries writing it with every later batch.
        """
        events = list(events)
        if not events:
            return
        now = time.time()
        latest: dict[str, Alarm] = {}
        rows: list[_Row] = []
        history: list[tuple[float, str, str, str]] = []
        for event in events:
            latest[event.alarm.alarm_id] = event.alarm
            data = event.as_dict()
            payload = json.dumps(data, ensure_ascii=False, default=str)
            priority = 0 if event.alarm.severity is Severity.FIRE else 1
            rows += [(sink, priority, event.event_id, payload, now) for sink in self.sinks]
            kept = {k: data[k] for k in HISTORY_FIELDS if data.get(k) not in (None, "", {})}
            history.append((event.ts, event.alarm.alarm_id, event.kind.value,
                            json.dumps(kept, ensure_ascii=False, default=str)))
        if self._overflow:
            self._flush_overflow()
        try:
            self._write(latest.values(), rows, history)
        except sqlite3.Error as exc:
            if not (is_full(exc) and self.reserve is not None and self.reserve.release()):
                self._keep_in_memory(latest.values(), rows, exc)
                return
            try:  # once more, in the room the reserve gave back
                self._write(latest.values(), rows, history)
            except sqlite3.Error as again:
                self._keep_in_memory(latest.values(), rows, again)

    def _write(self, alarms: Iterable[Alarm], rows: Sequence[_Row],
               history: Sequence[tuple[float, str, str, str]] = ()) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO alarms (alarm_id, data, changed) VALUES (?, ?, ?) "
                "ON CONFLICT (alarm_id) DO UPDATE SET data = excluded.data, "
                "changed = excluded.changed",
                [(a.alarm_id, alarm_to_json(a), a.changed_at) for a in alarms])
            db.executemany("INSERT OR IGNORE INTO outbox (sink, priority, event_id, payload, "
                           "created) VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO history (ts, alarm_id, kind, data) VALUES (?, ?, ?, ?)",
                           history)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _keep_in_memory(self, alarms: Iterable[Alarm], rows: Sequence[_Row],
                        exc: sqlite3.Error) -> None:
        if not self._overflow and not self._overflow_alarms:
            log.error("alarm store %s: cannot write (%s): disk full? Alarm events are kept in "
                      "memory and still sent; they would be lost on a restart until the disk "
                      "has room again", self.path, exc)
        for alarm in alarms:
            self._overflow_alarms[alarm.alarm_id] = alarm
        for row in rows:
            self._overflow_seq -= 1  # negative: never a database seq
            self._overflow.append((self._overflow_seq, row))

    def _flush_overflow(self) -> None:
        """Write what the disk refused earlier, if it takes it now."""
        try:
            self._write(self._overflow_alarms.values(), [row for _, row in self._overflow])
        except sqlite3.Error:
            return
        log.info("alarm store %s: writable again; %d events kept in memory are now stored",
                 self.path, len(self._overflow))
        self._overflow.clear()
        self._overflow_alarms.clear()

    def notify(self, messages: Sequence[tuple[str, str, dict[str, Any], bool]], *,
               escalations: Mapping[str, str] = {}, meta: Mapping[str, str] = {}) -> None:
        """Queue messages the daemon composed itself (escalation pages, the morning report):
        ``(sink, event_id, payload, urgent)`` rows, with the escalation states (alarm id ->
        JSON) and ``meta`` values that say they were queued, in one transaction: after a
        restart, what was queued is neither queued again nor forgotten. If the disk refuses,
        the messages are still sent from memory (as ``record`` does)."""
        now = time.time()
        rows: list[_Row] = [(sink, 0 if urgent else 1, event_id,
                             json.dumps(payload, ensure_ascii=False, default=str), now)
                            for sink, event_id, payload, urgent in messages]
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO outbox (sink, priority, event_id, "
                               "payload, created) VALUES (?, ?, ?, ?, ?)", rows)
                db.executemany("INSERT INTO escalations (alarm_id, data) VALUES (?, ?) "
                               "ON CONFLICT (alarm_id) DO UPDATE SET data = excluded.data",
                               list(escalations.items()))
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                               "DO UPDATE SET value = excluded.value", list(meta.items()))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._keep_in_memory((), rows, exc)

    def load_escalations(self) -> dict[str, str]:
        """The stored escalation states (alarm id -> JSON)."""
        return dict(self.db.execute("SELECT alarm_id, data FROM escalations"))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def history(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Alarm events from ``since`` (to ``until``), oldest first (the report's input)."""
        return _history(self.db, since, until)

    def delivered(self, sink: str, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        gone = {s for s in seqs if s < 0}
        if gone:
            self._overflow = [(seq, row) for seq, row in self._overflow
                              if not (seq in gone and row[0] == sink)]
        stored = [(sink, s) for s in seqs if s >= 0]
        if stored:
            # if the disk refuses, the rows stay queued: sent again later, which QoS 1
            # allows anyway (receivers de-duplicate on event ids)
            with contextlib.suppress(sqlite3.Error):
                self.db.executemany("DELETE FROM outbox WHERE sink = ? AND seq = ?", stored)

    # -- reading ------------------------------------------------------------------------------

    def pending(self, sink: str, limit: int = 100) -> list[OutboxItem]:
        try:
            rows = self.db.execute(
                "SELECT seq, priority, event_id, payload FROM outbox WHERE sink = ? "
                "ORDER BY priority, seq LIMIT ?", (sink, limit)).fetchall()
        except sqlite3.Error:
            rows = []
        items = [(priority, 0, seq, event_id, payload)
                 for seq, priority, event_id, payload in rows]
        items += [(row[1], 1, seq, row[2], row[3]) for seq, row in self._overflow
                  if row[0] == sink]
        items.sort(key=lambda i: (i[0], i[1], abs(i[2])))  # fire first, stored before memory
        out: list[OutboxItem] = []
        for _, _, seq, event_id, payload in items[:limit]:
            try:
                out.append(OutboxItem(seq, event_id, dict(json.loads(payload))))
            except (ValueError, TypeError) as exc:  # bit rot quick_check cannot see
                log.error("alarm store %s: event %s for %s does not decode (%s): dropped",
                          self.path, event_id, sink, exc)
                self.delivered(sink, [seq])  # it would block every event behind it
        return out

    def backlog(self) -> dict[str, int]:
        """Events waiting per sink (self-monitoring), including any held in memory."""
        counts: dict[str, int] = dict(
            self.db.execute("SELECT sink, COUNT(*) FROM outbox GROUP BY sink"))
        for _, row in self._overflow:
            counts[row[0]] = counts.get(row[0], 0) + 1
        return counts

    def maintain(self, *, max_outbox: int = MAX_OUTBOX) -> int:
        """Keep the file within its limits: each sink's outbox at most ``max_outbox`` events
        (the oldest non-fire events go first: a webhook dead for months must not fill the
        disk; fire events are never dropped), then give freed space back. Returns how many
        events were dropped."""
        try:
            return self._maintain(max_outbox)
        except sqlite3.Error as exc:  # a full or failing disk: next time
            log.error("alarm store %s: maintenance failed (%s)", self.path, exc)
            return 0

    def _maintain(self, max_outbox: int) -> int:
        if self._overflow:
            self._flush_overflow()
        dropped = 0
        for sink, count in self.backlog().items():
            excess = count - max_outbox
            if excess > 0:
                cursor = self.db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE sink = ? "
                    "AND priority > 0 ORDER BY seq LIMIT ?)", (sink, excess))
                dropped += cursor.rowcount
                log.error("alarm store: outbox of %s over %d events; dropped the %d oldest "
                          "non-fire events", sink, max_outbox, cursor.rowcount)
        self.db.execute("DELETE FROM history WHERE ts < ?",
                        (time.time() - HISTORY_DAYS * 86_400,))
        vacuum_if_sparse(self.db)
        return dropped

    def load_alarms(self) -> list[Alarm]:
        """The stored alarms; a row that no longer decodes is logged and skipped."""
        alarms = []
        for alarm_id, data in self.db.execute("SELECT alarm_id, data FROM alarms "
                                              "ORDER BY alarm_id"):
            try:
                alarms.append(alarm_from_json(data))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("alarm store %s: alarm %s does not decode (%s): skipped",
                          self.path, alarm_id, exc)
        return alarms


def read_alarms(path: Path) -> list[Alarm]:
    """The stored alarms, read-only (``firewarden alarms list`` while the daemon is down)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [alarm_from_json(data) for (data,) in
                db.execute("SELECT data FROM alarms ORDER BY alarm_id")]
    finally:
        db.close()


def read_history(path: Path, since: float, until: float | None = None,
                 ) -> tuple[list[Alarm], list[dict[str, Any]]]:
    """The stored alarms and the events since ``since``, read-only (``firewarden report``)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        alarms = [alarm_from_json(data) for (data,) in
                  db.execute("SELECT data FROM alarms ORDER BY alarm_id")]
        try:
            return alarms, _history(db, since, until)
        except sqlite3.OperationalError:  # a store from before the history table
            return alarms, []
    finally:
        db.close()


def _history(db: sqlite3.Connection, since: float,
             until: float | None) -> list[dict[str, Any]]:
    rows = db.execute("SELECT kind, ts, data FROM history WHERE ts >= ? AND ts <= ? "
                      "ORDER BY ts, id", (since, until if until is not None else 1e18))
    out: list[dict[str, Any]] = []
    for kind, ts, data in rows:
        try:
            out.append({**json.loads(data), "event": kind, "ts": ts})
        except ValueError:
            continue  # bit rot in one row: the report goes without it
    return out


def alarm_to_json(alarm: Alarm) -> str:
    data = asdict(alarm)
    data["severity"] = alarm.severity.value
    data["state"] = alarm.state.value
    return json.dumps(data, ensure_ascii=False)


def alarm_from_json(text: str) -> Alarm:
    data: dict[str, Any] = json.loads(text)
    data["severity"] = Severity(data["severity"])
    data["state"] = AlarmState(data["state"])
    data["recent_activations"] = tuple(data.get("recent_activations", ()))
    data["context"] = dict(data.get("context") or {})
    data["evidence"] = {str(k): float(v) for k, v in (data.get("evidence") or {}).items()}
    known = Alarm.__dataclass_fields__
    return Alarm(**{k: v for k, v in data.items() if k in known})


def summary(alarms: Iterable[Alarm]) -> Mapping[str, int]:
    """Counts per state, for STATUS= and the CLI."""
    counts: dict[str, int] = {}
    for alarm in alarms:
        counts[alarm.state.value] = counts.get(alarm.state.value, 0) + 1
    return counts
