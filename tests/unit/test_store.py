"""The SQLite alarm store: alarms round-trip, the outbox orders fire first and forgets only
what was delivered, across reopening (a restart)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.store import AlarmStore, alarm_from_json, alarm_to_json, read_alarms
from rules.alarm import Ack, new_alarm, transition
from rules.model import Alarm, AlarmEvent, Condition, Severity


def raised(rule: str, device: str, severity: Severity, ts: float) -> AlarmEvent:
    cond = Condition(rule=rule, device=device, active=True, severity=severity, ts=ts,
                     value=1.0, channel="1", message=f"{rule} 信息")
    _, (event,) = transition(new_alarm(cond, {"building": "12"}), cond, ts)
    return event


def test_alarm_round_trips_through_json() -> None:
    event = raised("leakage", "rcm-1", Severity.CRITICAL, 5.0)
    alarm, _ = transition(event.alarm, Ack("李师傅"), 9.0)
    back = alarm_from_json(alarm_to_json(alarm))
    assert back == alarm
    assert isinstance(back.recent_activations, tuple)


def test_outbox_fire_first_then_in_order_per_sink(tmp_path: Path) -> None:
    with AlarmStore(tmp_path / "a.db", sinks=["mqtt", "webhook:ops"]) as store:
        store.record([raised("leakage", "rcm-1", Severity.CRITICAL, 1.0),
                      raised("overcurrent", "m1", Severity.CRITICAL, 2.0)])
        store.record([raised("fire", "panel", Severity.FIRE, 3.0)])
        ids = [i.event_id for i in store.pending("mqtt")]
        assert ids == ["fire:panel:1#1", "leakage:rcm-1:1#1", "overcurrent:m1:1#1"]
        first = store.pending("mqtt", limit=1)[0]
        assert first.payload["event"] == "raised"
        assert "event" not in first.alarm
        assert first.alarm["building"] == "12"
        store.delivered("mqtt", [first.seq])
        assert [i.event_id for i in store.pending("mqtt")] == ids[1:]
        assert len(store.pending("webhook:ops")) == 3  # each sink has its own queue
        assert store.backlog() == {"mqtt": 2, "webhook:ops": 3}


def test_restart_keeps_alarms_and_undelivered_events_only(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    event = raised("fire", "panel", Severity.FIRE, 1.0)
    leak = raised("leakage", "rcm-1", Severity.CRITICAL, 2.0)
    with AlarmStore(path, sinks=["mqtt"]) as store:
        store.record([event, leak])
        store.delivered("mqtt", [store.pending("mqtt")[0].seq])
        store.record([leak])  # the same event id while still pending: not queued twice
    with AlarmStore(path, sinks=["mqtt"]) as again:
        assert {a.alarm_id for a in again.load_alarms()} == {"fire:panel:1", "leakage:rcm-1:1"}
        assert [i.event_id for i in again.pending("mqtt")] == ["leakage:rcm-1:1#1"]
    alarms: list[Alarm] = read_alarms(path)
    assert alarms[0].state.value == "unacknowledged"


def test_removed_sinks_are_dropped_on_open(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AlarmStore(path, sinks=["mqtt", "webhook:old"]) as store:
        store.record([raised("fire", "panel", Severity.FIRE, 1.0)])
    with AlarmStore(path, sinks=["mqtt"]) as store:
        assert store.backlog() == {"mqtt": 1}


def test_maintain_bounds_each_outbox_and_never_drops_fire(tmp_path: Path) -> None:
    with AlarmStore(tmp_path / "a.db", sinks=["mqtt", "webhook:dead"]) as store:
        store.record([raised("fire", "panel", Severity.FIRE, 0.0)])
        store.record([raised("leakage", f"rcm-{i}", Severity.CRITICAL, float(i))
                      for i in range(1, 51)])
        assert store.maintain(max_outbox=20) == 2 * 31  # per sink: 51 - 20, never the fire
        for sink in ("mqtt", "webhook:dead"):
            ids = [i.event_id for i in store.pending(sink, limit=100)]
            assert len(ids) == 20
            assert ids[0] == "fire:panel:1#1"
            assert ids[1:] == [f"leakage:rcm-{i}:1#1" for i in range(32, 51)]  # the newest


def test_maintain_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AlarmStore(path, sinks=["mqtt"]) as store:
        big = raised("leakage", "rcm-1", Severity.CRITICAL, 1.0)
        store.record([replace(big, alarm=replace(big.alarm, alarm_id=f"x{i}", seq=i,
                                                 message="x" * 2000))
                      for i in range(6000)])
        store.delivered("mqtt", [i.seq for i in store.pending("mqtt", limit=10_000)])
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        store.maintain()
        after = path.stat().st_size
    assert before > 20 << 20
    assert after < before // 2


def test_a_full_disk_keeps_events_in_memory_and_still_delivers(tmp_path: Path) -> None:
    """A disk that refuses writes (full; here ``query_only``, so that even the free space in
    existing pages is refused) must not lose or block an alarm: the events are handed to the
    notifiers from memory, and stored once the disk takes writes again. (The fault suite
    fills a real file-size limit with the daemon as a process.)"""
    path = tmp_path / "a.db"
    with AlarmStore(path, sinks=["mqtt"]) as store:
        store.db.execute("PRAGMA query_only=ON")  # every write now fails
        fire = raised("fire", "panel", Severity.FIRE, 1.0)
        store.record([raised("leakage", "rcm-1", Severity.CRITICAL, 0.5), fire])
        items = store.pending("mqtt")
        assert [i.event_id for i in items] == ["fire:panel:1#1", "leakage:rcm-1:1#1"]
        assert all(i.seq < 0 for i in items)
        assert store.backlog() == {"mqtt": 2}
        store.delivered("mqtt", [items[0].seq])  # the fire went out
        assert [i.event_id for i in store.pending("mqtt")] == ["leakage:rcm-1:1#1"]
        store.db.execute("PRAGMA query_only=OFF")  # room again
        store.record([raised("overcurrent", "m1", Severity.CRITICAL, 2.0)])
        assert [i.event_id for i in store.pending("mqtt")] == [
            "leakage:rcm-1:1#1", "overcurrent:m1:1#1"]
        assert all(i.seq > 0 for i in store.pending("mqtt"))
    assert {a.alarm_id for a in read_alarms(path)} == {"fire:panel:1", "leakage:rcm-1:1",
                                                      "overcurrent:m1:1"}
