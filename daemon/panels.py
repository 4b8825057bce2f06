"""Fire panels in the daemon: GB/T 26875.3 links feeding the pipeline's fire-first lane.

Each enabled ``[[fire_panel]]`` is a ``FirePanelLink``; every delivered frame becomes Readings
(``drivers.gb26875.mapping``) at once, inside the link's receive callback, which the link runs
before it ACKs the frame; the daemon's ``emit`` handles fire flags synchronously there, so an
ACKed fire is already a stored alarm. The panel's link health (online,
errors) is sampled every ``HEALTH_INTERVAL`` of the clock's time (``rate`` clock seconds per
real second: a simulated clock samples more often in real time) like a polled device's, while
the link's heartbeat timeout, its liveness, stays in real seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from types import TracebackType
from typing import Self

from daemon.config import FirePanelConfig
from drivers.aio import cancel_and_wait
from drivers.gb26875.codec import Frame
from drivers.gb26875.link import FirePanelLink
from drivers.gb26875.mapping import frame_to_readings
from drivers.measurements import Reading

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0  # clock s
MIN_HEALTH_WAIT = 0.02  # real s: the fastest sampling on a fast simulated clock


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
            on_frame=self._receiver(p.name)) for p in panels if p.enabled]
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
            now, stamp = time.time(), self._clock()
            for link in self.links:
                for reading in link.health_readings(now):  # liveness runs on real time
                    self._emit(replace(reading, ts=stamp))
            await asyncio.sleep(self._health_wait)
