"""``type = "tcp"``: Modbus TCP (MBAP framing) to a device or gateway."""

from __future__ import annotations

from typing import ClassVar

from drivers.modbus.planner import DEFAULT_TCP_LATENCY_MS, BusCost
from drivers.modbus.transport import BusSettings, ModbusTcpTransport, ModbusTransport
from drivers.modbus.transports.base import TCP_UNITS, TcpEndpointBus


class TcpBus(TcpEndpointBus):
    """Modbus TCP: no serial line of ours, a whole byte of unit ids."""

    name: ClassVar[str] = "tcp"
    serial_line: ClassVar[bool] = False
    units: ClassVar[tuple[int, int]] = TCP_UNITS

    @classmethod
    def cost(cls, *, baudrate: int, bits_per_char: int = 10, turnaround_ms: float = 0.0,
             latency_ms: float = DEFAULT_TCP_LATENCY_MS) -> BusCost:
        """MBAP framing, no silent interval, the network latency per request."""
        return BusCost.tcp(latency_ms=latency_ms + turnaround_ms)

    @classmethod
    def open(cls, bus: BusSettings) -> ModbusTransport:
        host, port = cls.tcp_address(bus)
        return ModbusTcpTransport(host=host, port=port, timeout=bus.timeout,
                                  connections=bus.concurrency)
