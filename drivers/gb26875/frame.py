"""GB/T 26875.3-2011 frames: header, checksum, whole-frame codec and stream splitter (pure).

Layout (1-based byte numbers as in the standard): 1-2 ``@@``; 3-4 serial; 5-6 version;
7-12 time; 13-18 source; 19-24 destination; 25-26 ADU length; 27 command; ADU; checksum
(sum of bytes 3..27 and the ADU, mod 256); ``##``. Multi-byte integers are little-endian.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import IntEnum

from drivers.gb26875.adu import MAX_ADU, Adu, decode_adu, encode_adu, is_user_type
from drivers.gb26875.wire import FrameError, FrameErrorReason, pack_time, unpack_time_label

START = b"@@"
END = b"##"
HEADER_SIZE = 27  # start .. command
OVERHEAD = 30  # header + checksum + end
MAX_FRAME = OVERHEAD + MAX_ADU
_LENGTH_AT = 24  # offset of the ADU length field


class Command(IntEnum):
    """Command byte (27); 128..255 are user-defined and kept as plain ints."""

    CONTROL = 1
    SEND_DATA = 2
    CONFIRM = 3  # ACK
    REQUEST = 4
    RESPONSE = 5
    DENY = 6  # NAK


_STANDARD = frozenset(int(c) for c in Command)


def command_name(command: int) -> str:
    """``send_data`` for standard commands, ``user_200`` for user-defined ones."""
    return Command(command).name.lower() if command in _STANDARD else f"user_{command}"


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """The control unit. ``time`` is naive local time as the sender's clock read it.

    ``time`` is None only for a frame decoded with ``strict_time=False`` whose time label was
    no calendar time (a panel clock never set); it encodes as six zero bytes.
    """

    serial: int
    version: tuple[int, int]
    time: datetime | None
    source: int
    destination: int
    command: Command | int

    def __post_init__(self) -> None:
        if not 0 <= self.serial <= 0xFFFF:
            raise ValueError(f"serial {self.serial} is not a uint16")
        if len(self.version) != 2 or not all(0 <= v <= 0xFF for v in self.version):
            raise ValueError(f"version {self.version} is not (major, minor) bytes")
        for name in ("source", "destination"):
            if not 0 <= getattr(self, name) < 1 << 48:
                raise ValueError(f"{name} {getattr(self, name)} does not fit 6 bytes")
        if self.command in _STANDARD:
            object.__setattr__(self, "command", Command(self.command))
        elif not 128 <= self.command <= 255:
            raise ValueError(f"command {self.command} is reserved (use 1..6 or 128..255)")


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``raw_adu`` are the ADU bytes on the wire; ``adu`` their decoded form.

    ``adu`` is None for an empty ADU (heartbeat, ACK, NAK) and for user-defined commands or ADU
    types (128..255), whose bytes stay in ``raw_adu``. Build outgoing frames with
    ``Frame(header, adu)``: ``raw_adu`` is then filled in from ``adu``.
    """

    header: Header
    adu: Adu | None = None
    raw_adu: bytes = b""

    def __post_init__(self) -> None:
        if self.adu is not None and not self.raw_adu:
            object.__setattr__(self, "raw_adu", encode_adu(self.adu))
        if len(self.raw_adu) > MAX_ADU:
            raise ValueError(f"ADU of {len(self.raw_adu)} bytes exceeds {MAX_ADU}")


def checksum(body: bytes | bytearray | memoryview) -> int:
    """Sum of the bytes from the serial number through the ADU, modulo 256."""
    return sum(body) & 0xFF


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes on the wire; ValueError if a field cannot be represented."""
    h = frame.header
    body = (h.serial.to_bytes(2, "little") + bytes(h.version) + pack_time(h.time)
            + h.source.to_bytes(6, "little") + h.destination.to_bytes(6, "little")
            + len(frame.raw_adu).to_bytes(2, "little") + bytes((int(h.command),))
            + frame.raw_adu)
    return START + body + bytes((checksum(body),)) + END


def _check_envelope(data: bytes) -> int:
    """Validate start, length, end and checksum of exactly one frame; return the ADU length."""
    if data[:2] != START[:len(data[:2])]:
        raise FrameError(FrameErrorReason.BAD_START, f"starts with {data[:2].hex(' ')}, not 40 40")
    if len(data) < OVERHEAD:
        raise FrameError(FrameErrorReason.TRUNCATED,
                         f"{len(data)} bytes, a frame has at least {OVERHEAD}")
    adu_len = int.from_bytes(data[_LENGTH_AT:_LENGTH_AT + 2], "little")
    if adu_len > MAX_ADU:
        raise FrameError(FrameErrorReason.OVERSIZE, f"ADU length {adu_len} exceeds {MAX_ADU}")
    size = OVERHEAD + adu_len
    if len(data) < size:
        raise FrameError(FrameErrorReason.TRUNCATED,
                         f"{len(data)} bytes, the length field promises {size}")
    if len(data) > size:
        raise FrameError(FrameErrorReason.BAD_LENGTH,
                         f"{len(data)} bytes, the length field says {size}")
    if data[-2:] != END:
        raise FrameError(FrameErrorReason.BAD_END, f"ends with {data[-2:].hex(' ')}, not 23 23")
    expected = checksum(data[2:-3])
    if data[-3] != expected:
        raise FrameError(FrameErrorReason.BAD_CHECKSUM,
                         f"checksum byte {data[-3]:#04x}, computed {expected:#04x}")
    return adu_len


def decode_frame(data: bytes | bytearray | memoryview, *, strict_time: bool = True) -> Frame:
    """Decode exactly one frame; any defect raises FrameError (nothing else).

    ``strict_time=False`` turns impossible time labels (header and objects) into ``None``
    instead of FrameError(BAD_TIME): a receiver must not NAK a fire alarm for a bad clock.
    """
    data = bytes(data)
    _check_envelope(data)
    command = data[26]
    if command not in _STANDARD and command < 128:
        raise FrameError(FrameErrorReason.UNKNOWN_COMMAND, f"command byte {command} is reserved")
    header = Header(
        serial=int.from_bytes(data[2:4], "little"),
        version=(data[4], data[5]),
        time=unpack_time_label(data, 6, "header time", strict=strict_time),
        source=int.from_bytes(data[12:18], "little"),
        destination=int.from_bytes(data[18:24], "little"),
        command=command,
    )
    raw_adu = data[HEADER_SIZE:-3]
    if not raw_adu or command >= 128 or is_user_type(raw_adu[0]):
        return Frame(header, None, raw_adu)
    return Frame(header, decode_adu(raw_adu, strict_time=strict_time), raw_adu)


def _reply(frame: Frame, command: Command, now: datetime | None) -> Frame:
    h = frame.header
    return Frame(Header(serial=h.serial, version=h.version, time=h.time if now is None else now,
                        source=h.destination, destination=h.source, command=command))


def ack_for(frame: Frame, *, now: datetime | None = None) -> Frame:
    """The confirm (3) reply: same serial, addresses swapped; time ``now`` or the frame's."""
    return _reply(frame, Command.CONFIRM, now)


def nak_for(frame: Frame, *, now: datetime | None = None) -> Frame:
    """The deny (6) reply: same serial, addresses swapped; time ``now`` or the frame's."""
    return _reply(frame, Command.DENY, now)


def heartbeat(serial: int, now: datetime, source: int, destination: int,
              *, version: tuple[int, int] = (1, 0)) -> Frame:
    """An empty send-data (2) frame, the common keep-alive."""
    return Frame(Header(serial=serial, version=version, time=now, source=source,
                        destination=destination, command=Command.SEND_DATA))


class StreamDecoder:
    """Split a byte stream (TCP, serial) into frames and errors.

    Frames may arrive back to back or split across reads. Bytes that are no frame are skipped
    up to the next ``@@`` and reported once per run as a FrameError (its reason is the first
    defect seen: BAD_START for stray bytes, OVERSIZE/BAD_END for a false ``@@``, TRUNCATED for
    a frame cut short by a newer one). The report comes when the run ends (the next frame or
    error), or every 1054 skipped bytes while it does not; ``flush()`` forces it out (e.g. on
    disconnect). A complete candidate with a bad checksum or content is
    reported with its own reason. Only a valid frame consumes its bytes: after any error the
    scan resumes one byte on, so a valid frame hidden behind garbage is never lost. The buffer
    never holds more than one maximal frame (1054 bytes) between calls. ``strict_time`` is
    passed on to ``decode_frame``.
    """

    def __init__(self, *, strict_time: bool = True) -> None:
        self._strict_time = strict_time
        self._buf = bytearray()
        self._skipped = 0
        self._skip_reason = FrameErrorReason.BAD_START
        self._quiet = 0  # bytes before this index were already reported with an error

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        """Add received bytes; return what they completed, in stream order."""
        buf = self._buf
        buf += data
        out: list[Frame | FrameError] = []
        pos = 0
        while True:
            start = buf.find(START, pos)
            if start < 0:
                keep = 1 if buf.endswith(b"@") else 0  # may be the first half of "@@"
                self._skip(pos, len(buf) - keep, FrameErrorReason.BAD_START)
                pos = len(buf) - keep
                break
            self._skip(pos, start, FrameErrorReason.BAD_START)
            pos = start
            size = self._candidate(pos)
            if isinstance(size, FrameErrorReason):  # a false start: step over one byte
                self._skip(pos, pos + 1, size)
                pos += 1
                continue
            if size == 0:  # incomplete: wait, unless a complete frame already follows
                later = self._complete_frame_after(pos)
                if later is None:
                    break
                self._skip(pos, later, FrameErrorReason.TRUNCATED)
                pos = later
                continue
            self._flush(out)
            try:
                out.append(decode_frame(bytes(buf[pos:pos + size]),
                                        strict_time=self._strict_time))
                pos += size
            except FrameError as err:
                out.append(err)
                self._quiet = max(self._quiet, pos + size)
                pos += 1
        if self._skipped >= MAX_FRAME:  # endless noise still shows, once per maximal frame
            self._flush(out)
        del buf[:pos]
        self._quiet = max(0, self._quiet - pos)
        return out

    def flush(self) -> list[FrameError]:
        """Report skipped bytes not reported yet; the partial frame in the buffer is kept."""
        out: list[Frame | FrameError] = []
        self._flush(out)
        return [x for x in out if isinstance(x, FrameError)]

    def _candidate(self, pos: int) -> int | FrameErrorReason:
        """Size of the framed candidate at ``pos``, 0 if incomplete, or why it is none."""
        buf = self._buf
        if len(buf) - pos < _LENGTH_AT + 2:
            return 0
        adu_len = int.from_bytes(buf[pos + _LENGTH_AT:pos + _LENGTH_AT + 2], "little")
        if adu_len > MAX_ADU:
            return FrameErrorReason.OVERSIZE
        size = OVERHEAD + adu_len
        if len(buf) - pos < size:
            return 0
        if buf[pos + size - 2:pos + size] != END:
            return FrameErrorReason.BAD_END
        return size

    def _complete_frame_after(self, pos: int) -> int | None:
        """Start of a later, complete, checksum-valid frame in the buffer, if any."""
        buf = self._buf
        at = buf.find(START, pos + 1)
        while at >= 0:
            size = self._candidate(at)
            if isinstance(size, int) and size and buf[at + size - 3] == checksum(
                    buf[at + 2:at + size - 3]):
                return at
            at = buf.find(START, at + 1)
        return None

    def _skip(self, start: int, end: int, reason: FrameErrorReason) -> None:
        fresh = end - max(start, self._quiet)
        if fresh > 0:
            if not self._skipped:
                self._skip_reason = reason
            self._skipped += fresh

    def _flush(self, out: list[Frame | FrameError]) -> None:
        if self._skipped:
            out.append(FrameError(self._skip_reason,
                                  f"skipped {self._skipped} byte(s) that are no frame"))
            self._skipped = 0
