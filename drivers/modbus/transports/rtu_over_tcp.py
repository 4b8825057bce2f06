"""``type = "rtu-over-tcp"``: RTU frames (with CRC, without MBAP) through a transparent
serial server."""

from __future__ import annotations

from typing import ClassVar

from drivers.modbus.planner import DEFAULT_TCP_LATENCY_MS, BusCost
from drivers.modbus.serial import ModbusRtuOverTcpTransport
from drivers.modbus.transport import BusSettings, ModbusTransport
from drivers.modbus.transports.base import SERIAL_UNITS, TcpEndpointBus


class RtuOverTcpBus(TcpEndpointBus):
    """A serial line behind a TCP gateway: RTU framing and unit ids, reached over TCP."""

    name: ClassVar[str] = "rtu-over-tcp"
    serial_line: ClassVar[bool] = True  # the gateway's line, at the configured baudrate
    units: ClassVar[tuple[int, int]] = SERIAL_UNITS

    @classmethod
    def cost(cls, *, baudrate: int, bits_per_char: int = 10, turnaround_ms: float = 0.0,
             latency_ms: float = DEFAULT_TCP_LATENCY_MS) -> BusCost:
        """RTU framing at the gateway's serial ``baudrate``, plus the network latency."""
        return BusCost(baudrate=baudrate, bits_per_char=bits_per_char,
                       turnaround_ms=turnaround_ms + latency_ms)

    @classmethod
    def open(cls, bus: BusSettings) -> ModbusTransport:
        host, port = cls.tcp_address(bus)
        return ModbusRtuOverTcpTransport(host=host, port=port, timeout=bus.timeout,
                                         pause=bus.pause)
