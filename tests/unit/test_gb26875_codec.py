"""GB/T 26875.3-2011 codec: known frames, every error reason, replies, JSON, stream splitting."""

from __future__ import annotations

import itertools
import json
import typing
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.gb26875.adu import OBJECT_CLASS
from drivers.gb26875.codec import (
    MAX_FRAME,
    Adu,
    AduType,
    ClockTime,
    Command,
    ComponentAnalog,
    ComponentStatus,
    ComponentStatusFlags,
    Flags,
    Frame,
    FrameError,
    FrameErrorReason,
    Header,
    Reserved,
    StreamDecoder,
    SystemStatus,
    SystemStatusFlags,
    UitdOperationFlags,
    UitdStatusFlags,
    ack_for,
    checksum,
    decode_frame,
    decode_hex,
    describe,
    encode_frame,
    frame_to_json,
    heartbeat,
    nak_for,
)

R = FrameErrorReason
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# A type-2 fire alarm built by hand from the standard, byte by byte.
HAND_BUILT = hx(
    "40 40"  # start
    " 07 00"  # serial 7
    " 01 00"  # version 1.0
    " 2D 07 15 0F 03 18"  # sent 2024-03-15 21:07:45 (s m h D M Y-2000)
    " 56 34 12 00 00 00"  # source 0x123456
    " 01 00 00 00 00 00"  # destination 1
    " 30 00"  # ADU length 48
    " 02"  # command: send data
    " 02 01"  # ADU type 2 (component status), 1 object
    " 01 02"  # fire alarm system, system address 2
    " 2A"  # component type 42: point photoelectric smoke detector
    " 03 00 19 00"  # zone 3, position 25
    " 03 00"  # status: normal (bit 0) + fire (bit 1)
    " 33 BA C5 C2 A5 32 B2 E3 D1 CC B8 D0"  # "3号楼2层烟感" in GB 18030 (12 bytes)
    " 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"  # NUL padding to 31
    " 28 07 15 0F 03 18"  # alarm at 2024-03-15 21:07:40
    " 0C"  # checksum
    " 23 23"  # end
)

# Examples published with the standard's walkthroughs (UITD 889 <-> centre 88888, 2012-09-26).
PUB_TIME = "3A 09 1A 09 0C"  # minute 58, hour 9, day 26, month 9, year 12
UP = f"40 40 01 00 01 01 20 {PUB_TIME} 79 03 00 00 00 00 38 5B 01 00 00 00"
DOWN = f"40 40 01 00 01 01 20 {PUB_TIME} 38 5B 01 00 00 00 79 03 00 00 00 00"
PUBLISHED: list[tuple[str, str, int, AduType, dict[str, Any]]] = [
    ("smoke fire, space padded", UP + " 30 00 02 02 01 01 01 28 0A 00 02 00 02 00" + " 20" * 30
     + f" 00 02 {PUB_TIME} 46 23 23", Command.SEND_DATA, AduType.COMPONENT_STATUS,
     {"component_type": 40, "zone": 10, "position": 2, "fire": True, "normal": False,
      "description": "", "time": "2012-09-26T09:58:02"}),
    ("UITD main power fault", UP + f" 09 00 02 15 01 08 02 {PUB_TIME} 42 23 23",
     Command.SEND_DATA, AduType.UITD_STATUS, {"main_power_fault": True, "fire": False}),
    ("UITD duty-check answer", UP + f" 0A 00 02 18 01 20 01 02 {PUB_TIME} 5F 23 23",
     Command.SEND_DATA, AduType.UITD_OPERATION, {"duty_check_answer": True, "operator": 1}),
    ("UITD version 1.1", UP + " 04 00 02 19 01 01 01 C7 23 23", Command.SEND_DATA,
     AduType.UITD_VERSION, {"major": 1, "minor": 1}),
    ("UITD time", UP + f" 08 00 02 1C 01 02 {PUB_TIME} 40 23 23", Command.SEND_DATA,
     AduType.UITD_TIME, {"time": "2012-09-26T09:58:02"}),
    ("read UITD status", DOWN + " 03 00 04 51 01 00 FE 23 23", Command.REQUEST,
     AduType.READ_UITD_STATUS, {"value": 0}),
    ("read UITD version", DOWN + " 03 00 04 55 01 00 02 23 23", Command.REQUEST,
     AduType.READ_UITD_VERSION, {"value": 0}),
    ("read UITD time", DOWN + " 03 00 04 58 01 00 05 23 23", Command.REQUEST,
     AduType.READ_UITD_TIME, {"value": 0}),
    ("init UITD", DOWN + " 03 00 01 59 01 00 03 23 23", Command.CONTROL, AduType.INIT_UITD,
     {"value": 0}),
    ("sync clock", DOWN + f" 08 00 01 5A 01 02 {PUB_TIME} 7D 23 23", Command.CONTROL,
     AduType.SYNC_CLOCK, {"time": "2012-09-26T09:58:02"}),
    ("duty check, 10 min", DOWN + " 03 00 01 5B 01 0A 0F 23 23", Command.CONTROL,
     AduType.DUTY_CHECK, {"value": 10}),
    ("UITD status response", UP + f" 09 00 05 15 01 08 02 {PUB_TIME} 45 23 23",
     Command.RESPONSE, AduType.UITD_STATUS, {"main_power_fault": True}),
]


def raw_frame(adu: bytes = b"", *, command: int = 2,
              time: bytes = hx("00 00 0C 01 01 18")) -> bytes:
    """A frame around arbitrary ADU bytes, with a correct checksum."""
    body = (hx("05 00 01 00") + time + hx("01 00 00 00 00 00 02 00 00 00 00 00")
            + len(adu).to_bytes(2, "little") + bytes((command,)) + adu)
    return b"@@" + body + bytes((sum(body) & 0xFF,)) + b"##"


def with_checksum(frame: bytes) -> bytes:
    return frame[:-3] + bytes((checksum(frame[2:-3]),)) + frame[-2:]


HEADER = Header(serial=7, version=(1, 0), time=datetime(2024, 3, 15, 21, 7, 45),
                source=0x123456, destination=1, command=Command.SEND_DATA)


# --- known frames -------------------------------------------------------------------------

def test_hand_built_fire_alarm_decodes_every_field() -> None:
    """The hand-built type-2 smoke-detector fire alarm decodes to exactly the intended fields."""
    frame = decode_frame(HAND_BUILT)
    assert frame.header == HEADER
    assert frame.header.command is Command.SEND_DATA
    assert frame.adu is not None
    assert frame.adu.type is AduType.COMPONENT_STATUS
    (obj,) = frame.adu.objects
    assert obj == ComponentStatus(
        system_type=1, system_address=2, component_type=42, zone=3, position=25,
        status=ComponentStatusFlags(normal=True, fire=True), description="3号楼2层烟感",
        time=datetime(2024, 3, 15, 21, 7, 40))
    assert obj.status.fire
    assert obj.status.normal
    assert not obj.status.fault
    assert obj.status.active() == ["normal", "fire"]
    assert frame.raw_adu == HAND_BUILT[27:-3]


def test_hand_built_fire_alarm_encodes_byte_exact() -> None:
    """Encoding the intended objects reproduces the hand-built bytes."""
    obj = ComponentStatus(1, 2, 42, 3, 25, ComponentStatusFlags(normal=True, fire=True),
                          "3号楼2层烟感", datetime(2024, 3, 15, 21, 7, 40))
    frame = Frame(HEADER, Adu(AduType.COMPONENT_STATUS, (obj,)))
    assert encode_frame(frame) == HAND_BUILT
    assert len(HAND_BUILT) == 30 + 48


@pytest.mark.parametrize(("hexdata", "command", "adu_type", "fields"),
                         [p[1:] for p in PUBLISHED], ids=[p[0] for p in PUBLISHED])
def test_published_examples(hexdata: str, command: Command, adu_type: AduType,
                            fields: dict[str, Any]) -> None:
    """Frames from public walkthroughs of the standard decode, and re-encode to the same bytes."""
    data = hx(hexdata)
    frame = decode_frame(data)
    assert frame.header.command == command
    assert frame.header.time == datetime(2012, 9, 26, 9, 58, 32)
    assert frame.adu is not None
    assert frame.adu.type == adu_type
    obj = frame_to_json(frame)["adu"]["objects"][0]
    assert {k: obj[k] for k in fields} == fields
    assert encode_frame(frame) == data


def test_system_status_and_analog_value() -> None:
    """Type 1 flags and a type 3 temperature are decoded with names, scale and unit."""
    t = datetime(2025, 1, 2, 3, 4, 5)
    sys_obj = SystemStatus(1, 1, SystemStatusFlags.from_word(0b0000_0011_0000_0101), t)
    assert sys_obj.status.normal
    assert sys_obj.status.fault
    assert sys_obj.status.main_power_fault
    assert sys_obj.status.backup_power_fault
    assert not sys_obj.status.fire
    analog = ComponentAnalog(1, 1, 18, 0, 7, 3, -125, t)
    assert (analog.value, analog.unit) == (-12.5, "°C")
    frame = Frame(HEADER, Adu(AduType.COMPONENT_ANALOG, (analog,)))
    assert frame.raw_adu == hx("03 01 01 01 12 00 00 07 00 03 83 FF 05 04 03 02 01 19")
    obj = frame_to_json(decode_frame(encode_frame(frame)))["adu"]["objects"][0]
    assert obj["value"] == -12.5
    assert obj["analog_type_name"] == "temperature"
    assert obj["component_type_name"] == "temperature detector (electrical fire)"


def test_uitd_flag_bits() -> None:
    """UITD status and operation bytes map bit n to the standard's n-th meaning."""
    assert UitdStatusFlags.from_word(0x20).link_fault
    assert UitdStatusFlags.from_word(0x40).line_fault
    assert UitdOperationFlags.from_word(0x20).duty_check_answer
    assert ComponentStatusFlags.from_word(0x100).power_fault
    assert SystemStatusFlags.from_word(1 << 13).reset
    word = 0xC000 | 0x0002
    flags = SystemStatusFlags.from_word(word)
    assert (flags.fire, flags.other, flags.word) == (True, 0xC000, word)


def test_user_defined_adu_type_is_kept_raw() -> None:
    """ADU types 128..255 (and user commands) are not errors: the bytes stay in raw_adu."""
    frame = decode_frame(raw_frame(hx("80 01 DE AD BE EF")))
    assert frame.adu is None
    assert frame.raw_adu == hx("80 01 DE AD BE EF")
    user_cmd = decode_frame(raw_frame(hx("02 07 FF"), command=200))
    assert user_cmd.header.command == 200
    assert user_cmd.adu is None
    assert frame_to_json(user_cmd)["header"]["command"] == "user_200"
    assert frame_to_json(frame)["raw_adu"] == "8001deadbeef"


# --- errors ------------------------------------------------------------------------------

GOOD = raw_frame()
ERROR_CASES: list[tuple[str, bytes, FrameErrorReason]] = [
    ("bad start", b"@!" + GOOD[2:], R.BAD_START),
    ("bad end", GOOD[:-1] + b"!", R.BAD_END),
    ("bad checksum", GOOD[:-3] + bytes(((GOOD[-3] + 1) & 0xFF,)) + b"##", R.BAD_CHECKSUM),
    ("trailing byte", GOOD + b"\x00", R.BAD_LENGTH),
    ("objects short of count", raw_frame(hx("15 02 01 00 00 00 01 01 18")), R.BAD_LENGTH),
    ("bytes beyond count", raw_frame(hx("19 01 01 01 00")), R.BAD_LENGTH),
    ("ADU without count", raw_frame(hx("15")), R.BAD_LENGTH),
    ("oversize", with_checksum(GOOD[:24] + (1025).to_bytes(2, "little") + GOOD[26:]),
     R.OVERSIZE),
    ("reserved ADU type", raw_frame(hx("09 00")), R.UNKNOWN_TYPE),
    ("reserved command", raw_frame(command=7), R.UNKNOWN_COMMAND),
    ("header month 13", raw_frame(time=hx("00 00 00 01 0D 18")), R.BAD_TIME),
    ("object day 0", raw_frame(hx("1C 01 00 00 00 00 01 18")), R.BAD_TIME),
    ("shorter than a header", GOOD[:20], R.TRUNCATED),
    ("cut before the end", raw_frame(hx("19 01 01 01"))[:-4], R.TRUNCATED),
    ("empty", b"", R.TRUNCATED),
]


@pytest.mark.parametrize(("data", "reason"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_decode_errors(data: bytes, reason: FrameErrorReason) -> None:
    """Each defect raises FrameError with its own reason."""
    with pytest.raises(FrameError) as info:
        decode_frame(data)
    assert info.value.reason is reason
    assert info.value.detail


def test_encode_rejects_unrepresentable_values() -> None:
    """Values that do not fit their bytes are ValueErrors at construction or encoding."""
    t = datetime(2024, 1, 1)
    too_long = ComponentStatus(1, 1, 40, 1, 1, ComponentStatusFlags(), "很" * 16, t)
    with pytest.raises(ValueError, match="31 fit"):
        Frame(HEADER, Adu(AduType.COMPONENT_STATUS, (too_long,)))
    with pytest.raises(ValueError, match="holds"):
        Adu(AduType.UITD_TIME, (Reserved(),))
    with pytest.raises(ValueError, match="command"):
        Header(serial=1, version=(1, 0), time=t, source=0, destination=0, command=7)
    with pytest.raises(ValueError, match="serial"):
        Header(serial=70000, version=(1, 0), time=t, source=0, destination=0, command=2)
    with pytest.raises(ValueError, match="year"):
        encode_frame(heartbeat(1, datetime(1999, 12, 31), 1, 2))
    status = ComponentStatus(1, 1, 40, 1, 1, ComponentStatusFlags(), "x", t)
    Frame(HEADER, Adu(AduType.COMPONENT_STATUS, (status,) * 22))  # 2 + 22 * 46 = 1014 bytes
    with pytest.raises(ValueError, match="1024"):
        Frame(HEADER, Adu(AduType.COMPONENT_STATUS, (status,) * 23))


# --- replies -----------------------------------------------------------------------------

def test_ack_and_nak_match_published_replies() -> None:
    """ACK/NAK echo the serial, swap addresses and carry no ADU; bytes match the walkthrough."""
    request = decode_frame(hx(PUBLISHED[0][1]))
    now = datetime(2012, 9, 26, 9, 58, 35)
    ack, nak = ack_for(request, now=now), nak_for(request, now=now)
    assert encode_frame(ack) == hx(f"40 40 01 00 01 01 23 {PUB_TIME} 38 5B 01 00 00 00 "
                                   "79 03 00 00 00 00 00 00 03 AB 23 23")
    assert encode_frame(nak) == hx(f"40 40 01 00 01 01 23 {PUB_TIME} 38 5B 01 00 00 00 "
                                   "79 03 00 00 00 00 00 00 06 AE 23 23")
    assert ack.header.serial == request.header.serial
    assert (ack.header.source, ack.header.destination) == (88888, 889)
    assert ack.adu is None
    assert ack.raw_adu == b""
    assert ack_for(request).header.time == request.header.time


def test_heartbeat_is_an_empty_send_data_frame() -> None:
    """A heartbeat is command 2 with an empty ADU, 30 bytes on the wire."""
    hb = heartbeat(9, datetime(2024, 5, 6, 7, 8, 9), source=889, destination=88888)
    data = encode_frame(hb)
    assert len(data) == 30
    assert data[26] == 2
    assert data[24:26] == b"\x00\x00"
    assert decode_frame(data) == hb


# --- renderings --------------------------------------------------------------------------

def test_frame_to_json() -> None:
    """JSON output nests header and ADU objects, with flags as booleans and type names."""
    out = frame_to_json(decode_frame(HAND_BUILT))
    assert json.loads(json.dumps(out, ensure_ascii=False)) == out
    assert out["header"] == {"serial": 7, "version": [1, 0], "time": "2024-03-15T21:07:45",
                             "source": 0x123456, "destination": 1, "command": "send_data"}
    assert (out["adu"]["type"], out["adu"]["type_name"]) == (2, "component_status")
    (obj,) = out["adu"]["objects"]
    assert obj["fire"] is True
    assert obj["fault"] is False
    assert obj["normal"] is True
    assert obj["description"] == "3号楼2层烟感"
    assert obj["component_type_name"] == "point photoelectric smoke detector"
    assert obj["component_type_name_zh"] == "点型光电感烟火灾探测器"
    assert obj["system_type_name"] == "fire alarm system"
    assert (obj["zone"], obj["position"], obj["time"]) == (3, 25, "2024-03-15T21:07:40")
    assert frame_to_json(heartbeat(1, datetime(2024, 1, 1), 1, 2))["adu"] is None


def test_decode_hex_for_the_cli() -> None:
    """Hex as people paste it decodes; non-hex and bad frames are ValueErrors."""
    spaced = " ".join(f"0x{b:02X}" for b in HAND_BUILT)
    assert decode_hex(spaced) == decode_frame(HAND_BUILT)
    assert decode_hex(HAND_BUILT.hex(":")) == decode_frame(HAND_BUILT)
    with pytest.raises(ValueError, match="not hex"):
        decode_hex("40 40 zz")
    with pytest.raises(FrameError):
        decode_hex("40 40 00")


def test_describe() -> None:
    """The text form names the command, the component and the active flags."""
    text = describe(decode_frame(HAND_BUILT))
    assert "send_data" in text
    assert "component_status" in text
    assert "点型光电感烟火灾探测器" in text
    assert "[normal, fire]" in text
    assert "'3号楼2层烟感'" in text
    assert "2024-03-15 21:07:40" in text


# --- stream ------------------------------------------------------------------------------

def test_stream_back_to_back_and_split() -> None:
    """Back-to-back frames come out in order, whether fed at once or one byte at a time."""
    frames = [decode_frame(hx(p[1])) for p in PUBLISHED[:4]] + [decode_frame(HAND_BUILT)]
    data = b"".join(encode_frame(f) for f in frames)
    assert StreamDecoder().feed(data) == frames
    dec = StreamDecoder()
    assert [x for i in range(len(data)) for x in dec.feed(data[i:i + 1])] == frames


def test_stream_reports_garbage_once_and_resyncs() -> None:
    """A run of garbage (with false starts) is one error; the frame after it is kept."""
    garbage = b"\x00junk@@\xff" + b"@" * 40 + b"##@"
    out = StreamDecoder().feed(garbage + HAND_BUILT + b"more junk" + GOOD)
    assert [type(x).__name__ for x in out] == ["FrameError", "Frame", "FrameError", "Frame"]
    assert isinstance(out[0], FrameError)
    assert out[0].reason is R.BAD_START
    assert out[0].detail == f"skipped {len(garbage)} byte(s) that are no frame"
    assert out[1] == decode_frame(HAND_BUILT)
    assert out[3] == decode_frame(GOOD)


def test_stream_bad_checksum_is_one_error() -> None:
    """A corrupted frame is reported once (BAD_CHECKSUM); the next frame still decodes."""
    bad = HAND_BUILT[:40] + b"\x99" + HAND_BUILT[41:]
    out = StreamDecoder().feed(bad + GOOD)
    assert len(out) == 2
    assert isinstance(out[0], FrameError)
    assert out[0].reason is R.BAD_CHECKSUM
    assert out[1] == decode_frame(GOOD)


def test_stream_truncated_frame_then_new_frame() -> None:
    """A frame cut short by a newer one is reported TRUNCATED, the newer frame kept."""
    dec = StreamDecoder()
    assert dec.feed(HAND_BUILT[:40]) == []
    out = dec.feed(GOOD)
    assert len(out) == 2
    assert isinstance(out[0], FrameError)
    assert out[0].reason is R.TRUNCATED
    assert out[1] == decode_frame(GOOD)


def test_stream_content_error_keeps_sync() -> None:
    """A well-framed frame with bad content is reported with its reason, once."""
    out = StreamDecoder().feed(raw_frame(hx("09 00")) + GOOD)
    assert len(out) == 2
    assert isinstance(out[0], FrameError)
    assert out[0].reason is R.UNKNOWN_TYPE
    assert out[1] == decode_frame(GOOD)


def test_stream_buffer_is_bounded() -> None:
    """Endless garbage or a false start never grows the buffer past one maximal frame."""
    dec = StreamDecoder()
    for _ in range(50):
        dec.feed(b"@@" + bytes(22) + hx("00 04") + b"\x55" * 1000)
        assert len(dec._buf) <= MAX_FRAME
    noise = dec.feed(b"x" * 5000)
    assert noise
    assert all(isinstance(x, FrameError) for x in noise)
    assert len(dec._buf) <= 1


def test_stream_garbage_split_across_feeds_is_one_error() -> None:
    """Garbage arriving byte by byte is reported once, when the next frame arrives."""
    dec = StreamDecoder()
    assert [x for b in b"noise on the line" for x in dec.feed(bytes((b,)))] == []
    out = dec.feed(GOOD)
    assert len(out) == 2
    assert isinstance(out[0], FrameError)
    assert out[1] == decode_frame(GOOD)
    assert out[0].detail == "skipped 17 byte(s) that are no frame"
    dec.feed(b"tail")
    assert dec.flush() == [FrameError(R.BAD_START, "skipped 4 byte(s) that are no frame")]
    assert dec.flush() == []


# --- properties --------------------------------------------------------------------------

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
TIMES = st.datetimes(datetime(2000, 1, 1), datetime(2255, 12, 31)).map(
    lambda d: d.replace(microsecond=0))


def _texts(limit: int) -> st.SearchStrategy[str]:
    chars = st.characters(codec="utf-8", exclude_characters="\x00")
    return st.text(chars, max_size=limit).map(lambda s: s.rstrip(" ")).filter(
        lambda s: len(s.encode("gb18030")) <= limit)


FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "zone": U16, "position": U16, "raw": st.integers(-(1 << 15), (1 << 15) - 1),
    "time": TIMES, "since": TIMES,
}


def _object_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for name, hint in hints.items():
        if name in FIELD_STRATEGIES:
            kwargs[name] = FIELD_STRATEGIES[name]
        elif name == "description":
            kwargs[name] = _texts(31 if "Component" in cls.__name__ else 255)
        elif isinstance(hint, type) and issubclass(hint, Flags):
            kwargs[name] = st.integers(0, (1 << hint.BITS) - 1).map(hint.from_word)
        elif hint is int:
            kwargs[name] = U8
    return st.builds(cls, **kwargs)


@st.composite
def frames(draw: st.DrawFn, adu_type: AduType | None = None) -> Frame:
    kind = draw(st.sampled_from(list(AduType))) if adu_type is None else adu_type
    objects = draw(st.lists(_object_strategy(OBJECT_CLASS[kind]), max_size=4))
    if kind in (AduType.SYSTEM_CONFIG, AduType.UITD_CONFIG):
        objects = objects[:3]  # three 255-byte texts still fit 1024 bytes
    header = Header(serial=draw(U16), version=(draw(U8), draw(U8)), time=draw(TIMES),
                    source=draw(st.integers(0, (1 << 48) - 1)),
                    destination=draw(st.integers(0, (1 << 48) - 1)),
                    command=draw(st.sampled_from([1, 2, 4, 5])))
    return Frame(header, Adu(kind, tuple(objects)))


@pytest.mark.parametrize("adu_type", list(AduType), ids=lambda t: t.name.lower())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_every_adu_type(adu_type: AduType, data: st.DataObject) -> None:
    """encode -> decode is the identity for generated frames of every ADU type."""
    frame = data.draw(frames(adu_type))
    wire = encode_frame(frame)
    assert decode_frame(wire) == frame
    assert len(wire) == 30 + len(frame.raw_adu)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


NOISE = st.lists(st.one_of(st.binary(max_size=12),
                           st.sampled_from([b"@", b"@@", b"##", b"@@\x00", b"\x04\x00"])),
                 max_size=12).map(b"".join)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=400), NOISE), cuts=st.lists(st.integers(0, 500)))
def test_stream_never_raises(data: bytes, cuts: list[int]) -> None:
    """Any bytes in any chunking give only Frames and FrameErrors."""
    dec = StreamDecoder()
    for chunk in _chunked(data, cuts):
        out = dec.feed(chunk)
        assert all(isinstance(x, Frame | FrameError) for x in out)
        assert len(dec._buf) <= MAX_FRAME


@PROPERTY
@given(garbage=NOISE, frame=frames(), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_frame_after_garbage_is_never_lost(garbage: bytes, frame: Frame,
                                           cuts: list[int]) -> None:
    """A valid frame following arbitrary garbage always comes out, however the bytes split."""
    dec = StreamDecoder()
    out = [x for chunk in _chunked(garbage + encode_frame(frame), cuts) for x in dec.feed(chunk)]
    assert out[-1] == frame
    padded = garbage + b"@@"
    false_starts = sum(padded[i:i + 2] == b"@@" for i in range(len(garbage)))
    assert sum(isinstance(x, FrameError) for x in out) <= 1 + 2 * false_starts


@PROPERTY
@given(frame=frames())
def test_decoded_bytes_reencode_exactly(frame: Frame) -> None:
    """encode(decode(bytes)) == bytes for valid frames, including received ones."""
    wire = encode_frame(frame)
    assert encode_frame(decode_frame(wire)) == wire


def test_clock_time_used_for_sync_and_uitd_time() -> None:
    """Types 28 and 90 share the bare time object."""
    assert OBJECT_CLASS[AduType.UITD_TIME] is ClockTime is OBJECT_CLASS[AduType.SYNC_CLOCK]
