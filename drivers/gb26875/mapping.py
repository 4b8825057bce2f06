"""GB/T 26875.3 frames to Readings (pure: the timestamp is an argument, no I/O).

The device of every reading is the panel (the link's name); what inside the panel it is about
goes in the channel:

- component status (type 2) and analog values (type 3): ``f"{system_address}-{zone}-{position}"``
  e.g. ``"2-3-25"`` for system 2, zone (区号) 3, position (位号) 25;
- system status (type 1): ``f"{system_address}"``;
- UITD status (type 21): ``"uitd"``.

What is mapped (everything else, including unknown types, yields no readings):

- type 2 on fire detecting components (manual call point 23, fire detector 25, heat 30-37,
  smoke 40-44, multi-sensor 50-53, flame 61/62/69): FIRE = fire bit, SMOKE_FAULT = fault bit;
- type 2 on electrical fire detectors (16 monitor, 17 residual current, 18 temperature):
  DETECTOR_ALARM = fire bit, DETECTOR_FAULT = fault bit;
- type 3 on electrical fire detectors 16-18: temperature (analog 3) -> TEMPERATURE in °C;
  current (analog 9) -> RESIDUAL_CURRENT in mA on a residual-current detector (17), CURRENT in
  A on the others; voltage (analog 8) -> VOLTAGE;
- type 1 (any system): FIRE = fire bit, SMOKE_FAULT = fault, bus fault or a power fault;
- type 21: FIRE = fire bit, SMOKE_FAULT = fault, a power fault, link or line fault.

Readings carry ``ts`` (when we received the frame), never the panel's own time label: panel
clocks are often wrong or unset, and the pipeline orders events by our clock. Bit 0 ("normal",
clear in test mode) is not used: real panels send fire alarms with it clear.
"""

from __future__ import annotations

from core.measurements import Quantity, Reading
from drivers.gb26875.codec import (
    AduType,
    ComponentAnalog,
    ComponentStatus,
    Frame,
    SystemStatus,
    UitdStatus,
)

FIRE_DETECTORS: frozenset[int] = frozenset(
    {23, 25, *range(30, 38), *range(40, 45), *range(50, 54), 61, 62, 69})
ELECTRICAL_FIRE_DETECTORS: frozenset[int] = frozenset({16, 17, 18})
RESIDUAL_CURRENT_DETECTOR = 17

ANALOG_TEMPERATURE = 3
ANALOG_VOLTAGE = 8
ANALOG_CURRENT = 9

UITD_CHANNEL = "uitd"


def component_channel(system_address: int, zone: int, position: int) -> str:
    """The channel tag of a component: ``"{system_address}-{zone}-{position}"``."""
    return f"{system_address}-{zone}-{position}"


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def _component_status(obj: ComponentStatus, panel: str, ts: float) -> list[Reading]:
    if obj.component_type in FIRE_DETECTORS:
        fire, fault = Quantity.FIRE, Quantity.SMOKE_FAULT
    elif obj.component_type in ELECTRICAL_FIRE_DETECTORS:
        fire, fault = Quantity.DETECTOR_ALARM, Quantity.DETECTOR_FAULT
    else:
        return []
    channel = component_channel(obj.system_address, obj.zone, obj.position)
    return [Reading(ts=ts, device=panel, quantity=fire, value=_flag(obj.status.fire),
                    channel=channel),
            Reading(ts=ts, device=panel, quantity=fault, value=_flag(obj.status.fault),
                    channel=channel)]


def _component_analog(obj: ComponentAnalog, panel: str, ts: float) -> list[Reading]:
    if obj.component_type not in ELECTRICAL_FIRE_DETECTORS:
        return []
    value = obj.value
    if obj.analog_type == ANALOG_TEMPERATURE:
        quantity = Quantity.TEMPERATURE
    elif obj.analog_type == ANALOG_VOLTAGE:
        quantity = Quantity.VOLTAGE
    elif obj.analog_type == ANALOG_CURRENT:
        if obj.component_type == RESIDUAL_CURRENT_DETECTOR:
            quantity, value = Quantity.RESIDUAL_CURRENT, round(value * 1000.0, 6)
        else:
            quantity = Quantity.CURRENT
    else:
        return []
    return [Reading(ts=ts, device=panel, quantity=quantity, value=value,
                    channel=component_channel(obj.system_address, obj.zone, obj.position))]


def _system_status(obj: SystemStatus, panel: str, ts: float) -> list[Reading]:
    s = obj.status
    fault = s.fault or s.bus_fault or s.main_power_fault or s.backup_power_fault
    channel = str(obj.system_address)
    return [Reading(ts=ts, device=panel, quantity=Quantity.FIRE, value=_flag(s.fire),
                    channel=channel),
            Reading(ts=ts, device=panel, quantity=Quantity.SMOKE_FAULT, value=_flag(fault),
                    channel=channel)]


def _uitd_status(obj: UitdStatus, panel: str, ts: float) -> list[Reading]:
    s = obj.status
    fault = (s.fault or s.main_power_fault or s.backup_power_fault or s.link_fault
             or s.line_fault)
    return [Reading(ts=ts, device=panel, quantity=Quantity.FIRE, value=_flag(s.fire),
                    channel=UITD_CHANNEL),
            Reading(ts=ts, device=panel, quantity=Quantity.SMOKE_FAULT, value=_flag(fault),
                    channel=UITD_CHANNEL)]


def frame_to_readings(frame: Frame, *, panel: str, ts: float) -> list[Reading]:
    """The Readings a frame carries, in object order; [] for anything not mapped."""
    adu = frame.adu
    if adu is None:
        return []
    out: list[Reading] = []
    for obj in adu.objects:
        if adu.type is AduType.COMPONENT_STATUS and isinstance(obj, ComponentStatus):
            out += _component_status(obj, panel, ts)
        elif adu.type is AduType.COMPONENT_ANALOG and isinstance(obj, ComponentAnalog):
            out += _component_analog(obj, panel, ts)
        elif adu.type is AduType.SYSTEM_STATUS and isinstance(obj, SystemStatus):
            out += _system_status(obj, panel, ts)
        elif adu.type is AduType.UITD_STATUS and isinstance(obj, UitdStatus):
            out += _uitd_status(obj, panel, ts)
    return out
