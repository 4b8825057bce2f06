"""Operator commands: every malformed one is refused with its reason and changes nothing;
good ones move the alarm and are stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.measurements import Quantity, Reading
from daemon.commands import MAX_COMMAND_BYTES, CommandError, Freshness, parse_command
from daemon.config import InfluxConfig
from daemon.pipeline import AlarmDesk
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from rules.engine import DeviceRules, RuleEngine


@pytest.mark.parametrize(("verb", "body", "reason"), [
    ("fly", b"{}", "unknown command 'fly'"),
    ("ack", b"not json", "body is not JSON"),
    ("ack", b"[1, 2]", "must be a JSON object, got list"),
    ("ack", b'{"by": "li"}', "alarm_id must be a non-empty string"),
    ("ack", b'{"alarm_id": "x"}', "by (who is doing this) must be a non-empty string"),
    ("ack", b'{"alarm_id": "x", "by": "  "}', "by (who is doing this)"),
    ("ack", b'{"alarm_id": "x", "by": "li", "when": 1}', "unknown field(s) when"),
    ("shelve", b'{"alarm_id": "x", "by": "li"}', "shelve needs minutes between 1 and"),
    ("shelve", b'{"alarm_id": "x", "by": "li", "minutes": 99999}', "shelve needs minutes"),
    ("shelve", b'{"alarm_id": "x", "by": "li", "minutes": true}', "shelve needs minutes"),
    ("ack", b'{"alarm_id": "x", "by": "li", "minutes": 5}', "minutes only applies to shelve"),
    ("ack", b'\xff', "body is not JSON"),
])
def test_malformed_commands_are_refused(verb: str, body: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_command(verb, body)


def test_good_command_parses() -> None:
    request = parse_command("shelve", b'{"alarm_id": "x", "by": "li", "minutes": 30, "id": 7}')
    assert (request.alarm_id, request.by, request.minutes, request.request_id) == (
        "x", "li", 30.0, "7")


def _desk(tmp_path: Path, now: list[float]) -> tuple[AlarmDesk, AlarmStore]:
    store = AlarmStore(tmp_path / "a.db", sinks=["mqtt"])
    store.open()
    engine = RuleEngine(devices={"panel": DeviceRules()})
    influx = InfluxSink(config=InfluxConfig(), site="t", device_tags={})
    return AlarmDesk(engine=engine, store=store, influx=influx, clock=lambda: now[0],
                     wall=lambda: now[0]), store


def test_desk_applies_commands_and_reports_refusals(tmp_path: Path) -> None:
    now = [100.0]
    desk, store = _desk(tmp_path, now)
    desk.publish(desk.engine.evaluate(Reading(ts=100.0, device="panel",
                                              quantity=Quantity.FIRE, value=1.0,
                                              channel="1-3-25")))
    alarm_id = "fire:panel:1-3-25"

    def cmd(verb: str, **body: object) -> dict[str, object]:
        return desk.command(verb, json.dumps({**body, "ts": now[0]}).encode())

    assert cmd("ack", alarm_id="nope", by="li") == {
        "verb": "ack", "alarm_id": "nope", "by": "li", "ok": False, "error": "no alarm 'nope'"}
    refused = cmd("shelve", alarm_id=alarm_id, by="li", minutes=10)
    assert refused["ok"] is False
    assert "cannot be shelved" in str(refused["error"])
    assert cmd("reset", alarm_id=alarm_id, by="li")["error"] == (
        f"{alarm_id}: the condition is still present; reset the panel or clear the cause first")
    now[0] = 101.0
    acked = cmd("ack", alarm_id=alarm_id, by="li", id="r1")
    assert acked == {"verb": "ack", "alarm_id": alarm_id, "by": "li", "id": "r1", "ok": True,
                     "state": "acknowledged", "events": [f"{alarm_id}#2"]}
    assert [i.payload["event"] for i in store.pending("mqtt")] == ["raised", "acknowledged"]
    assert store.load_alarms()[0].acked_by == "li"
    assert cmd("ack", alarm_id=alarm_id, by="li")["ok"] is False  # nothing left to ack
    store.close()


def test_desk_refuses_stale_replayed_and_undated_commands(tmp_path: Path) -> None:
    """ts outside command_max_age either way, an id seen before, the same body again, or no
    ts: refused with a reason (``refused`` names it) and nothing changes."""
    now = [10_000.0]
    desk, store = _desk(tmp_path, now)
    desk.publish(desk.engine.evaluate(Reading(ts=now[0], device="panel",
                                              quantity=Quantity.FIRE, value=1.0,
                                              channel="1-3-25")))
    alarm_id = "fire:panel:1-3-25"

    def cmd(verb: str, **body: object) -> dict[str, object]:
        return desk.command(verb, json.dumps(body).encode())

    undated = cmd("ack", alarm_id=alarm_id, by="li", id="u1")
    assert (undated["ok"], undated["refused"], undated["id"]) == (False, "missing-ts", "u1")
    for ts in (now[0] - 301, now[0] + 301):
        stale = cmd("ack", alarm_id=alarm_id, by="li", ts=ts)
        assert (stale["ok"], stale["refused"]) == (False, "stale"), stale
        assert "command_max_age" in str(stale["error"])
    assert not desk.engine.alarms[alarm_id].acked
    assert cmd("out-of-service", alarm_id=alarm_id, by="li", ts=now[0] - 299, id="o1")["ok"]
    assert cmd("in-service", alarm_id=alarm_id, by="li", ts=now[0], id="i1")["ok"]
    replay = cmd("out-of-service", alarm_id=alarm_id, by="li", ts=now[0] - 299, id="o1")
    assert (replay["ok"], replay["refused"]) == (False, "replayed")
    assert not desk.engine.alarms[alarm_id].out_of_service
    body = json.dumps({"alarm_id": alarm_id, "by": "li", "ts": now[0]}).encode()
    assert desk.command("ack", body)["ok"]
    assert desk.command("ack", body)["refused"] == "replayed"  # no id: the same body
    now[0] += 400  # o1 is forgotten once its ts is out of the window anyway
    assert cmd("out-of-service", alarm_id=alarm_id, by="li", ts=now[0], id="o1")["ok"]
    store.close()


def test_freshness_forgets_the_oldest_when_full() -> None:
    """Memory is bounded: past ``capacity`` ids in one window the oldest are forgotten."""
    fresh = Freshness(300.0, capacity=3)

    def admit(i: int) -> None:
        fresh.admit(parse_command("ack", json.dumps(
            {"alarm_id": "x", "by": "li", "ts": 100, "id": i}).encode()), b"", 100.0)

    for i in range(5):
        admit(i)
    with pytest.raises(CommandError, match="replayed"):
        admit(4)
    admit(0)  # forgotten


def test_answers_never_echo_a_long_value() -> None:
    """A refusal quotes at most a short excerpt of what it was sent; huge bodies are refused
    unread."""
    for verb, body in [("ack", json.dumps({"alarm_id": "a" * 5000, "by": "li"})),
                       ("ack", json.dumps({"alarm_id": "x", "by": "li", "id": "i" * 5000})),
                       ("ack", json.dumps({"alarm_id": ["z" * 100] * 100, "by": "li"})),
                       ("ack", json.dumps({"alarm_id": "x", "by": "li", "y" * 5000: 1})),
                       ("f" * 5000, "{}")]:
        with pytest.raises(CommandError) as info:
            parse_command(verb, body.encode())
        assert len(str(info.value)) < 200, str(info.value)
    with pytest.raises(CommandError, match="refused unread") as big:
        parse_command("ack", b"{" + b" " * MAX_COMMAND_BYTES + b"}")
    assert big.value.refused == "too-large"
