"""A Modbus RTU slave serving many simulated devices on one serial port.

The port is usually the far end of a socat pty pair (``simulator.pty.SocatPair``), so the
daemon's RTU transport talks to it exactly as to an RS-485 adapter. Each unit is a
``SimulatedDevice`` from ``simulator.modbus`` (same datastore, encoding, holes, busy and fail
switches as over TCP); the frames are built by the production codec's server half.

A pty has no baud rate, so with ``pace`` the simulator sleeps for the time the request and the
answer would take on the wire (plus the slave's t3.5 turnaround) before answering; benchmarks
then see realistic bus times. Per unit, faults can be switched on (``UnitFaults``): ``silent``,
``slow``, ``crc_garbage``, ``wrong_byte_count``; ``busy`` is the device's own ``busy_next``;
``noise`` sprinkles random bytes on the line after answers.

Manual use, e.g. with mbpoll::

    python -m simulator.rtu --profile residual-current-temperature --unit 1
    # prints the pty to use, e.g. /tmp/socat-xyz/ttyA
    mbpoll -m rtu -b 9600 -P none -a 1 -r 1 -c 1 -t 3 /tmp/socat-xyz/ttyA
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import serial_asyncio_fast

from core.aio import cancel_and_wait
from drivers.modbus import rtu
from drivers.profile import load_profile
from simulator.modbus import SimulatedDevice
from simulator.pty import SocatPair

log = logging.getLogger(__name__)

_REOPEN_DELAY = 0.02  # s between attempts to reopen a vanished port (cable replugged)
_ILLEGAL_FUNCTION = 1
_ILLEGAL_VALUE = 3


@dataclass
class UnitFaults:
    """Misbehaviour of one unit; counts apply to that many coming answers."""

    silent: bool = False  # never answers (dead device, wrong address on the label)
    slow: float = 0.0  # s of extra delay before answering
    crc_garbage: int = 0  # answers with a wrong CRC
    wrong_byte_count: int = 0  # answers one byte short, with a byte count and CRC to match


def next_request(buffer: bytearray) -> tuple[rtu.RtuRequest | None, int]:
    """The first well-formed 8-byte request in ``buffer`` and how many bytes it ends at (pure).

    Bytes before it are junk (noise, a master's half frame). Without a request, the count is
    what may be dropped while keeping a possible frame start.
    """
    for start in range(len(buffer) - rtu.REQUEST_LENGTH + 1):
        frame = bytes(buffer[start:start + rtu.REQUEST_LENGTH])
        if rtu.crc_ok(frame):
            return rtu.parse_request(frame), start + rtu.REQUEST_LENGTH
    return None, max(0, len(buffer) - (rtu.REQUEST_LENGTH - 1))


class RtuSimulator:
    """Serves ``devices`` (by unit id) on the serial port ``port_path``; an async context
    manager. Survives the port vanishing and coming back (socat restarted)."""

    def __init__(self, port_path: str | Path, devices: Sequence[SimulatedDevice],
                 baudrate: int = 9600, pace: bool = True, *, noise: float = 0.0,
                 seed: int | None = None) -> None:
        units = [d.unit for d in devices]
        if len(set(units)) != len(units):
            raise ValueError(f"duplicate unit ids: {units}")
        self.port_path = str(port_path)
        self.devices = {d.unit: d for d in devices}
        self.faults = {d.unit: UnitFaults() for d in devices}
        self.baudrate = baudrate
        self.pace = pace
        self.noise = noise  # probability of random bytes on the line after an answer
        self.requests: Counter[int] = Counter()  # requests seen per unit (answered or not)
        self.opened = 0  # times the port was opened
        self._random = random.Random(seed)
        self._silent = rtu.silent_interval(baudrate)
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()

    def device(self, unit: int) -> SimulatedDevice:
        return self.devices[unit]

    def fault(self, unit: int) -> UnitFaults:
        """The fault switches of ``unit`` (mutable)."""
        return self.faults[unit]

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a startup bound
        """Serve in the background; returns once the port is open."""
        self._open.clear()
        self._task = asyncio.create_task(self._run(), name=f"rtu-simulator:{self.port_path}")
        try:
            async with asyncio.timeout(timeout):
                await self._open.wait()
        except TimeoutError:
            await self.stop()
            raise TimeoutError(f"could not open {self.port_path}") from None

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- serving ------------------------------------------------------------------------------

    async def _run(self) -> None:
        lost = False
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.port_path, baudrate=self.baudrate)
            except OSError:  # not there (yet): the cable is unplugged
                await asyncio.sleep(_REOPEN_DELAY)
                continue
            self.opened += 1
            if lost:
                log.info("RTU simulator: %s is back", self.port_path)
            self._open.set()
            try:
                await self._serve(reader, writer)
            except OSError as exc:
                log.info("RTU simulator: lost %s (%s)", self.port_path, exc)
            finally:
                if not writer.transport.is_closing():
                    writer.transport.abort()
            lost = True
            self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while True:
            chunk = await reader.read(256)
            if not chunk:
                raise OSError("end of file")
            buffer += chunk
            while True:
                request, used = next_request(buffer)
                del buffer[:used]
                if request is None:
                    break
                await self._handle(request, writer)

    async def _handle(self, request: rtu.RtuRequest, writer: asyncio.StreamWriter) -> None:
        unit = request.unit
        self.requests[unit] += 1
        device = self.devices.get(unit)
        faults = self.faults.get(unit)
        if device is None or faults is None or faults.silent:
            return  # on a serial line nobody answers for an absent device
        frame = self._answer(device, faults, request)
        delay = faults.slow
        if self.pace:
            # the request's bytes, the slave's t3.5 to see the frame end, then the answer's bytes
            delay += (rtu.wire_time(rtu.REQUEST_LENGTH + len(frame), self.baudrate)
                      + self._silent)
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(frame)
        if self.noise and self._random.random() < self.noise:
            writer.write(self._random.randbytes(self._random.randint(1, 8)))

    def _answer(self, device: SimulatedDevice, faults: UnitFaults,
                request: rtu.RtuRequest) -> bytes:
        unit, function = request.unit, request.function
        if not request.is_read:
            return rtu.encode_exception(unit, function, _ILLEGAL_FUNCTION)
        if not 1 <= request.value <= rtu.MAX_COUNT[function]:
            return rtu.encode_exception(unit, function, _ILLEGAL_VALUE)
        result = device.answer(function, request.address, request.value)
        if isinstance(result, int):
            return rtu.encode_exception(unit, function, result)
        frame = rtu.encode_response(unit, function, result)
        if faults.wrong_byte_count > 0:
            faults.wrong_byte_count -= 1
            body = frame[:-2]
            frame = rtu.with_crc(bytes((unit, function, body[2] - 1)) + body[3:-1])
        elif faults.crc_garbage > 0:  # one fault per answer, so each is counted once
            faults.crc_garbage -= 1
            frame = frame[:-2] + bytes((frame[-2] ^ 0x5A, frame[-1]))
        return frame


async def _serve(profile: str, units: Sequence[int], port: str | None, baudrate: int,
                 pace: bool) -> None:
    loaded = load_profile(profile)
    devices = [SimulatedDevice(loaded, unit) for unit in units]
    with contextlib.ExitStack() as stack:
        if port is None:
            pair = stack.enter_context(SocatPair())
            port, master = str(pair.b), str(pair.a)
        else:
            master = "the other end of " + port
        async with RtuSimulator(port, devices, baudrate=baudrate, pace=pace):
            print(f"serving {loaded.name} as unit(s) {', '.join(map(str, units))} at "
                  f"{baudrate} baud on {port}; the master opens {master}; Ctrl-C stops",
                  flush=True)
            # SIGTERM too, so the socat pair is torn down when run under a supervisor
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m simulator.rtu --profile eastron-sdm630 --unit 1 [--port PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.rtu",
                                     description="Serve simulated Modbus RTU devices on a "
                                                 "serial port (or a fresh socat pty pair).")
    parser.add_argument("--profile", required=True, help="shipped profile name or TOML path")
    parser.add_argument("--unit", type=int, action="append",
                        help="unit id (repeat for several devices; default 1)")
    parser.add_argument("--port", help="serial port to serve on; default: make a socat pair "
                                       "and print the end to use")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--no-pace", dest="pace", action="store_false",
                        help="answer at once instead of at the baud rate's pace")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.profile, args.unit or [1], args.port, args.baudrate, args.pace))


if __name__ == "__main__":
    main()
