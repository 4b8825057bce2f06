"""bench.corpus_score on hand-built tiny corpora: matching windows, related and false alarms,
lamp observability, attribution to confounders, circuit-days and merging."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest
from astral import Observer
from astral.sun import sun

from bench.corpus_score import (
    Alarm,
    Dark,
    Window,
    causes,
    merge,
    observable_from,
    render,
    score,
    watched_circuits,
)

ZONE = ZoneInfo("Asia/Shanghai")
LAT, LON = 32.06, 118.80
POLL = 60.0
DAY = 86400.0


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


T0 = local("2026-11-02T00:00")


@dataclass(frozen=True)
class Lab:
    id: str
    kind: str
    device: str
    channel: str | None
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dev:
    name: str
    kind: str
    building: str = "1"
    box: str | None = None
    lamps: tuple[int, ...] = ()


@dataclass
class Tiny:
    """A corpus stand-in: relay channels follow ``relay`` (device, channel) -> f(t)."""

    devices: tuple[Dev, ...]
    labels: tuple[Lab, ...] = ()
    confounders: tuple[Lab, ...] = ()
    relay: dict[tuple[str, str], Callable[[float], float]] = field(default_factory=dict)
    latitude: float = LAT
    longitude: float = LON
    timezone: str = "Asia/Shanghai"
    start: float = T0
    end: float = T0 + 2 * DAY

    def series(self, device: str, times: npt.NDArray[np.float64]
               ) -> Mapping[tuple[str, str | None], npt.NDArray[np.float64]]:
        return {("relay", ch): np.array([f(float(t)) for t in times])
                for (dev, ch), f in self.relay.items() if dev == device}


BOX = (Dev("in1", "incomer", box="1"), Dev("s1", "sockets", box="1"),
       Dev("l1", "lighting", box="1"), Dev("p1", "public", box="1"),
       Dev("in2", "incomer", box="2"),  # no sub-meters: no tap watch
       Dev("ctl", "lighting-controller", lamps=(3, 2, 0, 1)))


def row(result: Mapping[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in result["kinds"] if r["kind"] == kind)
    return found


def total(result: Mapping[str, Any], group: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in result["totals"] if t["group"] == group)
    return found


def test_watched_circuits_and_circuit_days() -> None:
    """Lighting and public sub-meters, boxes with incomer and subs, channels with lamps."""
    corpus = Tiny(devices=BOX)
    assert watched_circuits(corpus) == 2 + 1 + 3
    result = score(corpus, [Alarm("resistive-load", "p1", "L1", T0 + 3600, "heater?")],
                   poll=POLL)
    assert result["circuit_days"] == pytest.approx(12.0)
    assert row(result, "resistive-load")["fa_per_100_circuit_days"] == pytest.approx(100 / 12,
                                                                                    abs=1e-3)
    assert total(result, "wiring+lighting")["false"] == 1


@pytest.mark.parametrize(("offset", "verdict"), [
    (-POLL, "true"),  # the window opens one poll before the start
    (-POLL - 1, "related"),  # earlier: not a detection, but on the event's device
    (0.0, "true"),
])
def test_match_window_start(offset: float, verdict: str) -> None:
    """An alarm from one poll before the label's start on matches it."""
    label = Lab("e1", "ebike-charging", "s1", "L1", T0 + 10_000, T0 + 20_000)
    corpus = Tiny(devices=BOX, labels=(label,))
    result = score(corpus, [Alarm("ebike-charging", "s1", "L1", label.start + offset, "m")],
                   poll=POLL)
    assert row(result, "ebike-charging")[verdict] == 1
    assert row(result, "ebike-charging")["detected"] == (verdict == "true")


@pytest.mark.parametrize(("ts", "verdict"), [
    (T0 + 20_900, "true"),  # end + grace: still a detection
    (T0 + 20_901, "false"),  # past it: neither a match nor near the event
])
def test_match_window_end(ts: float, verdict: str) -> None:
    """An alarm up to ``grace`` after the label's end matches it; later it is false."""
    label = Lab("e1", "ebike-charging", "s1", "L1", T0 + 10_000, T0 + 20_000)
    result = score(Tiny(devices=BOX, labels=(label,)),
                   [Alarm("ebike-charging", "s1", "L1", ts, "m")], poll=POLL, grace=900.0)
    assert row(result, "ebike-charging")[verdict] == 1


def test_related_versus_false() -> None:
    """Another detection rule on the event's device during it is related; the same rule on
    another device, or on another relay channel of the same controller, is false; other rules'
    alarms are only counted."""
    bike = Lab("e1", "ebike-charging", "l1", "L1", T0 + 10_000, T0 + 20_000)
    out = Lab("o1", "lamp-out", "ctl", "2", T0 + 40_000, T0 + 90_000)
    corpus = Tiny(devices=BOX, labels=(bike, out), relay={("ctl", "2"): lambda t: 1.0})
    alarms = [
        Alarm("ebike-charging", "l1", "L1", T0 + 12_000, "bike"),  # true
        Alarm("unexpected-load", "l1", "L1", T0 + 11_000, "extra load"),  # related
        Alarm("resistive-load", "l1", "L1", T0 + 20_500, "heater"),  # related, within grace
        Alarm("ebike-charging", "s1", "L1", T0 + 12_000, "bike elsewhere"),  # false
        Alarm("lamp-partial", "ctl", "2", T0 + 50_000, "partial"),  # related: same channel
        Alarm("lamp-partial", "ctl", "1", T0 + 50_000, "partial"),  # false: another channel
        Alarm("comms", "l1", None, T0 + 11_000, "silent"),  # not scored
    ]
    result = score(corpus, alarms, poll=POLL)
    bikes = row(result, "ebike-charging")
    assert (bikes["true"], bikes["related"], bikes["false"]) == (1, 0, 1)
    assert bikes["precision"] == 0.5
    assert row(result, "unexpected-load")["related"] == 1
    assert row(result, "resistive-load")["related"] == 1
    partial = row(result, "lamp-partial")
    assert (partial["related"], partial["false"]) == (1, 1)
    assert row(result, "lamp-out")["detected"] == 0
    assert [m["id"] for m in row(result, "lamp-out")["missed"]] == ["o1"]
    assert result["other_rules"] == {"comms": 1}
    assert total(result, "wiring")["related"] == 2
    assert total(result, "wiring+lighting")["false"] == 2
    assert {a["message"] for a in result["related_alarms"]} == {"extra load", "heater",
                                                                 "partial"}


def _dusk_dawn(day: str) -> tuple[float, float]:
    s = sun(Observer(latitude=LAT, longitude=LON),
            date=datetime.fromisoformat(day).date(), tzinfo=ZONE)
    return s["dusk"].timestamp(), s["dawn"].timestamp()


def test_dark_follows_civil_dusk_and_dawn() -> None:
    """Dark from civil dusk to the next civil dawn, in the site's time zone."""
    dark = Dark(LAT, LON, "Asia/Shanghai")
    dusk, _ = _dusk_dawn("2026-11-02")
    _, dawn = _dusk_dawn("2026-11-03")
    assert [dark(dusk - 1), dark(dusk), dark(dawn - 1), dark(dawn)] == [False, True, True, False]
    assert [dark(local("2026-11-02T12:00")), dark(local("2026-11-03T01:00"))] == [False, True]


def test_lamp_out_is_observable_from_dusk_or_a_closed_relay() -> None:
    """A lamp failing at noon shows at the first poll after dusk while its relay is open by
    day; a relay closed by hand in the afternoon shows it earlier; polls the controller did
    not answer show nothing. Time to detect counts from then."""
    dusk, _ = _dusk_dawn("2026-11-02")
    noon = local("2026-11-02T12:00")
    after_dusk = T0 + np.ceil((dusk - T0) / POLL) * POLL
    by_day = Lab("o1", "lamp-out", "ctl", "1", noon, noon + 20 * 3600)
    manual = Lab("o2", "lamp-out", "ctl", "2", noon, noon + 20 * 3600)
    silent = Lab("o3", "lamp-cycling", "ctl", "4", noon, noon + 20 * 3600)
    two_pm = local("2026-11-02T14:00")

    def dark_lit(t: float) -> float:
        return 1.0 if t >= dusk else 0.0

    corpus = Tiny(devices=BOX, labels=(by_day, manual, silent), relay={
        ("ctl", "1"): dark_lit,
        ("ctl", "2"): lambda t: 1.0 if t >= two_pm else 0.0,
        ("ctl", "4"): lambda t: float("nan") if t < after_dusk + 2 * POLL else 1.0})
    dark = Dark(LAT, LON, "Asia/Shanghai")
    assert observable_from(corpus, by_day, poll=POLL, dark=dark) == after_dusk
    assert observable_from(corpus, manual, poll=POLL, dark=dark) == two_pm
    assert observable_from(corpus, silent, poll=POLL, dark=dark) == after_dusk + 2 * POLL
    result = score(corpus, [Alarm("lamp-out", "ctl", "1", after_dusk + 2 * POLL, "out"),
                            Alarm("lamp-out", "ctl", "2", two_pm + POLL, "out")], poll=POLL)
    outs = row(result, "lamp-out")
    assert (outs["events"], outs["observable"], outs["detected"]) == (2, 2, 2)
    assert outs["ttd_s"] == [POLL, 2 * POLL]
    assert outs["ttd_median_s"] == pytest.approx(1.5 * POLL)


def test_day_burning_is_observable_from_daylight_or_a_relay_commanded_off() -> None:
    """A relay sticking at 20:00 while commanded on shows at the first answered poll after
    civil dawn; one commanded off at 23:00 (a timer) shows from then, in the dark: current while
    commanded off; a label that ends before dawn with the relay on is never observable."""
    _, dawn = _dusk_dawn("2026-11-03")
    stuck = Lab("d1", "lamp-day-burning", "ctl", "1", local("2026-11-02T20:00"),
                local("2026-11-03T12:00"))
    night = Lab("d2", "lamp-day-burning", "ctl", "2", local("2026-11-02T20:00"),
                local("2026-11-03T02:00"))
    timer = Lab("d3", "lamp-day-burning", "ctl", "3", local("2026-11-02T20:00"),
                local("2026-11-03T12:00"))
    off_at = local("2026-11-02T23:00")
    corpus = Tiny(devices=BOX, labels=(stuck, night, timer),
                  relay={("ctl", "1"): lambda t: 1.0 if t < dawn else 0.0,
                         ("ctl", "2"): lambda t: 1.0,
                         ("ctl", "3"): lambda t: 1.0 if t < off_at else 0.0})
    dark = Dark(LAT, LON, "Asia/Shanghai")
    assert observable_from(corpus, stuck, poll=POLL, dark=dark) == \
        T0 + np.ceil((dawn - T0) / POLL) * POLL
    assert observable_from(corpus, night, poll=POLL, dark=dark) is None
    assert observable_from(corpus, timer, poll=POLL, dark=dark) == \
        T0 + np.ceil((off_at - T0) / POLL) * POLL
    burning = row(score(corpus, [], poll=POLL), "lamp-day-burning")
    assert (burning["events"], burning["observable"], burning["recall"]) == (3, 2, 0.0)


def test_false_alarms_are_attributed_to_confounders() -> None:
    """Confounders on the alarm's device overlapping the 2 h before it explain it; for a tap,
    those on any meter of its box; none: unexplained."""
    ts = T0 + 50_000
    confounders = (
        Lab("c1", "fridge", "s1", "L1", ts - 7200 - 600, ts - 7200),  # ends right at the edge
        Lab("c2", "kettle", "s1", "L1", ts - 300, ts - 100),
        Lab("c3", "vacuum", "s1", "L1", ts - 9000, ts - 7201),  # ended too early
        Lab("c4", "lift-run", "p1", "L1", ts + 10, ts + 100),  # after the alarm
        Lab("c5", "ebike-in-flat", "in2", None, ts - 60, ts),  # another box
    )
    corpus = Tiny(devices=BOX, confounders=confounders)
    assert causes(corpus, Alarm("ebike-charging", "s1", "L1", ts, "")) == ["fridge", "kettle"]
    assert causes(corpus, Alarm("resistive-load", "p1", "L1", ts, "")) == ["unexplained"]
    assert causes(corpus, Alarm("unmetered-tap", "in1", None, ts, "")) == ["fridge", "kettle"]
    result = score(corpus, [Alarm("ebike-charging", "s1", "L1", ts, "a"),
                            Alarm("ebike-charging", "l1", "L1", ts, "b"),
                            Alarm("unmetered-tap", "in1", None, ts + 50, "c")], poll=POLL)
    # 50 s later the fridge has left the tap alarm's window and the lift (p1, box 1) entered it
    assert result["confusion"] == {
        "ebike-charging": {"fridge": 1, "kettle": 1, "unexplained": 1},
        "unmetered-tap": {"kettle": 1, "lift-run": 1}}
    assert [(a["device"], a["causes"]) for a in result["false_alarms"]] == [
        ("l1", ["unexplained"]), ("s1", ["fridge", "kettle"]), ("in1", ["kettle", "lift-run"])]


def test_merge_adds_counts_and_recomputes_ratios() -> None:
    """Counts and circuit-days add up; recall, precision and FA are recomputed, times to
    detect pooled, confusion tables summed."""
    one = Lab("e1", "ebike-charging", "s1", "L1", T0 + 10_000, T0 + 20_000)
    two = Lab("e2", "ebike-charging", "s1", "L1", T0 + 30_000, T0 + 40_000)
    first = score(Tiny(devices=BOX, labels=(one, two)), [
        Alarm("ebike-charging", "s1", "L1", T0 + 10_600, "hit"),
        Alarm("ebike-charging", "p1", "L1", T0 + 50_000, "fa")], poll=POLL, name="a")
    second = score(Tiny(devices=BOX, labels=(one,), end=T0 + DAY), [
        Alarm("ebike-charging", "s1", "L1", T0 + 11_200, "hit")], poll=POLL, name="b")
    merged = merge([first, second])
    bikes = row(merged, "ebike-charging")
    assert (bikes["events"], bikes["detected"], bikes["true"], bikes["false"]) == (3, 2, 2, 1)
    assert bikes["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert bikes["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert merged["circuit_days"] == pytest.approx(12.0 + 6.0)
    assert bikes["fa_per_100_circuit_days"] == pytest.approx(100 / 18, abs=1e-3)
    assert bikes["ttd_s"] == [600.0, 1200.0]
    assert bikes["ttd_median_s"] == 900.0
    assert [m["id"] for m in bikes["missed"]] == ["e2"]
    assert merged["confusion"] == {"ebike-charging": {"unexplained": 1}}
    assert (merged["corpora"], merged["name"]) == (2, "a+b")
    assert total(merged, "wiring+lighting")["met"] is False  # 5.6 > 2 per 100 circuit-days
    text = render(merged)
    for part in ("ebike-charging", "unexplained 1", "a/e2"):
        assert part in text
    with pytest.raises(ValueError, match="nothing"):
        merge([])


def test_render_lists_every_rule_and_the_totals() -> None:
    """The table has a row per detection rule, the totals with the target, the causes."""
    text = render(score(Tiny(devices=BOX), [], poll=POLL))
    for kind in ("ebike-charging", "resistive-load", "unexpected-load", "unmetered-tap",
                 "lamp-out", "lamp-partial", "lamp-day-burning", "lamp-cycling",
                 "(wiring+lighting)"):
        assert kind in text
    assert "target <= 2: met" in text


def test_a_second_load_on_the_labels_phase_matches() -> None:
    """The wiring rule alarms a second load on L1 as "L1.3": still the label's channel."""
    label = Lab("e1", "ebike-charging", "s1", "L1", T0 + 10_000, T0 + 20_000)
    result = score(Tiny(devices=BOX, labels=(label,)),
                   [Alarm("ebike-charging", "s1", "L1.3", T0 + 12_000, "second load"),
                    Alarm("ebike-charging", "s1", "L2", T0 + 12_000, "other phase")], poll=POLL)
    bikes = row(result, "ebike-charging")
    assert (bikes["detected"], bikes["true"], bikes["false"]) == (1, 1, 1)


def test_window_clips_labels_and_circuit_days() -> None:
    """A window is a corpus of its own: labels and confounders clipped to it, its own days."""
    inside = Lab("e1", "ebike-charging", "s1", "L1", T0 + 10_000, T0 + 20_000)
    across = Lab("e2", "ebike-charging", "s1", "L1", T0 + 30_000, T0 + 60_000)
    after = Lab("e3", "ebike-charging", "s1", "L1", T0 + 90_000, T0 + 99_000)
    corpus = Tiny(devices=BOX, labels=(inside, across, after),
                  confounders=(Lab("c1", "kettle", "s1", "L1", T0, T0 + DAY),))
    part = Window(corpus, T0, T0 + 43_200)
    assert [(lab.id, lab.start, lab.end) for lab in part.labels] == [
        ("e1", T0 + 10_000, T0 + 20_000), ("e2", T0 + 30_000, T0 + 43_200)]
    assert [(c.start, c.end) for c in part.confounders] == [(T0, T0 + 43_200)]
    result = score(part, [Alarm("ebike-charging", "s1", "L1", T0 + 43_000, "late")], poll=POLL)
    assert result["circuit_days"] == pytest.approx(6 * 0.5)
    assert row(result, "ebike-charging")["detected"] == 1
