"""The bus type registry (drivers.modbus.registry) and each type's declarations."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from daemon.config import BusConfig
from drivers.modbus.errors import UnsupportedBusError
from drivers.modbus.planner import BusCost
from drivers.modbus.registry import BUS_TYPES, bus_type, make_transport
from drivers.modbus.transports.base import BusType
from drivers.modbus.transports.rtu import RtuBus
from drivers.modbus.transports.rtu_over_tcp import RtuOverTcpBus
from drivers.modbus.transports.tcp import TcpBus


def test_registry_lists_every_type_by_name() -> None:
    """Each class is registered under its own name, in the order config errors list them."""
    assert list(BUS_TYPES) == ["rtu", "tcp", "rtu-over-tcp"]
    assert all(issubclass(t, BusType) and t.name == name for name, t in BUS_TYPES.items())


def test_unknown_type_is_unsupported() -> None:
    """A bus whose type has no class cannot be opened (nor costed)."""
    bus: Any = SimpleNamespace(name="x", type="foo")
    with pytest.raises(UnsupportedBusError, match="bus x: type 'foo' is not supported"):
        bus_type(bus)
    with pytest.raises(UnsupportedBusError):
        make_transport(bus)


def test_cost_per_type() -> None:
    """RTU or TCP framing from the bus type; RTU over TCP adds the latency."""
    assert RtuBus.cost(baudrate=4800) == BusCost(baudrate=4800)
    assert TcpBus.cost(baudrate=9600, latency_ms=5.0) == BusCost.tcp(latency_ms=5.0)
    assert TcpBus.cost(baudrate=9600, turnaround_ms=1.0, latency_ms=5.0) == \
        BusCost.tcp(latency_ms=6.0)
    over = RtuOverTcpBus.cost(baudrate=19200, latency_ms=5.0, turnaround_ms=1.0)
    assert (over.baudrate, over.turnaround_ms, over.request_bytes) == (19200, 6.0, 8)


def test_declarations() -> None:
    """Serial line, unit range, endpoint and tty of each type."""
    rtu = BusConfig(name="b", type="rtu", port="/dev/ttyUSB0")
    tcp = BusConfig(name="b", type="tcp", host="h", port=502)
    over = BusConfig(name="b", type="rtu-over-tcp", host="h", port=4001)
    assert [bus_type(b) for b in (rtu, tcp, over)] == [RtuBus, TcpBus, RtuOverTcpBus]
    assert [(t.serial_line, t.units) for t in (RtuBus, TcpBus, RtuOverTcpBus)] == [
        (True, (1, 247)), (False, (0, 255)), (True, (1, 247))]
    assert [b.endpoint for b in (rtu, tcp, over)] == ["/dev/ttyUSB0", "h:502", "h:4001"]
    assert [bus_type(b).tty(b) for b in (rtu, tcp, over)] == ["/dev/ttyUSB0", None, None]


@pytest.mark.parametrize(("raw", "message"), [
    ({"type": "rtu"}, "rtu bus needs port = a serial device path, got None"),
    ({"type": "tcp", "port": 502}, "tcp bus needs host"),
    ({"type": "rtu-over-tcp", "host": "h", "port": 0},
     "rtu-over-tcp bus needs port = a TCP port 1-65535, got 0"),
    ({"type": "serial", "port": "x"}, "Input should be 'rtu', 'tcp' or 'rtu-over-tcp'"),
    ({"type": 5, "port": "x"}, "Input should be 'rtu', 'tcp' or 'rtu-over-tcp'"),
])
def test_config_check_per_type(raw: dict[str, Any], message: str) -> None:
    """Each type checks the keys it needs; an unknown type reads like a Literal error."""
    with pytest.raises(ValueError, match=message):
        BusConfig.model_validate({"name": "b", **raw})


def test_open_refuses_unusable_settings() -> None:
    """Settings that skipped validation are refused when the transport is made."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "tcp", "port": 5}, "tcp needs host and an integer port"),
        ({"type": "rtu-over-tcp", "host": "h", "port": "5"},
         "rtu-over-tcp needs host and an integer port"),
        ({"type": "rtu", "port": 5}, "rtu needs port = a serial device")]
    for raw, message in cases:
        with pytest.raises(ValueError, match=message):
            make_transport(BusConfig.model_construct(name="y", **raw))


def test_scan_table_per_type() -> None:
    """Each type makes its [[bus]] keys from the scan options."""
    assert TcpBus.scan_table(host="h", port=None, baudrate=9600, parity="N") == {
        "host": "h", "port": 502}
    assert RtuOverTcpBus.scan_table(host="h", port="4001", baudrate=2400, parity="E") == {
        "host": "h", "port": 4001}
    assert RtuBus.scan_table(host=None, port="/dev/ttyS0", baudrate=2400, parity="E") == {
        "port": "/dev/ttyS0", "baudrate": 2400, "parity": "E"}
    with pytest.raises(ValueError, match="--rtu-over-tcp needs --host"):
        RtuOverTcpBus.scan_table(host=None, port=None, baudrate=9600, parity="N")
