"""The pure parts of the fire-panel link: lenient time decoding, resend filter, backoff, health."""

from __future__ import annotations

import pytest

from core.measurements import Quantity
from drivers.gb26875.codec import (
    FrameError,
    FrameErrorReason,
    StreamDecoder,
    decode_frame,
    encode_frame,
)
from drivers.gb26875.link import FirePanelLink
from drivers.gb26875.session import Backoff, ResendFilter
from tests.unit.test_gb26875_codec import HAND_BUILT


def unset_clock(frame: bytes) -> bytes:
    """HAND_BUILT with day 0 in the header and object time labels, checksum fixed."""
    data = bytearray(frame)
    data[9] = 0
    data[-6] = 0
    data[-3] = sum(data[2:-3]) & 0xFF
    return bytes(data)


def test_strict_decoding_still_rejects_an_impossible_time() -> None:
    """By default an impossible time label is a BAD_TIME frame error, as before."""
    with pytest.raises(FrameError) as info:
        decode_frame(unset_clock(HAND_BUILT))
    assert info.value.reason is FrameErrorReason.BAD_TIME


def test_lenient_decoding_gives_time_none() -> None:
    """strict_time=False decodes times as None; the header's encodes as zeros, the ADU as sent."""
    frame = decode_frame(unset_clock(HAND_BUILT), strict_time=False)
    assert frame.header.time is None
    assert frame.adu is not None
    assert frame.adu.objects[0].time is None  # type: ignore[union-attr]
    assert frame.adu.objects[0].status.fire  # type: ignore[union-attr]
    encoded = encode_frame(frame)
    assert encoded[6:12] == bytes(6)
    assert encoded[27:-3] == unset_clock(HAND_BUILT)[27:-3]  # raw ADU kept byte for byte


def test_lenient_stream_decoder() -> None:
    """StreamDecoder(strict_time=False) yields the frame where the strict one yields an error."""
    data = unset_clock(HAND_BUILT)
    assert isinstance(StreamDecoder().feed(data)[0], FrameError)
    (frame,) = StreamDecoder(strict_time=False).feed(data)
    assert not isinstance(frame, FrameError)
    assert frame.header.serial == 7


def test_resend_filter_same_serial_same_adu_is_a_resend() -> None:
    """The second sighting of (source, serial, ADU) within the window is a resend."""
    f = ResendFilter()
    assert not f.seen(1, 7, 111, 0.0)
    assert f.seen(1, 7, 111, 5.0)
    assert not f.seen(2, 7, 111, 5.0)  # another UITD


def test_resend_filter_new_adu_or_old_sighting_is_new() -> None:
    """A reused serial with other data, or after the window, is delivered again."""
    f = ResendFilter(window=600.0)
    assert not f.seen(1, 7, 111, 0.0)
    assert not f.seen(1, 7, 222, 1.0)
    assert not f.seen(1, 7, 222, 700.0)


def test_resend_filter_forgets_beyond_its_memory() -> None:
    """Only the last ``memory`` serials per source are remembered."""
    f = ResendFilter(memory=4)
    for serial in range(6):
        f.seen(1, serial, 0, 0.0)
    assert not f.seen(1, 0, 0, 1.0)
    assert f.seen(1, 5, 0, 1.0)


def test_resend_filter_bounds_sources() -> None:
    """The least recently heard source is forgotten beyond ``max_sources``."""
    f = ResendFilter(max_sources=2)
    f.seen("a", 1, 0, 0.0)
    f.seen("b", 1, 0, 0.0)
    f.seen("c", 1, 0, 0.0)
    assert not f.seen("a", 1, 0, 1.0)
    assert f.seen("c", 1, 0, 1.0)


def test_backoff_is_capped_and_jittered() -> None:
    """Delays double from base, stay within the jitter band and never exceed the cap."""
    b = Backoff(base=1.0, cap=8.0, jitter=0.2)
    assert b.delay(1, lambda: 0.5) == 1.0
    assert b.delay(3, lambda: 0.5) == 4.0
    assert b.delay(3, lambda: 0.0) == pytest.approx(3.2)
    assert b.delay(30, lambda: 1.0) == 8.0


def test_health_readings_follow_the_heartbeat_timeout() -> None:
    """ONLINE is 1 within heartbeat_timeout of the last frame and 0 after, on the monotonic
    clock (the readings' own timestamp is wall time); ERRORS is the count; a bare connection
    is no sign of life."""
    mono = [0.0]
    link = FirePanelLink(name="p", transport="tcp-server", port=0, host=None, baudrate=9600,
                         on_frame=lambda f: None, heartbeat_timeout=90.0,
                         monotonic=lambda: mono[0])
    assert link.health_readings(5e8)[0].value == 0.0  # never started, never heard
    link.state.connected = True
    link.state.connected_at = 1000.0
    mono[0] = 1050.0
    assert link.health_readings(5e8)[0].value == 0.0  # connected is not heard from
    link.state.last_frame_at = 1000.0
    link.state.errors = 3
    mono[0] = 1090.0
    assert [(r.ts, r.quantity, r.value, r.device) for r in link.health_readings(5e8)] == [
        (5e8, Quantity.ONLINE, 1.0, "p"), (5e8, Quantity.ERRORS, 3.0, "p")]
    mono[0] = 1090.5
    assert link.health_readings(1e9)[0].value == 0.0  # a wall time far ahead changes nothing


def test_resend_filter_time_label_going_back_is_a_new_session() -> None:
    """A frame whose time label is more than the window before the previous one (a rebooted
    UITD with its clock reset) is never a resend, even with the same serial and data."""
    from datetime import datetime, timedelta
    f = ResendFilter(window=60.0)
    t = datetime(2024, 3, 15, 21, 7, 45)
    assert not f.seen(1, 7, 111, 0.0, t)
    assert f.seen(1, 7, 111, 5.0, t)  # a resend carries the same label
    assert f.seen(1, 7, 111, 6.0, t - timedelta(seconds=30))  # within the window: still one
    assert not f.seen(1, 7, 111, 7.0, t - timedelta(days=3000))  # clock reset: new session


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"transport": "udp", "port": 1}, "unknown transport"),
    ({"transport": "tcp-server", "port": "/dev/ttyS0"}, "port must be a number"),
    ({"transport": "tcp-client", "port": 9000}, "needs a host"),
    ({"transport": "serial", "port": "/dev/ttyS0", "address": 1 << 48}, "6 bytes"),
])
def test_constructor_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    """Bad settings fail at construction with the panel's name in the message."""
    with pytest.raises(ValueError, match=message) as info:
        FirePanelLink(name="panel-9", host=None, baudrate=9600, on_frame=lambda f: None,
                      **kwargs)  # type: ignore[arg-type]
    assert "panel-9" in str(info.value)
