"""Modbus TCP client: up to ``connections`` connections to one device or gateway, one read in
flight on each, every answer matched to its read by the MBAP transaction id.

A lean asyncio protocol instead of pymodbus's client: a read is one ``struct.pack``, one
``write`` and one future. Reads to different units overlap on separate connections (the
poller decides how many: ``[[bus]] concurrency``), not pipelined on one: the Modbus TCP spec
lets a server take several transactions per connection, but not every server does (pymodbus's
own server answers only the first of two requests that arrive together), while every server
and gateway accepts several client connections.

Failure kinds (``drivers.modbus.transport``):

- an exception response is the device's (``ModbusDeviceError``);
- a read with no answer within ``timeout`` is the device's (``ModbusTimeoutError``): a gateway
  whose unit is dead keeps answering for the others, so the connection stays up. Only when
  a read times out and nothing at all has been received for ``DEAD_AFTER`` timeouts is the
  link declared dead (``ModbusLinkError``: the caller reconnects);
- an answer that does not fit its read (other unit or function, wrong byte count) is counted
  per unit and fails that read (``FrameError``); an MBAP header no Modbus frame has (protocol
  id not 0, impossible length) leaves the stream unsynchronisable: counted, and that
  connection is dropped (``ModbusLinkError`` for its read);
- a refused, reset or closed connection is a ``ModbusLinkError``.

An answer that arrives after its read timed out carries an unknown transaction id and is
dropped (counted as ``late``).
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType
from typing import Self

from drivers.modbus.errors import (
    FrameError,
    LinkStats,
    ModbusError,
    ModbusFrameError,
    ModbusLinkError,
    ModbusTimeoutError,
)
from drivers.modbus.mbap import HEADER_LENGTH, encode_read, frame_length, parse_read
from drivers.profile import RegisterType

DEAD_AFTER = 3  # timeouts' worth of silence on every connection: the link, not a unit

Values = list[int] | list[bool]


class _Pending:
    """One read in flight."""

    __slots__ = ("count", "function", "future", "stream", "timer", "unit")

    def __init__(self, future: asyncio.Future[Values], stream: _Stream, unit: int,
                 function: int, count: int) -> None:
        self.future = future
        self.stream = stream
        self.unit = unit
        self.function = function
        self.count = count
        self.timer: asyncio.TimerHandle | None = None


class _Stream(asyncio.Protocol):
    """One connection: cuts the byte stream into MBAP frames for the client."""

    def __init__(self, client: ModbusTcpTransport) -> None:
        self._client = client
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    @property
    def usable(self) -> bool:
        return not self.lost and self.transport is not None \
            and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER_LENGTH:
            try:
                length = frame_length(buffer)
            except FrameError as exc:
                unit = buffer[6]
                buffer.clear()
                self._client._desynchronised(self, unit, exc)
                return
            if len(buffer) < length:
                return
            frame = bytes(buffer[:length])
            del buffer[:length]
            self._client._answer(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._client._lost(self, exc)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class ModbusTcpTransport:
    """Modbus TCP (MBAP framing) to a device or gateway; an async context manager."""

    def __init__(self, *, host: str, port: int = 502, timeout: float = 1.0,
                 connections: int = 1) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._max_streams = max(1, connections)
        self._streams: list[_Stream] = []  # open connections
        self._idle: list[_Stream] = []  # open connections with no read in flight
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._opening = 0  # connections being opened
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._heard = 0.0  # loop time of the last frame received (or of the connect)
        self._garbled: dict[int, int] = {}  # unit -> answers that did not fit
        self._timeouts: dict[int, int] = {}  # unit -> reads timed out
        self.late = 0  # answers that came after their read had timed out

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        return any(stream.usable for stream in self._streams)

    async def connect(self) -> None:
        await self.close()
        self._idle.append(await self._open())
        self._heard = asyncio.get_running_loop().time()

    async def _open(self) -> _Stream:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            _, stream = await asyncio.wait_for(
                loop.create_connection(lambda: _Stream(self), self._host, self._port),
                self._timeout)
        except (TimeoutError, OSError) as exc:
            raise ModbusLinkError(f"cannot connect to {self.endpoint}: "
                                  f"{exc or type(exc).__name__}") from exc
        finally:
            self._opening -= 1
        self._streams.append(stream)
        return stream

    async def close(self) -> None:
        streams, self._streams, self._idle = self._streams, [], []
        for stream in streams:
            stream.close()
        self._fail(None, ModbusLinkError(f"connection to {self.endpoint} closed"))
        self._wake_idle_waiters()

    async def _take_stream(self) -> _Stream:
        """An open connection with no read in flight: an idle one, a new one while fewer than
        ``connections`` are open, or the next one to fall idle."""
        while True:
            while self._idle:
                stream = self._idle.pop()
                if stream.usable:
                    return stream
            if not self.connected and not self._opening:
                raise ModbusLinkError(f"not connected to {self.endpoint}")
            if len(self._streams) + self._opening < self._max_streams:
                try:
                    return await self._open()
                except ModbusLinkError:
                    if not self.connected:
                        raise  # otherwise: wait for one of the open connections
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _give_back(self, stream: _Stream) -> None:
        if stream.usable:
            self._idle.append(stream)
        self._wake_idle_waiters()

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def read(self, table: RegisterType, address: int, count: int, unit: int) -> Values:
        if not self.connected:
            raise ModbusLinkError(f"not connected to {self.endpoint}")
        stream = await self._take_stream()
        try:
            return await self._read_on(stream, table, address, count, unit)
        finally:
            self._give_back(stream)

    async def _read_on(self, stream: _Stream, table: RegisterType, address: int, count: int,
                       unit: int) -> Values:
        loop = asyncio.get_running_loop()
        transaction = next(self._ids) & 0xFFFF
        while transaction in self._pending or transaction == 0:
            transaction = next(self._ids) & 0xFFFF
        frame = encode_read(transaction, unit, table.function_code, address, count)
        pending = _Pending(loop.create_future(), stream, unit, table.function_code, count)
        pending.timer = loop.call_later(self._timeout, self._expire, transaction)
        self._pending[transaction] = pending
        assert stream.transport is not None
        stream.transport.write(frame)
        try:
            return await pending.future
        finally:
            pending.timer.cancel()
            if self._pending.get(transaction) is pending:
                del self._pending[transaction]

    def stats(self, unit: int) -> LinkStats:
        return LinkStats(frame_errors=self._garbled.get(unit, 0),
                         timeouts=self._timeouts.get(unit, 0))

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- called by the connections and the timers -------------------------------------------

    def _answer(self, frame: bytes) -> None:
        self._heard = asyncio.get_running_loop().time()
        pending = self._pending.pop(int.from_bytes(frame[:2], "big"), None)
        if pending is None or pending.future.done():
            self.late += 1
            return
        try:
            values = parse_read(frame, pending.unit, pending.function, pending.count)
        except ModbusFrameError as exc:
            self._garbled[pending.unit] = self._garbled.get(pending.unit, 0) + 1
            pending.future.set_exception(exc)
        except ModbusError as exc:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(values)

    def _expire(self, transaction: int) -> None:
        pending = self._pending.pop(transaction, None)
        if pending is None or pending.future.done():
            return
        self._timeouts[pending.unit] = self._timeouts.get(pending.unit, 0) + 1
        silence = asyncio.get_running_loop().time() - self._heard
        if silence >= DEAD_AFTER * self._timeout:
            pending.future.set_exception(ModbusLinkError(
                f"{self.endpoint}: nothing received for {silence:.1f}s"))
        else:
            pending.future.set_exception(ModbusTimeoutError(
                f"{self.endpoint} unit {pending.unit}: no answer in {self._timeout:g}s"))

    def _desynchronised(self, stream: _Stream, unit: int, exc: FrameError) -> None:
        self._garbled[unit] = self._garbled.get(unit, 0) + 1
        stream.close()
        self._fail(stream, ModbusLinkError(f"{self.endpoint}: {exc}; reconnecting"))

    def _lost(self, stream: _Stream, exc: Exception | None) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        self._fail(stream, ModbusLinkError(f"connection to {self.endpoint} lost"
                                           + (f": {exc}" if exc else "")))
        self._wake_idle_waiters()

    def _fail(self, stream: _Stream | None, exc: ModbusLinkError) -> None:
        """Fail the reads in flight on ``stream`` (None: on every connection)."""
        for transaction, p in list(self._pending.items()):
            if stream is None or p.stream is stream:
                del self._pending[transaction]
                if not p.future.done():
                    p.future.set_exception(exc)
