"""Test helpers around real peers: skip-or-fail when a binary is missing, and an MQTT
collector that subscribes with aiomqtt and lets a test wait for messages.

The service launchers themselves live in ``simulator.services`` (the demo uses them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, NoReturn, Self, TypeVar

import aiomqtt
import pytest

from simulator.services import Service


def missing(what: str) -> NoReturn:
    """Skip the test, except on CI (``CI=true``) where a missing peer must fail loudly."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required on CI", pytrace=False)
    pytest.skip(f"{what} is not available")


def require(service: type[Service]) -> None:
    """Skip (or on CI fail) unless the service's binary is installed."""
    if not service.available():
        missing(service.binary)


T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], *, within: float = 10.0,
                     every: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; that is returned.

    For state that offers nothing to await (counters, another process's database)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within} s (last: {result!r})")
        await asyncio.sleep(every)


class Received(NamedTuple):
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()


class MqttCollector:
    """Subscribes to ``topics`` (QoS 1) and records every message; an async context manager.

    Retained messages arrive first with ``retain=True``; live ones with ``retain=False``.
    """

    def __init__(self, *, host: str, port: int, topics: Sequence[str] = ("#",),
                 identifier: str | None = None, clean_session: bool | None = None) -> None:
        # identifier + clean_session=False: a persistent session that queues QoS 1 messages
        # for us while we are away (and across a broker restart with persistence).
        self._client = aiomqtt.Client(host, port, identifier=identifier,
                                      clean_session=clean_session)
        self._topics = tuple(topics)
        self.messages: list[Received] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        for topic in self._topics:
            await self._client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._collect(), name="mqtt-collector")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    async def _collect(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            self.messages.append(Received(message.topic.value, bytes(raw), message.retain))
            self._changed.set()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None:
        """Publish as this client (e.g. an operator's command)."""
        await self._client.publish(topic, payload, qos=qos, retain=retain)

    def on(self, topic: str) -> list[Received]:
        """Messages received on exactly ``topic``, in order."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, predicate: Callable[[Received], bool],
                       timeout: float = 10.0) -> Received:  # noqa: ASYNC109 - reads best in tests
        """The first message (already received or still to come) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._task is not None and self._task.done()):
                got = "\n".join(f"  {m}" for m in self.messages[-20:]) or "  (none)"
                raise AssertionError(f"no matching MQTT message within {timeout} s; got:\n{got}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


class NotifySocket:
    """A real datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        """Every message received so far (new ones read without blocking)."""
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def count(self, line: str) -> int:
        return sum(line in m.splitlines() for m in self.drain())

    def statuses(self) -> list[str]:
        return [s for m in self.drain() for s in m.splitlines() if s.startswith("STATUS=")]

    async def wait_for(self, text: str, within: float, count: int = 1) -> None:
        deadline = time.monotonic() + within
        while self.count(text) < count:
            assert time.monotonic() < deadline, f"no {count}x {text!r} in {self.messages}"
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self.sock.close()
