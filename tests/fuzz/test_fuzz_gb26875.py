"""Fuzzing the GB/T 26875.3 codec beyond tests/unit/test_gb26875_codec.py.

Already covered there (not repeated): arbitrary bytes in arbitrary chunks give only Frames and
FrameErrors (``test_stream_never_raises``), one frame after garbage is recovered
(``test_frame_after_garbage_is_never_lost``), encode -> decode identity for every standard ADU
type (``test_roundtrip_every_adu_type``) and byte-exact re-encoding.

Added here: well-framed candidates with a correct checksum and random ADU bytes (so the fuzzer
gets past the envelope into the ADU parsers), mutated valid frames, *several* frames embedded
in garbage at arbitrary split points (all recovered, in order), long runs of hostile noise (the
buffer stays bounded and the noise is still reported), user-defined ADU types and commands,
ACK/NAK replies and ``strict_time=False`` round trips, and the renderings of whatever decodes.
"""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.gb26875.codec import (
    MAX_FRAME,
    Frame,
    FrameError,
    Header,
    StreamDecoder,
    ack_for,
    checksum,
    decode_frame,
    describe,
    encode_frame,
    frame_to_json,
    nak_for,
)
from tests.unit.test_gb26875_codec import NOISE, _chunked, frames

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

U8 = st.integers(0, 0xFF)
TIME_BYTES = st.binary(min_size=6, max_size=6)


def framed(adu: bytes, *, command: int, time: bytes, serial: int = 1) -> bytes:
    """``adu`` in a correct envelope (start, length, checksum, end): only the content can
    be wrong, so decoding reaches the ADU and time parsers."""
    body = (serial.to_bytes(2, "little") + b"\x01\x00" + time + bytes(6) + bytes(6)
            + len(adu).to_bytes(2, "little") + bytes((command,)) + adu)
    return b"@@" + body + bytes((checksum(body),)) + b"##"


# An ADU that starts like a real one (a known type code, a plausible count) more often than not.
ADU_BYTES = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 21, 24, 25, 26, 28, 61, 62, 63, 64, 65,
                               66, 67, 68, 81, 84, 85, 86, 88, 89, 90, 91, 127, 128, 255]),
              st.integers(0, 6), st.binary(max_size=300)).map(
        lambda t: bytes((t[0], t[1])) + t[2]),
)
COMMANDS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 6]), U8)


def _check_decoded(result: Frame | FrameError) -> None:
    """Whatever decodes can be rendered (the CLI and the logs do) and re-encoded."""
    assert isinstance(result, Frame | FrameError), type(result)
    if isinstance(result, Frame):
        json.dumps(frame_to_json(result), ensure_ascii=False)
        assert isinstance(describe(result), str)
        if result.header.time is not None:
            assert len(encode_frame(result)) == 30 + len(result.raw_adu)


def _decode(data: bytes, *, strict_time: bool) -> Frame | FrameError:
    try:
        return decode_frame(data, strict_time=strict_time)
    except FrameError as err:
        return err


@FAST
@given(adu=ADU_BYTES, command=COMMANDS, time=TIME_BYTES, strict=st.booleans())
def test_well_framed_random_content_only_frame_or_frame_error(adu: bytes, command: int,
                                                              time: bytes,
                                                              strict: bool) -> None:
    """Correct envelope, random ADU/command/time: a Frame or a FrameError, nothing else, and
    a Frame can be rendered; the stream decoder agrees with decode_frame."""
    data = framed(adu[:1024], command=command, time=time)
    result = _decode(data, strict_time=strict)
    _check_decoded(result)
    streamed = StreamDecoder(strict_time=strict).feed(data)
    if isinstance(result, Frame):
        assert streamed == [result]
    else:
        assert streamed[0] == result
        assert all(isinstance(x, FrameError) for x in streamed)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid frame with a few bytes replaced, inserted, deleted, or cut, checksum fixed up
    half the time (so content defects are not all caught by the checksum)."""
    wire = bytearray(encode_frame(draw(frames())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(0, len(wire) - 1)))
        if op == "set" and wire:
            wire[at] = draw(U8)
        elif op == "insert":
            wire[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and wire:
            del wire[at:at + draw(st.integers(1, 8))]
        elif op == "cut":
            del wire[at:]
    if draw(st.booleans()) and len(wire) >= 30:
        wire[-3] = checksum(wire[2:-3])
    return bytes(wire)


@FAST
@given(data=mutated(), strict=st.booleans())
def test_mutated_frames_only_frame_or_frame_error(data: bytes, strict: bool) -> None:
    """Bit rot, insertions, deletions and truncation never raise anything but FrameError."""
    _check_decoded(_decode(data, strict_time=strict))
    dec = StreamDecoder(strict_time=strict)
    out = dec.feed(data) + dec.flush()
    assert all(isinstance(x, Frame | FrameError) for x in out)


GARBAGE = st.one_of(NOISE, st.binary(max_size=64).map(lambda b: b.replace(b"@", b"")))


@FAST
@given(parts=st.lists(st.tuples(GARBAGE, frames()), min_size=1, max_size=5),
       tail=GARBAGE, cuts=st.lists(st.integers(0, 6000), max_size=12))
def test_every_embedded_frame_is_recovered_in_order(parts: list[tuple[bytes, Frame]],
                                                    tail: bytes, cuts: list[int]) -> None:
    """Several valid frames, each behind garbage (with false ``@@`` starts), split at
    arbitrary points: every one comes out, in order (garbage may add errors, never lose a
    frame). Garbage never contains a valid frame of its own, so the frames must be exactly
    the decoded ones."""
    stream = b"".join(g + encode_frame(f) for g, f in parts) + tail
    dec = StreamDecoder()
    out: list[Frame | FrameError] = []
    for chunk in _chunked(stream, cuts):
        out += dec.feed(chunk)
        assert len(dec._buf) <= MAX_FRAME
    out += dec.flush()
    got = [x for x in out if isinstance(x, Frame)]
    want = [f for _, f in parts]
    # A garbage "@@" run can, in principle, complete a valid-checksum frame of its own; then
    # the embedded frames must still appear as a subsequence.
    it = iter(got)
    assert all(any(g == w for g in it) for w in want), (got, want)
    if not any(b"@@" in g for g, _ in parts) and b"@@" not in tail:
        assert got == want


HOSTILE = st.one_of(
    st.binary(min_size=1, max_size=300),
    # false starts whose length field promises a maximal or oversize frame
    st.tuples(st.binary(min_size=22, max_size=22), st.integers(0, 0xFFFF)).map(
        lambda t: b"@@" + t[0] + t[1].to_bytes(2, "little")),
    st.just(b"@" * 257),
    st.just(b"@@" + bytes(22) + (1024).to_bytes(2, "little") + b"\x55" * 600),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(HOSTILE, min_size=20, max_size=80), frame=frames())
def test_endless_noise_keeps_the_buffer_bounded_and_is_reported(chunks: list[bytes],
                                                                 frame: Frame) -> None:
    """Tens of kilobytes of hostile noise: the buffer never holds more than one maximal frame,
    the skip bookkeeping stays bounded, noise is reported at least once per maximal frame's
    worth of bytes, and a frame after all of it still decodes."""
    dec = StreamDecoder()
    errors = 0
    fed = 0
    for _ in range(3):  # repeat: "endless"
        for chunk in chunks:
            out = dec.feed(chunk)
            fed += len(chunk)
            assert all(isinstance(x, Frame | FrameError) for x in out)
            errors += sum(isinstance(x, FrameError) for x in out)
            assert len(dec._buf) <= MAX_FRAME
            assert 0 <= dec._quiet <= len(dec._buf)
            assert dec._skipped <= MAX_FRAME + len(chunk)
    errors += len(dec.flush())
    assert errors >= fed // (2 * MAX_FRAME + 300)
    out = dec.feed(encode_frame(frame))
    assert frame in out


@st.composite
def raw_frames(draw: st.DrawFn) -> Frame:
    """Frames the codec keeps as raw bytes: user-defined commands (128..255) with any ADU,
    and standard commands with a user-defined ADU type (128..255)."""
    user_command = draw(st.booleans())
    command = draw(st.integers(128, 255)) if user_command else draw(st.sampled_from([1, 2, 4, 5]))
    first = draw(st.integers(0, 255) if user_command else st.integers(128, 255))
    adu = bytes((first,)) + draw(st.binary(max_size=200))
    header = Header(serial=draw(st.integers(0, 0xFFFF)), version=(1, 0),
                    time=draw(st.datetimes(datetime(2000, 1, 1), datetime(2255, 12, 31))
                              .map(lambda d: d.replace(microsecond=0))),
                    source=draw(st.integers(0, (1 << 48) - 1)),
                    destination=draw(st.integers(0, (1 << 48) - 1)), command=command)
    return Frame(header, None, adu)


@FAST
@given(frame=raw_frames())
def test_user_defined_commands_and_adu_types_round_trip(frame: Frame) -> None:
    """Not covered by the unit properties: user-defined frames survive encode -> decode."""
    assert decode_frame(encode_frame(frame)) == frame
    _check_decoded(frame)


@FAST
@given(frame=frames(), now=st.none() | st.datetimes(datetime(2000, 1, 1), datetime(2255, 1, 1))
       .map(lambda d: d.replace(microsecond=0)))
def test_replies_round_trip_and_strict_time_off_agrees(frame: Frame, now: datetime | None) -> None:
    """ACK and NAK of any frame round-trip; with valid times, ``strict_time=False`` decodes
    exactly as strict decoding does."""
    for reply in (ack_for(frame, now=now), nak_for(frame, now=now)):
        assert decode_frame(encode_frame(reply)) == reply
    wire = encode_frame(frame)
    assert decode_frame(wire, strict_time=False) == decode_frame(wire)
