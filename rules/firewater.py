"""Fire water: main pressure and tank level from 4-20 mA transmitters, their sensor faults, and
pump starts.

A residential community's hydrants and sprinklers hang on a fire-water main kept under
pressure by a roof tank (高位消防水箱) and a jockey pump (稳压泵); the fire pumps start on a
pressure switch. GB 50974-2014 (消防给水及消火栓系统技术规范) §5.2.2 sets the static pressure
the tank must hold at the most unfavourable hydrant: not below 0.10 MPa for class-1 high-rise
public buildings (0.15 MPa above 100 m), 0.07 MPa for high-rise residential, class-2 high-rise
and multi-storey public buildings (and "should" 0.07 MPa for multi-storey residential), 0.10
MPa for industrial buildings and for sprinkler systems; below that a jockey pump is required.
So the default ``low_pressure_mpa`` is 0.07 MPa, the residential figure; set it per device for
where the transmitter sits (plus 0.01 MPa per metre below the most unfavourable hydrant).
GB 50974 requires the tank and pool to show their level and alarm at a lowest level, whose
height is the site's design: ``low_level_m`` has a firewarden default and must be set per tank.

Per transmitter channel the rule raises:

- ``firewater-pressure-low`` (critical): pressure below ``low_pressure_mpa`` for
  ``pressure_on_delay``; clears at ``low_pressure_mpa + pressure_deadband_mpa``. A closed valve
  (pressure drops and stays) and a leaking main (a slow decline) both end here.
- ``firewater-level-low`` (critical): level below ``low_level_m`` for ``level_on_delay``.
- ``firewater-sensor-fault`` (warning): the loop current outside NAMUR NE43's measuring range
  (below ``fault_low_ma`` 3.8 mA: open loop or failed transmitter; above ``fault_high_ma``
  20.5 mA: short or failure signal) or the value itself out of its plausible range, for
  ``fault_on_delay``. While faulted the channel's low verdicts stay as they were: a broken loop
  reads "0 MPa" and is not a pressure.
- ``firewater-pump-start`` (info, an event: raised and cleared at once, never latched): the
  pressure fell ``pump_drop_mpa`` or more below its steady level and came back within
  ``pump_window``: the jockey or a fire pump started (or someone opened a hydrant and it was
  refilled). A drop that does not come back is not a pump start; the low-pressure alarm takes it.

Pure; time is the reading's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.hysteresis import hold, minutes
from rules.model import Condition, Severity

NAME = "firewater"
PRESSURE_RULE = "firewater-pressure-low"
LEVEL_RULE = "firewater-level-low"
FAULT_RULE = "firewater-sensor-fault"
PUMP_RULE = "firewater-pump-start"
# The steady pressure a pump-start dip is measured from follows the readings with this time
# constant (s): slow enough that a drop over a few polls stands out, fast enough that a main
# leaking over hours never looks like a dip.
STEADY_TAU = 120.0


@dataclass(frozen=True, slots=True)
class FirewaterState:
    ts: float | None = None  # the channel's last good value reading
    loop_bad: bool = False  # the latest loop current is outside the NE43 range
    value_bad: bool = False  # the latest value reading was not good (implausible, bad)
    loop_ma: float | None = None
    fault: bool | None = None
    fault_since: float | None = None
    low: bool | None = None
    low_since: float | None = None
    steady: float | None = None  # pressure's slow reference for pump-start dips
    dip_since: float | None = None  # a dip below steady - pump_drop_mpa began here
    dip_from: float = 0.0  # steady when the dip began
    dip_min: float = 0.0


_EMPTY = FirewaterState()
_QUANTITIES = frozenset({Quantity.WATER_PRESSURE, Quantity.WATER_LEVEL, Quantity.LOOP_CURRENT})


@dataclass(frozen=True, slots=True)
class Firewater:
    """``[rules.firewater]`` (and ``[device.rules.firewater]``): one fire-water transmitter
    device's rule; state per channel (a pressure and a level transmitter on one converter)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # GB 50974-2014 §5.2.2: 0.07 MPa (residential, class-2 high-rise, multi-storey public);
    # 0.10 MPa class-1 high-rise public, industrial, sprinklers; 0.15 MPa above 100 m.
    low_pressure_mpa: Annotated[float, Gt(0), Le(2.4)] = 0.07
    pressure_deadband_mpa: Annotated[float, Ge(0), Le(0.5)] = 0.01
    # rides through the dip of a pump start or a hydrant test (firewarden default)
    pressure_on_delay: Annotated[Duration, Ge(0), Le(3600)] = 30.0
    # the tank's lowest alarm level is the site's design (GB 50974 asks for one, not a figure)
    low_level_m: Annotated[float, Gt(0), Le(30)] = 1.0
    level_deadband_m: Annotated[float, Ge(0), Le(5)] = 0.05
    level_on_delay: Annotated[Duration, Ge(0), Le(3600)] = 60.0  # sloshing, refill surges
    # NAMUR NE43: 3.8-20.5 mA is a measurement; outside it the transmitter (or loop) failed
    fault_low_ma: Annotated[float, Ge(0), Le(4)] = 3.8
    fault_high_ma: Annotated[float, Ge(20), Le(25)] = 20.5
    fault_on_delay: Annotated[Duration, Ge(0), Le(100)] = 10.0  # GB 14287: faults within 100 s
    # a pump start: a dip this deep below the steady pressure, back within pump_window
    pump_drop_mpa: Annotated[float, Gt(0), Le(1)] = 0.05
    pump_window: Annotated[Duration, Gt(0), Le(3600)] = 300.0

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: FirewaterState | None,
             reading: Reading) -> tuple[FirewaterState | None, list[Condition]]:
        if reading.quantity not in _QUANTITIES:
            return state, []
        s = state or _EMPTY
        now = reading.ts
        if reading.quantity is Quantity.LOOP_CURRENT:
            bad = not reading.good or not self.fault_low_ma <= reading.value <= self.fault_high_ma
            s = replace(s, loop_bad=bad, loop_ma=reading.value if reading.good else None)
            return self._fault(s, reading)
        if not reading.good:
            return self._fault(replace(s, value_bad=True), reading)
        s, out = self._fault(replace(s, value_bad=False), reading)
        if s.fault or s.loop_bad:  # a failed loop is no pressure: hold the verdicts
            return replace(s, low_since=None, dip_since=None, steady=None, ts=now), out
        pressure = reading.quantity is Quantity.WATER_PRESSURE
        limit = self.low_pressure_mpa if pressure else self.low_level_m
        band = self.pressure_deadband_mpa if pressure else self.level_deadband_m
        delay = self.pressure_on_delay if pressure else self.level_on_delay
        low, since, changed = hold(s.low, s.low_since, now, reading.value < limit,
                                   reading.value < limit + band, delay)
        if changed:
            out.append(self._low(reading, bool(low), limit, band, delay))
        s = replace(s, low=low, low_since=since)
        if pressure:
            s, event = self._pump(s, reading)
            out += event
        return replace(s, ts=now), out

    def _fault(self, s: FirewaterState,
               reading: Reading) -> tuple[FirewaterState, list[Condition]]:
        bad = s.loop_bad or s.value_bad
        fault, since, changed = hold(s.fault, s.fault_since, reading.ts, bad, bad,
                                     self.fault_on_delay)
        out: list[Condition] = []
        if changed:
            where = _where(reading)
            if fault:
                why = (f"loop current {s.loop_ma:.2f} mA outside "
                       f"{self.fault_low_ma:g}-{self.fault_high_ma:g} mA (NAMUR NE43)"
                       if s.loop_bad and s.loop_ma is not None else
                       "no loop current" if s.loop_bad else "value out of its plausible range")
                message = f"{where} transmitter fault: {why} for {minutes(self.fault_on_delay)}"
            else:
                message = f"{where} transmitter reads normally again"
            out.append(Condition(rule=FAULT_RULE, device=reading.device,
                                 channel=reading.channel, active=bool(fault),
                                 severity=Severity.WARNING, ts=reading.ts,
                                 value=None if s.loop_ma is None else round(s.loop_ma, 2),
                                 limit=self.fault_low_ma, message=message))
        return replace(s, fault=fault, fault_since=since), out

    def _low(self, reading: Reading, active: bool, limit: float, band: float,
             delay: float) -> Condition:
        pressure = reading.quantity is Quantity.WATER_PRESSURE
        unit = "MPa" if pressure else "m"
        what, value = ("pressure", f"{reading.value:.3f}") if pressure else \
            ("level", f"{reading.value:.2f}")
        where = _where(reading)
        if active:
            basis = " (GB 50974 §5.2.2)" if pressure else ""
            message = (f"{where} {what} {value} {unit} below {limit:g} {unit}{basis} for "
                       f"{minutes(delay)}")
        else:
            message = f"{where} {what} back to {value} {unit} (clears at {limit + band:g} {unit})"
        return Condition(rule=PRESSURE_RULE if pressure else LEVEL_RULE, device=reading.device,
                         channel=reading.channel, active=active, severity=Severity.CRITICAL,
                         ts=reading.ts, value=round(reading.value, 3), limit=limit,
                         message=message)

    def _pump(self, s: FirewaterState,
              reading: Reading) -> tuple[FirewaterState, list[Condition]]:
        """Track the steady pressure; a dip that comes back within the window is a pump start."""
        now, value = reading.ts, reading.value
        if s.dip_since is not None:
            dip_min, took = min(s.dip_min, value), now - s.dip_since
            if value >= s.dip_from - self.pump_drop_mpa / 2:  # recovered
                s = replace(s, dip_since=None, steady=value)
                if took <= self.pump_window:
                    return s, self._pump_event(reading, s, dip_min, took)
                return s, []
            if took > self.pump_window:  # stays down: a closed valve, not a pump
                return replace(s, dip_since=None, steady=value), []
            return replace(s, dip_min=dip_min), []
        if s.steady is None or s.ts is None:
            return replace(s, steady=value), []
        if value <= s.steady - self.pump_drop_mpa:
            return replace(s, dip_since=now, dip_from=s.steady, dip_min=value), []
        weight = min(1.0, max(0.0, now - s.ts) / STEADY_TAU)
        return replace(s, steady=s.steady + (value - s.steady) * weight), []

    def _pump_event(self, reading: Reading, s: FirewaterState, dip_min: float,
                    took: float) -> list[Condition]:
        """Raised and cleared at once: an event in the log, nothing left standing."""
        depth = s.dip_from - dip_min
        message = (f"{_where(reading)} dropped {depth:.2f} MPa (from {s.dip_from:.2f} to "
                   f"{dip_min:.2f} MPa) and recovered to {reading.value:.2f} MPa in "
                   f"{minutes(took)}: a pump start (jockey or fire pump)")
        raised = Condition(rule=PUMP_RULE, device=reading.device, channel=reading.channel,
                           active=True, severity=Severity.INFO, ts=reading.ts,
                           value=round(depth, 3), limit=self.pump_drop_mpa, message=message,
                           evidence=(("from_mpa", round(s.dip_from, 3)),
                                     ("min_mpa", round(dip_min, 3)),
                                     ("seconds", round(took, 1))))
        return [raised, replace(raised, active=False)]


def _where(reading: Reading) -> str:
    what = {Quantity.WATER_PRESSURE: "fire-water pressure", Quantity.WATER_LEVEL:
            "fire-water level"}.get(reading.quantity, "fire-water transmitter")
    return f"{what} ch {reading.channel}" if reading.channel else what


def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    return {d.name: [c] for d, c in devices
            if d.serves(Quantity.WATER_PRESSURE) or d.serves(Quantity.WATER_LEVEL)}


SPEC = RuleSpec(
    name=NAME, params=Firewater, build=_build,
    summary="fire-water pressure and level: low alarms, 4-20 mA sensor faults, pump starts",
    alarms={PRESSURE_RULE: "critical: main pressure below low_pressure_mpa (GB 50974: 0.07 MPa)",
            LEVEL_RULE: "critical: tank level below low_level_m",
            FAULT_RULE: "warning: transmitter loop outside 3.8-20.5 mA (NAMUR NE43)",
            PUMP_RULE: "info: pressure dipped and recovered (a pump start), an event"})
