"""A profile-driven Modbus TCP simulator on pymodbus's server.

Each ``SimulatedDevice`` answers with the register map of its profile and holds engineering
values per point; ``set`` encodes into the datastore at once, so values can change while the
server runs. Reads that span a profile's holes get "illegal data address", like the device; so do
reads that split a 32-bit value on a ``register_pairs`` device; reads longer than the profile's
``max_registers``/``max_bits`` get "illegal data value": the simulator refuses what the real
device refuses, so a request plan the device would reject fails in tests too.
Tests can also make a device answer "busy" (``busy_next``) or fail (``fail``), or answer like a
TCP gateway whose serial device is silent (``no_response``). ``on_read``, when set, runs before
every client read, so values can be computed when they are read (``bench.corpus_serve``).

Manual use, e.g. with mbpoll::

    python -m simulator.modbus --profile eastron-sdm630 --unit 1 --port 5020
    mbpoll -m tcp -a 1 -r 1 -c 2 -t 3:float -1 -p 5020 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from pymodbus.constants import ExcCodes
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

from core.measurements import Quantity
from drivers.modbus.decode import (
    decode_bit,
    decode_point,
    encode_bit,
    encode_point,
    merge_bit,
)
from drivers.profile import (
    DataType,
    Hole,
    Point,
    Profile,
    RegisterType,
    Workarounds,
    load_profile,
)

log = logging.getLogger(__name__)

# Values a healthy, moderately loaded installation shows, so a fresh device reads sensibly.
DEFAULTS: dict[Quantity, float] = {
    Quantity.VOLTAGE: 230.0,
    Quantity.CURRENT: 10.0,
    Quantity.POWER: 2185.0,  # 230 V * 10 A * 0.95
    Quantity.APPARENT_POWER: 2300.0,
    Quantity.REACTIVE_POWER: 718.0,
    Quantity.POWER_FACTOR: 0.95,
    Quantity.FREQUENCY: 50.0,
    Quantity.ENERGY: 1234.5,
    Quantity.ENERGY_IMPORT: 1234.5,
    Quantity.ENERGY_EXPORT: 0.0,
    Quantity.VOLTAGE_THD: 2.0,
    Quantity.THERMAL_LOAD: 0.0,
    Quantity.RESIDUAL_CURRENT: 50.0,
    Quantity.TEMPERATURE: 25.0,
    Quantity.DETECTOR_ALARM: 0.0,
    Quantity.DETECTOR_FAULT: 0.0,
    Quantity.FIRE: 0.0,
    Quantity.SMOKE_FAULT: 0.0,
    Quantity.OBSCURATION: 0.0,
    Quantity.BATTERY: 100.0,
    Quantity.RELAY: 0.0,
    Quantity.LAMP_CURRENT: 0.5,
    Quantity.LUX: 200.0,
    Quantity.WATER_PRESSURE: 0.30,  # MPa at a pump-room transmitter, stabilised
    Quantity.WATER_LEVEL: 3.0,  # m in the tank
    Quantity.LOOP_CURRENT: 12.0,  # mA: mid-span (the engineering point on it usually wins)
}
_PHASE_SUMS = {Quantity.POWER, Quantity.APPARENT_POWER, Quantity.REACTIVE_POWER}

_FC = {RegisterType.COIL: 1, RegisterType.DISCRETE: 2, RegisterType.HOLDING: 3,
       RegisterType.INPUT: 4}


def default_value(point: Point) -> float:
    """A plausible engineering value for a fresh device (totals of powers are three phases)."""
    value = DEFAULTS.get(point.quantity, 0.0)
    if point.quantity in _PHASE_SUMS and point.channel == "total":
        value *= 3
    return value


def _block(values: list[int] | list[bool]) -> ModbusSequentialDataBlock:
    return ModbusSequentialDataBlock(0, values)  # type: ignore[no-untyped-call]


def refusal(table: RegisterType, address: int, count: int, holes: Sequence[Hole],
            limits: Workarounds) -> ExcCodes | None:
    """The exception a device with these holes and limits answers a read with, or None (pure).

    Longer than the device's limit: 3 ILLEGAL DATA VALUE (Modbus's answer to a bad quantity;
    Eastron's manual says only "an exception"); over a hole, or half of a 32-bit value on a
    ``register_pairs`` device: 2 ILLEGAL DATA ADDRESS (Eastron §3.11: "an attempt to read ...
    part of a floating point value").
    """
    if count > (limits.max_bits if table.is_bit else limits.max_registers):
        return ExcCodes.ILLEGAL_VALUE
    end = address + count
    if any(h.table is table and h.start < end and address <= h.end for h in holes):
        return ExcCodes.ILLEGAL_ADDRESS
    if limits.register_pairs and not table.is_bit and count > 1 and (address % 2 or count % 2):
        return ExcCodes.ILLEGAL_ADDRESS
    return None


class _DeviceContext(ModbusDeviceContext):
    """A device context that refuses reads over holes and can play busy or broken."""

    def __init__(self, holes: Sequence[Hole], limits: Workarounds | None = None,
                 **blocks: Any) -> None:
        super().__init__(**blocks)
        self.holes = tuple(holes)
        self.limits = limits or Workarounds()
        self.busy_next = 0
        self.fail = False
        self.no_response = False
        self.on_read: Callable[[], None] | None = None

    def getValues(self, func_code: int, address: int, count: int = 1) -> Any:
        if func_code in (1, 2, 3, 4):  # reads, not the read-back of a write
            if self.on_read is not None:
                self.on_read()
            if self.no_response:
                return ExcCodes.GATEWAY_NO_RESPONSE
            if self.fail:
                return ExcCodes.DEVICE_FAILURE
            if self.busy_next > 0:
                self.busy_next -= 1
                return ExcCodes.DEVICE_BUSY
            table = {1: RegisterType.COIL, 2: RegisterType.DISCRETE,
                     3: RegisterType.HOLDING, 4: RegisterType.INPUT}[func_code]
            refused = refusal(table, address, count, self.holes, self.limits)
            if refused is not None:
                return refused
        return super().getValues(func_code, address, count)


class SimulatedDevice:
    """One Modbus device speaking ``profile`` as unit ``unit``."""

    def __init__(self, profile: Profile, unit: int) -> None:
        self.profile = profile
        self.unit = unit
        sizes = {t: 0 for t in RegisterType}
        for point in profile.points:
            sizes[point.table] = max(sizes[point.table], point.address + point.width)
        # the context adds 1 to PDU addresses, so a block from 0 needs one spare slot; tables a
        # profile does not use stay tiny, and reads past the map get "illegal data address"
        blocks = {
            key: _block([False if table.is_bit else 0] * (sizes[table] + 1))
            for key, table in (("co", RegisterType.COIL), ("di", RegisterType.DISCRETE),
                               ("hr", RegisterType.HOLDING), ("ir", RegisterType.INPUT))
        }
        self.context = _DeviceContext(profile.holes, profile.workarounds, **blocks)
        self._points = {point.key: point for point in profile.points}
        self._aliases: dict[str, tuple[Point, ...]] = {
            p.key: tuple(o for o in profile.points if o is not p and o.table is p.table
                         and o.address < p.address + p.width and p.address < o.address + o.width
                         and not p.table.is_bit and p.type is not DataType.BITS
                         and o.type is not DataType.BITS)
            for p in profile.points}
        self._values: dict[str, float] = {}
        for point in profile.points:
            self._write(point, default_value(point))

    @property
    def points(self) -> dict[str, Point]:
        """The profile's points by key (``"current/L1"``)."""
        return dict(self._points)

    @property
    def busy_next(self) -> int:
        """How many coming reads answer "device busy" (exception 6)."""
        return int(self.context.busy_next)

    @busy_next.setter
    def busy_next(self, count: int) -> None:
        self.context.busy_next = count

    @property
    def fail(self) -> bool:
        """While true every read answers "device failure" (exception 4)."""
        return bool(self.context.fail)

    @fail.setter
    def fail(self, value: bool) -> None:
        self.context.fail = value

    @property
    def no_response(self) -> bool:
        """While true every read answers exception 11, "gateway target device failed to
        respond", at once: what an RS-485-to-Ethernet gateway says when the serial device
        behind it stays silent (its own serial timeout already spent)."""
        return bool(self.context.no_response)

    @no_response.setter
    def no_response(self, value: bool) -> None:
        self.context.no_response = value

    @property
    def on_read(self) -> Callable[[], None] | None:
        """Called before every client read (function 1-4) is answered, e.g. to set the values
        the device holds at this moment; it may also set ``no_response`` or ``fail``."""
        hook: Callable[[], None] | None = self.context.on_read
        return hook

    @on_read.setter
    def on_read(self, hook: Callable[[], None] | None) -> None:
        self.context.on_read = hook

    def answer(self, function: int, address: int, count: int) -> list[int] | list[bool] | int:
        """What the device answers to a read (function 1-4): the values, or a Modbus exception
        code (holes, busy, fail and reads past the map behave as over TCP). Other servers,
        such as the RTU simulator, serve the same datastore through this."""
        if function not in _FC.values():
            return int(ExcCodes.ILLEGAL_FUNCTION)
        result = self.context.getValues(function, address, count)
        if isinstance(result, list):
            return result
        return int(result)

    def point(self, quantity: str, channel: str | None = None) -> Point:
        key = f"{quantity}/{channel}" if channel else quantity
        try:
            return self._points[key]
        except KeyError:
            raise KeyError(f"{self.profile.name} has no point {key!r}; it has "
                           f"{', '.join(self._points)}") from None

    def set(self, quantity: str, value: float, channel: str | None = None) -> None:
        """Set a point's engineering value; the next read returns it."""
        self._write(self.point(quantity, channel), value)

    def get(self, quantity: str, channel: str | None = None) -> float:
        """The engineering value last set for a point."""
        return self._values[self.point(quantity, channel).key]

    def registers(self, quantity: str, channel: str | None = None) -> list[int] | list[bool]:
        """What the datastore holds for a point right now (as a client would read it)."""
        point = self.point(quantity, channel)
        values: list[int] | list[bool] = self.context.getValues(_FC[point.table], point.address,
                                                                 point.width)
        return values

    def read_back(self, quantity: str, channel: str | None = None) -> float:
        """The point's value decoded from the datastore (checks the encoding round trip)."""
        point = self.point(quantity, channel)
        raw = self.registers(quantity, channel)
        if point.table.is_bit:
            return decode_bit(point, bool(raw[0]))[0]
        return decode_point(point, [int(r) for r in raw])[0]

    def _write(self, point: Point, value: float) -> None:
        fc = _FC[point.table]
        # bypass the hole/busy checks: these are our own writes, not a client's reads
        store = ModbusDeviceContext
        if point.table.is_bit:
            store.setValues(self.context, fc, point.address, [encode_bit(point, value)])
        elif point.type is DataType.BITS:
            current = store.getValues(self.context, fc, point.address, 1)
            assert isinstance(current, list)  # the block covers every point's address
            store.setValues(self.context, fc, point.address,
                            [merge_bit(point, int(current[0]), value)])
        else:
            store.setValues(self.context, fc, point.address, encode_point(point, value))
        self._values[point.key] = value
        # points that read the same registers another way (a 4-20 mA loop's raw current and
        # its engineering value) now hold what those registers decode to
        for other in self._aliases.get(point.key, ()):
            self._values[other.key] = self.read_back(other.quantity.value, other.channel)


class ModbusTcpSimulator:
    """Serves several simulated devices (by unit id) on one TCP port.

    ``port=0`` picks a free port; read it from ``.port`` once entered. Unknown unit ids are
    answered with exception 11 (gateway target did not respond), like a TCP gateway, or with
    silence (the client times out, like a dead device on a serial line) if ``silent_unknown``.
    """

    def __init__(self, devices: Sequence[SimulatedDevice], host: str = "127.0.0.1",
                 port: int = 0, *, silent_unknown: bool = False) -> None:
        units = [d.unit for d in devices]
        if len(set(units)) != len(units):
            raise ValueError(f"duplicate unit ids: {units}")
        self.devices = {d.unit: d for d in devices}
        self.host = host
        self.port = port
        self.silent_unknown = silent_unknown
        self._silenced: set[int] = set()
        self._server: ModbusTcpServer | None = None

    def device(self, unit: int) -> SimulatedDevice:
        return self.devices[unit]

    def silence(self, unit: int, silent: bool = True) -> None:
        """Make one unit answer nothing at all, like a dead device behind a gateway (needs
        ``silent_unknown``; otherwise it answers "target did not respond"), or answer again."""
        if unit not in self.devices:
            raise KeyError(f"no unit {unit}")
        if silent == (unit in self._silenced):
            return
        (self._silenced.add if silent else self._silenced.discard)(unit)
        if self._server is not None:
            served: Any = self._server.context
            if silent:
                del served[unit]
            else:
                served[unit] = self.devices[unit].context

    async def start(self) -> None:
        """Listen (again, after ``stop``; the same port is reused)."""
        context = ModbusServerContext(  # type: ignore[no-untyped-call]
            devices={u: d.context for u, d in self.devices.items() if u not in self._silenced},
            single=False)
        server = ModbusTcpServer(context, address=(self.host, self.port),
                                 ignore_missing_devices=self.silent_unknown)
        await server.serve_forever(background=True)
        listener: Any = server.transport  # an asyncio.Server once listening
        sockets = listener.sockets
        self.port = int(sockets[0].getsockname()[1])
        self._server = server
        log.info("Modbus TCP simulator on %s:%d, units %s", self.host, self.port,
                 sorted(self.devices))

    async def stop(self) -> None:
        """Stop listening and drop every client connection (like a device being unplugged)."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def _serve(profile: str, units: Sequence[int], host: str, port: int) -> None:
    loaded = load_profile(profile)
    devices = [SimulatedDevice(loaded, unit) for unit in units]
    async with ModbusTcpSimulator(devices, host=host, port=port) as sim:
        print(f"serving {loaded.name} as unit(s) {', '.join(map(str, units))} on "
              f"{sim.host}:{sim.port}; Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m simulator.modbus --profile eastron-sdm630 --unit 1 --port 5020``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.modbus",
                                     description="Serve simulated Modbus devices over TCP.")
    parser.add_argument("--profile", required=True, help="shipped profile name or TOML path")
    parser.add_argument("--unit", type=int, action="append",
                        help="unit id (repeat for several devices; default 1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.profile, args.unit or [1], args.host, args.port))


if __name__ == "__main__":
    main()
