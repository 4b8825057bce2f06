"""The notifier base (daemon/notify/base.py) and the registry the supervisor builds from."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from daemon.config import Config
from daemon.notify import registry
from daemon.notify.base import CommandHandler, Notifier, capped_backoff
from daemon.notify.mqtt import MqttNotifier
from daemon.notify.webhook import WebhookNotifier
from daemon.store import Outbox, OutboxItem


class ListOutbox:
    def __init__(self) -> None:
        self.rows: dict[str, list[OutboxItem]] = {}

    def add(self, sink: str, seq: int) -> None:
        self.rows.setdefault(sink, []).append(OutboxItem(seq, f"e{seq}", {"seq": seq}))

    def pending(self, sink: str, limit: int = 100) -> list[OutboxItem]:
        return self.rows.get(sink, [])[:limit]

    def delivered(self, sink: str, seqs: Sequence[int]) -> None:
        self.rows[sink] = [i for i in self.rows.get(sink, []) if i.seq not in seqs]


class Fake(Notifier):
    """Delivers everything at once, or hangs, or crashes."""

    def __init__(self, outbox: ListOutbox, *, mode: str = "ok", close_timeout: float = 1.0):
        super().__init__(outbox=outbox, sink="fake", label="fake notifier",
                         task_name="fake-notifier", close_timeout=close_timeout,
                         restart_initial=0.05, restart_max=0.1)
        self.store = outbox
        self.mode = mode
        self.sent: list[int] = []
        self.opened = self.closed = False

    @classmethod
    def sinks(cls, config: Config) -> list[str]:
        return ["fake"]

    @classmethod
    def from_config(cls, config: Config, *, outbox: Outbox,
                    on_command: CommandHandler | None = None) -> list[Fake]:
        return []

    async def _open(self) -> None:
        self.opened = True

    async def _close(self) -> None:
        self.closed = True

    async def _run(self) -> None:
        if self.mode == "crash" and self.crashes < 2:
            raise RuntimeError("bug")
        while True:
            self._wake.clear()
            if self.mode == "hang" and self.store.pending(self.sink):
                await asyncio.sleep(3600)
            items = self.store.pending(self.sink)
            self.sent += [i.seq for i in items]
            self.store.delivered(self.sink, [i.seq for i in items])
            self._idle.set()
            if self._closing:
                return
            await self._wake.wait()


async def test_lifecycle_sends_on_wake_and_closes() -> None:
    outbox = ListOutbox()
    async with Fake(outbox) as notifier:
        assert notifier.opened
        outbox.add("fake", 1)
        outbox.add("fake", 2)
        notifier.wake()
        async with asyncio.timeout(2):
            await notifier.drain()
        assert notifier.sent == [1, 2]
    assert notifier.closed


async def test_close_deadline_cancels_and_keeps_rows(caplog: pytest.LogCaptureFixture) -> None:
    outbox = ListOutbox()
    outbox.add("fake", 1)
    started = time.monotonic()
    async with Fake(outbox, mode="hang", close_timeout=0.2) as notifier:
        await asyncio.sleep(0.05)
    assert time.monotonic() - started < 2
    assert notifier.closed
    assert outbox.pending("fake") != []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert "fake notifier closed with 1 events unsent" in warnings[0].getMessage()
    assert warnings[0].name == __name__  # the subclass's module logger


async def test_crash_is_logged_at_once_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    outbox = ListOutbox()
    outbox.add("fake", 1)
    async with Fake(outbox, mode="crash") as notifier:
        notifier.wake()
        async with asyncio.timeout(2):
            await notifier.drain()  # the third run delivers
        assert notifier.sent == [1]
        assert notifier.crashes == 2
        crashes = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(crashes) == 2
        assert "fake notifier task crashed; restarting it in 0.1 s" in crashes[1].getMessage()
        assert crashes[0].exc_info is not None


def test_capped_backoff_never_overflows() -> None:
    assert [capped_backoff(n, 1.0, 30.0) for n in (1, 2, 3, 6)] == [1.0, 2.0, 4.0, 30.0]
    assert capped_backoff(5000, 1.0, 30.0) == 30.0  # hours of a broker outage


async def test_sleep_is_cut_short_by_close() -> None:
    notifier = Fake(ListOutbox())
    sleeper = asyncio.create_task(notifier._sleep(30))
    await asyncio.sleep(0.05)
    notifier.wake()  # new rows do not end a backoff ...
    await asyncio.sleep(0.05)
    assert not sleeper.done()
    notifier._closing = True  # ... shutdown does
    notifier.wake()
    async with asyncio.timeout(1):
        await sleeper


def test_registry_builds_mqtt_then_each_webhook() -> None:
    config = Config.model_validate({
        "site": {"id": "s1"},
        "webhook": [{"name": "ops", "url": "http://127.0.0.1:9/hook"},
                    {"name": "wecom", "url": "http://127.0.0.1:9/w", "format": "wecom"}],
    })
    assert registry.sinks(config) == ["mqtt", "webhook:ops", "webhook:wecom"]
    built = registry.build(config, outbox=ListOutbox())
    assert [type(n) for n in built] == [MqttNotifier, WebhookNotifier, WebhookNotifier]
    assert [n.sink for n in built] == registry.sinks(config)
