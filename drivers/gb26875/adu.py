"""GB/T 26875.3-2011 application data units: type, object count, objects (pure).

The ADU container: the type codes, which information object class each type holds
(``OBJECT_CLASS``), and ``encode_adu``/``decode_adu`` for the whole body. The objects' own byte
layouts are in ``objects.py``. Object counts are not capped on decode (the 1024-byte ADU limit
is); the per-type limits in the standard (22 component states, 63 analog values, ...) are
exactly what fits in 1024 bytes.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import ClassVar

from drivers.gb26875.objects import (
    AduObject,
    ClockTime,
    ComponentAnalog,
    ComponentConfig,
    ComponentRef,
    ComponentStatus,
    InfoObject,
    ObjectReader,
    Operation,
    OperationQuery,
    Reserved,
    SoftwareVersion,
    SystemConfig,
    SystemRef,
    SystemStatus,
    SystemTime,
    UitdConfig,
    UitdOperation,
    UitdOperationQuery,
    UitdStatus,
    UitdVersion,
)
from drivers.gb26875.wire import FrameError, FrameErrorReason

MAX_ADU = 1024


class AduType(IntEnum):
    """ADU type codes; 1..28 go up (UITD -> centre), 61..91 go down (centre -> UITD)."""

    SYSTEM_STATUS = 1
    COMPONENT_STATUS = 2
    COMPONENT_ANALOG = 3
    OPERATION = 4
    SOFTWARE_VERSION = 5
    SYSTEM_CONFIG = 6
    COMPONENT_CONFIG = 7
    SYSTEM_TIME = 8
    UITD_STATUS = 21
    UITD_OPERATION = 24
    UITD_VERSION = 25
    UITD_CONFIG = 26
    UITD_TIME = 28
    READ_SYSTEM_STATUS = 61
    READ_COMPONENT_STATUS = 62
    READ_COMPONENT_ANALOG = 63
    READ_OPERATIONS = 64
    READ_SOFTWARE_VERSION = 65
    READ_SYSTEM_CONFIG = 66
    READ_COMPONENT_CONFIG = 67
    READ_SYSTEM_TIME = 68
    READ_UITD_STATUS = 81
    READ_UITD_OPERATIONS = 84
    READ_UITD_VERSION = 85
    READ_UITD_CONFIG = 86
    READ_UITD_TIME = 88
    INIT_UITD = 89
    SYNC_CLOCK = 90
    DUTY_CHECK = 91  # 查岗


OBJECT_CLASS: dict[AduType, type[InfoObject]] = {
    AduType.SYSTEM_STATUS: SystemStatus,
    AduType.COMPONENT_STATUS: ComponentStatus,
    AduType.COMPONENT_ANALOG: ComponentAnalog,
    AduType.OPERATION: Operation,
    AduType.SOFTWARE_VERSION: SoftwareVersion,
    AduType.SYSTEM_CONFIG: SystemConfig,
    AduType.COMPONENT_CONFIG: ComponentConfig,
    AduType.SYSTEM_TIME: SystemTime,
    AduType.UITD_STATUS: UitdStatus,
    AduType.UITD_OPERATION: UitdOperation,
    AduType.UITD_VERSION: UitdVersion,
    AduType.UITD_CONFIG: UitdConfig,
    AduType.UITD_TIME: ClockTime,
    AduType.READ_SYSTEM_STATUS: SystemRef,
    AduType.READ_COMPONENT_STATUS: ComponentRef,
    AduType.READ_COMPONENT_ANALOG: ComponentRef,
    AduType.READ_OPERATIONS: OperationQuery,
    AduType.READ_SOFTWARE_VERSION: SystemRef,
    AduType.READ_SYSTEM_CONFIG: SystemRef,
    AduType.READ_COMPONENT_CONFIG: ComponentRef,
    AduType.READ_SYSTEM_TIME: SystemRef,
    AduType.READ_UITD_STATUS: Reserved,
    AduType.READ_UITD_OPERATIONS: UitdOperationQuery,
    AduType.READ_UITD_VERSION: Reserved,
    AduType.READ_UITD_CONFIG: Reserved,
    AduType.READ_UITD_TIME: Reserved,
    AduType.INIT_UITD: Reserved,
    AduType.SYNC_CLOCK: ClockTime,
    AduType.DUTY_CHECK: Reserved,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Adu:
    """An application data unit of a standard type: its objects, all of the type's class."""

    type: AduType
    objects: tuple[AduObject, ...]

    MAX_OBJECTS: ClassVar[int] = 255

    def __post_init__(self) -> None:
        expected = OBJECT_CLASS[AduType(self.type)]
        for obj in self.objects:
            if type(obj) is not expected:
                raise ValueError(f"ADU type {self.type.name} holds {expected.__name__} objects, "
                                 f"not {type(obj).__name__}")
        if len(self.objects) > self.MAX_OBJECTS:
            raise ValueError(f"{len(self.objects)} objects: the count byte holds at most 255")


def encode_adu(adu: Adu) -> bytes:
    """Type, count, then each object's bytes; ValueError if over 1024 bytes."""
    body = b"".join(obj.pack() for obj in adu.objects)
    data = bytes((adu.type, len(adu.objects))) + body
    if len(data) > MAX_ADU:
        raise ValueError(f"ADU {adu.type.name} is {len(data)} bytes, at most {MAX_ADU} allowed")
    return data


def decode_adu(data: bytes, *, strict_time: bool = True) -> Adu:
    """Parse a whole ADU of a standard type; every byte must belong to an object.

    With ``strict_time=False`` an impossible object time label decodes as ``time=None``
    instead of raising FrameError(BAD_TIME).
    """
    if len(data) < 2:
        raise FrameError(FrameErrorReason.BAD_LENGTH,
                         f"ADU of {len(data)} byte(s) lacks the type and count bytes")
    try:
        adu_type = AduType(data[0])
    except ValueError:
        raise FrameError(FrameErrorReason.UNKNOWN_TYPE, f"ADU type {data[0]} is reserved") from None
    cls = OBJECT_CLASS[adu_type]
    count = data[1]
    reader = ObjectReader(data, 2,
                          f"ADU type {adu_type.value} ({adu_type.name}) with {count} objects",
                          strict_time=strict_time)
    objects = tuple(cls.unpack(reader) for _ in range(count))
    if reader.pos != len(data):
        raise FrameError(FrameErrorReason.BAD_LENGTH,
                         f"{reader.what}: {len(data) - reader.pos} bytes left over")
    return Adu(adu_type, objects)  # type: ignore[arg-type]  # cls matches adu_type by the table


def is_user_type(code: int) -> bool:
    """ADU type codes 128..255 are user-defined: kept as raw bytes, never an error."""
    return code >= 128

