"""``firewarden scan``: find the devices on a bus and guess which shipped profile each speaks.

Pure parts (``parse_units``, ``plausibility``, ``score_profile``, ``rank``) are separate from
the I/O (``probe``, ``identify``, ``scan``), which talks only to the ``ModbusTransport``
protocol built by ``make_transport`` (``drivers.modbus.registry``), so a scan works on every
bus type the daemon can poll; which unit ids are worth probing and which ``[[bus]]`` keys the
command-line options make are the bus type's (``drivers.modbus.transports``).

A scan asks each unit one cheap question (read holding register 0). Any Modbus answer means
someone is there, even an exception such as "illegal data address"; a gateway's "target did
not respond" (10/11) or a timeout means nobody is. A silent unit therefore costs exactly one
timeout and is not retried. Every responder is then read with every shipped profile's requests,
and the profiles are ranked by how plausible their decoded values look.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.measurements import Quality, Quantity, Reading
from daemon.config import BusConfig
from drivers.modbus.errors import (
    ModbusDeviceError,
    ModbusError,
    ModbusFrameError,
    ModbusLinkError,
)
from drivers.modbus.poller import BUSY_DELAY, decode_responses, plan_points
from drivers.modbus.registry import BUS_TYPES, bus_type, make_transport
from drivers.modbus.transport import BusSettings, ModbusTransport
from drivers.modbus.transports.base import SERIAL_UNITS
from drivers.profile import DataType, Profile, RegisterType, load_profile, shipped_profiles

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 0.3  # s; scanning waits less than polling, a present device answers fast
GATEWAY_ABSENT = frozenset({10, 11})  # gateway path unavailable / target did not respond
PROBE = (RegisterType.HOLDING, 0, 1)  # FC03 is the most widely implemented read


# -- unit lists -----------------------------------------------------------------------------

class UnitsError(ValueError):
    """A ``--units`` list that cannot be parsed; the message quotes the offending part."""


def parse_units(text: str, *, lowest: int = SERIAL_UNITS[0],
                highest: int = SERIAL_UNITS[1]) -> list[int]:
    """``"1-10,15,20-22"`` -> sorted unit ids without duplicates (pure).

    Raises ``UnitsError`` for empty parts, non-numbers, reversed ranges and ids outside
    ``lowest``-``highest``.
    """
    units: set[int] = set()
    if not text.strip():
        raise UnitsError("no units given (e.g. 1-247 or 1-10,15)")
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise UnitsError(f"empty entry in {text!r}")
        first, sep, last = part.partition("-")
        try:
            start = int(first.strip())
            end = int(last.strip()) if sep else start
        except ValueError:
            raise UnitsError(f"{part!r} is not a unit id or a range like 1-10") from None
        if end < start:
            raise UnitsError(f"range {part!r} runs backwards")
        for bound in (start, end):
            if not lowest <= bound <= highest:
                hint = " (0 is broadcast on a serial line)" if bound == 0 else ""
                raise UnitsError(f"unit {bound} in {part!r} is outside {lowest}-{highest}{hint}")
        units.update(range(start, end + 1))
    return sorted(units)


# -- scoring (pure) --------------------------------------------------------------------------

PLAUSIBLE = 1.0  # an in-range, non-zero value
ZERO = 0.1  # in range but zero: registers a device does not map often read 0, so weak evidence
BIT = 0.1  # a bit is 0 or 1 whatever it is, so it says little about the register map
IMPLAUSIBLE = -2.0  # out of range, NaN or infinite: a wrong map decodes garbage

# (low, high) inclusive; quantities not listed here carry no evidence either way
RANGES: dict[Quantity, tuple[float, float]] = {
    Quantity.VOLTAGE: (80.0, 300.0),
    Quantity.CURRENT: (0.0, 9_999.0),
    Quantity.POWER: (-3e6, 3e6),
    Quantity.APPARENT_POWER: (0.0, 3e6),
    Quantity.REACTIVE_POWER: (-3e6, 3e6),
    Quantity.POWER_FACTOR: (-1.0, 1.0),
    Quantity.FREQUENCY: (45.0, 65.0),
    Quantity.ENERGY: (0.0, 1e9),
    Quantity.ENERGY_IMPORT: (0.0, 1e9),
    Quantity.ENERGY_EXPORT: (0.0, 1e9),
    Quantity.VOLTAGE_THD: (0.0, 100.0),
    Quantity.THERMAL_LOAD: (0.0, 1_000.0),
    Quantity.RESIDUAL_CURRENT: (0.0, 3_000.0),
    Quantity.TEMPERATURE: (-40.0, 150.0),
    Quantity.DETECTOR_ALARM: (0.0, 65_535.0),
    Quantity.DETECTOR_FAULT: (0.0, 65_535.0),
    Quantity.FIRE: (0.0, 1.0),
    Quantity.SMOKE_FAULT: (0.0, 1.0),
    Quantity.OBSCURATION: (0.0, 30.0),
    Quantity.BATTERY: (0.0, 100.0),
    Quantity.RELAY: (0.0, 1.0),
    Quantity.LAMP_CURRENT: (0.0, 100.0),
    Quantity.LUX: (0.0, 200_000.0),
    Quantity.WATER_PRESSURE: (0.0, 2.4),  # GB 50974: systems above 2.4 MPa are zoned
    Quantity.WATER_LEVEL: (0.0, 30.0),
    Quantity.LOOP_CURRENT: (3.8, 20.5),  # a live 4-20 mA loop (NAMUR NE43)
}
# bit words hold any pattern; like single bits they confirm little beyond "it was readable"
_WEAK = frozenset({Quantity.DETECTOR_ALARM, Quantity.DETECTOR_FAULT})


def plausibility(reading: Reading, *, weak: bool = False) -> float:
    """Evidence one reading gives that its profile fits the device (pure).

    A device's own "no value" sentinel is neutral (0): the map is right, the sensor is absent.
    """
    value = reading.value
    if not math.isfinite(value) or reading.quality is Quality.IMPLAUSIBLE:
        return IMPLAUSIBLE
    if not reading.good:
        return 0.0
    limits = RANGES.get(reading.quantity)
    if limits is None:
        return 0.0
    low, high = limits
    if not low <= value <= high:
        return IMPLAUSIBLE
    if weak or reading.quantity in _WEAK:
        return BIT
    return ZERO if value == 0 else PLAUSIBLE


def score_profile(profile: Profile, readings: Sequence[Reading]) -> float:
    """How well ``readings`` (decoded with ``profile``) look like a real device; >= 0 (pure).

    The evidence (the sum of every reading's ``plausibility``; bit points count weakly) times
    the share of the profile it covers (evidence / points). So a profile that reads more points
    plausibly wins, but a big map that finds a few plausible values among zeros and garbage
    (another device's registers) loses to a smaller map that fits throughout. No readings (the
    reads failed) scores nothing.
    """
    if not readings or not profile.points:
        return 0.0
    bits = {p.key for p in profile.points if p.type in (DataType.BITS, DataType.BOOL)}
    evidence = max(0.0, sum(plausibility(r, weak=_key(r) in bits) for r in readings))
    return round(evidence * evidence / len(profile.points), 3)


def _key(reading: Reading) -> str:
    return f"{reading.quantity.value}/{reading.channel}" if reading.channel else \
        reading.quantity.value


@dataclass(frozen=True, slots=True)
class Candidate:
    """One profile tried on one unit."""

    profile: str
    score: float
    readings: tuple[Reading, ...] = ()
    error: str | None = None  # why the profile's reads failed, if they did

    @property
    def plausible(self) -> int:
        """Points that read an in-range value."""
        return sum(1 for r in self.readings if plausibility(r) > 0)


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best first: higher score, then more plausible points, then name (stable output)."""
    return sorted(candidates, key=lambda c: (-c.score, -c.plausible, c.profile))


def confidence(ranked: Sequence[Candidate]) -> float:
    """Share of the best score in the best two (1.0 = no rival, 0.5 = a coin toss) (pure)."""
    if not ranked or ranked[0].score <= 0:
        return 0.0
    runner_up = ranked[1].score if len(ranked) > 1 else 0.0
    return round(ranked[0].score / (ranked[0].score + runner_up), 2)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A unit that answered, with every profile tried on it, best first."""

    unit: int
    candidates: tuple[Candidate, ...] = field(default=())

    @property
    def best(self) -> Candidate | None:
        """The guessed profile, or None if no shipped profile reads plausibly."""
        if self.candidates and self.candidates[0].score > 0:
            return self.candidates[0]
        return None

    @property
    def runner_up(self) -> Candidate | None:
        if len(self.candidates) > 1 and self.candidates[1].score > 0:
            return self.candidates[1]
        return None

    @property
    def profile(self) -> str | None:
        best = self.best
        return best.profile if best else None

    @property
    def confidence(self) -> float:
        return confidence(self.candidates)

    def values(self) -> dict[str, float]:
        """The guessed profile's good values by point key (``"voltage/L1"``)."""
        best = self.best
        if best is None:
            return {}
        return {_key(r): r.value for r in best.readings if r.good}

    def key_values(self, count: int = 3) -> list[Reading]:
        """The first good reading of each of the first ``count`` quantities, for a summary."""
        best = self.best
        seen: set[Quantity] = set()
        out: list[Reading] = []
        for reading in best.readings if best else ():
            if reading.good and reading.quantity not in seen:
                seen.add(reading.quantity)
                out.append(reading)
                if len(out) == count:
                    break
        return out

    def as_json(self) -> dict[str, object]:
        """``{unit, profile, confidence, candidates: [...], values: {...}}``."""
        return {
            "unit": self.unit,
            "profile": self.profile,
            "confidence": self.confidence,
            "candidates": [{"profile": c.profile, "score": c.score, "plausible": c.plausible,
                            "points": len(c.readings), "error": c.error}
                           for c in self.candidates],
            "values": {k: round(v, 4) for k, v in self.values().items()},
        }


# -- settings --------------------------------------------------------------------------------

def scan_bus(*, host: str | None, port: str | int | None, baudrate: int = 9600,
             parity: str = "N", timeout: float = DEFAULT_TIMEOUT,
             rtu_over_tcp: bool = False) -> BusConfig:
    """Bus settings for a scan, validated like a config file's ``[[bus]]``.

    With ``host`` the bus is Modbus TCP (or RTU framing over TCP) and ``port`` the TCP port
    (default 502); without, ``port`` is a serial device path for Modbus RTU. Raises
    ``ValueError`` (a pydantic ``ValidationError``) naming the bad setting.
    """
    # the options name the bus type; its class turns them into [[bus]] keys
    kind = "rtu-over-tcp" if rtu_over_tcp else "tcp" if host is not None else "rtu"
    settings = BUS_TYPES[kind].scan_table(host=host, port=port, baudrate=baudrate,
                                          parity=parity)
    return BusConfig.model_validate({"name": "scan", "type": kind, **settings,
                                     "timeout": timeout, "retries": 1})


def unit_range(bus: BusSettings) -> tuple[int, int]:
    """Valid unit ids on this bus: a whole byte on Modbus TCP, 1-247 behind serial framing."""
    return bus_type(bus).units


# -- I/O -------------------------------------------------------------------------------------

Progress = Callable[[int, "ScanResult | None"], None]


async def _read(transport: ModbusTransport, table: RegisterType, address: int, count: int,
                unit: int, *, busy_retries: int, pause: float) -> list[int] | list[bool]:
    """One read; a busy device is asked again (busy is not broken). Raises ModbusError."""
    attempt = 0
    while True:
        try:
            return await transport.read(table, address, count, unit)
        except ModbusDeviceError as exc:
            if not exc.busy or attempt >= busy_retries:
                raise
        finally:
            if pause:
                await asyncio.sleep(pause)
        await asyncio.sleep(BUSY_DELAY * 2**attempt)
        attempt += 1


async def _ensure_connected(transport: ModbusTransport) -> None:
    if not transport.connected:
        await transport.connect()


async def probe(transport: ModbusTransport, unit: int, *, pause: float = 0.0) -> bool:
    """Whether anyone answers as ``unit``: one read, never retried.

    Any answer counts, exception responses included, except a gateway saying the target did
    not respond. A link error (which on Modbus TCP includes a timeout) closes the link, and the
    next read reopens it; a serial timeout leaves the line open. Garbled answers are logged.
    """
    await _ensure_connected(transport)
    table, address, count = PROBE
    try:
        await _read(transport, table, address, count, unit, busy_retries=0, pause=pause)
    except ModbusDeviceError as exc:
        present = exc.code not in GATEWAY_ABSENT
        log.debug("unit %d: %s -> %s", unit, exc, "present" if present else "absent")
        return present
    except ModbusLinkError as exc:  # on Modbus TCP this includes timeouts
        log.debug("unit %d: %s -> absent", unit, exc)
        await transport.close()  # a late reply must not be taken for the next unit's answer
        return False
    except ModbusFrameError as exc:
        # someone may be there, but at another speed or parity, or it collided with noise;
        # guessing a profile from garbage is pointless, so say so and move on
        log.warning("unit %d answered garbage (%s); wrong baudrate or parity?", unit, exc)
        return False
    except ModbusError as exc:  # a serial timeout: silent unit, the line itself is fine
        log.debug("unit %d: %s -> absent", unit, exc)
        return False
    return True


async def try_profile(transport: ModbusTransport, unit: int, profile: Profile, *,
                      busy_retries: int = 1, pause: float = 0.0,
                      clock: Callable[[], float] = time.time) -> Candidate:
    """Read all of ``profile``'s points from ``unit`` and score them; failures score 0."""
    requests = plan_points(profile, profile.points)
    pause = max(pause, profile.workarounds.pause_after_ms / 1000.0)
    responses: list[list[int] | list[bool]] = []
    await _ensure_connected(transport)  # a bus that cannot be reopened ends the scan
    ts = clock()
    try:
        for request in requests:
            responses.append(await _read(transport, request.table, request.address,
                                         request.count, unit, busy_retries=busy_retries,
                                         pause=pause))
    except ModbusError as exc:
        if isinstance(exc, ModbusLinkError):
            await transport.close()
        log.debug("unit %d as %s: %s", unit, profile.name, exc)
        return Candidate(profile=profile.name, score=0.0, error=str(exc))
    readings = decode_responses(requests, responses, device=f"unit-{unit}", ts=ts)
    return Candidate(profile=profile.name, score=score_profile(profile, readings),
                     readings=tuple(readings))


async def identify(transport: ModbusTransport, unit: int, profiles: Sequence[Profile], *,
                   busy_retries: int = 1, pause: float = 0.0) -> ScanResult:
    """Try every profile on a unit that answered; candidates come out ranked."""
    candidates = [await try_profile(transport, unit, p, busy_retries=busy_retries, pause=pause)
                  for p in profiles]
    return ScanResult(unit=unit, candidates=tuple(rank(candidates)))


def load_shipped() -> list[Profile]:
    """Every shipped profile, in name order."""
    return [load_profile(name) for name in shipped_profiles()]


async def scan(bus: BusSettings, units: Sequence[int], *,
               profiles: Sequence[Profile] | None = None,
               progress: Progress | None = None) -> list[ScanResult]:
    """Probe ``units`` in order and identify the responders.

    ``progress(unit, result)`` is called after each unit (``result`` None if it was silent).
    Raises ``ModbusLinkError`` if the bus itself cannot be opened (or reopened after a
    timeout), and ``UnsupportedBusError`` for bus types without a transport.
    """
    tried = list(profiles) if profiles is not None else load_shipped()
    transport = make_transport(bus)
    results: list[ScanResult] = []
    try:
        for unit in units:
            result: ScanResult | None = None
            if await probe(transport, unit, pause=bus.pause):
                result = await identify(transport, unit, tried, busy_retries=bus.retries,
                                        pause=bus.pause)
                results.append(result)
                log.debug("unit %d: %s (confidence %.2f)", unit, result.profile,
                          result.confidence)
            if progress is not None:
                progress(unit, result)
    finally:
        await transport.close()
    return results
