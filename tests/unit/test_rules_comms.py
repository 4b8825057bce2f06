"""Communication faults: failed polls, silence (tick), fire panels, stale points, CRC errors."""

from __future__ import annotations

import re
from collections.abc import Hashable
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.measurements import Quantity, Reading
from rules import comms
from rules.base import DeviceInfo, Output, SiteInfo
from rules.catalog import CATALOG, build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import Condition, EventKind, Severity

METER = DeviceInfo(name="m1", kind="incomer", profile_kind="meter", poll=2, rated_current=63,
                   points=frozenset({(Quantity.CURRENT, "L1"), (Quantity.ENERGY, "total")}))
SMOKE = DeviceInfo(name="sd", kind="smoke", profile_kind="smoke", poll=1,
                   points=frozenset({(Quantity.FIRE, None), (Quantity.BATTERY, None)}))
PANEL = DeviceInfo(name="panel", kind="fire-panel", profile_kind="fire-panel")
SLOW = DeviceInfo(name="slow", kind="other", profile_kind="meter", poll=60,
                  points=frozenset({(Quantity.ENERGY, "total")}))
PUSHED = DeviceInfo(name="pushed", kind="other", profile_kind="meter", poll=0)


def make(**config: Any) -> comms.Comms:
    c = comms.CommsConfig(**config)
    built = comms.SPEC.build(SiteInfo(), [(d, c) for d in (METER, SMOKE, PANEL, SLOW, PUSHED)])
    assert "pushed" not in built  # pushed by nothing we know of: no comms rule
    (rule,) = {id(r): r for rules in built.values() for r in rules}.values()
    assert isinstance(rule, comms.Comms)
    return rule


RULE = make()


class Harness:
    """Keeps the rule's states the way the engine does, for readings and ticks."""

    def __init__(self, rule: comms.Comms = RULE) -> None:
        self.rule = rule
        self.states: dict[Hashable, Any] = {}
        self.out: list[Output] = []

    def read(self, ts: float, device: str, quantity: Quantity, value: float = 1.0,
             channel: str | None = None) -> None:
        reading = Reading(ts, device, quantity, value, channel=channel)
        key = self.rule.key(reading)
        self.states[key], found = self.rule.step(self.states.get(key), reading)
        self.out += found

    def online(self, ts: float, device: str = "m1", up: bool = True) -> None:
        self.read(ts, device, Quantity.ONLINE, 1.0 if up else 0.0)

    def tick(self, now: float) -> None:
        changed, found = self.rule.tick(list(self.states.items()), now)
        self.states.update(changed)
        self.out += found

    def verdicts(self, *rules: str, device: str | None = None
                 ) -> list[tuple[str, str, float, bool]]:
        return [(c.rule, c.device, c.ts, c.active) for c in self.out
                if isinstance(c, Condition) and (not rules or c.rule in rules)
                and (device is None or c.device == device)]


@pytest.mark.parametrize(("polls", "expected"), [
    pytest.param([(0, True)], [(0, False)], id="answers"),
    pytest.param([(0, True), (2, False), (4, False)], [(0, False)], id="two-failures-tolerated"),
    pytest.param([(0, True), (2, False), (4, False), (6, False)], [(0, False), (6, True)],
                 id="three-failed-polls"),
    pytest.param([(0, True), (2, False), (4, False), (6, False), (8, False), (10, True)],
                 [(0, False), (6, True), (10, False)], id="back"),
    pytest.param([(0, True), (2, False), (4, True), (6, False), (8, False)], [(0, False)],
                 id="failures-must-be-in-a-row"),
    pytest.param([(0, False), (2, False), (4, False)], [(4, True)], id="dead-from-the-start"),
])
def test_failed_polls(polls: list[tuple[float, bool]], expected: list[tuple[float, bool]]) -> None:
    """online = 0 three polls in a row is a fault; one answer clears it."""
    h = Harness()
    for ts, up in polls:
        h.online(ts, up=up)
    assert [(ts, active) for _, _, ts, active in h.verdicts("comms")] == expected


@pytest.mark.parametrize(("device", "events", "expected"), [
    pytest.param("m1", [("on", 0), ("tick", 50), ("tick", 99), ("tick", 100), ("tick", 101)],
                 [(0, False), (100, True)], id="silent-100s"),
    pytest.param("m1", [("tick", 0), ("tick", 99), ("tick", 100)], [(100, True)],
                 id="never-heard-since-start"),
    pytest.param("m1", [("on", 0), ("tick", 100), ("on", 130), ("tick", 131)],
                 [(0, False), (100, True), (130, False)], id="silent-then-back"),
    pytest.param("slow", [("on", 0), ("on", 60), ("tick", 200), ("tick", 210)],
                 [(0, False), (210, True)], id="slow-poll-waits-2.5-intervals"),
    pytest.param("panel", [("on", 0), ("on", 5), ("off", 95)], [(0, False), (95, True)],
                 id="panel-offline-faults-at-once"),
    pytest.param("panel", [("on", 0), ("tick", 100)], [(0, False), (100, True)],
                 id="panel-link-silent"),
])
def test_silence(device: str, events: list[tuple[str, float]],
                 expected: list[tuple[float, bool]]) -> None:
    """No answer for silent_after (from the tick) is a fault, also for a device never heard."""
    h = Harness()
    for what, ts in events:
        if what == "tick":
            h.tick(ts)
        else:
            h.online(ts, device, up=what == "on")
    assert [(ts, active) for _, _, ts, active in h.verdicts("comms", device=device)] == expected


@pytest.mark.parametrize(("device", "severity", "what"), [
    ("m1", Severity.WARNING, "device"),
    ("sd", Severity.CRITICAL, "smoke detector"),
    ("panel", Severity.CRITICAL, "fire panel"),
])
def test_severity_and_message(device: str, severity: Severity, what: str) -> None:
    """Silent smoke detectors and fire panels are critical; the message says what and how long."""
    h = Harness()
    h.tick(0)
    h.tick(100)
    (fault,) = [c for c in h.out if isinstance(c, Condition) and c.device == device]
    assert (fault.key, fault.severity, fault.active) == (f"comms:{device}", severity, True)
    assert fault.message.startswith(f"{what} {device} communication fault: ")
    assert "100 s" in fault.message


def test_failed_poll_message() -> None:
    """The electrician learns how many polls failed and when it last answered."""
    h = Harness()
    for ts, up in [(0, True), (2, False), (4, False), (6, False)]:
        h.online(ts, up=up)
    fault = h.out[-1]
    assert isinstance(fault, Condition)
    assert fault.message == ("device m1 communication fault: 3 polls failed in a row, last "
                             "answer 6 s ago: check its power, address and RS-485 wiring")


def answering(h: Harness, start: int, end: int, device: str = "m1") -> None:
    for ts in range(start, end, 2):
        h.online(ts, device)
        h.tick(ts)


def test_stale_point_of_an_answering_device() -> None:
    """A point not updated for 5 min while the device answers is stale; it clears on arrival."""
    h = Harness()
    h.read(0, "m1", Quantity.CURRENT, 10, "L1")
    for ts in range(0, 120, 60):
        h.read(ts, "m1", Quantity.ENERGY, 5, "total")
    answering(h, 0, 400)
    h.read(400, "m1", Quantity.CURRENT, 10, "L1")
    stale = [c for c in h.out if isinstance(c, Condition) and c.rule == "comms-stale"]
    assert [(c.key, c.active) for c in stale] == [
        ("comms-stale:m1:current-L1", True), ("comms-stale:m1:energy-total", True),
        ("comms-stale:m1:current-L1", False)]
    # found at the first point scan after the limit (300 s, or 3 x 60 s after the last energy
    # reading at 60): scans run every POINT_SCAN_EVERY seconds, not at every tick
    assert 302 <= stale[0].ts <= 302 + comms.POINT_SCAN_EVERY  # ticks every 2 s here
    assert 362 <= stale[1].ts <= 362 + comms.POINT_SCAN_EVERY
    assert stale[2].ts == 400
    assert re.fullmatch(r"device m1 answers but current L1 has not been updated for 5(\.\d)? "
                        r"min \(limit 5 min\)", stale[0].message), stale[0].message


def test_slow_points_and_silent_devices_are_not_stale() -> None:
    """A 60 s point is judged by its own rhythm; a silent device is a comms fault, not stale."""
    h = Harness(make(stale_after=60))
    for ts in range(0, 600, 60):
        h.read(ts, "m1", Quantity.ENERGY, 5, "total")
        for t in range(ts, ts + 60, 2):
            h.online(t)
            h.tick(t)
    assert h.verdicts("comms-stale") == []
    h.read(0, "sd", Quantity.BATTERY, 90)
    h.tick(700)  # the detector never said online: a comms fault, not a stale point
    assert h.verdicts("comms-stale", "comms", device="sd") == [("comms", "sd", 100, True)]


def test_a_slow_point_is_judged_by_its_configured_interval_from_the_first_reading() -> None:
    """A counter the profile polls every 10 min is not stale 6 min after its first reading
    (before any interval could be learned); 3 missed intervals later it is."""
    info = DeviceInfo(name="m1", kind="incomer", profile_kind="meter", poll=2,
                      points=frozenset({(Quantity.ENERGY, "total")}),
                      intervals={(Quantity.ENERGY, "total"): 600.0})
    built = comms.SPEC.build(SiteInfo(), [(info, comms.CommsConfig())])
    h = Harness(built["m1"][0])  # type: ignore[arg-type]
    h.read(0, "m1", Quantity.ENERGY, 5, "total")
    answering(h, 0, 1700)
    assert h.verdicts("comms-stale") == []
    answering(h, 1700, 1900)
    [(rule, device, ts, active)] = h.verdicts("comms-stale")
    assert (rule, device, active) == ("comms-stale", "m1", True)
    assert 1802 <= ts <= 1802 + comms.POINT_SCAN_EVERY  # the first scan past 3 x 600 s


@pytest.mark.parametrize(("every", "expected"), [
    pytest.param(10, [(300, True)], id="10pct-garbled"),
    pytest.param(50, [(300, False)], id="2pct-is-fine"),
    pytest.param(None, [(300, False)], id="clean"),
])
def test_crc_rate(every: int | None, expected: list[tuple[float, bool]]) -> None:
    """Garbled answers above 5 % of the polls in 10 min warn (a verdict once half is seen)."""
    h = Harness()
    count = 0
    for i, ts in enumerate(range(0, 400, 2)):
        if every and i and i % every == 0:
            count += 1
        h.read(ts, "m1", Quantity.CRC_ERRORS, count)
    assert [(ts, active) for _, _, ts, active in h.verdicts("comms-crc")] == expected


def test_crc_clears_and_survives_a_counter_reset() -> None:
    """The warning clears below half the rate; a counter that restarts is a new baseline."""
    h = Harness()
    count, ts = 0, 0
    for i in range(300):  # 10 % for 10 min
        count += 1 if i % 10 == 9 else 0
        h.read(ts, "m1", Quantity.CRC_ERRORS, count)
        ts += 2
    for _ in range(300):  # then clean
        h.read(ts, "m1", Quantity.CRC_ERRORS, count)
        ts += 2
    for _ in range(300):  # the poller restarted: 0, then clean
        h.read(ts, "m1", Quantity.CRC_ERRORS, 0)
        ts += 2
    got = [(t, active) for _, _, t, active in h.verdicts("comms-crc")]
    assert got[0] == (300, True)
    assert got[1][1] is False
    assert len(got) == 2
    crc = next(c for c in h.out if isinstance(c, Condition) and c.rule == "comms-crc")
    assert crc.message == ("device m1: 15 garbled answers in 150 polls (10.0 %, limit 5 %) in "
                           "the last 5 min: check RS-485 termination, shielding and cable runs")


def only(name: str) -> Any:
    def params(rule: str, device: str) -> Any:
        return CATALOG[rule].params() if rule == name else SimpleNamespace(enabled=False)
    return params


def test_catalog_builds_comms_and_engine_raises_it() -> None:
    """Polled devices and panels share one rule; the engine's tick faults the silent ones."""
    assert CATALOG["comms"] is comms.SPEC
    built = build_rules(SiteInfo(), [METER, SMOKE, PANEL, PUSHED], only("comms"))
    assert {n: len(r) for n, r in built.items()} == {"m1": 1, "sd": 1, "panel": 1, "pushed": 0}
    assert built["m1"][0] is built["panel"][0]
    engine = RuleEngine(devices={n: DeviceRules(rules=tuple(r)) for n, r in built.items()})
    events = []
    for ts in range(0, 120):
        events += engine.evaluate(Reading(ts, "m1", Quantity.ONLINE, 1.0))
        if ts < 10:
            events += engine.evaluate(Reading(ts, "panel", Quantity.ONLINE, 1.0))
        events += engine.tick(ts + 0.5)
    assert [(e.ts, e.kind, e.alarm.alarm_id, e.alarm.severity) for e in events] == [
        (100.5, EventKind.RAISED, "comms:sd", Severity.CRITICAL),
        (109.5, EventKind.RAISED, "comms:panel", Severity.CRITICAL)]


def test_config_is_validated() -> None:
    """[rules.comms] durations read as people write them; nonsense is refused."""
    adapter = TypeAdapter(comms.CommsConfig)
    assert adapter.validate_python({"silent_after": "90s"}).silent_after == 90
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        adapter.validate_python({"failed_polls": 0})


def test_a_poll_group_is_one_state_and_goes_stale_as_one() -> None:
    """Points the poller reads together (same configured interval) share one state: 20 points
    of a poll are one state, not 20; when the group stops arriving while the device answers,
    one comms-stale names it and says the points read with it are stale too."""
    points: dict[tuple[Quantity, str | None], float] = {
        (Quantity.CURRENT, f"c{i}"): 2.0 for i in range(20)}
    info = DeviceInfo(name="m1", kind="incomer", profile_kind="meter", poll=2,
                      points=frozenset(points), intervals=points)
    built = comms.SPEC.build(SiteInfo(), [(info, comms.CommsConfig())])
    h = Harness(built["m1"][0])  # type: ignore[arg-type]
    for ts in range(0, 20, 2):
        for quantity, channel in points:
            h.read(ts, "m1", quantity, 1.0, channel)
    assert sum(isinstance(s, comms.PointState) for s in h.states.values()) == 1
    answering(h, 20, 400)
    stale = [c for c in h.out if isinstance(c, Condition) and c.rule == "comms-stale"]
    assert [c.active for c in stale] == [True]
    assert stale[0].key == "comms-stale:m1:current-c0"
    assert "(and the points read with it)" in stale[0].message
