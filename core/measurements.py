"""The one vocabulary of quantities, shared by drivers, rules, InfluxDB fields and dashboards.

Every quantity knows its unit, the InfluxDB measurement it lands in, the field name there and
what its channel tag is called (``phase`` on power meters, ``channel`` elsewhere). Profiles,
rules and dashboards refer to quantities by these names only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    """How one quantity is written and displayed."""

    unit: str
    measurement: str
    field: str
    channel_tag: str
    description: str


class Quantity(StrEnum):
    """A measured or derived quantity; the value is its name in profiles and configs."""

    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER = "power"
    APPARENT_POWER = "apparent_power"
    REACTIVE_POWER = "reactive_power"
    POWER_FACTOR = "power_factor"
    FREQUENCY = "frequency"
    ENERGY = "energy"
    ENERGY_IMPORT = "energy_import"
    ENERGY_EXPORT = "energy_export"
    VOLTAGE_THD = "voltage_thd"
    THERMAL_LOAD = "thermal_load"
    RESIDUAL_CURRENT = "residual_current"
    TEMPERATURE = "temperature"
    DETECTOR_ALARM = "detector_alarm"
    DETECTOR_FAULT = "detector_fault"
    FIRE = "fire"
    SMOKE_FAULT = "smoke_fault"
    OBSCURATION = "obscuration"
    BATTERY = "battery"
    RELAY = "relay"
    LAMP_CURRENT = "lamp_current"
    LUX = "lux"
    WATER_PRESSURE = "water_pressure"
    WATER_LEVEL = "water_level"
    LOOP_CURRENT = "loop_current"
    ONLINE = "online"
    LATENCY = "latency"
    ERRORS = "errors"
    CRC_ERRORS = "crc_errors"
    IMPLAUSIBLE = "implausible"

    @property
    def spec(self) -> QuantitySpec:
        return QUANTITIES[self]

    @property
    def unit(self) -> str:
        return QUANTITIES[self].unit


def _q(unit: str, measurement: str, field: str, description: str) -> QuantitySpec:
    channel_tag = "phase" if measurement == "power" else "channel"
    return QuantitySpec(unit, measurement, field, channel_tag, description)


QUANTITIES: dict[Quantity, QuantitySpec] = {
    Quantity.VOLTAGE: _q("V", "power", "voltage_v", "RMS voltage, phase to neutral"),
    Quantity.CURRENT: _q("A", "power", "current_a", "RMS current"),
    Quantity.POWER: _q("W", "power", "power_w", "active power"),
    Quantity.APPARENT_POWER: _q("VA", "power", "apparent_power_va", "apparent power"),
    Quantity.REACTIVE_POWER: _q("var", "power", "reactive_power_var", "reactive power"),
    Quantity.POWER_FACTOR: _q("", "power", "pf", "power factor (signed)"),
    Quantity.FREQUENCY: _q("Hz", "power", "frequency_hz", "line frequency"),
    Quantity.ENERGY: _q("kWh", "power", "energy_kwh", "total active energy"),
    Quantity.ENERGY_IMPORT: _q("kWh", "power", "energy_import_kwh", "imported active energy"),
    Quantity.ENERGY_EXPORT: _q("kWh", "power", "energy_export_kwh", "exported active energy"),
    Quantity.VOLTAGE_THD: _q("%", "power", "voltage_thd_pct", "voltage total harmonic distortion"),
    Quantity.THERMAL_LOAD: _q("%", "power", "thermal_load_pct", "circuit thermal load (I²t model)"),
    Quantity.RESIDUAL_CURRENT: _q("mA", "leakage", "residual_ma", "residual (leakage) current"),
    Quantity.TEMPERATURE: _q("°C", "leakage", "temperature_c", "cable or terminal temperature"),
    Quantity.DETECTOR_ALARM: _q("", "leakage", "alarm", "detector's own alarm bit word"),
    Quantity.DETECTOR_FAULT: _q("", "leakage", "fault", "detector's own fault bit word"),
    Quantity.FIRE: _q("", "smoke", "fire", "fire/smoke alarm (1 = alarm)"),
    Quantity.SMOKE_FAULT: _q("", "smoke", "fault", "detector fault (1 = fault)"),
    Quantity.OBSCURATION: _q("dB/m", "smoke", "obscuration_db_m", "smoke obscuration"),
    Quantity.BATTERY: _q("%", "smoke", "battery_pct", "battery charge"),
    Quantity.RELAY: _q("", "lighting", "commanded_on", "relay state (1 = on)"),
    Quantity.LAMP_CURRENT: _q("A", "lighting", "current_a", "lamp circuit current"),
    Quantity.LUX: _q("lx", "lighting", "lux", "ambient illuminance"),
    Quantity.WATER_PRESSURE: _q("MPa", "firewater", "pressure_mpa",
                                "fire-water main pressure (gauge)"),
    Quantity.WATER_LEVEL: _q("m", "firewater", "level_m", "fire-water tank or pool level"),
    Quantity.LOOP_CURRENT: _q("mA", "firewater", "loop_ma",
                              "4-20 mA transmitter loop current (NAMUR NE43 fault limits)"),
    Quantity.ONLINE: _q("", "device_health", "online", "device answered its last poll"),
    Quantity.LATENCY: _q("ms", "device_health", "latency_ms", "poll round-trip time"),
    Quantity.ERRORS: _q("", "device_health", "errors", "failed polls since start"),
    Quantity.CRC_ERRORS: _q("", "device_health", "crc_errors",
                              "garbled answers (CRC or framing errors) since start"),
    Quantity.IMPLAUSIBLE: _q("", "device_health", "implausible",
                               "values outside their plausible range since start"),
}

# What a residential low-voltage installation (CT or direct meters, detectors) can physically
# show, as (low, high) of the engineering value in the quantity's unit. Wide on purpose: these
# catch a glitching device (1.7e38 A, a negative energy counter), not an unusual load; a
# profile point narrows or widens them with ``min``/``max``. Flags and bit words (fire, alarm
# and fault words, relay) have none: a fire flag is never second-guessed.
PLAUSIBLE: dict[Quantity, tuple[float, float]] = {
    Quantity.VOLTAGE: (0.0, 1_000.0),  # LV ends at 1000 V; 0 = phase lost
    Quantity.CURRENT: (-10_000.0, 10_000.0),  # signed on some meters; CTs up to 6300 A
    Quantity.POWER: (-3e7, 3e7),  # 3 phases x 1000 V x 10 kA
    Quantity.APPARENT_POWER: (-3e7, 3e7),
    Quantity.REACTIVE_POWER: (-3e7, 3e7),
    Quantity.POWER_FACTOR: (-1.01, 1.01),  # a little slack for the meter's own rounding
    Quantity.FREQUENCY: (0.0, 70.0),  # many meters read 0 Hz on a dead phase
    Quantity.ENERGY: (0.0, 1e10),  # kWh counters never run backwards past zero
    Quantity.ENERGY_IMPORT: (0.0, 1e10),
    Quantity.ENERGY_EXPORT: (0.0, 1e10),
    Quantity.VOLTAGE_THD: (0.0, 100.0),
    Quantity.THERMAL_LOAD: (0.0, 10_000.0),
    Quantity.RESIDUAL_CURRENT: (0.0, 10_000.0),  # mA: 10 A of leakage
    Quantity.TEMPERATURE: (-50.0, 250.0),
    Quantity.OBSCURATION: (0.0, 100.0),
    Quantity.BATTERY: (0.0, 100.0),
    Quantity.LAMP_CURRENT: (0.0, 1_000.0),
    Quantity.LUX: (0.0, 200_000.0),  # full sun is ~120 klx
    # gauge pressure: full vacuum to well above GB 50974's 2.4 MPa system limit; a 4-20 mA
    # loop that broke reads about -0.4 MPa on a 0-1.6 MPa span: implausible, and the loop
    # current (below) says why
    Quantity.WATER_PRESSURE: (-0.1, 10.0),
    Quantity.WATER_LEVEL: (-0.5, 50.0),  # m; a little below 0 is a transmitter near 4 mA
    Quantity.LOOP_CURRENT: (0.0, 25.0),  # mA; 0 = open loop, >22 = short (a fault, not noise)
}


class Quality(StrEnum):
    """Whether a value can be trusted; only GOOD values alarm or are written to InfluxDB."""

    GOOD = "good"
    BAD = "bad"  # NaN, infinity or a sentinel the device uses for "no value"
    # finite but outside the quantity's physical range (``PLAUSIBLE``): a glitching meter's
    # 1.7e38 A, never a measurement; bad like BAD, and counted per device (device_health)
    IMPLAUSIBLE = "implausible"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one quantity of one device at one time (``ts``: unix seconds, from the poll)."""

    ts: float
    device: str
    quantity: Quantity
    value: float
    quality: Quality = Quality.GOOD
    channel: str | None = None  # phase L1/L2/L3/total on meters, channel number elsewhere

    @property
    def unit(self) -> str:
        return self.quantity.unit

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


def checked_value(value: float, sentinels: tuple[float, ...] = ()) -> tuple[float, Quality]:
    """Quality of a decoded value: NaN, infinities and device sentinels are bad."""
    if math.isnan(value) or math.isinf(value) or value in sentinels:
        return value, Quality.BAD
    return value, Quality.GOOD


def plausible_range(quantity: Quantity, low: float | None = None,
                    high: float | None = None) -> tuple[float, float]:
    """The range a ``quantity``'s value must lie in; ``low``/``high`` override its default
    (``PLAUSIBLE``); unbounded sides are infinite (pure)."""
    default_low, default_high = PLAUSIBLE.get(quantity, (-math.inf, math.inf))
    return (default_low if low is None else low, default_high if high is None else high)


def bounded(value: float, quality: Quality, limits: tuple[float, float]) -> Quality:
    """``quality`` downgraded to IMPLAUSIBLE when a good ``value`` lies outside ``limits``."""
    low, high = limits
    if quality is Quality.GOOD and not low <= value <= high:
        return Quality.IMPLAUSIBLE
    return quality
