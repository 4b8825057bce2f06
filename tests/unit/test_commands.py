"""Operator commands: every malformed one is refused with its reason and changes nothing;
good ones move the alarm and are stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.app import AlarmDesk
from daemon.commands import CommandError, parse_command
from daemon.config import InfluxConfig
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from drivers.measurements import Quantity, Reading
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
    return AlarmDesk(engine=engine, store=store, influx=influx, clock=lambda: now[0]), store


def test_desk_applies_commands_and_reports_refusals(tmp_path: Path) -> None:
    now = [100.0]
    desk, store = _desk(tmp_path, now)
    desk.publish(desk.engine.evaluate(Reading(ts=100.0, device="panel",
                                              quantity=Quantity.FIRE, value=1.0,
                                              channel="1-3-25")))
    alarm_id = "fire:panel:1-3-25"

    def cmd(verb: str, **body: object) -> dict[str, object]:
        return desk.command(verb, json.dumps(body).encode())

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
