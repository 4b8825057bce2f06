"""One fire-panel connection (TCP or tty) as an asyncio protocol: buffering, frame candidates
and NAK decisions; it reports to its ``FirePanelLink``."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from drivers.gb26875.codec import (
    MAX_ADU,
    Frame,
    FrameError,
    FrameErrorReason,
    StreamDecoder,
    decode_frame,
    encode_frame,
)

if TYPE_CHECKING:
    from drivers.gb26875.link import FirePanelLink

from drivers.gb26875.session import ResendFilter

log = logging.getLogger("drivers.gb26875.link")

_START = b"@@"
_END = b"##"
_OVERHEAD = 30
_LENGTH_AT = 24
# Errors about complete candidates (as opposed to skipped runs of bytes): these have a serial.
CANDIDATE_REASONS = frozenset({
    FrameErrorReason.BAD_CHECKSUM, FrameErrorReason.BAD_LENGTH, FrameErrorReason.UNKNOWN_TYPE,
    FrameErrorReason.UNKNOWN_COMMAND, FrameErrorReason.BAD_TIME,
})


def time_label(ts: float) -> datetime | None:
    """Our time label for replies: local naive time, None when it cannot be sent."""
    try:
        now = datetime.fromtimestamp(ts)
    except (OverflowError, OSError, ValueError):
        return None
    return now if 2000 <= now.year <= 2255 else None


def _candidate_size(buf: bytes | bytearray, pos: int) -> int:
    """Size of a complete ``@@ .. ##`` envelope at ``pos``, or 0."""
    if len(buf) - pos < _LENGTH_AT + 2:
        return 0
    adu_len = int.from_bytes(buf[pos + _LENGTH_AT:pos + _LENGTH_AT + 2], "little")
    size = _OVERHEAD + adu_len
    if adu_len > MAX_ADU or len(buf) - pos < size or buf[pos + size - 2:pos + size] != _END:
        return 0
    return size


class Connection(asyncio.Protocol):
    """One byte stream (a TCP connection or the tty): its decoder and its reply channel."""

    def __init__(self, link: FirePanelLink, label: str) -> None:
        self.link = link
        self.label = label
        self.source = label  # the peer's address: the per-source connection cap's key
        self.opened_at = link._monotonic()
        self.valid_at: float | None = None  # last valid frame (monotonic)
        # resends are recognised within one session only: a new connection is a new session
        self.resends = ResendFilter()
        self.decoder = StreamDecoder(strict_time=False)
        self.transport: asyncio.WriteTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        # the recent bytes, to find the serial number of a candidate the decoder rejected
        self.recent = bytearray()
        self.recent_base = 0  # stream offset of recent[0]
        self.nak_floor = 0  # stream offset from which rejected candidates are searched

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            host = str(peer[0]).removeprefix("::ffff:")  # IPv4 on a dual-stack socket
            self.source = host
            self.label = f"{host}:{peer[1]}"
        self.link._opened(self)

    def data_received(self, data: bytes) -> None:
        self.link._received(self, data)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(self, exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, frame: Frame) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(frame))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, unsent bytes dropped: a peer that does not read cannot hold it."""
        if self.transport is not None:
            self.transport.abort()

    def idle_since(self) -> float:
        return self.opened_at if self.valid_at is None else self.valid_at

    def eviction_order(self) -> tuple[bool, float]:
        """Sorts first what to close first: never sent a valid frame, then idle longest."""
        return self.valid_at is not None, self.idle_since()

    def rejected_candidate(self, error: FrameError) -> bytes | None:
        """The bytes of the complete candidate the decoder rejected with ``error``, if found."""
        buf = self.recent
        pos = max(0, self.nak_floor - self.recent_base)
        while (pos := buf.find(_START, pos)) >= 0:
            size = _candidate_size(buf, pos)
            if size:
                candidate = bytes(buf[pos:pos + size])
                try:
                    decode_frame(candidate, strict_time=False)
                except FrameError as err:
                    if err == error:
                        self.nak_floor = self.recent_base + pos + 1
                        return candidate
            pos += 1
        return None

