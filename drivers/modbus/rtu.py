"""Modbus RTU framing (pure): CRC-16, read requests and responses, and line timing.

An RTU frame is ``unit, function, data..., crc_lo, crc_hi`` (the CRC is the only little-endian
field). Frames are delimited on the wire by 3.5 character times of silence, which the caller
keeps (``silent_interval``); this module only builds and checks bytes, so every way a reply can
be wrong is told apart: ``CrcError`` (line noise, wrong baud rate), ``FrameError`` (a clean
frame that is not the answer we asked for) and ``ModbusDeviceError`` (an exception response).

The server-side half (``parse_request``, ``encode_response``, ``encode_exception``) is what the
simulator speaks, so client and simulator share one codec and tests cross-check it with
third-party clients (mbpoll) rather than with itself alone.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.modbus.errors import CrcError, FrameError, ModbusDeviceError

READ_FUNCTIONS = (1, 2, 3, 4)  # coils, discrete inputs, holding registers, input registers
# Largest count one read may ask for (Modbus application protocol 1.1b3, 6.1-6.4).
MAX_COUNT = {1: 2000, 2: 2000, 3: 125, 4: 125}
REQUEST_LENGTH = 8  # unit, function, address (2), count (2), crc (2)
EXCEPTION_LENGTH = 5  # unit, function | 0x80, code, crc (2)
HEADER_LENGTH = 3  # unit, function, byte count (or exception code): enough to know the length
_SILENT_CHARS = 3.5
_MIN_SILENT = 0.00175  # s; the spec fixes t3.5 at 1.75 ms above 19200 baud


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` with its CRC appended, low byte first as RTU sends it."""
    return body + struct.pack("<H", crc16(body))


def crc_ok(frame: bytes) -> bool:
    """Whether the frame's last two bytes are the CRC of the rest (a CRC over the whole
    frame including its own CRC is zero)."""
    return len(frame) >= 4 and crc16(frame) == 0


def _check_read(function: int, count: int) -> None:
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function {function} is not a read (1-4)")
    if not 1 <= count <= MAX_COUNT[function]:
        raise ValueError(f"function {function} reads 1-{MAX_COUNT[function]} values, "
                         f"not {count}")


def encode_read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """The RTU frame asking device ``unit`` for ``count`` values of ``function`` (1-4)."""
    _check_read(function, count)
    if not 0 <= unit <= 255 or not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"unit {unit}, address {address}, count {count} out of range")
    return with_crc(struct.pack(">BBHH", unit, function, address, count))


def payload_length(function: int, count: int) -> int:
    """Data bytes in the answer to a read: bits pack 8 to a byte, registers take 2."""
    return (count + 7) // 8 if function in (1, 2) else 2 * count


def expected_response_length(function: int, count: int) -> int:
    """Bytes of a normal answer to reading ``count`` values with ``function``."""
    _check_read(function, count)
    return 5 + payload_length(function, count)


def declared_length(header: bytes) -> int:
    """Total frame length a response's first three bytes announce (exception or byte count).

    Lets a reader stop at the end of the frame instead of waiting for a timeout, and skip
    a clean frame that was meant for someone else.
    """
    if len(header) < HEADER_LENGTH:
        raise ValueError("need the first 3 bytes of the frame")
    return EXCEPTION_LENGTH if header[1] & 0x80 else 5 + header[2]


def parse_read_response(frame: bytes, unit: int, function: int,
                        count: int) -> list[int] | list[bool]:
    """The values in ``frame``, the answer to reading ``count`` values of ``function``.

    Raises ``CrcError`` if the frame is damaged, ``ModbusDeviceError`` for an exception
    response, and ``FrameError`` for a clean frame that does not answer this request (other
    unit or function, wrong byte count or length).
    """
    _check_read(function, count)
    if len(frame) < 4:
        raise FrameError(f"frame of {len(frame)} bytes is too short")
    if not crc_ok(frame):
        raise CrcError(f"CRC mismatch in {frame.hex(' ')}")
    if frame[0] != unit:
        raise FrameError(f"answer from unit {frame[0]}, asked unit {unit}")
    if frame[1] == function | 0x80:
        if len(frame) != EXCEPTION_LENGTH:
            raise FrameError(f"exception response of {len(frame)} bytes, expected 5")
        raise ModbusDeviceError(frame[2])
    if frame[1] != function:
        raise FrameError(f"answer to function {frame[1]}, asked function {function}")
    want = payload_length(function, count)
    if frame[2] != want:
        raise FrameError(f"byte count {frame[2]}, expected {want} for {count} values")
    if len(frame) != 5 + want:
        raise FrameError(f"frame of {len(frame)} bytes, expected {5 + want}")
    data = frame[3:-2]
    if function in (1, 2):
        return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]
    return list(struct.unpack(f">{count}H", data))


@dataclass(frozen=True, slots=True)
class RtuRequest:
    """A request as a server sees it: for reads, ``value`` is the count."""

    unit: int
    function: int
    address: int
    value: int

    @property
    def is_read(self) -> bool:
        return self.function in READ_FUNCTIONS


def parse_request(frame: bytes) -> RtuRequest:
    """A fixed-size (8-byte) request: reads (1-4) and single writes (5, 6).

    Raises ``CrcError`` for a damaged frame and ``FrameError`` for a wrong size. Multi-write
    requests (15, 16) have a variable size and are not served by the simulator.
    """
    if len(frame) != REQUEST_LENGTH:
        raise FrameError(f"request of {len(frame)} bytes, expected {REQUEST_LENGTH}")
    if not crc_ok(frame):
        raise CrcError(f"CRC mismatch in {frame.hex(' ')}")
    unit, function, address, value = struct.unpack(">BBHH", frame[:6])
    return RtuRequest(unit, function, address, value)


def encode_response(unit: int, function: int, values: Sequence[int] | Sequence[bool]) -> bytes:
    """The normal answer carrying ``values`` (bits for functions 1-2, registers for 3-4)."""
    if function in (1, 2):
        data = bytearray((len(values) + 7) // 8)
        for i, bit in enumerate(values):
            if bit:
                data[i // 8] |= 1 << (i % 8)
        payload = bytes(data)
    elif function in (3, 4):
        payload = struct.pack(f">{len(values)}H", *(int(v) for v in values))
    else:
        raise ValueError(f"function {function} is not a read (1-4)")
    if len(payload) > 252:
        raise ValueError(f"{len(values)} values do not fit one frame")
    return with_crc(bytes((unit, function, len(payload))) + payload)


def encode_exception(unit: int, function: int, code: int) -> bytes:
    """An exception response with Modbus exception ``code`` (1-255)."""
    return with_crc(bytes((unit, (function | 0x80) & 0xFF, code)))


def bits_per_char(*, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Bits one character occupies on the wire: start, data, optional parity, stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def char_time(baudrate: int, bits_per_char: int = 10) -> float:
    """Seconds one character takes on the wire."""
    return bits_per_char / baudrate


def silent_interval(baudrate: int, bits_per_char: int = 10) -> float:
    """The RTU inter-frame silence t3.5 in seconds: 3.5 characters, fixed at 1.75 ms above
    19200 baud (Modbus over serial line 1.02, 2.5.1.1), where character times get too short
    for UARTs and interrupt latency to honour."""
    if baudrate > 19200:
        return _MIN_SILENT
    return _SILENT_CHARS * char_time(baudrate, bits_per_char)


def wire_time(length: int, baudrate: int, bits_per_char: int = 10) -> float:
    """Seconds ``length`` bytes take on the wire."""
    return length * char_time(baudrate, bits_per_char)
