"""GB/T 26875.3-2011 information objects: each type's byte layout, packed and unpacked (pure).

One frozen dataclass per object layout of §8, each with ``pack`` (to body bytes) and
``unpack`` (from an ``ObjectReader`` over the ADU body), so a layout is written once for both
directions. Where a public source and ``domain.md`` disagree, the choice is noted at the class.
Which ADU type holds which class, and the type/count container around them, is ``adu.py``.
Object ``time`` labels are None only when decoded with ``strict_time=False`` and the bytes were
no calendar time.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Self, TypeAlias

from drivers.gb26875.tables import analog_kind
from drivers.gb26875.wire import (
    TIME_SIZE,
    ComponentStatusFlags,
    FrameError,
    FrameErrorReason,
    OperationFlags,
    SystemStatusFlags,
    UitdOperationFlags,
    UitdStatusFlags,
    clean_text,
    pack_text,
    pack_time,
    unpack_time,
    unpack_time_label,
)

DESCRIPTION_SIZE = 31


class ObjectReader:
    """Cursor over an ADU body; running out of bytes is a BAD_LENGTH frame error."""

    __slots__ = ("data", "pos", "strict_time", "what")

    def __init__(self, data: bytes, pos: int, what: str, *, strict_time: bool = True) -> None:
        self.data, self.pos, self.what = data, pos, what
        self.strict_time = strict_time

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FrameError(FrameErrorReason.BAD_LENGTH,
                             f"{self.what}: needs {self.pos + n - len(self.data)} more bytes "
                             f"than the {len(self.data)}-byte ADU holds")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def i16(self) -> int:
        return int.from_bytes(self.take(2), "little", signed=True)

    def time(self) -> datetime | None:
        """An object's time label: None for an impossible one unless ``strict_time``."""
        return unpack_time_label(self.take(TIME_SIZE), 0, self.what, strict=self.strict_time)

    def strict_time_value(self) -> datetime:
        """A time that is a parameter (query start), not a label: always strict."""
        return unpack_time(self.take(TIME_SIZE), 0, self.what)


def _u(value: int, bits: int, name: str) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name}={value} does not fit {bits // 8} unsigned byte(s)")
    return value.to_bytes(bits // 8, "little")


def _sys(system_type: int, system_address: int) -> bytes:
    return _u(system_type, 8, "system_type") + _u(system_address, 8, "system_address")


@dataclasses.dataclass(frozen=True, slots=True)
class InfoObject:
    """Base of all information objects: ``pack`` to body bytes, ``unpack`` from a reader."""

    def pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, slots=True)
class SystemStatus(InfoObject):
    """Type 1: state of a fire-protection system (4 B + time)."""

    system_type: int
    system_address: int
    status: SystemStatusFlags
    time: datetime | None

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + _u(self.status.word, 16, "status") + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), SystemStatusFlags.from_word(r.u16()), r.time())


def _component_head(system_type: int, system_address: int, component_type: int, zone: int,
                    position: int) -> bytes:
    return (_sys(system_type, system_address) + _u(component_type, 8, "component_type")
            + _u(zone, 16, "zone") + _u(position, 16, "position"))


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentStatus(InfoObject):
    """Type 2: state of one component (40 B + time).

    The 4-byte component address is read as zone (区号) then position (位号), uint16 LE each.
    """

    system_type: int
    system_address: int
    component_type: int
    zone: int
    position: int
    status: ComponentStatusFlags
    description: str
    time: datetime | None

    def pack(self) -> bytes:
        return (_component_head(self.system_type, self.system_address, self.component_type,
                                self.zone, self.position)
                + _u(self.status.word, 16, "status")
                + pack_text(self.description, DESCRIPTION_SIZE, "description")
                + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u8(), r.u16(), r.u16(),
                   ComponentStatusFlags.from_word(r.u16()),
                   clean_text(r.take(DESCRIPTION_SIZE)), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentAnalog(InfoObject):
    """Type 3: one analog reading (10 B + time); ``raw`` is the int16 as sent."""

    system_type: int
    system_address: int
    component_type: int
    zone: int
    position: int
    analog_type: int
    raw: int
    time: datetime | None

    @property
    def value(self) -> float:
        """The reading in ``unit`` (raw x the table scale; user types are raw)."""
        return round(self.raw * analog_kind(self.analog_type).scale, 6)

    @property
    def unit(self) -> str:
        return analog_kind(self.analog_type).unit

    def pack(self) -> bytes:
        if not -(1 << 15) <= self.raw < 1 << 15:
            raise ValueError(f"raw={self.raw} does not fit int16")
        return (_component_head(self.system_type, self.system_address, self.component_type,
                                self.zone, self.position)
                + _u(self.analog_type, 8, "analog_type")
                + self.raw.to_bytes(2, "little", signed=True) + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u8(), r.u16(), r.u16(), r.u8(), r.i16(), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class Operation(InfoObject):
    """Type 4: an operator action on a fire-protection system (4 B + time)."""

    system_type: int
    system_address: int
    flags: OperationFlags
    operator: int
    time: datetime | None

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + _u(self.flags.word, 8, "flags") + _u(self.operator, 8, "operator")
                + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), OperationFlags.from_word(r.u8()), r.u8(), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class SoftwareVersion(InfoObject):
    """Type 5: software version of a system (4 B, no time label)."""

    system_type: int
    system_address: int
    major: int
    minor: int

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + _u(self.major, 8, "major") + _u(self.minor, 8, "minor"))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u8(), r.u8())


@dataclasses.dataclass(frozen=True, slots=True)
class SystemConfig(InfoObject):
    """Type 6: configuration text of a system (2 B + length-prefixed GB 18030, no time)."""

    system_type: int
    system_address: int
    description: str

    def pack(self) -> bytes:
        text = pack_text(self.description, None, "description")
        return (_sys(self.system_type, self.system_address)
                + bytes((len(text),)) + text)

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        system_type, system_address = r.u8(), r.u8()
        return cls(system_type, system_address, clean_text(r.take(r.u8())))


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentConfig(InfoObject):
    """Type 7: configuration of one component (38 B, no time label)."""

    system_type: int
    system_address: int
    component_type: int
    zone: int
    position: int
    description: str

    def pack(self) -> bytes:
        return (_component_head(self.system_type, self.system_address, self.component_type,
                                self.zone, self.position)
                + pack_text(self.description, DESCRIPTION_SIZE, "description"))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u8(), r.u16(), r.u16(), clean_text(r.take(DESCRIPTION_SIZE)))


@dataclasses.dataclass(frozen=True, slots=True)
class SystemTime(InfoObject):
    """Type 8: the clock of a system (2 B + time)."""

    system_type: int
    system_address: int
    time: datetime | None

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class UitdStatus(InfoObject):
    """Type 21: state of the transmission device itself (1 B + time)."""

    status: UitdStatusFlags
    time: datetime | None

    def pack(self) -> bytes:
        return _u(self.status.word, 8, "status") + pack_time(self.time)

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(UitdStatusFlags.from_word(r.u8()), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class UitdOperation(InfoObject):
    """Type 24: an operator action on the transmission device (2 B + time)."""

    flags: UitdOperationFlags
    operator: int
    time: datetime | None

    def pack(self) -> bytes:
        return (_u(self.flags.word, 8, "flags") + _u(self.operator, 8, "operator")
                + pack_time(self.time))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(UitdOperationFlags.from_word(r.u8()), r.u8(), r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class UitdVersion(InfoObject):
    """Type 25: software version of the transmission device (2 B, no time label)."""

    major: int
    minor: int

    def pack(self) -> bytes:
        return _u(self.major, 8, "major") + _u(self.minor, 8, "minor")

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8())


@dataclasses.dataclass(frozen=True, slots=True)
class UitdConfig(InfoObject):
    """Type 26: configuration text of the transmission device (length-prefixed, no time)."""

    description: str

    def pack(self) -> bytes:
        text = pack_text(self.description, None, "description")
        return bytes((len(text),)) + text

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(clean_text(r.take(r.u8())))


@dataclasses.dataclass(frozen=True, slots=True)
class ClockTime(InfoObject):
    """A bare time label: type 28 (UITD clock, up) and type 90 (clock to set, down)."""

    time: datetime | None

    def pack(self) -> bytes:
        return pack_time(self.time)

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.time())


@dataclasses.dataclass(frozen=True, slots=True)
class SystemRef(InfoObject):
    """Types 61, 65, 66, 68: which system to read (2 B)."""

    system_type: int
    system_address: int

    def pack(self) -> bytes:
        return _sys(self.system_type, self.system_address)

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8())


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentRef(InfoObject):
    """Types 62, 63, 67: which component to read (6 B: system type, address, zone, position).

    The standard's read requests carry no component type byte.
    """

    system_type: int
    system_address: int
    zone: int
    position: int

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + _u(self.zone, 16, "zone") + _u(self.position, 16, "position"))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u16(), r.u16())


@dataclasses.dataclass(frozen=True, slots=True)
class OperationQuery(InfoObject):
    """Type 64: read ``count`` operation records of a system from ``since`` on (9 B)."""

    system_type: int
    system_address: int
    count: int
    since: datetime

    def pack(self) -> bytes:
        return (_sys(self.system_type, self.system_address)
                + _u(self.count, 8, "count") + pack_time(self.since))

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.u8(), r.u8(), r.strict_time_value())


@dataclasses.dataclass(frozen=True, slots=True)
class UitdOperationQuery(InfoObject):
    """Type 84: read ``count`` UITD operation records from ``since`` on (7 B).

    ``domain.md`` lists 84 with a reserved byte; the standard's §8.3.2 gives count + start time.
    """

    count: int
    since: datetime

    def pack(self) -> bytes:
        return _u(self.count, 8, "count") + pack_time(self.since)

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8(), r.strict_time_value())


@dataclasses.dataclass(frozen=True, slots=True)
class Reserved(InfoObject):
    """Types 81, 85, 86, 88, 89 and 91: one byte, 0 in the standard.

    Some centres put the duty-check (91) answer timeout in minutes here, so it is kept.
    """

    value: int = 0

    def pack(self) -> bytes:
        return _u(self.value, 8, "value")

    @classmethod
    def unpack(cls, r: ObjectReader) -> Self:
        return cls(r.u8())


AduObject: TypeAlias = (
    SystemStatus | ComponentStatus | ComponentAnalog | Operation | SoftwareVersion | SystemConfig
    | ComponentConfig | SystemTime | UitdStatus | UitdOperation | UitdVersion | UitdConfig
    | ClockTime | SystemRef | ComponentRef | OperationQuery | UitdOperationQuery | Reserved
)

