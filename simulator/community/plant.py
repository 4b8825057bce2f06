"""The fire-water plant a building may have: a 4-20 mA converter with the main's pressure and
the roof tank's level, and a CHINT DDSU666 on the fire-pump room; their data and what they serve
at time ``t`` (pure, deterministic like the rest of ``CommunityModel``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulator.community.events import progress

if TYPE_CHECKING:
    from simulator.community.model import CommunityModel

Values = dict[tuple[str, str | None], float]
NOMINAL_V = 230.0


@dataclass(frozen=True, slots=True)
class FireWater:
    """A 4-20 mA converter with the fire-water main's pressure and the roof tank's level."""

    name: str
    building: str
    unit: int
    pressure_mpa: float = 0.30  # the main's pressure, held by the tank and jockey pump
    level_m: float = 3.0  # the roof tank's level


@dataclass(frozen=True, slots=True)
class PumpMeter:
    """A CHINT DDSU666 single-phase meter on the fire-pump room's supply (jockey pump idle
    draw, controls, lighting)."""

    name: str
    building: str
    unit: int
    watts: float = 180.0
    pf: float = 0.85


def firewater_values(model: CommunityModel, fw: FireWater, t: float,
                 skip: frozenset[int]) -> Values:
    """The main's pressure (channel 1) and the roof tank's level (channel 2). A closed valve
    or a leaking main pulls the pressure towards its ``to_mpa`` over its ramp; the loop
    currents follow from the registers (the profile reads each register twice)."""
    pressure = fw.pressure_mpa + 0.004 * model.smooth(model._sid(fw.name, "p"), t, 120)
    for e in model.events_by_target.get(fw.name, ()):
        if e.kind in ("valve-closed", "main-leak") and e.start <= t < e.end \
                and e.index not in skip:
            share = progress(t - e.start, e.number("ramp"))
            pressure += (e.number("to_mpa") - pressure) * share
    level = fw.level_m + 0.01 * model.smooth(model._sid(fw.name, "l"), t, 600)
    pressure, level = round(pressure, 4), round(level, 3)
    # the converter's loop currents for a 0-1.6 MPa and a 0-5 m transmitter (the same
    # registers as the engineering values; set first, so the engineering value's raw wins)
    return {("loop_current", "1"): round(4.0 + 16.0 * pressure / 1.6, 3),
            ("water_pressure", "1"): pressure,
            ("loop_current", "2"): round(4.0 + 16.0 * level / 5.0, 3),
            ("water_level", "2"): level}


def pump_meter_values(model: CommunityModel, m: PumpMeter, t: float) -> Values:
    """The pump room's small steady draw on a CHINT DDSU666 (P, Q in W and var here; the
    profile scales the meter's kW)."""
    p = m.watts * (1.0 + 0.05 * model.smooth(model._sid(m.name, "w"), t, 300))
    q = p * math.tan(math.acos(m.pf))
    volts = NOMINAL_V + 1.5 * model.smooth(model._sid(m.name, "v"), t, 600)
    kwh = 500.0 * model.constant(m.name, "kwh") + m.watts * (t - model.ref) / 3.6e6
    ch = "L1"
    return {("voltage", ch): volts, ("current", ch): math.hypot(p, q) / volts,
            ("power", ch): p, ("reactive_power", ch): q, ("power_factor", ch): m.pf,
            ("frequency", ch): 50.0 + 0.03 * model.smooth(model._sid("hz"), t, 120),
            ("energy_import", ch): max(0.0, kwh), ("energy_export", ch): 0.0}
