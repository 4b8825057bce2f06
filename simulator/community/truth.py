"""Ground truth: which events happened when, where, and what they did to the served values.

``ground_truth(scenario)`` is pure: the labelled records come from the scenario alone, so the
truth file can be written before the run starts and compared with what a detector found. A
record names the event's target and location (building, box, circuit, phase or channel), its
window in simulated epoch seconds and local ISO time, the real-time offsets at the scenario's
compression, the expected effect (e.g. ``{"watts": 220, "pf": 0.6}``) and ``points``: every
(device, quantity, channel) whose served value the event changes, including the fire panel's
component channel (``"{system}-{zone}-{position}"``, as the daemon names it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simulator.community.events import Event
from simulator.community.scenario import Scenario
from simulator.community.timeparse import local_iso
from simulator.community.topology import (
    NAMES_BY_PROFILE,
    Community,
    Location,
    PanelTarget,
    locate,
)


@dataclass(frozen=True, slots=True)
class TruthPoint:
    """One served point an event changes."""

    device: str
    quantity: str
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One labelled event."""

    id: str
    kind: str
    label: str
    target: str
    building: str
    box: str | None
    circuit: str | None
    channel: str | None  # phase (L1-L3) or device channel
    start: float
    end: float
    start_local: str
    end_local: str
    real_start: float  # seconds after the run starts, at the scenario's compression
    real_end: float
    params: Mapping[str, float | int | str]
    effect: Mapping[str, float | int | str]
    points: tuple[TruthPoint, ...]
    generated: bool

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [asdict(p) for p in self.points]
        return data


def ground_truth(scenario: Scenario) -> list[TruthRecord]:
    """The labelled records of every event in the scenario, in start order."""
    return [_record(scenario, e) for e in sorted(scenario.events,
                                                  key=lambda e: (e.start, e.index))]


def truth_document(scenario: Scenario) -> dict[str, Any]:
    """The truth file's content: the run's frame of reference plus the records."""
    zone = scenario.zone
    return {
        "scenario": scenario.name,
        "site": scenario.community.site,
        "timezone": scenario.community.timezone,
        "latitude": scenario.community.latitude,
        "longitude": scenario.community.longitude,
        "seed": scenario.seed,
        "compression": scenario.compression,
        "start": scenario.start,
        "end": scenario.end,
        "start_local": local_iso(scenario.start, zone),
        "end_local": local_iso(scenario.end, zone),
        "events": [r.to_json() for r in ground_truth(scenario)],
    }


def write_truth(scenario: Scenario, path: Path) -> Path:
    """Write ``truth.json`` (creating folders); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth_document(scenario), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def _record(scenario: Scenario, e: Event) -> TruthRecord:
    community = scenario.community
    where = locate(community, e.target)
    channel, effect, points = _effect(community, e, where)
    zone = scenario.zone
    return TruthRecord(
        id=e.id, kind=e.kind, label=e.label, target=e.target, building=where.building,
        box=where.box, circuit=where.circuit, channel=channel, start=e.start, end=e.end,
        start_local=local_iso(e.start, zone), end_local=local_iso(e.end, zone),
        real_start=round(scenario.real_offset(e.start), 3),
        real_end=round(scenario.real_offset(e.end), 3), params=dict(e.params),
        effect=effect, points=tuple(points), generated=e.generated)


def _meter_points(device: str, phase: str) -> list[TruthPoint]:
    return [TruthPoint(device, q, phase) for q in ("current", "power", "power_factor")]


def _effect(community: Community, e: Event, where: Location) -> \
        tuple[str | None, dict[str, float | int | str], list[TruthPoint]]:
    p = e.params
    if e.kind in ("ebike", "heater"):
        circuit, box = where.circuit_obj, where.box_obj
        assert circuit is not None
        assert box is not None
        watts = float(p["cc_w"] if e.kind == "ebike" else p["watts"])
        effect: dict[str, float | int | str] = {"watts": watts, "pf": float(p["pf"])}
        if e.kind == "ebike":
            effect.update(cv_start=e.start + float(p["cc"]),
                          end_watts=round(watts * float(p["end_fraction"]), 1))
        return circuit.phase, effect, [*_meter_points(circuit.name, "L1"),
                                       *_meter_points(box.incomer, circuit.phase)]
    if e.kind == "unmetered-tap":
        phase = str(p["phase"])
        return phase, {"amps": float(p["amps"]), "pf": float(p["pf"])}, \
            _meter_points(e.target, phase)
    if e.kind == "lamp-failure":
        light = where.lighting_obj
        assert light is not None
        channel = int(p["channel"])
        lamps = light.lamps[channel - 1]
        mode = str(p["mode"])
        share = light.lamp_current
        effects: dict[str, dict[str, float | int | str]] = {
            "one": {"lamp_current_delta_a": -share, "lamps_out": 1, "lamps": lamps},
            "all": {"lamp_current_delta_a": -share * lamps, "lamps_out": lamps,
                    "lamps": lamps},
            "day-burning": {"current_while_off_a": round(share * lamps, 3), "lamps": lamps},
            "cycling": {"period_s": float(p["period"]), "lamps": lamps},
        }
        points = [TruthPoint(e.target, "lamp_current", str(channel))]
        return str(channel), {"mode": mode, **effects[mode]}, points
    if e.kind == "leakage-creep":
        return "1", {"to_ma": float(p["to_ma"]), "ramp_s": float(p["ramp"]) or e.end - e.start,
                     "alarm_ma": community.residual_alarm_ma}, \
            [TruthPoint(e.target, "residual_current", "1"),
             TruthPoint(e.target, "detector_alarm")]
    if e.kind == "cable-heating":
        ch = str(int(p["channel"]))
        return ch, {"to_c": float(p["to_c"]), "ramp_s": float(p["ramp"]) or e.end - e.start,
                    "alarm_c": community.temperature_alarm_c}, \
            [TruthPoint(e.target, "temperature", ch), TruthPoint(e.target, "detector_alarm")]
    if e.kind in ("valve-closed", "main-leak"):
        return "1", {"to_mpa": float(p["to_mpa"]), "ramp_s": float(p["ramp"])}, \
            [TruthPoint(e.target, "water_pressure", "1")]
    if e.kind in ("smoke-fire", "detector-fault"):
        if where.detector_obj is not None:  # a residual-current detector's own probe fault
            probe = int(p["probe"])
            q = "residual_current" if probe == 0 else "temperature"
            return str(max(probe, 1)), {"probe": probe}, \
                [TruthPoint(e.target, "detector_fault"), TruthPoint(e.target, q,
                                                                     str(max(probe, 1)))]
        target: PanelTarget = where.panel_target(e.params)
        flag = "fire" if e.kind == "smoke-fire" else "fault"
        panel_points = [TruthPoint(target.panel, "fire" if flag == "fire" else "smoke_fault",
                             target.channel)]
        if target.device is not None:
            panel_points.insert(0, TruthPoint(target.device, "fire" if flag == "fire"
                                              else "smoke_fault"))
        return target.channel, {"panel": target.panel, "component": target.channel,
                                "component_type": target.component_type, "status": flag}, \
            panel_points
    # device-silent, device-garbage: every point of the device
    profile = NAMES_BY_PROFILE.get(where.profile or "", ())
    effect = {"mode": str(p.get("mode", "silent"))}
    return None, effect, [TruthPoint(e.target, q, ch) for q, ch in profile]
