"""The imperative shell: serve a scenario's community on real sockets, in (compressed) time.

``CommunityRunner`` is an async context manager. On entry it builds one ``SimulatedDevice``
per Modbus device and serves each building's devices on its own ``ModbusTcpSimulator`` (one
TCP port per building, like one RS-485-to-Ethernet gateway per building; unit ids 1..N; an
unknown or silenced unit gets no answer at all, like a dead device on a serial line). It
starts the buildings' fire-panel UITDs (TCP clients of a receiver, or writers on a socat pty
pair each), then ticks: every ``tick`` real seconds it pushes ``model.sample(sim_time())``
into the devices, applies device-silent/garbage faults, reports fires and faults to the
panels and calls ``on_timeline`` for every event that starts or ends.

The simulated clock runs ``compression`` times faster than real time from the scenario's
start; tests pass ``clock`` (a function returning simulated epoch seconds) and
``ticking=False`` and call ``tick()`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Literal, Self

from pymodbus.datastore import ModbusDeviceContext

from core.aio import cancel_and_wait
from drivers.gb26875.codec import ComponentStatusFlags
from drivers.profile import load_profile
from simulator.community.daemon_config import Endpoints, FirePanelEndpoint
from simulator.community.events import Event
from simulator.community.model import CommunityModel
from simulator.community.panel import UitdEmulator, serial_opener, tcp_opener
from simulator.community.scenario import Scenario
from simulator.community.topology import PanelTarget, locate
from simulator.community.truth import TruthRecord, ground_truth
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.pty import SocatPair

log = logging.getLogger(__name__)

_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


@dataclass(frozen=True, slots=True)
class UitdMode:
    """How the fire panels are emulated: ``none``; ``tcp-client`` to ``host:port`` (building
    i of the community, counting from 0, connects to ``port + i``); ``pty``: one socat pair
    per building, the daemon reads the ``a`` end."""

    kind: Literal["none", "tcp-client", "pty"] = "none"
    host: str = "127.0.0.1"
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> UitdMode:
        """``none``, ``pty`` or ``tcp-client:HOST:PORT``."""
        if text in ("none", "pty"):
            return cls(text)  # type: ignore[arg-type]
        parts = text.split(":")
        if len(parts) == 3 and parts[0] == "tcp-client" and parts[2].isdigit() \
                and 1 <= int(parts[2]) <= 65535:
            return cls("tcp-client", parts[1] or "127.0.0.1", int(parts[2]))
        raise ValueError(f"--uitd: use none, pty or tcp-client:HOST:PORT (got {text!r})")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """An event starting or ending, when the runner noticed it."""

    phase: Literal["start", "end"]
    event: Event
    sim_time: float  # when it happened (simulated epoch s)
    real_offset: float  # real seconds since the run started


@dataclass(frozen=True, slots=True)
class PanelReport:
    """A component status the runner asked a panel to send."""

    sim_time: float
    panel: str
    target: PanelTarget
    status: str  # "fire", "fault" or "normal"
    serial: int | None


class CommunityRunner:
    """Serves ``scenario`` until exited; see the module docstring."""

    def __init__(self, scenario: Scenario, *, host: str = "127.0.0.1", port: int = 0,
                 uitd: UitdMode = UitdMode(), tick: float = 0.5, heartbeat: float = 20.0,
                 ack_timeout: float = 3.0, ticking: bool = True,
                 clock: Callable[[], float] | None = None,
                 on_timeline: Callable[[TimelineEntry], None] | None = None) -> None:
        self.scenario = scenario
        self.model = CommunityModel(scenario)
        self.host = host
        self.port = port
        self.uitd = uitd
        self.tick_interval = tick
        self.heartbeat = heartbeat
        self.ack_timeout = ack_timeout
        self.ticking = ticking
        self.on_timeline = on_timeline
        self._clock = clock
        self.devices: dict[str, SimulatedDevice] = {}
        self.servers: dict[str, ModbusTcpSimulator] = {}  # building id -> its gateway
        self.panels: dict[str, UitdEmulator] = {}  # building id -> its UITD
        self.ptys: dict[str, SocatPair] = {}
        self.reports: list[PanelReport] = []
        self.timeline: list[TimelineEntry] = []
        self.finished = asyncio.Event()
        self._unit_of: dict[str, tuple[str, int]] = {}
        self._faults: dict[str, str] = {}
        self._last: float | None = None
        self._real0 = 0.0
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    # -- clock, truth, endpoints --------------------------------------------------------------

    def sim_time(self) -> float:
        """The simulated epoch time now."""
        if self._clock is not None:
            return self._clock()
        return self.scenario.start + (time.monotonic() - self._real0) * \
            self.scenario.compression

    def real_offset(self, sim_time: float) -> float:
        return self.scenario.real_offset(sim_time)

    @property
    def truth(self) -> list[TruthRecord]:
        return ground_truth(self.scenario)

    @property
    def endpoints(self) -> Endpoints:
        modbus = {b: (s.host, s.port) for b, s in self.servers.items()}
        panels: dict[str, FirePanelEndpoint] = {}
        for i, b in enumerate(self.scenario.community.buildings):
            if self.uitd.kind == "tcp-client":
                panels[b.id] = FirePanelEndpoint("tcp-server", self.uitd.port + i, self.uitd.host)
            elif self.uitd.kind == "pty" and b.id in self.ptys:
                panels[b.id] = FirePanelEndpoint("serial", str(self.ptys[b.id].a))
        return Endpoints(modbus=modbus, fire_panels=panels)

    def device(self, name: str) -> SimulatedDevice:
        return self.devices[name]

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        community = self.scenario.community
        profiles = {name: load_profile(name) for name in {d.profile for d in
                                                            community.devices()}}
        by_building: dict[str, list[SimulatedDevice]] = {}
        for d in community.devices():
            device = SimulatedDevice(profiles[d.profile], d.unit)
            self.devices[d.name] = device
            self._unit_of[d.name] = (d.building, d.unit)
            by_building.setdefault(d.building, []).append(device)
        for i, b in enumerate(community.buildings):
            server = ModbusTcpSimulator(by_building[b.id], host=self.host,
                                        port=self.port + i if self.port else 0,
                                        silent_unknown=True)
            await self._stack.enter_async_context(server)
            self.servers[b.id] = server
        if self.uitd.kind != "none":
            for i, b in enumerate(community.buildings):
                if self.uitd.kind == "pty":
                    pair = SocatPair()
                    await asyncio.to_thread(pair.start)
                    self._stack.callback(pair.__exit__, None, None, None)
                    self.ptys[b.id] = pair
                    opener = serial_opener(str(pair.b))
                else:
                    opener = tcp_opener(self.uitd.host, self.uitd.port + i)
                emulator = UitdEmulator(name=b.panel.name, address=b.panel.address,
                                        opener=opener, clock=self._panel_clock,
                                        heartbeat=self.heartbeat, ack_timeout=self.ack_timeout)
                await self._stack.enter_async_context(emulator)
                self.panels[b.id] = emulator
        self._real0 = time.monotonic()
        await self.tick()
        if self.ticking:
            self._task = asyncio.create_task(self._loop(), name="community-ticks")

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._stack.aclose()

    async def wait_finished(self) -> None:
        """Until the simulated clock passes the scenario's end."""
        await self.finished.wait()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            await self.tick()

    # -- one tick -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Serve the model at the current simulated time and handle event transitions."""
        t = self.sim_time()
        faults = self.model.faults(t)
        sample = self.model.sample(t)
        for name, device in self.devices.items():
            mode = faults.get(name)
            self._apply_fault(name, device, mode)
            if mode == "random":
                _write_garbage(device, self.model, name, t)
            elif mode is None or mode in ("silent", "exception", "busy"):
                for (quantity, channel), value in sample[name].items():
                    device.set(quantity, value, channel)
        self._transitions(t)
        if t >= self.scenario.end:
            self.finished.set()

    def _apply_fault(self, name: str, device: SimulatedDevice, mode: str | None) -> None:
        before = self._faults.get(name)
        if before == mode:
            return
        building, unit = self._unit_of[name]
        device.fail = mode == "exception"
        device.busy_next = 1_000_000 if mode == "busy" else 0
        self.servers[building].silence(unit, mode == "silent")
        if mode is None:
            self._faults.pop(name, None)
        else:
            self._faults[name] = mode

    def _transitions(self, t: float) -> None:
        last = self._last if self._last is not None else self.scenario.start - 1e-6
        self._last = t
        changes: list[tuple[float, int, Literal["start", "end"], Event]] = []
        for e in self.scenario.events:
            if last < e.start <= t:
                changes.append((e.start, 1, "start", e))
            if last < e.end <= t:
                changes.append((e.end, 0, "end", e))
        for when, _, phase, event in sorted(changes, key=lambda c: (c[0], c[1], c[3].index)):
            entry = TimelineEntry(phase, event, when, self.real_offset(when))
            self.timeline.append(entry)
            if event.kind in ("smoke-fire", "detector-fault"):
                self._report(event, phase, when)
            if self.on_timeline is not None:
                self.on_timeline(entry)

    def _report(self, event: Event, phase: str, when: float) -> None:
        where = locate(self.scenario.community, event.target)
        if where.detector_obj is not None:
            return  # a residual-current detector's own probe fault: Modbus only
        target = where.panel_target(event.params)
        status = "normal" if phase == "end" else \
            ("fire" if event.kind == "smoke-fire" else "fault")
        flags = ComponentStatusFlags(normal=True, fire=status == "fire",
                                     fault=status == "fault")
        emulator = self.panels.get(where.building)
        serial = None
        if emulator is not None:
            building = self.scenario.community.building(where.building)
            serial = emulator.report(target, flags, system_type=building.panel.system_type,
                                     when=self._local(when))
        self.reports.append(PanelReport(when, target.panel, target, status, serial))

    def _local(self, epoch: float) -> datetime:
        """The panel's clock: naive local time of the site."""
        return datetime.fromtimestamp(epoch, self.scenario.zone).replace(tzinfo=None,
                                                                         microsecond=0)

    def _panel_clock(self) -> datetime:
        return self._local(self.sim_time())


def _write_garbage(device: SimulatedDevice, model: CommunityModel, name: str, t: float) -> None:
    """Random registers (a device answering nonsense: wrong map, EMI, a firmware bug)."""
    points = device.profile.points
    words = iter(model.garbage_words(name, t, sum(p.width for p in points)))
    for point in points:
        fc = _FC[point.table.value]
        raw = [next(words) for _ in range(point.width)]
        values: list[int] | list[bool] = [bool(raw[0] & 1)] if point.table.is_bit else raw
        ModbusDeviceContext.setValues(device.context, fc, point.address, values)
