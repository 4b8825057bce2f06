"""GB/T 26875.3-2011 wire primitives shared by the frame and ADU layers (pure).

The one error type, the 6-byte time label, GB 18030 text fields and the status-word flag sets.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Self

TIME_SIZE = 6
TEXT_ENCODING = "gb18030"


class FrameErrorReason(StrEnum):
    """Why bytes were not a frame; the link layer NAKs (command 6) on the framing ones."""

    BAD_START = "bad_start"  # no "@@" where a frame should start (garbage before a frame)
    BAD_END = "bad_end"  # no "##" where the length field says the frame ends
    BAD_CHECKSUM = "bad_checksum"
    BAD_LENGTH = "bad_length"  # length field or object count disagrees with the bytes present
    OVERSIZE = "oversize"  # ADU length field > 1024
    UNKNOWN_TYPE = "unknown_type"  # reserved ADU type code
    UNKNOWN_COMMAND = "unknown_command"  # reserved command byte (0, 7..127)
    BAD_TIME = "bad_time"  # a time label that is no calendar time (month 13, day 0, ...)
    TRUNCATED = "truncated"  # fewer bytes than the header or the length field promise


class FrameError(ValueError):
    """The only error the codec raises (and the stream decoder reports) for bad input bytes.

    A ValueError, so callers validating user input can catch both with one clause.
    """

    def __init__(self, reason: FrameErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameError):
            return NotImplemented
        return (self.reason, self.detail) == (other.reason, other.detail)

    def __hash__(self) -> int:
        return hash((self.reason, self.detail))

    def __repr__(self) -> str:
        return f"FrameError({self.reason!r}, {self.detail!r})"


def pack_time(value: datetime | None) -> bytes:
    """Second, minute, hour, day, month, year-2000; sub-second precision is dropped.

    None (a label that was no calendar time, decoded with ``strict_time=False``) packs as six
    zero bytes, itself no calendar time.
    """
    if value is None:
        return bytes(TIME_SIZE)
    if not 2000 <= value.year <= 2255:
        raise ValueError(f"time {value} cannot be sent: the year byte holds 2000..2255")
    return bytes((value.second, value.minute, value.hour, value.day, value.month,
                  value.year - 2000))


def unpack_time(data: bytes | memoryview, offset: int, what: str) -> datetime:
    """The naive local time at ``data[offset:offset+6]``; FrameError(BAD_TIME) if impossible."""
    sec, minute, hour, day, month, year = data[offset:offset + TIME_SIZE]
    try:
        return datetime(2000 + year, month, day, hour, minute, sec)
    except ValueError:
        raw = bytes(data[offset:offset + TIME_SIZE]).hex(" ")
        raise FrameError(FrameErrorReason.BAD_TIME, f"{what}: {raw} is no valid time") from None


def unpack_time_label(data: bytes | memoryview, offset: int, what: str,
                      *, strict: bool) -> datetime | None:
    """``unpack_time``, or None for an impossible time when not ``strict``.

    Lenient decoding exists for the link: a panel whose clock was never set (day 0) still
    reports fires, and a fire must never be NAKed for a bad clock.
    """
    if strict:
        return unpack_time(data, offset, what)
    try:
        return unpack_time(data, offset, what)
    except FrameError:
        return None


def clean_text(raw: bytes | memoryview) -> str:
    """GB 18030 text up to the first NUL, trailing space padding removed."""
    text = bytes(raw).split(b"\x00", 1)[0].decode(TEXT_ENCODING, errors="replace")
    return text.rstrip(" ")


def pack_text(text: str, size: int | None, what: str) -> bytes:
    """GB 18030 bytes, NUL-padded to ``size``; None means exact (length-prefixed fields)."""
    raw = text.encode(TEXT_ENCODING)
    limit = 255 if size is None else size
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes in GB 18030, at most {limit} fit: {text!r}")
    return raw if size is None else raw.ljust(size, b"\x00")


@dataclasses.dataclass(frozen=True, slots=True)
class Flags:
    """A status or operation word: one named boolean per bit (field order = bit order).

    Bits the standard reserves are kept in ``other`` so decoding then encoding is lossless.
    """

    BITS: ClassVar[int] = 16

    other: int = 0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The flag names, bit 0 first."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "other")

    @classmethod
    def from_word(cls, word: int) -> Self:
        """Split a received word into the named flags."""
        names = cls.names()
        mask = (1 << len(names)) - 1
        return cls(other=word & ~mask, **{n: bool(word >> i & 1) for i, n in enumerate(names)})

    @property
    def word(self) -> int:
        """The word as sent."""
        bits = sum(1 << i for i, n in enumerate(self.names()) if getattr(self, n))
        return bits | self.other

    def active(self) -> list[str]:
        """Names of the flags that are set, bit 0 first."""
        return [n for n in self.names() if getattr(self, n)]

    def as_dict(self) -> dict[str, bool]:
        """Every named flag as a boolean."""
        return {n: bool(getattr(self, n)) for n in self.names()}


@dataclasses.dataclass(frozen=True, slots=True)
class SystemStatusFlags(Flags):
    """Status word of a fire-protection system (ADU type 1); bit 0 clear means test mode."""

    normal: bool = False
    fire: bool = False
    fault: bool = False
    disabled: bool = False  # 屏蔽
    supervisory: bool = False  # 监管
    started: bool = False  # 启动 (clear: stopped)
    feedback: bool = False
    delay: bool = False
    main_power_fault: bool = False
    backup_power_fault: bool = False
    bus_fault: bool = False
    manual: bool = False  # clear: automatic
    config_changed: bool = False
    reset: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentStatusFlags(Flags):
    """Status word of a component (ADU type 2); bit 0 clear means test mode."""

    normal: bool = False
    fire: bool = False
    fault: bool = False
    disabled: bool = False
    supervisory: bool = False
    started: bool = False
    feedback: bool = False
    delay: bool = False
    power_fault: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class OperationFlags(Flags):
    """Operator actions on a fire-protection system (ADU type 4)."""

    BITS: ClassVar[int] = 8

    reset: bool = False
    silence: bool = False
    manual_alarm: bool = False
    alarm_cleared: bool = False
    self_test: bool = False
    confirm: bool = False
    test: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class UitdStatusFlags(Flags):
    """Status byte of the user information transmission device (ADU type 21)."""

    BITS: ClassVar[int] = 8

    normal: bool = False
    fire: bool = False
    fault: bool = False
    main_power_fault: bool = False
    backup_power_fault: bool = False
    link_fault: bool = False  # channel to the monitoring centre
    line_fault: bool = False  # monitored connection line to the fire panel


@dataclasses.dataclass(frozen=True, slots=True)
class UitdOperationFlags(Flags):
    """Operator actions on the UITD (ADU type 24); bit 5 answers a duty check (查岗应答)."""

    BITS: ClassVar[int] = 8

    reset: bool = False
    silence: bool = False
    manual_alarm: bool = False
    alarm_cleared: bool = False
    self_test: bool = False
    duty_check_answer: bool = False
    test: bool = False
