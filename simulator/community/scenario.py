"""Scenarios as data: ``simulator/scenarios/NAME.toml`` parsed and validated into frozen
objects. Every error names the field and the value (``event[2].target: no circuit
"b9-box1-stair" (known: ...)``), all of them at once, like ``firewarden check``.

Layout::

    [scenario]
    name = "evening"; description = "..."
    start = "2024-11-15T17:00"      # site-local ISO datetime
    duration = "6h"
    compression = 120               # simulated seconds per real second
    seed = 7
    [community]                     # see topology.build_community
    [[event]]
    kind = "ebike"; target = "b2-box1-stair"; at = "19:10"; duration = "3h"
    params = { cc_w = 240 }
    [[generate]]                    # random events from the seed (see Generator)
    kind = "ebike"; targets = "*-stair"; per_day = 0.2; hours = "19:00-02:00"
    duration = ["2h", "5h"]; params = { cc_w = [150, 300] }
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.durations import parse_duration
from simulator.community.events import KINDS, Event, ParamValue, Target
from simulator.community.timeparse import parse_at, parse_local
from simulator.community.topology import Community, build_community

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
_SCENARIO_KEYS = {"name", "description", "start", "duration", "compression", "seed"}
_EVENT_KEYS = {"kind", "target", "at", "duration", "params"}
_GENERATE_KEYS = {"kind", "targets", "per_day", "hours", "duration", "params"}


class ScenarioError(Exception):
    """The scenario is invalid; ``errors`` holds one ``path: problem`` line per fault."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario: when, how fast, where, and every event (listed and generated)."""

    name: str
    description: str
    start: float  # epoch s
    end: float
    compression: float  # simulated s per real s
    seed: int
    community: Community
    events: tuple[Event, ...]
    source: str = "<string>"

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def zone(self) -> ZoneInfo:
        return self.community.zone

    def real_offset(self, epoch: float) -> float:
        """Real seconds after the run starts at which simulated ``epoch`` is reached."""
        return (epoch - self.start) / self.compression

    def with_overrides(self, *, compression: float | None = None,
                       duration: float | None = None) -> Scenario:
        """The same scenario run faster/slower or cut/extended; events that would start
        after the new end are dropped, those running past it are clipped."""
        if compression is not None and not compression > 0:
            raise ScenarioError([f"compression: must be positive (got {compression!r})"])
        if duration is not None and not duration > 0:
            raise ScenarioError([f"duration: must be positive (got {duration!r})"])
        end = self.end if duration is None else self.start + duration
        events = tuple(dataclasses.replace(e, end=min(e.end, end)) if duration is not None
                       and e.end > end else e for e in self.events if e.start < end)
        return dataclasses.replace(self, compression=compression or self.compression,
                                   end=end, events=events)


def available() -> dict[str, str]:
    """The shipped scenarios: name -> one-line description."""
    out = {}
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        out[path.stem] = str(raw.get("scenario", {}).get("description", "")).split("\n")[0]
    return out


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``"evening"``) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ScenarioError([f"scenario: no scenario {str(name_or_path)!r} "
                                 f"(shipped: {', '.join(available())})"])
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{path}: TOML syntax error: {exc}"]) from exc
    return parse_scenario(raw, source=str(path), default_name=path.stem)


def parse_scenario(raw: Mapping[str, Any], *, source: str = "<string>",
                   default_name: str = "scenario") -> Scenario:
    """Validate a parsed scenario TOML document; ScenarioError lists every problem."""
    errors: list[str] = []
    for key in raw:
        if key not in ("scenario", "community", "event", "generate"):
            errors.append(f"{key}: unknown table (known: scenario, community, event, generate)")
    head = raw.get("scenario", {})
    if not isinstance(head, dict):
        raise ScenarioError(["scenario: must be a table"])
    for key in head:
        if key not in _SCENARIO_KEYS:
            errors.append(f"scenario.{key}: unknown key "
                          f"(known: {', '.join(sorted(_SCENARIO_KEYS))})")
    community = build_community(raw.get("community", {}), errors)
    zone = community.zone if community is not None else ZoneInfo("Asia/Shanghai")
    start = _field(errors, "scenario.start", lambda: parse_local(head.get("start"), zone), 0.0)
    duration = _field(errors, "scenario.duration",
                      lambda: _positive(parse_duration(head.get("duration", "1h"))), 3600.0)
    compression = head.get("compression", 60)
    if isinstance(compression, bool) or not isinstance(compression, int | float) \
            or not 0 < compression <= 1e7:
        errors.append(f"scenario.compression: must be a number > 0 (got {compression!r})")
        compression = 60
    seed = head.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        errors.append(f"scenario.seed: must be an integer (got {seed!r})")
        seed = 1
    events: list[Event] = []
    if community is not None and not errors:
        end = start + duration
        targets = target_classes(community)
        listed = raw.get("event", [])
        if not isinstance(listed, list):
            errors.append("event: must be an array of tables ([[event]])")
            listed = []
        for i, table in enumerate(listed):
            event = _event(i, table, start, end, zone, targets, errors)
            if event is not None:
                events.append(event)
        gens = raw.get("generate", [])
        if not isinstance(gens, list):
            errors.append("generate: must be an array of tables ([[generate]])")
            gens = []
        for i, table in enumerate(gens):
            events.extend(_generate(i, table, start, end, zone, seed, targets, len(events),
                                    errors))
    if errors:
        raise ScenarioError(errors)
    assert community is not None
    return Scenario(name=str(head.get("name", default_name)),
                    description=str(head.get("description", "")).strip(), start=start,
                    end=start + duration, compression=float(compression), seed=seed,
                    community=community, events=tuple(events), source=source)


def target_classes(community: Community) -> dict[str, tuple[Target, ...]]:
    """Every name an event may target -> the target classes it belongs to."""
    out: dict[str, tuple[Target, ...]] = {}
    for b in community.buildings:
        for box in b.boxes:
            out[box.incomer] = ("incomer", "device")
            out[box.name] = ("incomer",)  # a box stands for its incomer
            out[box.detector] = ("detector", "device")
            for c in box.circuits:
                out[c.name] = ("circuit", "device")
        for s in b.smoke:
            out[s.name] = ("smoke", "device")
        out[b.lighting.name] = ("lighting", "device")
        out[b.panel.name] = ("panel",)
        if b.firewater is not None:
            out[b.firewater.name] = ("firewater", "device")
        if b.pump_meter is not None:
            out[b.pump_meter.name] = ("device",)
    return out


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be positive (got {value!r})")
    return value


def _field(errors: list[str], where: str, parse: Any, fallback: float) -> float:
    try:
        return float(parse())
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
        return fallback


def _names_of(targets: Mapping[str, tuple[Target, ...]], wanted: tuple[Target, ...]) -> list[str]:
    return [n for n, classes in targets.items() if set(classes) & set(wanted)]


def _known(names: list[str]) -> str:
    shown = ", ".join(names[:8])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 8 else "")


def _params(kind: str, given: object, where: str, errors: list[str],
            ranges: bool = False) -> dict[str, Any]:
    spec = KINDS[kind]
    if not isinstance(given, dict):
        errors.append(f"{where}: must be a table (got {given!r})")
        return {}
    out: dict[str, Any] = {}
    for name, value in given.items():
        param = spec.params.get(name)
        if param is None:
            errors.append(f"{where}.{name}: {kind} has no parameter {name!r} "
                          f"(known: {', '.join(spec.params) or 'none'})")
            continue
        values = value if ranges and isinstance(value, list) else [value]
        if ranges and isinstance(value, list) and (
                len(value) != 2 if param.type != "choice" else not value):
            errors.append(f"{where}.{name}: a range is [low, high] (got {value!r})")
            continue
        try:
            checked = [param.check(v) for v in values]
        except ValueError as exc:
            errors.append(f"{where}.{name}: {exc}")
            continue
        out[name] = checked if ranges and isinstance(value, list) else checked[0]
    return out


def _resolve(kind: str, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    return {**{k: p.default for k, p in KINDS[kind].params.items()}, **params}


def _default_duration(kind: str, params: Mapping[str, ParamValue]) -> float | None:
    if kind == "ebike":
        return float(params["cc"]) + float(params["cv"])
    return KINDS[kind].duration


def _check_target(kind: str, target: object, where: str,
                  targets: Mapping[str, tuple[Target, ...]], errors: list[str]) -> str | None:
    spec = KINDS[kind]
    if not isinstance(target, str):
        errors.append(f"{where}.target: must be a device or circuit name (got {target!r})")
        return None
    if not set(targets.get(target, ())) & set(spec.targets):
        what = " or ".join(spec.targets)
        errors.append(f"{where}.target: no {what} {target!r} for {kind} "
                      f"(known: {_known(_names_of(targets, spec.targets))})")
        return None
    return target


def _event(i: int, table: object, start: float, end: float, zone: ZoneInfo,
           targets: Mapping[str, tuple[Target, ...]], errors: list[str]) -> Event | None:
    where = f"event[{i}]"
    if not isinstance(table, dict):
        errors.append(f"{where}: must be a table")
        return None
    before = len(errors)
    for key in table:
        if key not in _EVENT_KEYS:
            errors.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(_EVENT_KEYS))})")
    kind = table.get("kind")
    if kind not in KINDS:
        errors.append(f"{where}.kind: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        return None
    target = _check_target(kind, table.get("target"), where, targets, errors)
    at = _field(errors, f"{where}.at", lambda: parse_at(table.get("at", "+0s"), start, zone),
                start)
    if not start <= at < end and len(errors) == before:
        errors.append(f"{where}.at: {table.get('at')!r} is outside the scenario "
                      f"({(at - start) / 3600:+.2f} h from its start, which lasts "
                      f"{(end - start) / 3600:.2f} h)")
    params = _resolve(kind, _params(kind, table.get("params", {}), f"{where}.params", errors))
    length: float | None = _default_duration(kind, params)
    if "duration" in table:
        length = _field(errors, f"{where}.duration",
                        lambda: _positive(parse_duration(table["duration"])), 60.0)
    if len(errors) > before or target is None:
        return None
    stop = end if length is None else min(end, at + length)
    if targets[target] == ("incomer",):  # a box: its incomer
        target = f"{target}-main"
    return Event(index=i, kind=kind, target=target, start=at, end=stop, params=params)


@dataclass(frozen=True, slots=True)
class Generator:
    """A ``[[generate]]`` table: random events of one kind on every target matching
    ``targets`` (an fnmatch pattern), about ``per_day`` per target per day, starting inside
    the local ``hours`` window; ``duration`` and each param may be a ``[low, high]`` range
    drawn uniformly. Draws come from ``random.Random`` seeded with the scenario seed and the
    table's index, so a scenario always generates the same events."""

    kind: str
    targets: tuple[str, ...]
    per_day: float
    hours: tuple[float, float]  # local seconds of day; end < start wraps midnight
    duration: tuple[float, float] | None
    params: Mapping[str, Any]


def _generate(i: int, table: object, start: float, end: float, zone: ZoneInfo, seed: int,
              targets: Mapping[str, tuple[Target, ...]], first_index: int,
              errors: list[str]) -> list[Event]:
    where = f"generate[{i}]"
    gen = _generator(where, table, targets, errors)
    if gen is None:
        return []
    rng = random.Random(f"{seed}:{i}:{gen.kind}")
    out: list[Event] = []
    day0 = math.floor((start + _offset(start, zone)) / 86400)
    days = math.ceil((end - start) / 86400) + 1
    for target in gen.targets:
        last_end = -math.inf
        for day in range(days):
            for _ in range(_poisson(rng, gen.per_day)):
                lo, hi = gen.hours
                span = (hi - lo) % 86400 or 86400
                local = (day0 + day) * 86400 + lo + rng.random() * span
                at = local - _offset(start, zone)
                params = _resolve(gen.kind, {k: _draw(rng, gen.kind, k, v)
                                             for k, v in gen.params.items()})
                if gen.duration is not None:
                    length = rng.uniform(*gen.duration)
                else:
                    length = _default_duration(gen.kind, params) or 6 * 3600.0
                if at < start or at >= end or at < last_end:
                    continue
                last_end = min(end, at + length)
                out.append(Event(index=first_index + len(out), kind=gen.kind, target=target,
                                 start=at, end=last_end, params=params, generated=True))
    out.sort(key=lambda e: (e.start, e.target))
    return [dataclasses.replace(e, index=first_index + k) for k, e in enumerate(out)]


def _generator(where: str, table: object, targets: Mapping[str, tuple[Target, ...]],
               errors: list[str]) -> Generator | None:
    if not isinstance(table, dict):
        errors.append(f"{where}: must be a table")
        return None
    before = len(errors)
    for key in table:
        if key not in _GENERATE_KEYS:
            errors.append(f"{where}.{key}: unknown key "
                          f"(known: {', '.join(sorted(_GENERATE_KEYS))})")
    kind = table.get("kind")
    if kind not in KINDS:
        errors.append(f"{where}.kind: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        return None
    pattern = table.get("targets", "*")
    candidates = [n for n in _names_of(targets, KINDS[kind].targets)
                  if targets[n] != ("incomer",)]  # a box name is only an alias of its incomer
    matched = tuple(n for n in candidates if isinstance(pattern, str)
                    and fnmatch.fnmatchcase(n, pattern))
    if not matched:
        errors.append(f"{where}.targets: {pattern!r} matches no target of {kind} "
                      f"(known: {_known(candidates)})")
    per_day = table.get("per_day", 1.0)
    if isinstance(per_day, bool) or not isinstance(per_day, int | float) \
            or not 0 < per_day <= 100:
        errors.append(f"{where}.per_day: must be a number 0-100 (got {per_day!r})")
    hours = (0.0, 0.0)
    window = table.get("hours", "00:00-00:00")
    try:
        a, b = str(window).split("-")
        hours = (_clock_seconds(a), _clock_seconds(b))
    except ValueError:
        errors.append(f"{where}.hours: must be 'HH:MM-HH:MM' (got {window!r})")
    duration: tuple[float, float] | None = None
    if "duration" in table:
        value = table["duration"]
        pair = value if isinstance(value, list) else [value, value]
        try:
            if len(pair) != 2:
                raise ValueError(f"a range is [low, high] (got {value!r})")
            lo, hi = (_positive(parse_duration(v)) for v in pair)
            if hi < lo:
                raise ValueError(f"low is above high (got {value!r})")
            duration = (lo, hi)
        except ValueError as exc:
            errors.append(f"{where}.duration: {exc}")
    params = _params(kind, table.get("params", {}), f"{where}.params", errors, ranges=True)
    if len(errors) > before:
        return None
    return Generator(kind=kind, targets=matched, per_day=float(per_day), hours=hours,
                     duration=duration, params=params)


def _draw(rng: random.Random, kind: str, name: str, value: Any) -> ParamValue:
    """A generator parameter: fixed, one of a list of choices, or uniform in [low, high]."""
    if not isinstance(value, list):
        return value  # type: ignore[no-any-return]
    if KINDS[kind].params[name].type == "choice":
        return str(rng.choice(value))
    drawn = rng.uniform(float(value[0]), float(value[1]))
    return round(drawn) if KINDS[kind].params[name].type == "int" else drawn


def _clock_seconds(text: str) -> float:
    hh, mm = text.strip().split(":")
    if not (0 <= int(hh) <= 24 and 0 <= int(mm) <= 59):
        raise ValueError(text)
    return int(hh) * 3600.0 + int(mm) * 60.0


def _offset(epoch: float, zone: ZoneInfo) -> float:
    offset = datetime.fromtimestamp(epoch, zone).utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
