"""Modbus transports: one connection to one bus, no policy.

A transport turns failures into kinds the poller can act on:

- ``ModbusDeviceError``: the device answered with a Modbus exception; the link is fine.
- ``ModbusTimeoutError`` and ``ModbusFrameError`` (``CrcError``, ``FrameError``): one device
  on a serial line did not answer, or answered garbage. The port stays open, because the other
  devices on the same line are unaffected; only that device backs off. On Modbus TCP a
  timeout is also the unit's: a gateway whose unit is dead still answers for the others.
- ``ModbusLinkError``: the link itself failed (refused or lost connection, unplugged adapter;
  on Modbus TCP an unsynchronisable stream, or several reads in a row with nothing received);
  the caller closes and reconnects.

Retries and reconnects are the poller's policy per bus, never the transport's. Every transport
uses our own framing: Modbus TCP ``drivers.modbus.mbap`` and ``drivers.modbus.tcp`` (several
reads in flight, matched by transaction id), RTU and RTU-over-TCP ``drivers.modbus.rtu`` and
``drivers.modbus.serial`` (line timing and error kinds exact). Which transport a ``[[bus]]``
gets is up to its bus type (``drivers.modbus.transports``), looked up in
``drivers.modbus.registry`` (``make_transport``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from drivers.modbus.errors import LinkStats
from drivers.modbus.tcp import ModbusTcpTransport
from drivers.profile import RegisterType

__all__ = ["BusSettings", "ModbusTcpTransport", "ModbusTransport"]


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
    def concurrency(self) -> int: ...  # devices polled at once (1 on a serial line)
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
