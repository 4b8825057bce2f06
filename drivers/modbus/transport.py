"""Modbus transports: one connection to one bus, one read at a time, no policy.

A transport turns failures into kinds the poller can act on:

- ``ModbusDeviceError``: the device answered with a Modbus exception; the link is fine.
- ``ModbusTimeoutError`` and ``ModbusFrameError`` (``CrcError``, ``FrameError``): one device
  on a serial line did not answer, or answered garbage. The port stays open, because the other
  devices on the same line are unaffected; only that device backs off.
- ``ModbusLinkError``: the link itself failed (refused or lost connection, unplugged adapter;
  on Modbus TCP also timeouts and malformed answers); the caller closes and reconnects.

pymodbus's own retries and reconnects are switched off because the poller owns that policy per
bus. Modbus TCP runs on pymodbus; RTU and RTU-over-TCP use our own framing
(``drivers.modbus.rtu``, ``drivers.modbus.serial``) so that line timing and error kinds are
exact. Which transport a ``[[bus]]`` gets is up to its bus type (``drivers.modbus.transports``),
looked up in ``drivers.modbus.registry`` (``make_transport``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from drivers.modbus.errors import (
    LinkStats,
    ModbusDeviceError,
    ModbusLinkError,
)
from drivers.profile import RegisterType


class BusSettings(Protocol):
    """What a transport needs from a bus's config (``daemon.config.BusConfig`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> str | int | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def pause(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def parity(self) -> str: ...
    @property
    def stopbits(self) -> int: ...
    @property
    def bytesize(self) -> int: ...


class ModbusTransport(Protocol):
    """One bus connection. ``read`` raises a ``ModbusError`` subclass (see the module doc)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the link; raise ``ModbusLinkError`` if that fails."""
        ...

    async def close(self) -> None:
        """Close the link (idempotent); ``connect`` may be called again afterwards."""
        ...

    async def read(self, table: RegisterType, address: int, count: int,
                   unit: int) -> list[int] | list[bool]:
        """``count`` registers (or bits) of ``table`` from ``address`` of device ``unit``."""
        ...

    def stats(self, unit: int) -> LinkStats:
        """Faults seen talking to ``unit`` so far (zeros where the transport cannot tell)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...


class ModbusTcpTransport:
    """Modbus TCP (MBAP framing) to a device or gateway, on pymodbus's async client."""

    def __init__(self, *, host: str, port: int = 502, timeout: float = 1.0) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._client: AsyncModbusTcpClient | None = None
        self._garbled: dict[int, int] = {}  # unit -> answers pymodbus could not decode

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def connect(self) -> None:
        await self.close()
        # retries=0 and reconnect_delay=0: one attempt per call, no background reconnect task
        client = AsyncModbusTcpClient(self._host, port=self._port, timeout=self._timeout,
                                      retries=0, reconnect_delay=0, reconnect_delay_max=0)
        try:
            ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            _reraise_cancellation()
            raise ModbusLinkError(f"cannot connect to {self.endpoint}: {exc}") from exc
        if not ok or not client.connected:
            client.close()
            raise ModbusLinkError(f"cannot connect to {self.endpoint}")
        _guard_decoder(client, self._count_garbled)
        self._client = client

    def _count_garbled(self, unit: int) -> None:
        self._garbled[unit] = self._garbled.get(unit, 0) + 1

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read(self, table: RegisterType, address: int, count: int,
                   unit: int) -> list[int] | list[bool]:
        client = self._client
        if client is None or not client.connected:
            raise ModbusLinkError(f"not connected to {self.endpoint}")
        method = {
            RegisterType.COIL: client.read_coils,
            RegisterType.DISCRETE: client.read_discrete_inputs,
            RegisterType.HOLDING: client.read_holding_registers,
            RegisterType.INPUT: client.read_input_registers,
        }[table]
        try:
            response: Any = await method(address, count=count, device_id=unit)
        except (TimeoutError, OSError, ModbusException) as exc:
            _reraise_cancellation()
            raise ModbusLinkError(f"{self.endpoint} unit {unit}: {exc}") from exc
        if isinstance(response, ExceptionResponse):
            raise ModbusDeviceError(int(response.exception_code))
        if response.isError():
            raise ModbusLinkError(f"{self.endpoint} unit {unit}: error response {response}")
        if table.is_bit:
            bits = [bool(b) for b in response.bits[:count]]  # bits come padded to whole bytes
            if len(bits) != count:
                raise ModbusLinkError(f"{self.endpoint} unit {unit}: {len(bits)} bits, "
                                      f"asked for {count}")
            return bits
        registers = [int(r) for r in response.registers]
        if len(registers) != count:
            raise ModbusLinkError(f"{self.endpoint} unit {unit}: {len(registers)} registers, "
                                  f"asked for {count}")
        return registers

    def stats(self, unit: int) -> LinkStats:
        # TCP has its own checksums; what is counted is answers pymodbus could not decode
        return LinkStats(frame_errors=self._garbled.get(unit, 0))

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def _guard_decoder(client: AsyncModbusTcpClient, on_garbled: Callable[[int], None]) -> None:
    """Make an answer pymodbus cannot decode fail the pending read instead of the event loop.

    pymodbus decodes in its protocol's ``data_received``; an undecodable answer (unknown
    function code, a byte count longer than the frame) raises there, which asyncio logs as
    "Fatal error: protocol.data_received() call failed" with a full traceback for every
    frame, and the read then waits out its timeout. Bad device input is not a bug: count it,
    drop the buffered bytes and hand the reader a ``ModbusIOException`` at once.
    """
    ctx: Any = client.ctx
    decode = ctx.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            return int(decode(data, addr))
        except Exception:  # whatever the decoder chokes on is the answer's fault
            on_garbled(int(getattr(ctx, "request_dev_id", 0) or 0))
            future = getattr(ctx, "response_future", None)
            if future is not None and not future.done():
                future.set_exception(ModbusIOException(  # type: ignore[no-untyped-call]
                    "garbled answer that cannot be decoded"))
            return len(data)

    ctx.callback_data = callback_data


def _reraise_cancellation() -> None:
    """pymodbus turns our task's cancellation into ModbusIOException ("Request cancelled
    outside pymodbus"); swallowed as a link error, it would keep a poller alive through a
    shutdown or reload. If we are being cancelled, say so."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
