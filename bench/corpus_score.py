"""Score raised alarms against a labelled corpus (``bench.corpus``): pure, no I/O.

``score(corpus, alarms, poll=..)`` says, per label kind (e-bike charging, resistive loads,
unmetered taps, the four lamp failures), how many labelled events there were, how many were
observable and detected, how many of the rule's alarms were true, related or false, the false
alarms per 100 circuit-days and the time to detect; then which confounders (benign activity
the corpus also records: fridges, kettles, lift runs...) were going on when each false alarm
came. Both the offline benchmark (rules fed in process) and the daemon run
(``bench.bench_corpus_daemon``: the corpus served over Modbus TCP) use it, so their figures
compare.

The rules of the game:

- An alarm *matches* a label when its rule is the label's kind, it is on the label's device
  (and channel, when the label has one) and ``label.start - poll <= alarm.ts <= label.end +
  grace``. A label is *detected* when at least one alarm matches it; time to detect is from
  the moment the event became observable to the first matching alarm (can be slightly negative:
  the window opens a poll early).
- Observable: e-bikes, heaters and taps from the label's start. A lamp that is out, partly out
  or cycling shows only while its channel is lit: from the first poll (on the grid
  ``corpus.start + k * poll``) at or after the start at which the controller answers and the
  channel's relay is closed (a relay commanded off is a schedule), or, without a relay point,
  it is dark at the site (civil dusk to civil dawn, astral, at the corpus' latitude, longitude
  and time zone). A stuck relay (day-burning) shows from the first answered
  poll in daylight or with its relay commanded off. A label never observable in its window
  counts as an event but is left out of recall.
- An alarm of a wiring or lighting rule that matches no label but is on a labelled event's
  device (and channel, when both have one: a controller's relay channels are separate
  circuits) within the event ± ``grace`` is *related*: not a detection, not a false alarm (an
  ``unexpected-load`` while an e-bike charges on a stairwell circuit). Every other alarm of
  those rules is *false*. Precision is true / (true + false).
- Watched circuits: sub-meters of kind lighting or public, boxes with an incomer and
  sub-meters (the tap watch), and lighting-controller channels in use (lamps > 0); times the
  corpus' days gives the circuit-days false alarms are counted against.
- Attribution: a false alarm's causes are the kinds of confounder on its device (for an
  unmetered-tap alarm: on any device of its box) that overlap the two hours before it, or
  "unexplained". The confusion table counts, per rule, the false alarms each kind overlapped
  (an alarm with two kinds counts for both; a confounder that runs all along, a standby
  load, shows up in every one of its device's false alarms).

Alarms of other rules (overload, comms, ...) are only counted per rule in ``other_rules``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from astral import Observer
from astral.sun import sun

EBIKE, RESISTIVE, UNEXPECTED, TAP = ("ebike-charging", "resistive-load", "unexpected-load",
                                     "unmetered-tap")
LAMP_OUT, LAMP_PARTIAL, DAY_BURNING, CYCLING = ("lamp-out", "lamp-partial", "lamp-day-burning",
                                                "lamp-cycling")
WIRING_RULES = (EBIKE, RESISTIVE, UNEXPECTED, TAP)
LIGHTING_RULES = (LAMP_OUT, LAMP_PARTIAL, DAY_BURNING, CYCLING)
DETECTION_RULES = WIRING_RULES + LIGHTING_RULES
LABEL_KINDS = (EBIKE, RESISTIVE, TAP, LAMP_OUT, LAMP_PARTIAL, DAY_BURNING, CYCLING)
ROWS = (EBIKE, RESISTIVE, UNEXPECTED, TAP, *LIGHTING_RULES)  # every detection rule, table order
LIT_LAMP_KINDS = (LAMP_OUT, LAMP_PARTIAL, CYCLING)  # observable while the channel is lit
SUB_KINDS = ("sockets", "lighting", "public")  # a box's sub-metered circuits
WATCHED_KINDS = ("lighting", "public")
CONTROLLER = "lighting-controller"
ATTRIBUTION_WINDOW = 7200.0  # s before a false alarm in which a confounder may explain it
TARGET_FA = 2.0  # wiring + lighting false alarms per 100 circuit-days
GRACE = 900.0  # s after a label's end an alarm still counts for it
UNEXPLAINED = "unexplained"
_CHUNK = 1440  # polls evaluated at a time while looking for a lamp label's observable start


# -- what the scorer needs of a corpus (``bench.corpus.Corpus`` fits) --------------------------

class LabelLike(Protocol):
    """A labelled event or a confounder."""

    @property
    def id(self) -> object: ...
    @property
    def kind(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


class DeviceLike(Protocol):
    """A corpus device: a meter or a lighting controller."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...  # incomer | sockets | lighting | public | lighting-controller
    @property
    def building(self) -> str: ...
    @property
    def box(self) -> str | None: ...
    @property
    def lamps(self) -> Sequence[int]: ...  # lamps per relay channel (controllers)


class CorpusLike(Protocol):
    """A labelled corpus: site, devices, labels, confounders and register values."""

    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def timezone(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def devices(self) -> Sequence[DeviceLike]: ...
    @property
    def labels(self) -> Sequence[LabelLike]: ...
    @property
    def confounders(self) -> Sequence[LabelLike]: ...

    def series(self, device: str, times: npt.NDArray[np.float64], /) -> Mapping[Any, Any]:
        """Register values keyed ``(quantity, channel)`` when polled at ``times``."""
        ...


@dataclass(frozen=True)
class Alarm:
    """One raised alarm."""

    rule: str
    device: str
    channel: str | None
    ts: float
    message: str


# -- daylight ----------------------------------------------------------------------------------

class Dark:
    """Whether it is dark at the site (before civil dawn or from civil dusk), per local day."""

    def __init__(self, latitude: float, longitude: float, timezone: str) -> None:
        self._observer = Observer(latitude=latitude, longitude=longitude)
        self._zone = ZoneInfo(timezone)
        self._days: dict[date, tuple[float, float]] = {}

    def times(self, day: date) -> tuple[float, float]:
        """(civil dawn, civil dusk) of a local day, epoch s (polar: 06:00 and 18:00)."""
        known = self._days.get(day)
        if known is None:
            try:
                s = sun(self._observer, date=day, tzinfo=self._zone)
                known = (s["dawn"].timestamp(), s["dusk"].timestamp())
            except ValueError:  # the sun never reaches 6 degrees below the horizon that day
                midnight = datetime(day.year, day.month, day.day, tzinfo=self._zone)
                known = ((midnight + timedelta(hours=6)).timestamp(),
                         (midnight + timedelta(hours=18)).timestamp())
            self._days[day] = known
        return known

    def __call__(self, t: float) -> bool:
        dawn, dusk = self.times(datetime.fromtimestamp(t, UTC).astimezone(self._zone).date())
        return t < dawn or t >= dusk


# -- circuits and observability -----------------------------------------------------------------

def boxes(corpus: CorpusLike) -> dict[tuple[str, str], list[DeviceLike]]:
    """The meters of each distribution box, by (building, box)."""
    out: dict[tuple[str, str], list[DeviceLike]] = {}
    for d in corpus.devices:
        if d.kind != CONTROLLER and d.box is not None and d.box != "":
            out.setdefault((d.building, d.box), []).append(d)
    return out


def watched_circuits(corpus: CorpusLike) -> int:
    """Lighting and public sub-meters, boxes with an incomer and sub-meters, lit channels."""
    subs = sum(1 for d in corpus.devices if d.kind in WATCHED_KINDS)
    taps = sum(1 for meters in boxes(corpus).values()
               if any(m.kind == "incomer" for m in meters)
               and any(m.kind in SUB_KINDS for m in meters))
    channels = sum(sum(1 for n in d.lamps if n > 0) for d in corpus.devices
                   if d.kind == CONTROLLER)
    return subs + taps + channels


def observable_from(corpus: CorpusLike, label: LabelLike, *, poll: float,
                    dark: Callable[[float], bool]) -> float | None:
    """When a label's event could first be seen by a rule (see the module docstring)."""
    if label.kind not in LIT_LAMP_KINDS and label.kind != DAY_BURNING:
        return label.start
    first = corpus.start + math.ceil((label.start - corpus.start) / poll - 1e-9) * poll
    count = max(0, math.floor((label.end - first) / poll + 1e-9) + 1)
    for offset in range(0, count, _CHUNK):
        times = first + poll * np.arange(offset, min(count, offset + _CHUNK), dtype=np.float64)
        raw = corpus.series(label.device, times).get(("relay", label.channel))
        if raw is None:  # no relay point: only the dark tells
            relay, answered = np.zeros(times.shape), np.ones(times.shape, bool)
        else:
            relay = np.asarray(raw, dtype=np.float64)
            answered = ~np.isnan(relay)  # NaN: the controller did not answer that poll
        for i, t in enumerate(times):
            if not answered[i]:
                continue
            if label.kind == DAY_BURNING:
                # lamps burning in daylight, or while their relay is commanded off
                if not dark(float(t)) or (raw is not None and relay[i] < 0.5):
                    return float(t)
            elif relay[i] >= 0.5 if raw is not None else dark(float(t)):
                return float(t)  # asked for light: by the relay, or by the dark without one
    return None


def matches(alarm: Alarm, label: LabelLike, *, poll: float, grace: float) -> bool:
    """The alarm reports this label (rule, device, channel, time window)."""
    if alarm.rule != label.kind or alarm.device != label.device:
        return False
    if label.channel is not None and not same_channel(alarm.channel, label.channel):
        return False
    return label.start - poll <= alarm.ts <= label.end + grace


def same_channel(alarm: str | None, label: str) -> bool:
    """A second load on a charging circuit is alarmed as "L1.2": still the label's L1."""
    return alarm is not None and alarm.split(".")[0] == label


def related(alarm: Alarm, label: LabelLike, *, grace: float) -> bool:
    """A detection rule's alarm on a labelled event's device (and channel) while it runs."""
    if alarm.rule not in DETECTION_RULES or alarm.device != label.device:
        return False
    if label.channel is not None and alarm.channel is not None and \
            not same_channel(alarm.channel, label.channel):
        return False
    return label.start - grace <= alarm.ts <= label.end + grace


def causes(corpus: CorpusLike, alarm: Alarm,
           box_of: Mapping[str, tuple[str, str]] | None = None) -> list[str]:
    """The kinds of confounder going on around a false alarm, or ["unexplained"]."""
    box_of = _box_of(corpus) if box_of is None else box_of
    if alarm.rule == TAP and alarm.device in box_of:
        here = box_of[alarm.device]
        devices = {name for name, box in box_of.items() if box == here}
    else:
        devices = {alarm.device}
    kinds = sorted({c.kind for c in corpus.confounders if c.device in devices
                    and c.start <= alarm.ts and c.end >= alarm.ts - ATTRIBUTION_WINDOW})
    return kinds or [UNEXPLAINED]


def _box_of(corpus: CorpusLike) -> dict[str, tuple[str, str]]:
    return {d.name: key for key, meters in boxes(corpus).items() for d in meters}


@dataclass(frozen=True)
class _Label:
    id: object
    kind: str
    device: str
    channel: str | None
    start: float
    end: float
    detail: Mapping[str, Any]


class Window:
    """Part of a corpus, ``[start, end)``, as a corpus of its own: labels and confounders
    clipped to it (an event running at the window's start counts from there), devices and
    register values those of the whole."""

    def __init__(self, corpus: CorpusLike, start: float, end: float) -> None:
        self._corpus = corpus
        self.latitude, self.longitude = corpus.latitude, corpus.longitude
        self.timezone = corpus.timezone
        self.start, self.end = max(start, corpus.start), min(end, corpus.end)
        self.devices = tuple(corpus.devices)
        self.labels = self._clip(corpus.labels)
        self.confounders = self._clip(corpus.confounders)

    def _clip(self, labels: Iterable[LabelLike]) -> tuple[_Label, ...]:
        return tuple(_Label(lab.id, lab.kind, lab.device, lab.channel, max(lab.start, self.start),
                            min(lab.end, self.end), lab.detail)
                     for lab in labels if lab.start < self.end and lab.end > self.start)

    def series(self, device: str, times: npt.NDArray[np.float64], /) -> Mapping[Any, Any]:
        return self._corpus.series(device, times)


# -- scoring -----------------------------------------------------------------------------------

def score(corpus: CorpusLike, alarms: Iterable[Alarm], *, poll: float, grace: float = GRACE,
          name: str = "") -> dict[str, Any]:
    """Every figure of one corpus' run (see the module docstring); JSON-ready."""
    alarms = sorted(alarms, key=lambda a: (a.ts, a.rule, a.device))
    dark = Dark(corpus.latitude, corpus.longitude, corpus.timezone)
    labels = [lab for lab in corpus.labels if lab.kind in LABEL_KINDS]
    seen = {id(lab): observable_from(corpus, lab, poll=poll, dark=dark) for lab in labels}
    days = (corpus.end - corpus.start) / 86400.0
    circuits = watched_circuits(corpus)
    circuit_days = circuits * days
    box_of = _box_of(corpus)

    verdict: dict[int, str] = {}  # id(alarm) -> true | related | false
    for alarm in alarms:
        if alarm.rule not in DETECTION_RULES:
            continue
        if any(matches(alarm, lab, poll=poll, grace=grace) for lab in labels):
            verdict[id(alarm)] = "true"
        elif any(related(alarm, lab, grace=grace) for lab in labels):
            verdict[id(alarm)] = "related"
        else:
            verdict[id(alarm)] = "false"

    rows = []
    for kind in ROWS:
        mine = [lab for lab in labels if lab.kind == kind]
        fired = [a for a in alarms if a.rule == kind]
        observable = [lab for lab in mine if seen[id(lab)] is not None]
        ttd: list[float] = []
        missed: list[dict[str, Any]] = []
        for lab in observable:
            hits = [a.ts for a in fired if matches(a, lab, poll=poll, grace=grace)]
            if hits:
                ttd.append(round(min(hits) - (seen[id(lab)] or lab.start), 3))
            else:
                missed.append(_label_json(lab, name, seen[id(lab)]))
        counts = Counter(verdict[id(a)] for a in fired)
        rows.append(_row(kind, events=len(mine), observable=len(observable), detected=len(ttd),
                         alarms=len(fired), true=counts["true"], related=counts["related"],
                         false=counts["false"], circuit_days=circuit_days, ttd=ttd,
                         missed=missed, has_labels=kind in LABEL_KINDS))

    false_alarms, related_alarms = [], []
    confusion: dict[str, dict[str, int]] = {}
    for alarm in alarms:
        what = verdict.get(id(alarm))
        if what == "false":
            why = causes(corpus, alarm, box_of)
            table = confusion.setdefault(alarm.rule, {})
            for kind in why:
                table[kind] = table.get(kind, 0) + 1
            false_alarms.append(_alarm_json(alarm, name) | {"causes": why})
        elif what == "related":
            near = [str(lab.id) for lab in labels if related(alarm, lab, grace=grace)]
            related_alarms.append(_alarm_json(alarm, name) | {"labels": near})
    other = Counter(a.rule for a in alarms if a.rule not in DETECTION_RULES)
    return {
        "name": name, "corpora": 1, "poll_s": poll, "grace_s": grace, "days": round(days, 4),
        "circuits": circuits, "circuit_days": round(circuit_days, 3),
        "alarms": len(alarms), "kinds": rows,
        "totals": _totals(rows, circuit_days),
        "confusion": {rule: dict(sorted(c.items())) for rule, c in sorted(confusion.items())},
        "false_alarms": false_alarms, "related_alarms": related_alarms,
        "other_rules": dict(sorted(other.items())),
    }


def merge(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several corpora's scores as one: counts and circuit-days add up, ratios are recomputed,
    times to detect pooled, lists concatenated."""
    if not results:
        raise ValueError("nothing to merge")
    circuit_days = sum(float(r["circuit_days"]) for r in results)
    rows = []
    for kind in ROWS:
        parts = [row for r in results for row in r["kinds"] if row["kind"] == kind]
        rows.append(_row(
            kind, circuit_days=circuit_days, has_labels=kind in LABEL_KINDS,
            ttd=[t for p in parts for t in p["ttd_s"]],
            missed=[m for p in parts for m in p["missed"]],
            **{k: sum(int(p[k]) for p in parts) for k in (
                "events", "observable", "detected", "alarms", "true", "related", "false")}))
    confusion: dict[str, dict[str, int]] = {}
    for r in results:
        for rule, causes in r["confusion"].items():
            for why, n in causes.items():
                confusion.setdefault(rule, {})
                confusion[rule][why] = confusion[rule].get(why, 0) + int(n)
    other: Counter[str] = Counter()
    for r in results:
        other.update({k: int(v) for k, v in r["other_rules"].items()})
    polls = {r["poll_s"] for r in results}
    graces = {r["grace_s"] for r in results}
    return {
        "name": "+".join(str(r["name"]) for r in results if r["name"]),
        "corpora": sum(int(r["corpora"]) for r in results),
        "poll_s": polls.pop() if len(polls) == 1 else sorted(polls),
        "grace_s": graces.pop() if len(graces) == 1 else sorted(graces),
        "days": round(sum(float(r["days"]) for r in results), 4),
        "circuits": sum(int(r["circuits"]) for r in results),
        "circuit_days": round(circuit_days, 3),
        "alarms": sum(int(r["alarms"]) for r in results), "kinds": rows,
        "totals": _totals(rows, circuit_days),
        "confusion": {rule: dict(sorted(c.items())) for rule, c in sorted(confusion.items())},
        "false_alarms": [a for r in results for a in r["false_alarms"]],
        "related_alarms": [a for r in results for a in r["related_alarms"]],
        "other_rules": dict(sorted(other.items())),
    }


def _row(kind: str, *, events: int, observable: int, detected: int, alarms: int, true: int,
         related: int, false: int, circuit_days: float, ttd: Sequence[float],
         missed: Sequence[dict[str, Any]], has_labels: bool) -> dict[str, Any]:
    return {
        "kind": kind, "labelled": has_labels, "events": events, "observable": observable,
        "detected": detected,
        "recall": round(detected / observable, 4) if observable else None,
        "alarms": alarms, "true": true, "related": related, "false": false,
        "precision": round(true / (true + false), 4) if true + false else None,
        "fa_per_100_circuit_days": _fa(false, circuit_days),
        "ttd_median_s": round(statistics.median(ttd), 1) if ttd else None,
        "ttd_p95_s": round(p95(ttd), 1) if ttd else None,
        "ttd_s": sorted(ttd), "missed": list(missed),
    }


def _totals(rows: Sequence[Mapping[str, Any]], circuit_days: float) -> list[dict[str, Any]]:
    out = []
    for group, rules in (("wiring", WIRING_RULES), ("lighting", LIGHTING_RULES),
                         ("wiring+lighting", DETECTION_RULES)):
        mine = [r for r in rows if r["kind"] in rules]
        counts = {k: sum(int(r[k]) for r in mine)
                  for k in ("events", "observable", "detected", "alarms", "true", "related",
                            "false")}
        fa = _fa(counts["false"], circuit_days)
        out.append({"group": group, **counts,
                    "recall": round(counts["detected"] / counts["observable"], 4)
                    if counts["observable"] else None,
                    "precision": round(counts["true"] / (counts["true"] + counts["false"]), 4)
                    if counts["true"] + counts["false"] else None,
                    "fa_per_100_circuit_days": fa,
                    "target_fa": TARGET_FA if group == "wiring+lighting" else None,
                    "met": fa is not None and fa <= TARGET_FA
                    if group == "wiring+lighting" else None})
    return out


def _fa(false: int, circuit_days: float) -> float | None:
    return round(100.0 * false / circuit_days, 3) if circuit_days > 0 else None


def p95(values: Sequence[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _label_json(label: LabelLike, corpus: str, seen: float | None) -> dict[str, Any]:
    return {"corpus": corpus, "id": str(label.id), "kind": label.kind, "device": label.device,
            "channel": label.channel, "start": label.start, "end": label.end,
            "observable_from": seen, "detail": dict(label.detail)}


def _alarm_json(alarm: Alarm, corpus: str) -> dict[str, Any]:
    return {"corpus": corpus, "rule": alarm.rule, "device": alarm.device,
            "channel": alarm.channel, "ts": alarm.ts, "message": alarm.message}


# -- output ------------------------------------------------------------------------------------

def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _min(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def render(result: Mapping[str, Any]) -> str:
    """The score as text: a row per rule, the totals, then the false alarms' causes."""
    head = (f"{'kind':<17} {'events':>6} {'obs':>4} {'det':>4} {'recall':>6} {'alarms':>6} "
            f"{'true':>4} {'rel':>4} {'false':>5} {'prec':>5} {'FA/100cd':>8} "
            f"{'ttd med':>7} {'ttd p95':>7}")
    lines = [f"{result['corpora']} corpus run(s){' ' + result['name'] if result['name'] else ''}"
             f": {result['days']:g} days, {result['circuits']} watched circuits, "
             f"{result['circuit_days']:g} circuit-days, poll {result['poll_s']} s "
             f"(times to detect in minutes)", head, "-" * len(head)]

    def line(name: str, r: Mapping[str, Any], events: bool = True) -> str:
        ev = (f"{r['events']:>6} {r['observable']:>4} {r['detected']:>4} "
              f"{_fmt(r['recall'], '.3f'):>6}") if events else f"{'':>6} {'':>4} {'':>4} {'':>6}"
        return (f"{name:<17} {ev} {r['alarms']:>6} {r['true']:>4} {r['related']:>4} "
                f"{r['false']:>5} {_fmt(r['precision'], '.3f'):>5} "
                f"{_fmt(r['fa_per_100_circuit_days'], '.3f'):>8} "
                f"{_min(r.get('ttd_median_s')):>7} {_min(r.get('ttd_p95_s')):>7}")

    for row in result["kinds"]:
        lines.append(line(row["kind"], row, events=row["labelled"]))
    lines.append("-" * len(head))
    for total in result["totals"]:
        mark = ""
        if total["target_fa"] is not None:
            mark = f"  target <= {total['target_fa']:g}: {'met' if total['met'] else 'MISSED'}"
        lines.append(line(f"({total['group']})", total) + mark)
    if result["other_rules"]:
        lines.append("other rules' alarms: " + ", ".join(
            f"{rule} {n}" for rule, n in result["other_rules"].items()))
    lines.append("")
    lines.append("false alarms by cause (each kind of confounder on the device in the 2 h "
                 "before; one alarm may count for several):")
    if not result["confusion"]:
        lines.append("  none")
    for rule, causes in result["confusion"].items():
        lines.append(f"  {rule:<17} " + ", ".join(
            f"{why} {n}" for why, n in sorted(causes.items(), key=lambda c: (-c[1], c[0]))))
    missed = [m for row in result["kinds"] for m in row["missed"]]
    if missed:
        lines.append("")
        lines.append("missed labels:")
        for m in missed:
            where = f"{m['device']}{':' + m['channel'] if m['channel'] else ''}"
            tag = f"{m['corpus']}/" if m["corpus"] else ""
            lines.append(f"  {tag}{m['id']} {m['kind']} on {where}: {m['detail']}")
    return "\n".join(lines)
