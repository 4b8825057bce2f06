"""Serve a ``bench.corpus`` community over Modbus TCP on a simulated clock, for the daemon.

``CorpusServer(corpus, clock=...)`` is an async context manager: one ``ModbusTcpSimulator`` per
building (like one RS-485-to-Ethernet gateway per building, unit ids 1..N in the corpus' device
order), every device a ``SimulatedDevice`` of its profile. Registers are set when they are read:
before each read the device takes ``corpus.series(device, [t])`` for the current simulated
second ``t`` (values come a chunk of ``CHUNK`` simulated seconds at a time, one vectorised call
per device, because one call per read would cost milliseconds each), so every poll sees the
corpus at its own time, at any compression and with no tick to keep up with. A NaN (the corpus'
"no answer to that poll": random lost answers, a device or its box's bus offline) makes that
second's reads answer Modbus exception 11, "gateway target device failed to respond", at once,
as a TCP gateway does for a silent serial device; an actual silence would hold the bus for the
daemon's real-time timeout, minutes of simulated time at a high compression.

``daemon_config(corpus, endpoints)`` gives the matching firewarden config tables.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice

CHUNK = 600  # simulated seconds of register values computed at once per device
STEP = 1.0  # s: the corpus' registers refresh once a second


class ServedDevice(Protocol):
    """What the server needs of a corpus device (``bench.corpus.CorpusDevice`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def profile(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def building(self) -> str: ...
    @property
    def box(self) -> str | None: ...
    @property
    def circuit(self) -> str | None: ...
    @property
    def rated_current(self) -> float | None: ...
    @property
    def lamps(self) -> tuple[int, ...]: ...
    @property
    def lamp_current(self) -> float: ...


class ServedCorpus(Protocol):
    """A corpus as the server and the config writer see it."""

    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def timezone(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def devices(self) -> tuple[ServedDevice, ...]: ...

    def series(self, device: str, times: npt.NDArray[np.float64], /) -> Mapping[Any, Any]: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a device is served: its building's gateway and its unit id there."""

    host: str
    port: int
    unit: int


class _Feed:
    """One device's registers, set from the corpus at the simulated second of each read."""

    def __init__(self, corpus: ServedCorpus, name: str, device: SimulatedDevice,
                 clock: Callable[[], float]) -> None:
        self._corpus = corpus
        self._name = name
        self._device = device
        self._clock = clock
        self._points = {(p.quantity.value, p.channel): p for p in device.profile.points}
        self._second = -1
        self._chunk = -1
        self._values: dict[tuple[str, str | None], npt.NDArray[np.float64]] = {}
        self._last = int((corpus.end - corpus.start) // STEP)
        self.reads = 0  # seconds served (one per poll, roughly)
        self.silent_at: list[float] = []  # simulated seconds answered "no response"

    def on_read(self) -> None:
        second = min(self._last, max(0, int((self._clock() - self._corpus.start) // STEP)))
        if second == self._second:  # the poll's next request, or another poll that second
            return
        self._second = second
        chunk, i = divmod(second, CHUNK)
        if chunk != self._chunk:
            times = self._corpus.start + STEP * np.arange(chunk * CHUNK, (chunk + 1) * CHUNK,
                                                          dtype=np.float64)
            self._values = {key: np.asarray(v, dtype=np.float64) for key, v in
                            self._corpus.series(self._name, times).items()}
            self._chunk = chunk
        self.reads += 1
        row = {key: float(v[i]) for key, v in self._values.items()}
        if any(math.isnan(v) for v in row.values()):
            self._device.no_response = True
            self.silent_at.append(self._corpus.start + STEP * second)
            return
        self._device.no_response = False
        for key, value in row.items():
            point = self._points.get(key)
            if point is None:
                continue
            try:
                self._device.set(point.quantity.value, value, point.channel)
            except ValueError:  # does not fit the register: a noisy -2 mA on an unsigned one
                if value < 0:  # reads 0, as the device's ADC would show it
                    self._device.set(point.quantity.value, 0.0, point.channel)


class CorpusServer:
    """Serves every corpus device; an async context manager (see the module docstring)."""

    def __init__(self, corpus: ServedCorpus, *, clock: Callable[[], float],
                 host: str = "127.0.0.1") -> None:
        self.corpus = corpus
        self.host = host
        self._clock = clock
        self.devices: dict[str, SimulatedDevice] = {}
        self.feeds: dict[str, _Feed] = {}
        self.servers: dict[str, ModbusTcpSimulator] = {}  # building -> its gateway
        self._units: dict[str, tuple[str, int]] = {}
        self._stack = AsyncExitStack()

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        """Device name -> where the daemon reaches it."""
        return {name: Endpoint(self.host, self.servers[b].port, unit)
                for name, (b, unit) in self._units.items()}

    async def __aenter__(self) -> Self:
        profiles = {p: load_profile(p) for p in {d.profile for d in self.corpus.devices}}
        by_building: dict[str, list[SimulatedDevice]] = {}
        for d in self.corpus.devices:
            unit = len(by_building.setdefault(d.building, [])) + 1
            device = SimulatedDevice(profiles[d.profile], unit)
            feed = _Feed(self.corpus, d.name, device, self._clock)
            device.on_read = feed.on_read
            by_building[d.building].append(device)
            self.devices[d.name] = device
            self.feeds[d.name] = feed
            self._units[d.name] = (d.building, unit)
        try:
            for building, devices in by_building.items():
                server = ModbusTcpSimulator(devices, host=self.host)
                await self._stack.enter_async_context(server)
                self.servers[building] = server
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()


def daemon_config(corpus: ServedCorpus, endpoints: Mapping[str, Endpoint], *, site: str,
                  poll: str = "60s", timeout: str = "1s") -> dict[str, Any]:
    """``[site]``, one tcp ``[[bus]]`` per building gateway and every ``[[device]]`` with its
    location, kind and breaker; lighting controllers with their lamps per channel and the
    nameplate current per lamp in ``[device.rules.lighting]``. Rules otherwise at their
    defaults. Add ``[influxdb]``, ``[mqtt]``, ``[daemon]`` and write it with ``dump_toml``."""
    buses: dict[str, dict[str, Any]] = {}
    devices = []
    for d in corpus.devices:
        where = endpoints[d.name]
        bus = f"b{d.building}-gw"
        buses.setdefault(bus, {"name": bus, "type": "tcp", "host": where.host,
                               "port": where.port, "timeout": timeout})
        entry: dict[str, Any] = {"name": d.name, "bus": bus, "unit": where.unit,
                                 "profile": d.profile, "poll": poll, "building": d.building}
        if d.box:
            entry["box"] = d.box
        if d.circuit:
            entry["circuit"] = d.circuit
        controller = d.profile == "lighting-controller"
        entry["kind"] = "lighting" if controller else d.kind
        if d.rated_current is not None:
            entry["rated_current"] = d.rated_current
        if controller:
            entry["rules"] = {"lighting": {"lamps": lamps_setting(d.lamps),
                                           "lamp_current": d.lamp_current}}
        devices.append(entry)
    return {"site": {"id": site, "name": f"corpus {site}", "latitude": corpus.latitude,
                     "longitude": corpus.longitude, "timezone": corpus.timezone},
            "bus": list(buses.values()), "device": devices}


def lamps_setting(lamps: Sequence[int]) -> list[int]:
    """``lamps`` for the lighting rule: the channels 1..n up to the last one in use (the rule
    leaves the others alone); 0 for a channel with nothing connected between used ones."""
    used = [i for i, n in enumerate(lamps) if n > 0]
    if not used:
        return [1]
    return list(lamps[:used[-1] + 1])
