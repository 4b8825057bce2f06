"""FirePanelLink against a UITD emulator over real TCP sockets and a real socat pty pair."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from core.measurements import Quantity
from drivers.gb26875.codec import Command, Frame, checksum, decode_frame
from drivers.gb26875.link import FirePanelLink
from drivers.gb26875.session import Backoff
from simulator.pty import SocatPair
from simulator.services import free_port
from simulator.uitd import UitdPeer, UitdServer, fire_frame
from tests.services import eventually, missing
from tests.unit.test_gb26875_codec import HAND_BUILT

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
UITD = 0x123456  # HAND_BUILT's source address
CENTRE = 1  # HAND_BUILT's destination address
FAST = Backoff(base=0.1, cap=0.5, jitter=0.1)


def with_checksum(frame: bytes) -> bytes:
    return frame[:-3] + bytes((checksum(frame[2:-3]),)) + frame[-2:]


def bad_checksum(frame: bytes) -> bytes:
    return frame[:-3] + bytes(((frame[-3] + 1) & 0xFF,)) + frame[-2:]


def empty_send_data(serial: int) -> bytes:
    """A heartbeat: HAND_BUILT's header with no ADU."""
    head = bytearray(HAND_BUILT[:27])
    head[2:4] = serial.to_bytes(2, "little")
    head[24:26] = b"\x00\x00"
    return with_checksum(bytes(head) + b"\x00##")


class Sink:
    """Collects delivered frames; optionally raises to test that the link survives it."""

    def __init__(self, *, fail: bool = False) -> None:
        self.frames: list[Frame] = []
        self.fail = fail

    def __call__(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.fail:
            raise RuntimeError("consumer bug")


@asynccontextmanager
async def tcp_server_link(sink: Sink, **kwargs: Any) -> AsyncIterator[FirePanelLink]:
    async with FirePanelLink(name="panel-1", transport="tcp-server", port=0, host=HOST,
                             baudrate=9600, on_frame=sink, **kwargs) as link:
        yield link


@asynccontextmanager
async def uitd(link: FirePanelLink) -> AsyncIterator[UitdPeer]:
    port = link.listening_port
    assert port is not None
    peer = await UitdPeer.tcp(HOST, port)
    try:
        yield peer
    finally:
        await peer.close()


def assert_reply(frame: Frame, command: Command, serial: int) -> None:
    assert frame.header.command is command
    assert frame.header.serial == serial
    assert frame.header.source == CENTRE
    assert frame.header.destination == UITD
    assert frame.raw_adu == b""


@pytest.fixture
def pair() -> Iterator[SocatPair]:
    if not SocatPair.available():
        missing("socat")
    with SocatPair() as p:
        yield p


# --- tcp-server ---------------------------------------------------------------------------

async def test_tcp_fire_frame_is_acked_and_delivered_once() -> None:
    """The hand-built fire alarm over TCP gets an ACK with serial 7 and reaches on_frame once."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(HAND_BUILT)
        assert_reply(await peer.reply(), Command.CONFIRM, 7)
        assert sink.frames == [decode_frame(HAND_BUILT)]
        assert link.state.acks == 1
        assert link.state.connected


async def test_tcp_resend_is_acked_again_but_not_delivered_twice() -> None:
    """A resend with the same serial gets a second ACK; on_frame still saw the fire once."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        for _ in range(2):
            await peer.write(HAND_BUILT)
            assert_reply(await peer.reply(), Command.CONFIRM, 7)
        assert len(sink.frames) == 1
        assert link.state.duplicates == 1
        assert link.state.acks == 2


async def test_tcp_same_frame_on_a_new_connection_is_delivered_again() -> None:
    """Resends are recognised within one connection only: the same serial and data on a new
    connection may be a rebooted UITD (serials restart) reporting a new fire, so it is
    delivered again (a fire alarm already active absorbs a true resend)."""
    sink = Sink()
    async with tcp_server_link(sink) as link:
        for _ in range(2):
            async with uitd(link) as peer:
                await peer.write(HAND_BUILT)
                assert_reply(await peer.reply(), Command.CONFIRM, 7)
        assert len(sink.frames) == 2
        assert link.state.duplicates == 0


async def test_tcp_garbage_before_a_frame_still_delivers_it() -> None:
    """Line noise in front of a frame is skipped and counted; the frame is ACKed and delivered."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(b"\x00\xff noise @" + HAND_BUILT)
        assert_reply(await peer.reply(), Command.CONFIRM, 7)
        assert sink.frames == [decode_frame(HAND_BUILT)]
        assert link.state.errors == 1
        assert link.state.naks == 0


async def test_tcp_bad_checksum_is_naked() -> None:
    """A frame with a bad checksum is NAKed with its own serial and not delivered."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(bad_checksum(HAND_BUILT))
        assert_reply(await peer.reply(), Command.DENY, 7)
        assert sink.frames == []
        assert link.state.naks == 1
        # the resend after the NAK goes through
        await peer.write(HAND_BUILT)
        assert_reply(await peer.reply(), Command.CONFIRM, 7)
        assert len(sink.frames) == 1


async def test_tcp_two_frames_in_one_write_and_one_frame_split_across_writes() -> None:
    """Back-to-back frames are ACKed in order; a frame cut in three writes is ACKed once."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(fire_frame(1) + fire_frame(2, zone=4))
        assert_reply(await peer.reply(), Command.CONFIRM, 1)
        assert_reply(await peer.reply(), Command.CONFIRM, 2)
        split = fire_frame(3, zone=5)
        for part in (split[:5], split[5:40], split[40:]):
            await peer.write(part)
            await asyncio.sleep(0.05)
        assert_reply(await peer.reply(), Command.CONFIRM, 3)
        assert [f.header.serial for f in sink.frames] == [1, 2, 3]
        assert await peer.no_reply()
        assert link.state.errors == 0


async def test_tcp_fire_with_an_unset_panel_clock_is_acked_and_delivered() -> None:
    """Day 0 in the header and object time labels: ACKed and delivered with time=None."""
    data = bytearray(HAND_BUILT)
    data[9] = 0  # header day
    data[-6] = 0  # object day (the object's time label ends 3 bytes before the checksum)
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(with_checksum(bytes(data)))
        reply = await peer.reply()
        assert_reply(reply, Command.CONFIRM, 7)
        (frame,) = sink.frames
        assert frame.header.time is None
        assert frame.adu is not None
        assert frame.adu.objects[0].time is None  # type: ignore[union-attr]
        assert link.state.naks == 0


async def test_tcp_heartbeat_is_acked_not_delivered() -> None:
    """An empty send-data frame is ACKed and counts as liveness, but is no event."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        await peer.write(empty_send_data(9))
        assert_reply(await peer.reply(), Command.CONFIRM, 9)
        assert sink.frames == []
        assert link.state.heartbeats == 1
        assert link.state.last_frame_at is not None


async def test_tcp_failing_consumer_does_not_break_the_link() -> None:
    """on_frame raising is counted; later frames are still ACKed and delivered."""
    sink = Sink(fail=True)
    async with tcp_server_link(sink) as link, uitd(link) as peer:
        for serial in (1, 2):
            await peer.write(fire_frame(serial))
            assert_reply(await peer.reply(), Command.CONFIRM, serial)
        assert len(sink.frames) == 2
        assert link.state.callback_errors == 2


async def test_tcp_several_uitds_at_once() -> None:
    """Two simultaneous connections are served independently."""
    sink = Sink()
    async with tcp_server_link(sink) as link, uitd(link) as one, uitd(link) as two:
        await eventually(lambda: link.state.connections == 2, what="two connections")
        await one.write(fire_frame(1, source=11))
        await two.write(fire_frame(1, source=22))
        headers = [(await one.reply()).header, (await two.reply()).header]
        assert [(h.serial, h.destination) for h in headers] == [(1, 11), (1, 22)]
        assert sorted(f.header.source for f in sink.frames) == [11, 22]


async def test_silent_link_turns_offline_and_recovers() -> None:
    """No frame for longer than heartbeat_timeout is a communication fault; a frame ends it."""
    sink = Sink()
    loop = asyncio.get_running_loop()
    async with tcp_server_link(sink, heartbeat_timeout=0.5) as link, uitd(link) as peer:
        await peer.write(empty_send_data(1))
        await peer.reply()
        assert link.state.online
        started = loop.time()
        await eventually(lambda: not link.state.online, within=5.0, what="offline")
        assert loop.time() - started >= 0.3  # not before the timeout (generous bound)
        readings = {r.quantity: r.value for r in link.health_readings(link._clock())}
        assert readings[Quantity.ONLINE] == 0.0
        assert readings[Quantity.ERRORS] == 0.0
        await peer.write(empty_send_data(2))
        await peer.reply()
        assert link.state.online
        assert link.health_readings(link._clock())[0].value == 1.0


# --- serial over a socat pty pair ---------------------------------------------------------

@asynccontextmanager
async def serial_link(pair: SocatPair, sink: Sink) -> AsyncIterator[FirePanelLink]:
    async with FirePanelLink(name="panel-tty", transport="serial", port=str(pair.a), host=None,
                             baudrate=9600, on_frame=sink, backoff=FAST) as link:
        await eventually(lambda: link.state.connected, what="tty open")
        yield link


async def test_serial_fire_frame_acked_and_resend_not_delivered_twice(pair: SocatPair) -> None:
    """Over the pty: ACK with the same serial, delivered once, a resend ACKed but not delivered."""
    sink = Sink()
    async with serial_link(pair, sink) as link:
        peer = await UitdPeer.serial(str(pair.b))
        try:
            for _ in range(2):
                await peer.write(HAND_BUILT)
                assert_reply(await peer.reply(), Command.CONFIRM, 7)
        finally:
            await peer.close()
        assert sink.frames == [decode_frame(HAND_BUILT)]
        assert link.state.duplicates == 1


async def test_serial_garbage_split_and_bad_checksum(pair: SocatPair) -> None:
    """Over the pty: noise then a split frame is delivered; a bad checksum is NAKed."""
    sink = Sink()
    async with serial_link(pair, sink) as link:
        peer = await UitdPeer.serial(str(pair.b))
        try:
            frame = fire_frame(21)
            await peer.write(b"\x13\x37garbage" + frame[:10])
            await asyncio.sleep(0.05)
            await peer.write(frame[10:])
            assert_reply(await peer.reply(), Command.CONFIRM, 21)
            await peer.write(bad_checksum(fire_frame(22)))
            assert_reply(await peer.reply(), Command.DENY, 22)
        finally:
            await peer.close()
        assert [f.header.serial for f in sink.frames] == [21]
        assert link.state.naks == 1


async def test_serial_link_reopens_after_the_adapter_returns(pair: SocatPair) -> None:
    """Unplugging the pty pair drops the link; it reopens by itself once the pair is back."""
    sink = Sink()
    async with serial_link(pair, sink) as link:
        await asyncio.to_thread(pair.stop)
        await eventually(lambda: not link.state.connected, what="tty lost")
        await asyncio.to_thread(pair.start)
        await eventually(lambda: link.state.connected, within=10.0, what="tty reopened")
        peer = await UitdPeer.serial(str(pair.b))
        try:
            await peer.write(fire_frame(5))
            assert_reply(await peer.reply(), Command.CONFIRM, 5)
        finally:
            await peer.close()
        assert len(sink.frames) == 1


# --- tcp-client ---------------------------------------------------------------------------

async def test_tcp_client_reconnects_after_the_server_restarts() -> None:
    """We connect out; when the UITD side restarts we reconnect and frames flow again."""
    sink = Sink()
    port = free_port()
    server = UitdServer(host=HOST, port=port)
    await server.start()
    try:
        async with FirePanelLink(name="panel-out", transport="tcp-client", port=port, host=HOST,
                                 baudrate=9600, on_frame=sink, backoff=FAST) as link:
            peer = await asyncio.wait_for(server.accepted.get(), 5)
            await peer.write(fire_frame(1))
            assert_reply(await peer.reply(), Command.CONFIRM, 1)
            await server.stop()
            await eventually(lambda: not link.state.connected, what="disconnect seen")
            await asyncio.sleep(0.3)  # a few failed attempts against the closed port
            await server.start()
            peer = await asyncio.wait_for(server.accepted.get(), 10)
            await peer.write(fire_frame(2))
            assert_reply(await peer.reply(), Command.CONFIRM, 2)
            assert [f.header.serial for f in sink.frames] == [1, 2]
            assert link.state.connected
    finally:
        await server.stop()
