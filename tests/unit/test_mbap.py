"""Modbus TCP framing (pure): requests, answers, exceptions and frames that do not fit."""

from __future__ import annotations

import struct

import pytest
from pydantic import ValidationError

from daemon.config import BusConfig
from drivers.modbus.errors import FrameError, ModbusDeviceError
from drivers.modbus.mbap import encode_read, frame_length, parse_read


def _answer(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def test_request_is_the_spec_layout() -> None:
    # Modbus Messaging on TCP/IP Implementation Guide, 4.1: MBAP then PDU, big-endian
    assert encode_read(0x1234, 7, 4, 0x000C, 2).hex() == "12340000000607" "04000c0002"
    with pytest.raises(ValueError, match="cannot read 126"):
        encode_read(1, 1, 3, 0, 126)


def test_registers_bits_and_exceptions_are_decoded() -> None:
    registers = _answer(5, 1, bytes([4, 4, 0x43, 0x67, 0x00, 0x00]))
    assert frame_length(registers) == len(registers)
    assert parse_read(registers, 1, 4, 2) == [0x4367, 0x0000]
    coils = _answer(6, 1, bytes([1, 2, 0b0000_0101, 0b1]))
    assert parse_read(coils, 1, 1, 9) == [True, False, True, False, False, False, False, False,
                                          True]
    with pytest.raises(ModbusDeviceError) as exc:
        parse_read(_answer(7, 1, bytes([0x84, 2])), 1, 4, 2)
    assert exc.value.code == 2


@pytest.mark.parametrize(("frame", "why"), [
    (_answer(1, 2, bytes([4, 4, 0, 0, 0, 0])), "unit 2"),
    (_answer(1, 1, bytes([3, 4, 0, 0, 0, 0])), "function 3"),
    (_answer(1, 1, bytes([4, 2, 0, 0])), "byte count 2"),
    (_answer(1, 1, bytes([4, 4, 0, 0])), "byte count 4"),
])
def test_an_answer_that_does_not_fit_its_read_is_a_frame_error(frame: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        parse_read(frame, 1, 4, 2)


def test_impossible_headers_cannot_be_resynchronised() -> None:
    with pytest.raises(FrameError, match="protocol 1"):
        frame_length(struct.pack(">HHHB", 1, 1, 6, 1))
    with pytest.raises(FrameError, match="length 4000"):
        frame_length(struct.pack(">HHHB", 1, 0, 4000, 1))


def test_concurrency_is_for_tcp_only() -> None:
    tcp = BusConfig.model_validate({"name": "gw", "type": "tcp", "host": "127.0.0.1",
                                    "port": 502, "concurrency": 4})
    assert tcp.concurrency == 4
    with pytest.raises(ValidationError, match="concurrency = 2: a rtu bus carries one frame"):
        BusConfig.model_validate({"name": "line", "type": "rtu", "port": "/dev/ttyUSB0",
                                  "concurrency": 2})
