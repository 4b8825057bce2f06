"""A building fire panel's UITD (user information transmission device), as the receiver sees
it: GB/T 26875.3 send-data frames over TCP (as a client) or a serial line (a socat pty).

It sends an empty send-data frame as a heartbeat every ``heartbeat`` seconds while idle, and a
component-status frame for every ``report``. A data frame waits for its confirm (ACK); if none
comes within ``ack_timeout`` it is sent again byte for byte (same serial number, so the
receiver ACKs it again without delivering it twice), indefinitely: a fire report is never
dropped, also not across a reconnect. A deny (NAK) resends at once. Frames go out one at a
time in report order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import serial_asyncio_fast

from core.aio import cancel_and_wait
from drivers.gb26875.codec import (
    Adu,
    AduType,
    Command,
    ComponentStatus,
    ComponentStatusFlags,
    Frame,
    Header,
    StreamDecoder,
    encode_frame,
    heartbeat,
)
from simulator.community.topology import PanelTarget

log = logging.getLogger(__name__)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Opener = Callable[[], Awaitable[Streams]]
CENTRE_ADDRESS = 1  # the receiver's address in our frames (the link answers from it)


def tcp_opener(host: str, port: int) -> Opener:
    """Connect to a receiver listening on ``host:port`` (the daemon's tcp-server panel)."""
    async def open_tcp() -> Streams:
        return await asyncio.open_connection(host, port)
    return open_tcp


def serial_opener(path: str, baudrate: int = 9600) -> Opener:
    """Open a tty (the UITD's end of a socat pty pair)."""
    async def open_serial() -> Streams:
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=path, baudrate=baudrate)
        return reader, writer
    return open_serial


@dataclass
class UitdStats:
    """Counters since start (they survive reconnects)."""

    connected: bool = False
    connections: int = 0
    reports: int = 0  # data frames queued
    sent: int = 0  # data frames written the first time
    resends: int = 0
    acks: int = 0  # ACKs of data frames
    naks: int = 0
    heartbeats: int = 0
    heartbeat_acks: int = 0


@dataclass(frozen=True, slots=True)
class _Outgoing:
    serial: int
    data: bytes
    heartbeat: bool


class UitdEmulator:
    """One panel's UITD talking to one receiver; an async context manager."""

    def __init__(self, *, name: str, address: int, opener: Opener,
                 clock: Callable[[], datetime], heartbeat: float = 20.0,
                 ack_timeout: float = 3.0, reconnect: float = 1.0,
                 destination: int = CENTRE_ADDRESS) -> None:
        self.name = name
        self.address = address
        self.stats = UitdStats()
        self._opener = opener
        self._clock = clock
        self._heartbeat = heartbeat
        self._ack_timeout = ack_timeout
        self._reconnect = reconnect
        self._destination = destination
        self._serial = 0
        self._outbox: deque[_Outgoing] = deque()
        self._wake = asyncio.Event()
        self._answers: dict[int, asyncio.Future[Command]] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._sent_once: set[int] = set()  # serials written at least once

    # -- public -------------------------------------------------------------------------------

    def report(self, target: PanelTarget, status: ComponentStatusFlags, *, system_type: int,
               when: datetime) -> int:
        """Queue a component-status frame; returns its serial number."""
        obj = ComponentStatus(system_type=system_type, system_address=target.system_address,
                              component_type=target.component_type, zone=target.zone,
                              position=target.position, status=status,
                              description=target.description, time=when)
        serial = self._next_serial()
        header = Header(serial=serial, version=(1, 0), time=when, source=self.address,
                        destination=self._destination, command=Command.SEND_DATA)
        frame = Frame(header, Adu(AduType.COMPONENT_STATUS, (obj,)))
        self._outbox.append(_Outgoing(serial, encode_frame(frame), False))
        self.stats.reports += 1
        self._wake.set()
        return serial

    @property
    def pending(self) -> int:
        """Data frames not yet ACKed (queued or in flight)."""
        return self.stats.reports - self.stats.acks

    async def wait_acked(self, count: int, within: float = 10.0) -> None:
        """Until ``count`` data frames have been ACKed; TimeoutError otherwise."""
        async with asyncio.timeout(within):
            while self.stats.acks < count:
                self._changed.clear()
                await self._changed.wait()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"uitd:{self.name}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    # -- the connection -----------------------------------------------------------------------

    def _next_serial(self) -> int:
        self._serial = self._serial % 0xFFFF + 1  # 1..65535, wrapping
        return self._serial

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                reader, writer = await self._opener()
            except OSError as exc:
                failures += 1
                if failures == 1:
                    log.warning("uitd %s: cannot connect: %s (retrying)", self.name, exc)
                await asyncio.sleep(self._reconnect)
                continue
            failures = 0
            self.stats.connected = True
            self.stats.connections += 1
            log.info("uitd %s: connected", self.name)
            listener = asyncio.create_task(self._listen(reader), name=f"uitd-rx:{self.name}")
            try:
                await self._send_loop(writer, listener)
            except (OSError, ConnectionError) as exc:
                log.info("uitd %s: connection lost: %s", self.name, exc)
            finally:
                self.stats.connected = False
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                    await listener
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
                for future in self._answers.values():
                    future.cancel()
                self._answers.clear()
            await asyncio.sleep(self._reconnect)

    async def _send_loop(self, writer: asyncio.StreamWriter,
                         listener: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        while not listener.done():
            if self._outbox:
                item = self._outbox[0]
            else:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._heartbeat)
                    continue
                except TimeoutError:
                    serial = self._next_serial()
                    frame = heartbeat(serial, self._clock(), self.address, self._destination)
                    item = _Outgoing(serial, encode_frame(frame), True)
            answer: asyncio.Future[Command] = loop.create_future()
            self._answers[item.serial] = answer
            writer.write(item.data)
            await writer.drain()
            if item.heartbeat:
                self.stats.heartbeats += 1
            elif item.serial in self._sent_once:
                self.stats.resends += 1
            else:
                self._sent_once.add(item.serial)
                self.stats.sent += 1
            waiting: set[asyncio.Future[Any]] = {answer, listener}
            done, _ = await asyncio.wait(waiting, timeout=self._ack_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            self._answers.pop(item.serial, None)
            if answer in done and not answer.cancelled() and answer.result() is \
                    Command.CONFIRM:
                if item.heartbeat:
                    self.stats.heartbeat_acks += 1
                else:
                    self._outbox.popleft()
                    self._sent_once.discard(item.serial)
                    self.stats.acks += 1
                    self._changed.set()
            elif answer in done and not answer.cancelled():
                self.stats.naks += 1  # resent at the top of the loop
            elif not item.heartbeat:
                log.debug("uitd %s: no ACK for serial %d, resending", self.name, item.serial)
        if listener.done() and not listener.cancelled() and listener.exception() is not None:
            raise ConnectionError(str(listener.exception()))
        raise ConnectionError("the receiver closed the connection")

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        decoder = StreamDecoder(strict_time=False)
        while True:
            data = await reader.read(4096)
            if not data:
                return
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    answer = self._answers.get(item.header.serial)
                    if answer is not None and not answer.done() and item.header.command in (
                            Command.CONFIRM, Command.DENY):
                        answer.set_result(Command(item.header.command))
