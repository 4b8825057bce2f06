"""Modbus TCP framing (pure): MBAP read requests and the answers to them.

An MBAP frame is ``transaction id (2), protocol id 0 (2), length (2), unit (1), PDU``, all
big-endian; ``length`` counts the unit byte and the PDU. The transaction id is what lets a
client keep several requests in flight on one connection and match each answer to its request
(Modbus Messaging on TCP/IP Implementation Guide v1.0b, 3.1.3 and 4.2). The PDU is the one
RTU carries, without the CRC (TCP checks the bytes), so the checks below are those of
``drivers.modbus.rtu.parse_read_response`` minus the CRC.
"""

from __future__ import annotations

import struct

from drivers.modbus.errors import FrameError, ModbusDeviceError
from drivers.modbus.rtu import MAX_COUNT, payload_length

HEADER = struct.Struct(">HHHB")  # transaction, protocol, length, unit
HEADER_LENGTH = HEADER.size  # 7
_REQUEST = struct.Struct(">HHHBBHH")
MAX_FRAME = 260  # 7-byte header + a 253-byte PDU: a larger length field is garbage


def encode_read(transaction: int, unit: int, function: int, address: int, count: int) -> bytes:
    """The MBAP frame asking ``unit`` for ``count`` values of ``function`` (1-4)."""
    if function not in MAX_COUNT or not 1 <= count <= MAX_COUNT[function]:
        raise ValueError(f"function {function} cannot read {count} values")
    if not 0 <= unit <= 255 or not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"unit {unit}, address {address}, count {count} out of range")
    return _REQUEST.pack(transaction & 0xFFFF, 0, 6, unit, function, address, count)


def frame_length(header: bytes | bytearray | memoryview) -> int:
    """Total bytes of the frame whose first 7 bytes are ``header``; ``FrameError`` for a
    length no Modbus frame has (the stream cannot be resynchronised after that)."""
    _, protocol, length, _ = HEADER.unpack_from(header)
    if protocol != 0 or not 2 <= length <= MAX_FRAME - 6:
        raise FrameError(f"MBAP header with protocol {protocol}, length {length}")
    return 6 + int(length)


def parse_read(frame: bytes, unit: int, function: int, count: int) -> list[int] | list[bool]:
    """The values in a whole MBAP ``frame`` answering a read of ``count`` values.

    ``ModbusDeviceError`` for an exception response, ``FrameError`` for a frame that does
    not answer this request (other unit or function, wrong byte count or length)."""
    if len(frame) < HEADER_LENGTH + 2:
        raise FrameError(f"frame of {len(frame)} bytes is too short")
    got_unit, got_function = frame[6], frame[7]
    if got_unit != unit:
        raise FrameError(f"answer from unit {got_unit}, asked unit {unit}")
    if got_function == function | 0x80:
        if len(frame) != HEADER_LENGTH + 2:
            raise FrameError(f"exception response of {len(frame)} bytes, expected 9")
        raise ModbusDeviceError(frame[8])
    if got_function != function:
        raise FrameError(f"answer to function {got_function}, asked function {function}")
    want = payload_length(function, count)
    if len(frame) != HEADER_LENGTH + 2 + want or frame[8] != want:
        raise FrameError(f"{len(frame)}-byte frame with byte count {frame[8]}, expected "
                         f"{want} data bytes for {count} values")
    if function in (1, 2):
        data = frame[9:]
        return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(count)]
    return list(struct.unpack_from(f">{count}H", frame, 9))
