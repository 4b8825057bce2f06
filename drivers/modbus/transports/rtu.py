"""``type = "rtu"``: Modbus RTU on a local serial port (an RS-485 adapter)."""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.modbus.planner import DEFAULT_TCP_LATENCY_MS, BusCost
from drivers.modbus.serial import ModbusRtuTransport
from drivers.modbus.transport import BusSettings, ModbusTransport
from drivers.modbus.transports.base import SERIAL_UNITS, BusType


class RtuBus(BusType):
    """A serial line of our own: ``port`` is its device path."""

    name: ClassVar[str] = "rtu"
    serial_line: ClassVar[bool] = True
    units: ClassVar[tuple[int, int]] = SERIAL_UNITS

    @classmethod
    def check(cls, bus: BusSettings) -> None:
        if not isinstance(bus.port, str) or not bus.port:
            raise ValueError(f"rtu bus needs port = a serial device path, got {bus.port!r}")

    @classmethod
    def endpoint(cls, bus: BusSettings) -> str:
        return str(bus.port)

    @classmethod
    def tty(cls, bus: BusSettings) -> str | None:
        return str(bus.port)

    @classmethod
    def cost(cls, *, baudrate: int, bits_per_char: int = 10, turnaround_ms: float = 0.0,
             latency_ms: float = DEFAULT_TCP_LATENCY_MS) -> BusCost:
        """RTU framing and silent intervals at ``baudrate``; no network latency."""
        return BusCost(baudrate=baudrate, bits_per_char=bits_per_char,
                       turnaround_ms=turnaround_ms)

    @classmethod
    def open(cls, bus: BusSettings) -> ModbusTransport:
        if not isinstance(bus.port, str) or not bus.port:
            raise ValueError(f"bus {bus.name}: rtu needs port = a serial device path")
        return ModbusRtuTransport(port=bus.port, baudrate=bus.baudrate, parity=bus.parity,
                                  stopbits=bus.stopbits, bytesize=bus.bytesize,
                                  timeout=bus.timeout, pause=bus.pause)

    @classmethod
    def scan_table(cls, *, host: str | None, port: str | int | None, baudrate: int,
                   parity: str) -> dict[str, Any]:
        if port is None:
            raise ValueError("give --port DEVICE for a serial bus or --host HOST for Modbus "
                             "TCP")
        return {"port": str(port), "baudrate": baudrate, "parity": parity}
