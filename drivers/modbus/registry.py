"""Bus type name -> ``BusType`` class: the one list of the bus types there are.

Everything that depends on a bus's ``type`` (config checks, cost model, transport, scan
settings) asks its class here instead of comparing the string. Adding a bus type is a module
in ``drivers/modbus/transports/`` (a ``BusType`` subclass) plus its line in ``_TYPES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic_core import PydanticCustomError

from drivers.modbus.errors import UnsupportedBusError
from drivers.modbus.transport import BusSettings, ModbusTransport
from drivers.modbus.transports.base import BusType
from drivers.modbus.transports.rtu import RtuBus
from drivers.modbus.transports.rtu_over_tcp import RtuOverTcpBus
from drivers.modbus.transports.tcp import TcpBus

# in the order config errors list them ("Input should be 'rtu', 'tcp' or 'rtu-over-tcp'")
_TYPES: tuple[type[BusType], ...] = (RtuBus, TcpBus, RtuOverTcpBus)

BUS_TYPES: Mapping[str, type[BusType]] = MappingProxyType({t.name: t for t in _TYPES})


def known_bus_type(value: Any) -> str:
    """``value`` if it names a bus type, for validating ``[[bus]] type``; the error reads as
    pydantic's for a ``Literal`` of the names."""
    if isinstance(value, str) and value in BUS_TYPES:
        return value
    names = [repr(name) for name in BUS_TYPES]
    expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    raise PydanticCustomError("literal_error", "Input should be {expected}",
                              {"expected": expected})


def bus_type(bus: BusSettings) -> type[BusType]:
    """The class of ``bus.type``; ``UnsupportedBusError`` if there is none."""
    found = BUS_TYPES.get(bus.type)
    if found is None:
        raise UnsupportedBusError(f"bus {bus.name}: type {bus.type!r} is not supported")
    return found


def make_transport(bus: BusSettings) -> ModbusTransport:
    """The transport for a bus (not connected yet); ``UnsupportedBusError`` for an unknown
    type, ``ValueError`` for settings its type cannot use."""
    return bus_type(bus).open(bus)
