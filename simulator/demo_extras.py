"""Extras of ``firewarden demo``: an escalation chain whose pages a local webhook receiver
prints as they come, and the morning report printed at the end (``firewarden report`` as a
process, like the daemon: the simulator never imports the daemon)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from simulator.services import free_port

HOOK = "demo-escalation"


def escalation_config(port: int) -> dict[str, Any]:
    """A generic JSON webhook to the receiver (escalation pages only: ``events`` empty) and a
    two-tier chain: electricians at once, the manager after 20 simulated minutes (10 for
    fire) unacknowledged."""
    return {
        "webhook": [{"name": HOOK, "url": f"http://127.0.0.1:{port}/escalation",
                     "events": [], "retry_max": "5s"}],
        "escalation": [{"name": "demo", "tier": [
            {"name": "electricians", "notify": [HOOK]},
            {"name": "manager", "notify": [HOOK],
             "after": {"fire": "10m", "critical": "20m", "warning": "20m"}}]}],
    }


class EscalationPrinter:
    """A local HTTP receiver printing each escalation page; an async context manager."""

    def __init__(self, clock: Callable[[], str]) -> None:
        self.port = free_port()
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.pages = 0

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/escalation", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        e = body.get("event", {}) if isinstance(body, dict) else {}
        if e.get("event") == "escalated" and int(e.get("tier") or 0) > 1:
            self.pages += 1
            print(f"{self._clock()}  ESCALATION -> tier {e['tier']} ({e['tier_name']}): "
                  f"{e['alarm_id']} unacknowledged for {float(e['waited']) / 60:.0f} min "
                  f"(already paged: {', '.join(e.get('previous_tiers') or [])})", flush=True)
        elif e.get("event") == "escalation_ended" and e.get("reason") == "acknowledged":
            print(f"{self._clock()}  ESCALATION ended: {e['alarm_id']} acknowledged by "
                  f"{e.get('by')} after {float(e['after']) / 60:.0f} min", flush=True)
        return web.json_response({"ok": True})


def print_report(conf: Path, *, since: float, until: float) -> None:
    """The morning report for the demo's simulated period, as markdown, at the end."""
    print("\nthe morning report (firewarden report; the daemon sends it through [report] "
          "webhooks):\n", flush=True)
    subprocess.run([sys.executable, "-m", "daemon.cli", "report", "-c", str(conf),
                    "--since", f"{max(3600.0, until - since):.0f}", "--until", f"{until:.0f}",
                    "--language", "en"], check=False, timeout=60)
