"""The pure RTU codec: CRC, request/response frames, error kinds and line timing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus import rtu
from drivers.modbus.errors import (
    CrcError,
    FrameError,
    ModbusDeviceError,
    ModbusError,
    ModbusFrameError,
)
from simulator.rtu import next_request

# Frames from the Modbus spec and manuals, CRCs cross-checked with pymodbus, as hex.
KNOWN_REQUESTS = [
    # (unit, function, address, count, frame)
    (1, 3, 0x0000, 10, "01 03 00 00 00 0a c5 cd"),  # the classic
    (1, 4, 0x0000, 2, "01 04 00 00 00 02 71 cb"),  # SDM630 voltage L1
    (17, 3, 0x006B, 3, "11 03 00 6b 00 03 76 87"),  # Modbus spec example
    (1, 1, 0x0000, 8, "01 01 00 00 00 08 3d cc"),
    (1, 2, 0x0000, 1, "01 02 00 00 00 01 b9 ca"),
]


@pytest.mark.parametrize(("unit", "function", "address", "count", "frame"), KNOWN_REQUESTS)
def test_known_requests(unit: int, function: int, address: int, count: int, frame: str) -> None:
    """Read requests encode to the published frames and parse back on the server side."""
    raw = bytes.fromhex(frame)
    assert rtu.encode_read_request(unit, function, address, count) == raw
    assert rtu.parse_request(raw) == rtu.RtuRequest(unit, function, address, count)


@pytest.mark.parametrize(("data", "crc"), [
    (b"", 0xFFFF),
    (b"123456789", 0x4B37),  # the CRC catalogue's check value for CRC-16/MODBUS
    (bytes.fromhex("01 03 00 00 00 0a"), 0xCDC5),
])
def test_crc16_check_values(data: bytes, crc: int) -> None:
    """CRC-16/MODBUS matches the catalogue check value and the classic frame."""
    assert rtu.crc16(data) == crc


KNOWN_RESPONSES = [
    # (frame, unit, function, count, values)
    ("01 04 04 43 66 00 00 0e 1f", 1, 4, 2, [0x4366, 0x0000]),  # 230.0 V as float32
    ("11 03 06 ae 41 56 52 43 40 49 ad", 17, 3, 3, [0xAE41, 0x5652, 0x4340]),  # spec example
    ("01 01 01 05 91 8b", 1, 1, 3, [True, False, True]),
    ("01 02 02 ff 01 39 88", 1, 2, 9, [True] * 9),
]


@pytest.mark.parametrize(("frame", "unit", "function", "count", "values"), KNOWN_RESPONSES)
def test_known_responses(frame: str, unit: int, function: int, count: int,
                         values: list[int] | list[bool]) -> None:
    """Known answers decode to their values, and the server half re-encodes them exactly."""
    raw = bytes.fromhex(frame)
    assert rtu.parse_read_response(raw, unit, function, count) == values
    assert rtu.encode_response(unit, function, values) == raw
    assert rtu.expected_response_length(function, count) == len(raw)
    assert rtu.declared_length(raw[:3]) == len(raw)


BAD_RESPONSES = [
    # (frame built from hex without CRC, or with a CRC we spoil, error, message)
    (rtu.with_crc(bytes.fromhex("02 04 04 43 66 00 00")), FrameError, "unit 2"),
    (rtu.with_crc(bytes.fromhex("01 03 04 43 66 00 00")), FrameError, "function 3"),
    (rtu.with_crc(bytes.fromhex("01 04 03 43 66 00")), FrameError, "byte count 3"),
    (rtu.with_crc(bytes.fromhex("01 04 04 43 66 00 00 00")), FrameError, "10 bytes"),
    (bytes.fromhex("01 04 04 43 66 00 00 0e 1e"), CrcError, "CRC"),
    (bytes.fromhex("01 04"), FrameError, "too short"),
    (rtu.with_crc(bytes.fromhex("01 84 02 00")), FrameError, "exception response of 6"),
]


@pytest.mark.parametrize(("frame", "error", "message"), BAD_RESPONSES)
def test_bad_responses_are_classified(frame: bytes, error: type[ModbusError],
                                      message: str) -> None:
    """Each way an answer can be wrong raises its own error kind, naming what was wrong."""
    with pytest.raises(error, match=message):
        rtu.parse_read_response(frame, 1, 4, 2)


def test_frame_errors_share_a_base() -> None:
    """CRC and framing errors are both ModbusFrameError, and neither is a device exception."""
    assert issubclass(CrcError, ModbusFrameError)
    assert issubclass(FrameError, ModbusFrameError)
    assert not issubclass(ModbusFrameError, ModbusDeviceError)


@pytest.mark.parametrize(("code", "frame"), [
    (2, "01 84 02 c2 c1"),  # illegal data address
    (6, "01 83 06 c1 32"),  # busy
])
def test_exception_responses(code: int, frame: str) -> None:
    """Exception answers raise ModbusDeviceError with their code; busy is recognised."""
    raw = bytes.fromhex(frame)
    function = raw[1] & 0x7F
    assert rtu.encode_exception(1, function, code) == raw
    assert rtu.declared_length(raw[:3]) == 5
    with pytest.raises(ModbusDeviceError) as info:
        rtu.parse_read_response(raw, 1, function, 2)
    assert info.value.code == code
    assert info.value.busy == (code == 6)


@pytest.mark.parametrize(("function", "count"), [(3, 0), (3, 126), (1, 2001), (5, 1)])
def test_impossible_reads_are_refused(function: int, count: int) -> None:
    """Counts beyond the Modbus limits and non-read functions are programming errors."""
    with pytest.raises(ValueError, match="function"):
        rtu.encode_read_request(1, function, 0, count)


@pytest.mark.parametrize(("baudrate", "bits", "seconds"), [
    (9600, 10, 3.5 * 10 / 9600),  # 3.646 ms
    (9600, 11, 3.5 * 11 / 9600),  # 8E1
    (1200, 10, 3.5 * 10 / 1200),  # Acrel's default: 29 ms
    (19200, 11, 3.5 * 11 / 19200),
    (38400, 10, 0.00175),
    (115200, 11, 0.00175),
])
def test_silent_interval(baudrate: int, bits: int, seconds: float) -> None:
    """t3.5 is 3.5 characters up to 19200 baud and fixed at 1.75 ms above."""
    assert rtu.silent_interval(baudrate, bits) == pytest.approx(seconds)


def test_bits_per_char() -> None:
    """8N1 is 10 bits on the wire, 8E1 and 8N2 are 11, 7E1 is 10."""
    assert rtu.bits_per_char() == 10
    assert rtu.bits_per_char(parity="E") == 11
    assert rtu.bits_per_char(stopbits=2) == 11
    assert rtu.bits_per_char(bytesize=7, parity="E") == 10


def test_next_request_resyncs_after_noise() -> None:
    """The simulator's frame finder skips junk before a request and keeps a partial one."""
    request = rtu.encode_read_request(3, 4, 0x46, 2)
    found, used = next_request(bytearray(b"\x00\xff\x13" + request + request[:3]))
    assert found == rtu.RtuRequest(3, 4, 0x46, 2)
    assert used == 3 + len(request)
    found, used = next_request(bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09" + request[:5]))
    assert found is None
    assert used == 14 - 7  # the last 7 bytes may be the start of a frame


units = st.integers(1, 247)
addresses = st.integers(0, 0xFFFF - 125)


@given(unit=units, function=st.sampled_from([3, 4]), address=addresses,
       words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_register_round_trip(unit: int, function: int, address: int, words: list[int]) -> None:
    """Any register read encodes, is answered by the server half and decodes to the words."""
    request = rtu.parse_request(rtu.encode_read_request(unit, function, address, len(words)))
    assert (request.unit, request.function, request.address, request.value) == (
        unit, function, address, len(words))
    frame = rtu.encode_response(unit, function, words)
    assert len(frame) == rtu.expected_response_length(function, len(words))
    assert rtu.parse_read_response(frame, unit, function, len(words)) == words


@given(unit=units, function=st.sampled_from([1, 2]),
       bits=st.lists(st.booleans(), min_size=1, max_size=2000))
def test_bit_round_trip(unit: int, function: int, bits: list[bool]) -> None:
    """Any coil or discrete-input answer decodes to the bits it carried, padding dropped."""
    frame = rtu.encode_response(unit, function, bits)
    assert len(frame) == rtu.expected_response_length(function, len(bits))
    assert rtu.parse_read_response(frame, unit, function, len(bits)) == bits


@given(words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20),
       position=st.integers(0), flip=st.integers(1, 255))
def test_any_corrupted_byte_is_caught(words: list[int], position: int, flip: int) -> None:
    """A single damaged byte anywhere in an answer never decodes to values."""
    frame = bytearray(rtu.encode_response(1, 3, words))
    frame[position % len(frame)] ^= flip
    with pytest.raises(ModbusFrameError):
        rtu.parse_read_response(bytes(frame), 1, 3, len(words))


@given(noise=st.binary(max_size=40))
def test_garbage_never_decodes_silently(noise: bytes) -> None:
    """Random bytes either fail as a Modbus error or are a genuinely valid answer."""
    try:
        values = rtu.parse_read_response(noise, 1, 3, 2)
    except ModbusError:
        return
    assert rtu.crc_ok(noise)
    assert noise[:3] == b"\x01\x03\x04"
    assert len(values) == 2
