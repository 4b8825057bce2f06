"""Modbus RTU transports: a serial line (RS-485 adapter) and RTU frames tunnelled over TCP.

Both share one framing/IO core (``_RtuLink``) on top of the pure codec in
``drivers.modbus.rtu``. One transaction is:

1. wait until the line has been quiet for the silent interval (t3.5) plus ``pause`` since the
   last byte of the previous frame, and throw away whatever arrived since (line noise, the late
   answer of a device that timed out);
2. write the request and read the answer, sized by its own header (5 bytes for an exception,
   ``5 + byte count`` otherwise), so a good answer never waits for a timeout;
3. classify what went wrong, per unit:

   - nothing within ``timeout``: ``ModbusTimeoutError``; the input is flushed, the port stays
     open (a dead device on a shared line must not cost its neighbours a reconnect);
   - a damaged or mis-sized frame: ``CrcError`` / ``FrameError``; the line is drained until it
     has been quiet for a while, so the rest of the garbage cannot corrupt the next answer;
   - a clean frame from another unit (a late answer): skipped, and we keep waiting for ours;
   - only OS errors on the port itself (adapter unplugged, connection refused or reset) are
     ``ModbusLinkError``, after which the caller closes and reconnects.

Counters (``crc_errors``, ``frame_errors``, ``timeouts``) are kept per unit and survive
reconnects; the poller publishes them as health readings.

We do our own framing instead of pymodbus's serial client so that the silent interval, the
per-device timeouts that keep the port open and the error kinds are exact and countable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import serial_asyncio_fast

from drivers.modbus import rtu
from drivers.modbus.errors import (
    CrcError,
    FrameError,
    LinkStats,
    ModbusFrameError,
    ModbusLinkError,
    ModbusTimeoutError,
)
from drivers.profile import RegisterType

log = logging.getLogger(__name__)

# After a garbled answer, the line counts as quiet once nothing arrived for this long. At least
# 20 ms because USB serial adapters deliver bytes in bursts (the FTDI latency timer is 16 ms),
# so a real RS-485 silent interval can look longer or shorter from userspace.
_MIN_DRAIN_QUIET = 0.020
_CLOSE_WAIT = 1.0  # s to wait for the port to be released after close


class _Receiver(asyncio.Protocol):
    """Buffers received bytes and lets the transport wait for a byte count until a deadline.

    A plain ``asyncio.Protocol`` rather than a ``StreamReader``: framing needs to look at what
    is buffered without consuming it, drop stale bytes without waiting, and know when the last
    byte arrived (for the silent interval).
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.last_rx = 0.0  # loop time of the last received byte
        self.error: BaseException | None = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_rx = self._loop.time()
        self._changed.set()

    def eof_received(self) -> bool | None:
        return None  # TCP: the peer closed; let the transport close and report it lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.closed.set()
        self._changed.set()

    def take(self) -> bytes:
        """Everything buffered, removed from the buffer."""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def wait_for(self, count: int, deadline: float) -> bool:
        """Whether ``count`` bytes are buffered by ``deadline`` (loop time); False early if the
        link closes."""
        while len(self.buffer) < count:
            if self.closed.is_set():
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                return len(self.buffer) >= count
        return True


@dataclass
class _Counts:
    crc_errors: int = 0
    frame_errors: int = 0
    timeouts: int = 0

    def snapshot(self) -> LinkStats:
        return LinkStats(crc_errors=self.crc_errors, frame_errors=self.frame_errors,
                         timeouts=self.timeouts)


class _RtuLink:
    """The framing/IO core shared by the RTU transports; subclasses only open the link."""

    def __init__(self, *, timeout: float, pause: float, char_time: float,
                 silent: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self._timeout = timeout
        self._pause = pause
        self._char = char_time  # s per character on the wire; 0 when the wire is not ours
        self._silent = silent
        self._rx: _Receiver | None = None
        self._link: asyncio.BaseTransport | None = None
        self._io = asyncio.Lock()  # one frame at a time, even for callers without a bus lock
        self._quiet_until = 0.0
        self._counts: dict[int, _Counts] = {}
        self.discarded_bytes = 0  # noise and leftovers thrown away between frames
        self.stray_frames = 0  # clean frames from other units (late answers) skipped

    # -- subclass hooks -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    async def _open(self, receiver: _Receiver) -> asyncio.BaseTransport:
        raise NotImplementedError

    # -- ModbusTransport ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._rx is not None and not self._rx.closed.is_set()

    @property
    def silent(self) -> float:
        """The inter-frame silence this transport keeps, in seconds (before ``pause``)."""
        return self._silent

    async def connect(self) -> None:
        await self.close()
        receiver = _Receiver()
        try:
            link = await self._open(receiver)
        except (OSError, TimeoutError) as exc:  # serial.SerialException is an OSError
            raise ModbusLinkError(f"cannot open {self.endpoint}: {exc}") from exc
        self._rx, self._link = receiver, link
        # a freshly opened line may be mid-frame from someone else: start with a silence
        self._quiet_until = asyncio.get_running_loop().time() + self._silent

    async def close(self) -> None:
        receiver, link = self._rx, self._link
        self._rx = self._link = None
        if link is None or receiver is None:
            return
        # abort, not close: nothing is worth flushing, and a graceful serial close drains the
        # output with tcdrain, which can block on an adapter that has just been unplugged
        if not link.is_closing():  # aborting twice makes serial_asyncio_fast close twice
            link.abort()  # type: ignore[attr-defined]
        # wait until the port is really released, so an immediate reconnect can lock it again
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT):
                await receiver.closed.wait()

    def stats(self, unit: int) -> LinkStats:
        return self._counts.get(unit, _Counts()).snapshot()

    async def read(self, table: RegisterType, address: int, count: int,
                   unit: int) -> list[int] | list[bool]:
        function = table.function_code
        request = rtu.encode_read_request(unit, function, address, count)
        async with self._io:
            receiver = self._require()
            loop = asyncio.get_running_loop()
            wait = self._quiet_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._discard(receiver.take(), "between frames")
            self._write(request)
            sent = loop.time()
            try:
                frame = await self._receive(receiver, unit, function, len(request), sent)
                return rtu.parse_read_response(frame, unit, function, count)
            except ModbusFrameError as exc:
                counts = self._counts.setdefault(unit, _Counts())
                if isinstance(exc, CrcError):
                    counts.crc_errors += 1
                else:
                    counts.frame_errors += 1
                await self._drain(receiver)
                raise type(exc)(f"{self.endpoint} unit {unit}: {exc}") from None
            finally:
                self._quiet_until = max(receiver.last_rx, sent) + self._silent + self._pause

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- the core -----------------------------------------------------------------------------

    def _require(self) -> _Receiver:
        receiver = self._rx
        if receiver is None:
            raise ModbusLinkError(f"not connected to {self.endpoint}")
        self._check_open(receiver)
        return receiver

    def _check_open(self, receiver: _Receiver) -> None:
        if receiver.closed.is_set():
            reason = f": {receiver.error}" if receiver.error else ""
            raise ModbusLinkError(f"{self.endpoint}: link lost{reason}")

    def _write(self, frame: bytes) -> None:
        link = self._link
        if link is None or link.is_closing():
            raise ModbusLinkError(f"{self.endpoint}: link closed")
        link.write(frame)  # type: ignore[attr-defined]

    def _discard(self, data: bytes, where: str) -> None:
        if data:
            self.discarded_bytes += len(data)
            log.debug("%s: discarded %d bytes %s: %s", self.endpoint, len(data), where,
                      data[:32].hex(" "))

    async def _receive(self, receiver: _Receiver, unit: int, function: int, sent_bytes: int,
                       sent: float) -> bytes:
        """The answer frame for this request (unchecked beyond its length)."""
        # the timeout runs from the moment the request has left the wire
        deadline = sent + self._char * sent_bytes + self._timeout
        while True:
            if not await receiver.wait_for(rtu.HEADER_LENGTH, deadline):
                self._check_open(receiver)
                got = receiver.take()
                if not got:
                    self._counts.setdefault(unit, _Counts()).timeouts += 1
                    raise ModbusTimeoutError(f"{self.endpoint} unit {unit}: no answer within "
                                             f"{self._timeout:g} s")
                raise FrameError(f"truncated answer {got.hex(' ')}")
            length = rtu.declared_length(bytes(receiver.buffer[:rtu.HEADER_LENGTH]))
            mine = receiver.buffer[0] == unit and receiver.buffer[1] & 0x7F == function
            # once the device talks, the rest of its frame gets its wire time on top
            if not await receiver.wait_for(length, deadline + self._char * length):
                self._check_open(receiver)
                got = bytes(receiver.buffer)
                if mine:
                    raise FrameError(f"truncated answer ({len(got)} of {length} bytes)")
                raise CrcError(f"garbled answer {got[:32].hex(' ')}")
            frame = bytes(receiver.buffer[:length])
            del receiver.buffer[:length]
            if not mine and rtu.crc_ok(frame):
                # a clean frame for someone else, typically the late answer of a device that
                # timed out earlier: not ours to judge, keep waiting for our own
                self.stray_frames += 1
                log.debug("%s: skipped a frame from unit %d while waiting for unit %d",
                          self.endpoint, frame[0], unit)
                continue
            return frame

    async def _drain(self, receiver: _Receiver) -> None:
        """Discard input until the line has been quiet for a while, bounded by the timeout so
        that a babbling line cannot hold the bus forever."""
        loop = asyncio.get_running_loop()
        limit = loop.time() + self._timeout
        quiet = max(self._silent, _MIN_DRAIN_QUIET)
        while True:
            self._discard(receiver.take(), "after a bad frame")
            now = loop.time()
            if now >= limit or receiver.closed.is_set():
                return
            if not await receiver.wait_for(1, min(now + quiet, limit)):
                return


class ModbusRtuTransport(_RtuLink):
    """Modbus RTU on a serial port (an RS-485 adapter), on pyserial-asyncio-fast."""

    def __init__(self, *, port: str, baudrate: int = 9600, parity: str = "N",
                 stopbits: int = 1, bytesize: int = 8, timeout: float = 1.0,
                 pause: float = 0.0) -> None:
        bits = rtu.bits_per_char(bytesize=bytesize, parity=parity, stopbits=stopbits)
        super().__init__(timeout=timeout, pause=pause, char_time=rtu.char_time(baudrate, bits),
                         silent=rtu.silent_interval(baudrate, bits))
        self._port = port
        self._serial = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits,
                        "bytesize": bytesize}

    @property
    def endpoint(self) -> str:
        return self._port

    async def _open(self, receiver: _Receiver) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        # exclusive: a second master on the same line (another process) would garble frames
        link, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: receiver, self._port, exclusive=True, **self._serial)
        return link


class ModbusRtuOverTcpTransport(_RtuLink):
    """RTU frames (with CRC, without MBAP) over TCP, as transparent serial servers speak.

    The gateway owns the serial timing on its side: it forwards our request only once it has
    all of it and our answer only once the device is done, so no silent interval is kept here;
    ``pause`` still applies for devices that need extra time between frames.
    """

    def __init__(self, *, host: str, port: int, timeout: float = 1.0,
                 pause: float = 0.0) -> None:
        super().__init__(timeout=timeout, pause=pause, char_time=0.0, silent=0.0)
        self._host = host
        self._port = port

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    async def _open(self, receiver: _Receiver) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            link, _ = await loop.create_connection(lambda: receiver, self._host, self._port)
        return link
