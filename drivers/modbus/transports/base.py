"""What a bus type declares: ``BusType``, the base of every class in this package.

A bus type is everything the daemon knows about one ``[[bus]] type = ...``:

- ``name``: the config value;
- its config schema: the ``[[bus]]`` keys live in one flat pydantic model
  (``daemon.config.BusConfig``); ``check`` validates the ones this type needs (``port``,
  ``host``), with messages naming them, and ``endpoint`` shows where the bus goes;
- its cost model (``cost``), used by the planner and the daemon's line budget and plan view,
  and whether its frames cross a serial line (``serial_line``);
- how to open it (``open``: a ``ModbusTransport``);
- its scan behaviour: the unit ids worth probing (``units``) and the ``[[bus]]`` keys a
  ``firewarden scan`` builds from its options (``scan_table``).

Bus types are classes with class attributes and class methods only: nothing is instantiated.
"""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.modbus.planner import DEFAULT_TCP_LATENCY_MS, BusCost
from drivers.modbus.transport import BusSettings, ModbusTransport

SERIAL_UNITS = (1, 247)  # 0 is broadcast on a serial line: nobody answers it
TCP_UNITS = (0, 255)  # Modbus TCP carries a whole byte; 0 and 255 often mean "the gateway"


class BusType:
    """One bus type; subclasses set the class attributes and override the class methods."""

    name: ClassVar[str]
    # frames cross a serial line at ``baudrate`` (ours or a gateway's): the plan shows its
    # framing and wire time, and the config refuses plans that need more than the line has
    serial_line: ClassVar[bool]
    units: ClassVar[tuple[int, int]]  # valid unit ids, inclusive

    @classmethod
    def check(cls, bus: BusSettings) -> None:
        """Raise ``ValueError`` naming the ``[[bus]]`` key this type needs but did not get."""
        raise NotImplementedError

    @classmethod
    def endpoint(cls, bus: BusSettings) -> str:
        """Where the bus goes, for logs and ``firewarden check``."""
        raise NotImplementedError

    @classmethod
    def tty(cls, bus: BusSettings) -> str | None:
        """The local serial device the bus holds open (no one else may use it), if any."""
        return None

    @classmethod
    def cost(cls, *, baudrate: int, bits_per_char: int = 10, turnaround_ms: float = 0.0,
             latency_ms: float = DEFAULT_TCP_LATENCY_MS) -> BusCost:
        """The planner's cost of read requests on this bus (``drivers.modbus.planner``)."""
        raise NotImplementedError

    @classmethod
    def open(cls, bus: BusSettings) -> ModbusTransport:
        """A transport for the bus (not connected yet); ``ValueError`` for unusable settings."""
        raise NotImplementedError

    @classmethod
    def scan_table(cls, *, host: str | None, port: str | int | None, baudrate: int,
                   parity: str) -> dict[str, Any]:
        """The ``[[bus]]`` keys (beyond name, type, timeout, retries) of a scan of this type
        from ``firewarden scan``'s options; ``ValueError`` naming the option that is wrong."""
        raise NotImplementedError


class TcpEndpointBus(BusType):
    """A bus type reached at ``host``:``port`` over TCP (the shared parts)."""

    @classmethod
    def check(cls, bus: BusSettings) -> None:
        if not bus.host:
            raise ValueError(f"{cls.name} bus needs host")
        if not isinstance(bus.port, int) or not 1 <= bus.port <= 65535:
            raise ValueError(f"{cls.name} bus needs port = a TCP port 1-65535, "
                             f"got {bus.port!r}")

    @classmethod
    def endpoint(cls, bus: BusSettings) -> str:
        return f"{bus.host}:{bus.port}"

    @classmethod
    def tcp_address(cls, bus: BusSettings) -> tuple[str, int]:
        """``(host, port)``, or ``ValueError`` if the settings have none."""
        if not bus.host or not isinstance(bus.port, int):
            raise ValueError(f"bus {bus.name}: {cls.name} needs host and an integer port")
        return bus.host, bus.port

    @classmethod
    def scan_table(cls, *, host: str | None, port: str | int | None, baudrate: int,
                   parity: str) -> dict[str, Any]:
        if host is None:
            raise ValueError(f"--{cls.name} needs --host (the gateway's address)")
        tcp_port = 502 if port is None else port
        if isinstance(tcp_port, str):
            try:
                tcp_port = int(tcp_port)
            except ValueError:
                raise ValueError(f"--port {tcp_port!r}: with --host, --port is a TCP port "
                                 f"number") from None
        return {"host": host, "port": tcp_port}
