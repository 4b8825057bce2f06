"""GB/T 26875.3 frames to Readings: table-driven over ADU types and component types."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.measurements import Quality, Quantity
from drivers.gb26875.codec import (
    Adu,
    AduObject,
    AduType,
    Command,
    ComponentAnalog,
    ComponentStatus,
    ComponentStatusFlags,
    Frame,
    Header,
    Operation,
    OperationFlags,
    SystemStatus,
    SystemStatusFlags,
    UitdStatus,
    UitdStatusFlags,
    decode_frame,
)
from drivers.gb26875.mapping import frame_to_readings
from tests.unit.test_gb26875_codec import HAND_BUILT

T = datetime(2024, 3, 15, 21, 7, 40)
TS = 1_700_000_000.0
Q = Quantity


def frame_of(adu_type: AduType, *objects: AduObject) -> Frame:
    header = Header(serial=1, version=(1, 0), time=T, source=5, destination=1,
                    command=Command.SEND_DATA)
    return Frame(header, Adu(adu_type, objects))


def component(component_type: int, **flags: bool) -> ComponentStatus:
    return ComponentStatus(system_type=1, system_address=2, component_type=component_type,
                           zone=3, position=25, status=ComponentStatusFlags(**flags),
                           description="", time=T)


def analog(component_type: int, analog_type: int, raw: int) -> ComponentAnalog:
    return ComponentAnalog(system_type=1, system_address=2, component_type=component_type,
                           zone=7, position=1, analog_type=analog_type, raw=raw, time=T)


CASES: list[tuple[str, Frame, list[tuple[Quantity, float, str]]]] = [
    ("photoelectric smoke fire", frame_of(AduType.COMPONENT_STATUS, component(42, fire=True)),
     [(Q.FIRE, 1.0, "2-3-25"), (Q.SMOKE_FAULT, 0.0, "2-3-25")]),
    ("heat detector fault", frame_of(AduType.COMPONENT_STATUS, component(31, fault=True)),
     [(Q.FIRE, 0.0, "2-3-25"), (Q.SMOKE_FAULT, 1.0, "2-3-25")]),
    ("manual call point fire", frame_of(AduType.COMPONENT_STATUS, component(23, fire=True)),
     [(Q.FIRE, 1.0, "2-3-25"), (Q.SMOKE_FAULT, 0.0, "2-3-25")]),
    ("multi-sensor fire without the normal bit",
     frame_of(AduType.COMPONENT_STATUS, component(51, fire=True, normal=False)),
     [(Q.FIRE, 1.0, "2-3-25"), (Q.SMOKE_FAULT, 0.0, "2-3-25")]),
    ("generic fire detector normal", frame_of(AduType.COMPONENT_STATUS, component(25, normal=True)),
     [(Q.FIRE, 0.0, "2-3-25"), (Q.SMOKE_FAULT, 0.0, "2-3-25")]),
    ("electrical fire monitor alarm",
     frame_of(AduType.COMPONENT_STATUS, component(17, fire=True, fault=True)),
     [(Q.DETECTOR_ALARM, 1.0, "2-3-25"), (Q.DETECTOR_FAULT, 1.0, "2-3-25")]),
    ("input module status: not mapped",
     frame_of(AduType.COMPONENT_STATUS, component(85, fire=True)), []),
    ("two components in one frame",
     frame_of(AduType.COMPONENT_STATUS, component(40, fire=True), component(86, fire=True)),
     [(Q.FIRE, 1.0, "2-3-25"), (Q.SMOKE_FAULT, 0.0, "2-3-25")]),
    ("temperature detector: 65.5 °C",
     frame_of(AduType.COMPONENT_ANALOG, analog(18, 3, 655)), [(Q.TEMPERATURE, 65.5, "2-7-1")]),
    ("negative temperature", frame_of(AduType.COMPONENT_ANALOG, analog(16, 3, -52)),
     [(Q.TEMPERATURE, -5.2, "2-7-1")]),
    ("residual-current detector: 0.3 A is 300 mA",
     frame_of(AduType.COMPONENT_ANALOG, analog(17, 9, 3)), [(Q.RESIDUAL_CURRENT, 300.0, "2-7-1")]),
    ("electrical fire monitor current in A",
     frame_of(AduType.COMPONENT_ANALOG, analog(16, 9, 125)), [(Q.CURRENT, 12.5, "2-7-1")]),
    ("electrical fire monitor voltage",
     frame_of(AduType.COMPONENT_ANALOG, analog(16, 8, 2301)), [(Q.VOLTAGE, 230.1, "2-7-1")]),
    ("pressure on a detector: not mapped",
     frame_of(AduType.COMPONENT_ANALOG, analog(18, 4, 10)), []),
    ("temperature of a water tank: not mapped",
     frame_of(AduType.COMPONENT_ANALOG, analog(92, 3, 200)), []),
    ("system in fire", frame_of(AduType.SYSTEM_STATUS, SystemStatus(
        1, 2, SystemStatusFlags(normal=True, fire=True), T)),
     [(Q.FIRE, 1.0, "2"), (Q.SMOKE_FAULT, 0.0, "2")]),
    ("system backup power fault", frame_of(AduType.SYSTEM_STATUS, SystemStatus(
        1, 4, SystemStatusFlags(normal=True, backup_power_fault=True), T)),
     [(Q.FIRE, 0.0, "4"), (Q.SMOKE_FAULT, 1.0, "4")]),
    ("UITD fire", frame_of(AduType.UITD_STATUS, UitdStatus(UitdStatusFlags(fire=True), T)),
     [(Q.FIRE, 1.0, "uitd"), (Q.SMOKE_FAULT, 0.0, "uitd")]),
    ("UITD main power fault",
     frame_of(AduType.UITD_STATUS, UitdStatus(UitdStatusFlags(main_power_fault=True), T)),
     [(Q.FIRE, 0.0, "uitd"), (Q.SMOKE_FAULT, 1.0, "uitd")]),
    ("operation info: not mapped", frame_of(AduType.OPERATION, Operation(
        1, 2, OperationFlags(reset=True), 1, T)), []),
    ("heartbeat: nothing", Frame(Header(serial=1, version=(1, 0), time=T, source=5,
                                        destination=1, command=Command.SEND_DATA)), []),
    ("user-defined ADU type: nothing", Frame(Header(
        serial=1, version=(1, 0), time=T, source=5, destination=1,
        command=Command.SEND_DATA), None, bytes((200, 1, 0))), []),
]


@pytest.mark.parametrize(("frame", "expected"), [(f, e) for _, f, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_frame_to_readings(frame: Frame, expected: list[tuple[Quantity, float, str]]) -> None:
    """Each frame maps to exactly the expected (quantity, value, channel) readings."""
    readings = frame_to_readings(frame, panel="panel-1", ts=TS)
    assert [(r.quantity, r.value, r.channel) for r in readings] == expected
    assert all(r.device == "panel-1" and r.ts == TS and r.quality is Quality.GOOD
               for r in readings)


def test_hand_built_frame_is_a_fire_on_channel_2_3_25() -> None:
    """The hand-built smoke-detector alarm is FIRE=1 on system 2, zone 3, position 25."""
    readings = frame_to_readings(decode_frame(HAND_BUILT), panel="p", ts=TS)
    assert readings[0].quantity is Quantity.FIRE
    assert readings[0].value == 1.0
    assert readings[0].channel == "2-3-25"


def test_unset_panel_clock_still_maps_with_our_timestamp() -> None:
    """A lenient-decoded frame with time=None maps like any other, stamped with ``ts``."""
    data = bytearray(HAND_BUILT)
    data[9] = 0  # header day 0
    data[-6] = 0  # object day 0
    data[-3] = sum(data[2:-3]) & 0xFF
    frame = decode_frame(bytes(data), strict_time=False)
    assert frame.header.time is None
    readings = frame_to_readings(frame, panel="p", ts=TS)
    assert [(r.quantity, r.value, r.ts) for r in readings] == [
        (Quantity.FIRE, 1.0, TS), (Quantity.SMOKE_FAULT, 0.0, TS)]
