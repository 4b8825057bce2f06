"""Injectable events: their kinds, parameters (with defaults) and pure effect curves.

An event changes what some devices serve between ``start`` and ``end`` (epoch seconds). The
kinds and what they touch:

=============== ================================ ===========================================
kind            target                           effect
=============== ================================ ===========================================
ebike           a sub-circuit                    CC/CV charger load, PF ~0.6
heater          a sub-circuit                    resistive load, PF 1.0
unmetered-tap   an incomer (or its box)          current on one incomer phase only
lamp-failure    a lighting controller            mode one | all | day-burning | cycling
leakage-creep   a residual-current detector      residual mA ramps up to ``to_ma`` and holds
cable-heating   a residual-current detector      a temperature channel ramps to ``to_c``
smoke-fire      a smoke detector or fire panel   Modbus fire bit (detector) + UITD fire frame
detector-fault  smoke detector, panel, detector  fault bit / UITD fault frame / probe fault
valve-closed    a fire-water converter           main pressure falls to ``to_mpa`` and stays
main-leak       a fire-water converter           main pressure declines to ``to_mpa`` over ``ramp``
device-silent   any Modbus device                no answer at all (the poll times out)
device-garbage  any Modbus device                random registers, exceptions or "busy"
=============== ================================ ===========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from core.durations import parse_duration

ParamType = Literal["number", "int", "duration", "choice"]
Target = Literal["circuit", "incomer", "detector", "smoke", "lighting", "panel", "firewater",
                 "device"]
ParamValue = float | int | str


@dataclass(frozen=True, slots=True)
class Param:
    """One event parameter: its type, default and allowed range or choices."""

    type: ParamType
    default: ParamValue
    lo: float = 0.0
    hi: float = math.inf
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> ParamValue:
        """The parsed value, or ValueError with the reason (the caller names the field)."""
        if self.type == "choice":
            if value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)} (got {value!r})")
            return str(value)
        if self.type == "duration":
            seconds = parse_duration(value)
            if not self.lo <= seconds <= self.hi:
                raise ValueError(f"must be between {self.lo:g} s and {self.hi:g} s "
                                 f"(got {value!r})")
            return seconds
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number (got {value!r})")
        if self.type == "int" and not float(value).is_integer():
            raise ValueError(f"must be a whole number (got {value!r})")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be {self.lo:g}-{self.hi:g} (got {value!r})")
        return int(value) if self.type == "int" else float(value)


@dataclass(frozen=True, slots=True)
class Kind:
    """What an event kind may target, its parameters, default duration (None: until the
    scenario ends) and the ground-truth label a detector should give it."""

    targets: tuple[Target, ...]
    params: Mapping[str, Param]
    duration: float | None
    label: str


_COMPONENT = {
    "zone": Param("int", 2, 0, 65535),
    "position": Param("int", 1, 0, 65535),
    "component_type": Param("int", 42, 1, 255),
}

KINDS: dict[str, Kind] = {
    "ebike": Kind(("circuit",), {
        "cc_w": Param("number", 220.0, 50, 600),  # input power during constant current
        "cc": Param("duration", 3 * 3600.0, 60, 24 * 3600),  # constant-current phase
        "cv": Param("duration", 3600.0, 60, 12 * 3600),  # constant-voltage taper
        "end_fraction": Param("number", 0.1, 0.01, 0.9),  # CV ends at this share of cc_w
        "pf": Param("number", 0.6, 0.3, 1.0),  # no PFC in cheap chargers
    }, None, "ebike-charging"),  # default duration: cc + cv
    "heater": Kind(("circuit",), {
        "watts": Param("number", 1800.0, 200, 5000),
        "pf": Param("number", 1.0, 0.9, 1.0),
    }, 3600.0, "resistive-load"),
    "unmetered-tap": Kind(("incomer",), {
        "amps": Param("number", 8.0, 0.2, 100),
        "phase": Param("choice", "L1", choices=("L1", "L2", "L3")),
        "pf": Param("number", 0.95, 0.3, 1.0),
    }, None, "unmetered-tap"),
    "lamp-failure": Kind(("lighting",), {
        "channel": Param("int", 1, 1, 8),
        "mode": Param("choice", "one", choices=("one", "all", "day-burning", "cycling")),
        "period": Param("duration", 120.0, 2, 3600),  # cycling: one off+on cycle
    }, None, "lamp-failure"),
    "leakage-creep": Kind(("detector",), {
        "to_ma": Param("number", 380.0, 1, 3000),
        "ramp": Param("duration", 3600.0, 0, 30 * 86400),  # 0: the event's duration
    }, None, "leakage"),
    "cable-heating": Kind(("detector",), {
        "channel": Param("int", 1, 1, 4),
        "to_c": Param("number", 95.0, 20, 200),
        "ramp": Param("duration", 1800.0, 0, 30 * 86400),
    }, None, "overtemperature"),
    "smoke-fire": Kind(("smoke", "panel"), {
        **_COMPONENT,
        "obscuration": Param("number", 1.2, 0.05, 20),  # dB/m at full smoke (Modbus detector)
    }, 900.0, "fire"),
    "detector-fault": Kind(("smoke", "panel", "detector"), {
        **_COMPONENT,
        "probe": Param("int", 0, 0, 4),  # detector target: 0 residual sensor, 1-4 temperature
    }, 1800.0, "detector-fault"),
    # a valve on the main closed by mistake (after maintenance): the pressure falls within a
    # minute and stays down; no pump start brings it back
    "valve-closed": Kind(("firewater",), {
        "to_mpa": Param("number", 0.04, 0.0, 1.6),
        "ramp": Param("duration", 40.0, 0, 3600),
    }, None, "firewater-pressure-low"),
    # a leaking main (a cracked pipe, a hydrant left dripping): a slow decline
    "main-leak": Kind(("firewater",), {
        "to_mpa": Param("number", 0.05, 0.0, 1.6),
        "ramp": Param("duration", 3 * 3600.0, 60, 30 * 86400),
    }, None, "firewater-pressure-low"),
    "device-silent": Kind(("device",), {}, 600.0, "comms-loss"),
    "device-garbage": Kind(("device",), {
        "mode": Param("choice", "random", choices=("random", "exception", "busy")),
    }, 300.0, "comms-garbage"),
}


@dataclass(frozen=True, slots=True)
class Event:
    """One injected event, resolved: epoch window, parameters with defaults filled in."""

    index: int
    kind: str
    target: str
    start: float
    end: float
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    generated: bool = False

    @property
    def id(self) -> str:
        return f"e{self.index:04d}-{self.kind}-{self.target}"

    def number(self, name: str) -> float:
        return float(self.params[name])

    def text(self, name: str) -> str:
        return str(self.params[name])

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def label(self) -> str:
        if self.kind == "lamp-failure" and self.params.get("mode") in ("day-burning", "cycling"):
            return f"lamp-{self.params['mode']}"
        return KINDS[self.kind].label


# -- effect curves (pure) ---------------------------------------------------------------------

_CC_RISE = 0.08  # CC input power rises ~8% as the pack voltage climbs


def ebike_watts(elapsed: float, cc_w: float, cc_s: float, cv_s: float,
                end_fraction: float) -> float:
    """Charger input power ``elapsed`` s into a session: constant current (power creeping up
    with pack voltage), then an exponential constant-voltage taper to ``end_fraction``, then
    the charger stops."""
    if elapsed < 0 or elapsed >= cc_s + cv_s:
        return 0.0
    if elapsed < cc_s:
        return cc_w * (1.0 - _CC_RISE + _CC_RISE * elapsed / cc_s)
    return cc_w * math.exp(math.log(end_fraction) * (elapsed - cc_s) / cv_s)


def ebike_joules(elapsed: float, cc_w: float, cc_s: float, cv_s: float,
                 end_fraction: float) -> float:
    """Energy drawn in the first ``elapsed`` s of a session (the integral of ``ebike_watts``)."""
    if elapsed <= 0:
        return 0.0
    x = min(elapsed, cc_s)
    energy = cc_w * ((1.0 - _CC_RISE) * x + _CC_RISE * x * x / (2 * cc_s))
    if elapsed > cc_s:
        y = min(elapsed, cc_s + cv_s) - cc_s
        k = math.log(end_fraction) / cv_s  # negative
        energy += cc_w * (math.exp(k * y) - 1.0) / k
    return energy


def progress(elapsed: float, ramp_s: float) -> float:
    """0 -> 1 linearly over ``ramp_s`` seconds, then 1 (a step if ``ramp_s`` is 0)."""
    if elapsed <= 0:
        return 0.0
    if ramp_s <= 0 or elapsed >= ramp_s:
        return 1.0
    return elapsed / ramp_s


def cycling_on(elapsed: float, period_s: float) -> bool:
    """A failing lamp or ballast: off for the first half of every period, on for the second."""
    return (elapsed % period_s) >= period_s / 2
