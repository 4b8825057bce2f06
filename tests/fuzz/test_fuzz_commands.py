"""Fuzzing MQTT operator commands through ``AlarmDesk.command`` (what the MQTT notifier calls
for every ``cmd/<verb>`` message): a real AlarmStore on disk, a real RuleEngine holding a fire
alarm and two others, an InfluxSink that is never started.

For any verb and any body the answer is a JSON-able dict with a boolean ``ok`` and, when not
ok, an ``error`` string; nothing raises; a refused command changes nothing (alarm states, the
store's tables, the InfluxDB queue); an accepted one is stored before it is answered.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.measurements import Quantity, Reading
from daemon.commands import VERBS
from daemon.config import InfluxConfig
from daemon.pipeline import AlarmDesk
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from rules.engine import DeviceRules, RuleEngine
from rules.model import Alarm, AlarmState, Severity

FAST = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

FIRE = "fire:panel:1-3-25"
LEAK = "leakage:b12-box1-rcm:1"
LAMP = "lamp-out:b12-lamps:2"
ALARM_IDS = [FIRE, LEAK, LAMP]


@contextmanager
def desk() -> Iterator[tuple[AlarmDesk, AlarmStore, InfluxSink]]:
    with tempfile.TemporaryDirectory() as tmp, \
            AlarmStore(Path(tmp) / "alarms.db", sinks=["mqtt", "webhook"]) as store:
        seeded = [
            Alarm(alarm_id=LEAK, rule="leakage", device="b12-box1-rcm",
                  severity=Severity.CRITICAL, state=AlarmState.ACKED, channel="1", value=350.0,
                  limit=300.0, message="剩余电流 350 mA", raised_at=50.0, changed_at=60.0,
                  acked_by="li", seq=2),
            Alarm(alarm_id=LAMP, rule="lamp-out", device="b12-lamps", severity=Severity.WARNING,
                  state=AlarmState.RTN_UNACKED, channel="2", message="2 lamps out",
                  raised_at=40.0, changed_at=70.0, seq=2),
        ]
        engine = RuleEngine(devices={"panel": DeviceRules()}, alarms=seeded)
        influx = InfluxSink(config=InfluxConfig(), site="t", device_tags={})
        now = [100.0]
        the_desk = AlarmDesk(engine=engine, store=store, influx=influx, clock=lambda: now[0],
                             wall=lambda: now[0])
        the_desk.publish(engine.evaluate(Reading(ts=100.0, device="panel",
                                                 quantity=Quantity.FIRE, value=1.0,
                                                 channel="1-3-25")))
        assert set(engine.alarms) == set(ALARM_IDS)
        yield the_desk, store, influx


def snapshot(the_desk: AlarmDesk, store: AlarmStore, influx: InfluxSink) -> tuple[Any, ...]:
    """Everything a command could change: alarms in memory, every table, the InfluxDB queue."""
    return (dict(the_desk.engine.alarms), list(store.db.iterdump()), influx.stats.pending)


def check(the_desk: AlarmDesk, store: AlarmStore, influx: InfluxSink, verb: str,
          body: bytes) -> dict[str, object]:
    before = snapshot(the_desk, store, influx)
    answer = the_desk.command(verb, body)
    assert isinstance(answer, dict)
    assert isinstance(answer.get("ok"), bool), answer
    json.dumps(answer, ensure_ascii=False)
    after = snapshot(the_desk, store, influx)
    event(f"{verb if verb in VERBS else 'other verb'}: {'accepted' if answer['ok'] else 'refused'}")
    if answer["ok"]:
        assert verb in VERBS
        assert answer["state"] == the_desk.engine.alarms[str(answer["alarm_id"])].state.value
        assert after[1] != before[1], "an accepted command must be stored"
        events = answer["events"]
        assert isinstance(events, list)
        assert events
        assert after[2] == before[2] + len(events)
    else:
        assert isinstance(answer.get("error"), str)
        assert answer["error"]
        assert after == before, f"refused {verb} {body!r} changed something: {answer}"
    return answer


VERB = st.one_of(st.sampled_from(VERBS), st.sampled_from(["result", "", "ACK", "ack ", "#",
                                                           "+", "../../x", "ack/x", "\0"]),
                 st.text(max_size=12))
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=10)
FIELD_VALUE = st.one_of(JSON, st.sampled_from(ALARM_IDS), st.sampled_from(
    ["li", " ", "李师傅", "x" * 200, 0, 1, 10080, 10081, -1, 1e308, float("inf"), True]))


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """Bodies close to real commands: known fields with good and bad values, sometimes an
    extra field, sometimes not JSON-encodable as the standard says (NaN, Infinity)."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["alarm_id"] = draw(st.sampled_from(ALARM_IDS) | FIELD_VALUE)
    if draw(st.integers(0, 4)):
        body["by"] = draw(st.sampled_from(["li", "李师傅"]) | FIELD_VALUE)
    if draw(st.booleans()):
        body["minutes"] = draw(st.integers(1, 10080) | FIELD_VALUE)
    if draw(st.booleans()):
        body["id"] = draw(FIELD_VALUE)
    if draw(st.integers(0, 3)):
        body["ts"] = draw(st.sampled_from([100, 100.5, -200, 401]) | FIELD_VALUE)
    if not draw(st.integers(0, 5)):
        body[draw(st.text(max_size=6))] = draw(FIELD_VALUE)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


WELL_FORMED = st.builds(
    lambda alarm_id, by, minutes, request_id, ts: json.dumps(
        {"alarm_id": alarm_id, "by": by, "ts": ts, **({"minutes": minutes} if minutes else {}),
         **({"id": request_id} if request_id is not None else {})}).encode(),
    st.sampled_from(ALARM_IDS), st.sampled_from(["li", "李师傅", " wang "]),
    st.none() | st.integers(1, 10080), st.none() | st.text(max_size=5) | st.integers(),
    st.floats(-200, 400))  # fresh within command_max_age (300 s) of the desk's clock, 100
BODY = st.one_of(WELL_FORMED, st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode()),
                 near_valid(), st.text(max_size=30).map(lambda t: t.encode("utf-8", "replace")))


@FAST
@given(verb=VERB, body=BODY)
def test_one_command_answers_and_refusals_change_nothing(verb: str, body: bytes) -> None:
    with desk() as (the_desk, store, influx):
        check(the_desk, store, influx, verb, body)


@FAST
@given(commands=st.lists(st.tuples(st.sampled_from(VERBS) | VERB, WELL_FORMED | BODY),
                         min_size=2, max_size=12))
def test_command_sequences(commands: list[tuple[str, bytes]]) -> None:
    """A session of commands (some accepted, which move the alarms): each refusal still
    changes nothing, and every accepted command's events are in the store's outbox."""
    with desk() as (the_desk, store, influx):
        accepted: list[object] = []
        for verb, body in commands:
            answer = check(the_desk, store, influx, verb, body)
            if answer["ok"]:
                accepted += list(answer["events"])  # type: ignore[call-overload]
        stored = {item.payload["event_id"] for item in store.pending("mqtt", 10_000)}
        assert set(accepted) <= stored
