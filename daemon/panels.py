"""Fire panels in the daemon: GB/T 26875.3 links feeding the pipeline's fire-first lane.

Each enabled ``[[fire_panel]]`` is a ``FirePanelLink``; every delivered frame becomes Readings
(``drivers.gb26875.mapping``) at once, inside the link's receive callback, which the link runs
before it ACKs the frame; the daemon's ``emit`` handles fire flags synchronously there, so an
ACKed fire is already a stored alarm. The panel's link health (online,
errors) is sampled every ``HEALTH_INTERVAL`` of the clock's time (``rate`` clock seconds per
real second: a simulated clock samples more often in real time) like a polled device's, while
the link's heartbeat timeout, its liveness, stays in real seconds on the monotonic clock (a
wall clock stepped back must not hide a dead panel).

``PanelHost`` keeps the links (and the UITDs' open connections) across a config reload when
the panels' config is unchanged: a reload swaps the pipeline behind them, and what arrives
in between is held and handed to the new pipeline, so no frame is dropped or left unACKed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self

from core.aio import cancel_and_wait
from core.measurements import Reading
from daemon.config import FirePanelConfig
from drivers.gb26875.codec import Frame
from drivers.gb26875.link import FirePanelLink
from drivers.gb26875.mapping import frame_to_readings

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0  # clock s
MIN_HEALTH_WAIT = 0.02  # real s: the fastest sampling on a fast simulated clock
HELD_MAX = 100_000  # readings held while a reload swaps the pipeline (seconds' worth)


def zone_locator(panel: FirePanelConfig) -> Callable[[str | None], Mapping[str, str]]:
    """Channel ``"{system}-{zone}-{position}"`` -> where it is, from the panel's zone table.

    A zone entry for the exact system wins over one for any system; unmapped zones still say
    which zone they are, so an alarm is never less specific than the frame.
    """
    exact = {(z.system, z.zone): z for z in panel.zones if z.system is not None}
    any_system = {z.zone: z for z in panel.zones if z.system is None}

    def locate(channel: str | None) -> Mapping[str, str]:
        parts = (channel or "").split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return {}
        system, zone = int(parts[0]), int(parts[1])
        found = exact.get((system, zone)) or any_system.get(zone)
        where = {"zone": str(zone)}
        if found is not None:
            where |= {k: v for k, v in (("building", found.building), ("floor", found.floor),
                                        ("area", found.area)) if v}
        return where

    return locate


class FirePanels:
    """Runs every configured panel link; an async context manager."""

    def __init__(self, *, panels: Sequence[FirePanelConfig], emit: Callable[[Reading], None],
                 clock: Callable[[], float] = time.time,
                 health_interval: float = HEALTH_INTERVAL, rate: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._emit = emit
        self._clock = clock
        self._health_wait = max(health_interval / rate, min(health_interval, MIN_HEALTH_WAIT))
        self.links = [FirePanelLink(
            name=p.name, transport=p.transport, port=p.port, host=p.host, baudrate=p.baudrate,
            address=p.address, heartbeat_timeout=p.heartbeat_timeout,
            max_connections=p.max_connections, max_per_source=p.max_per_source,
            idle_timeout=p.idle_timeout, on_frame=self._receiver(p.name))
            for p in panels if p.enabled]
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    def _receiver(self, panel: str) -> Callable[[Frame], None]:
        def on_frame(frame: Frame) -> None:
            for reading in frame_to_readings(frame, panel=panel, ts=self._clock()):
                self._emit(reading)
        return on_frame

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for link in self.links:
                await stack.enter_async_context(link)
            self._stack = stack.pop_all()
        if self.links:
            self._task = asyncio.create_task(self._report_health(), name="fire-panel-health")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._stack.aclose()

    async def _report_health(self) -> None:
        while True:
            stamp = self._clock()
            for link in self.links:
                for reading in link.health_readings(stamp):  # liveness: monotonic, inside
                    self._emit(reading)
            await asyncio.sleep(self._health_wait)


class PanelHost:
    """The fire panels across config reloads; an async context manager (``Supervisor.run``).

    Each config run ``attach``es its pipeline's ``emit``. Between two runs the links keep
    receiving and ACKing: their readings are held (at most ``HELD_MAX``) and handed to the next
    pipeline as soon as it attaches. The links restart only when the panels' config changed,
    and stop when a run ends without a reload (``keep`` false): before its pipeline drains.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, rate: float = 1.0) -> None:
        self._clock = clock
        self._rate = rate
        self._panels: FirePanels | None = None
        self._config: tuple[FirePanelConfig, ...] = ()
        self._emit: Callable[[Reading], None] | None = None
        self._held: deque[Reading] = deque()
        self.held_dropped = 0

    def _deliver(self, reading: Reading) -> None:
        if self._emit is not None:
            self._emit(reading)
            return
        if len(self._held) >= HELD_MAX:
            self._held.popleft()
            self.held_dropped += 1
        self._held.append(reading)

    @asynccontextmanager
    async def attach(self, panels: Sequence[FirePanelConfig], emit: Callable[[Reading], None],
                     *, keep: Callable[[], bool]) -> AsyncIterator[FirePanels]:
        """Run ``panels`` (keeping the running links when their config is the same) feeding
        ``emit`` until the block ends; then hold what arrives, or stop if not ``keep()``."""
        if self._panels is not None and tuple(panels) != self._config:
            log.info("fire panel config changed: restarting the panel links")
            await self._stop()
        if self._panels is None:
            started = FirePanels(panels=panels, emit=self._deliver, clock=self._clock,
                                 rate=self._rate)
            await started.__aenter__()
            self._panels, self._config = started, tuple(panels)
        held, self._held = self._held, deque()
        self._emit = emit
        if held:
            log.info("fire panels: %d readings received during the reload handed on", len(held))
        for reading in held:
            emit(reading)
        try:
            yield self._panels
        finally:
            self._emit = None
            if not keep():
                await self._stop()

    async def _stop(self) -> None:
        panels, self._panels = self._panels, None
        if panels is not None:
            await panels.__aexit__(None, None, None)
        if self._held:  # only after a failed reload: nothing is left to hand them to
            log.error("fire panels: %d readings received while no pipeline ran were lost",
                      len(self._held))
            self._held.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stop()
