"""A UITD emulator for tests: writes raw GB/T 26875.3 bytes and reads the receiver's replies.

``UitdPeer`` wraps one byte stream (TCP or a tty) with ``write`` for raw bytes (so tests can
send garbage, split frames or bad checksums) and ``reply`` for the next decoded frame back.
``UitdServer`` is the UITD side for a receiver in tcp-client mode: it listens, queues every
accepted connection as a peer and can be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from types import TracebackType
from typing import Self

import serial_asyncio_fast

from drivers.gb26875.codec import (
    Adu,
    AduType,
    Command,
    ComponentStatus,
    ComponentStatusFlags,
    Frame,
    FrameError,
    Header,
    StreamDecoder,
    encode_frame,
)


def fire_frame(serial: int, *, source: int = 0x123456, destination: int = 1,
               zone: int = 3, position: int = 25, fire: bool = True, fault: bool = False,
               time: datetime = datetime(2024, 3, 15, 21, 7, 45)) -> bytes:
    """A send-data frame with one smoke detector (type 42) in fire (or as ``fire``/``fault``
    say), ready to write."""
    flags = ComponentStatusFlags(normal=True, fire=fire, fault=fault)  # bit 0: not test mode
    obj = ComponentStatus(system_type=1, system_address=2, component_type=42, zone=zone,
                          position=position, status=flags, description="smoke", time=time)
    header = Header(serial=serial, version=(1, 0), time=time, source=source,
                    destination=destination, command=Command.SEND_DATA)
    return encode_frame(Frame(header, Adu(AduType.COMPONENT_STATUS, (obj,))))


class UitdPeer:
    """One stream to the receiver, as the UITD sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = StreamDecoder(strict_time=False)
        self._pending: list[Frame] = []
        self.errors: list[FrameError] = []  # bad bytes the receiver sent back (should be none)

    @classmethod
    async def tcp(cls, host: str, port: int) -> Self:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @classmethod
    async def serial(cls, path: str, *, baudrate: int = 9600) -> Self:
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=path, baudrate=baudrate)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        """Raw bytes, exactly as given, flushed."""
        self._writer.write(data)
        await self._writer.drain()

    async def reply(self, within: float = 5.0) -> Frame:
        """The next frame the receiver sent; TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            while not self._pending:
                data = await self._reader.read(4096)
                if not data:
                    raise ConnectionError("the receiver closed the connection")
                for item in self._decoder.feed(data):
                    if isinstance(item, FrameError):
                        self.errors.append(item)
                    else:
                        self._pending.append(item)
        return self._pending.pop(0)

    async def no_reply(self, wait: float = 0.3) -> bool:
        """Whether nothing at all arrives within ``wait`` seconds."""
        try:
            frame = await self.reply(wait)
        except TimeoutError:
            return True
        self._pending.insert(0, frame)
        return False

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()


class UitdServer:
    """Listens on ``host:port`` for a receiver in tcp-client mode; an async context manager."""

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.accepted: asyncio.Queue[UitdPeer] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._peers: list[UitdPeer] = []

    async def start(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = UitdPeer(reader, writer)
            self._peers.append(peer)
            await self.accepted.put(peer)

        self._server = await asyncio.start_server(accept, self.host, self.port,
                                                  reuse_address=True)

    async def stop(self) -> None:
        """Stop listening and drop every connection, like a UITD that reboots."""
        if self._server is not None:
            self._server.close()
        peers, self._peers = self._peers, []
        for peer in peers:
            await peer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
