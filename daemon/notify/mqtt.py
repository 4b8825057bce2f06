"""MQTT notifier: alarm events and retained alarm state, through an outbox that survives
broker outages.

Topics (design §5), with ``prefix`` = ``mqtt.topic_prefix``:

- ``{prefix}/{site}/status``: ``online`` (retained) after each connect; the last will and a
  clean shutdown both leave ``offline`` (retained).
- ``{prefix}/{site}/events``: every alarm transition as JSON, QoS 1, not retained.
- ``{prefix}/{site}/alarms/{alarm_id}``: the alarm's current state as JSON, QoS 1, retained;
  an empty retained payload (which deletes the retained message) once it is removed.

``publish_event`` only appends to an in-memory outbox; a background task publishes it in order,
one QoS 1 message at a time, and drops a message from the outbox only after the broker's
PUBACK. When the broker goes away the task reconnects with capped, jittered backoff and carries
on where it stopped, so nothing accepted is lost or reordered (a message whose PUBACK was lost
may arrive twice: QoS 1 is at-least-once). Fire-severity events go out first: they have their own
lane, published before anything waiting in the normal outbox (each alarm's own events keep
their order, as an alarm's severity decides its lane). The rules issue persists the outbox in
SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import aiomqtt

from daemon.config import MqttConfig
from rules.model import AlarmEvent, AlarmState, EventKind, Severity

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def topic_leaf(text: str) -> str:
    """``text`` as one topic level: '/' would add levels, '+' and '#' are wildcards."""
    return text.translate(_TOPIC_UNSAFE) or "_"


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message waiting in the outbox."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class MqttStats:
    connected: bool
    queued: int  # accepted, not yet acknowledged by the broker
    published: int
    connects: int  # successful connections since start
    connect_failures: int  # failed attempts and lost connections


def event_messages(event: AlarmEvent, *, prefix: str, site: str) -> list[OutMessage]:
    """The messages one alarm transition becomes (pure; the order is the publish order)."""
    base = f"{prefix}/{site}"
    state = (b"" if event.kind is EventKind.REMOVED or event.alarm.state is AlarmState.NORMAL
             else _json(event.alarm.as_dict()))
    return [
        OutMessage(f"{base}/events", _json(event.as_dict()), qos=1, retain=False),
        OutMessage(f"{base}/alarms/{topic_leaf(event.alarm.alarm_id)}", state, qos=1,
                   retain=True),
    ]


def _json(value: dict[str, object]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class MqttNotifier:
    """Publishes alarm events to MQTT with an in-order, reconnecting outbox; an async context
    manager. Starting does not wait for the broker: the daemon runs without one."""

    def __init__(self, *, config: MqttConfig, site: str, retry_initial: float = 1.0,
                 retry_max: float = 30.0, close_timeout: float = 5.0) -> None:
        self._config = config
        self._site = site
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._close_timeout = close_timeout
        self.status_topic = f"{config.topic_prefix}/{site}/status"
        self._outbox: deque[OutMessage] = deque()
        self._fire_lane: deque[OutMessage] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._connected = False
        self._password: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._published = 0
        self._connects = 0
        self._failures = 0

    @property
    def connected(self) -> bool:
        """Whether a broker session is up right now."""
        return self._connected

    @property
    def stats(self) -> MqttStats:
        return MqttStats(connected=self._connected, queued=self._queued,
                         published=self._published, connects=self._connects,
                         connect_failures=self._failures)

    @property
    def _queued(self) -> int:
        return len(self._fire_lane) + len(self._outbox)

    def alarm_topic(self, alarm_id: str) -> str:
        return f"{self._config.topic_prefix}/{self._site}/alarms/{topic_leaf(alarm_id)}"

    def publish_event(self, event: AlarmEvent) -> None:
        """Queue an alarm transition (event + retained state). Never blocks, never raises
        for a broker problem."""
        try:
            messages = event_messages(event, prefix=self._config.topic_prefix, site=self._site)
        except Exception:
            log.exception("cannot encode alarm event %s", event.alarm.alarm_id)
            return
        lane = self._fire_lane if event.alarm.severity is Severity.FIRE else self._outbox
        lane.extend(messages)
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Return once the outbox is empty (bound it with ``asyncio.timeout``)."""
        await self._idle.wait()

    async def __aenter__(self) -> Self:
        if self._config.password_file is not None:
            # Read once at start: a missing secret is a startup error, not a retry loop.
            self._password = self._config.password_file.read_text(encoding="utf-8").rstrip(
                "\r\n")
        self._task = asyncio.create_task(self._run(), name="mqtt-notifier")
        self._task.add_done_callback(_log_crash)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=self._close_timeout)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._connected = False
        if self._queued:
            # OUTBOX: issue 6 keeps these in SQLite and sends them after the restart.
            log.error("MQTT notifier closed with %d messages unsent (lost)", self._queued)

    # -- the connection loop ---------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        tls = (aiomqtt.TLSParameters(ca_certs=str(self._config.tls_ca))
               if isinstance(self._config.tls_ca, Path) else None)
        return aiomqtt.Client(
            self._config.host, self._config.port,
            username=self._config.username, password=self._password,
            identifier=self._config.client_id, keepalive=self._config.keepalive,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            tls_params=tls, timeout=10.0,
        )

    async def _run(self) -> None:
        attempt = 0
        # While closing, keep trying only as long as there is something to deliver (the
        # caller bounds that by close_timeout); without a session the will says offline.
        while not (self._closing and not self._queued):
            error: BaseException | None = None
            try:
                # A fresh client per connection: paho's own queues die with the old one, so
                # the outbox is the only place a message waits.
                async with self._client() as client:
                    self._on_connected(attempt)
                    attempt = 0
                    await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    await self._session(client)
                    # Clean shutdown: the will is not sent on DISCONNECT, so say it ourselves.
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
                    return
            except* (aiomqtt.MqttError, OSError) as group:
                error = group.exceptions[0]
            finally:
                self._connected = False
            attempt += 1
            self._on_failure(attempt, error)
            await self._backoff(min(self._retry_max, self._retry_initial * 2 ** (attempt - 1)))

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish the outbox until closing; raises MqttError when the connection drops."""
        async with asyncio.TaskGroup() as group:
            # The message iterator is how aiomqtt reports a dropped connection while we idle;
            # the cmd/ subscriptions (commands issue) will be handled here too.
            watcher = group.create_task(self._watch(client), name="mqtt-watch")
            await self._publish_outbox(client)
            watcher.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        async for _message in client.messages:
            pass

    async def _publish_outbox(self, client: aiomqtt.Client) -> None:
        while True:
            while lane := self._fire_lane or self._outbox:
                message = lane[0]
                await client.publish(message.topic, message.payload, qos=message.qos,
                                     retain=message.retain)
                lane.popleft()  # only now: the broker has acknowledged it
                self._published += 1
            self._idle.set()
            if self._closing:
                return
            self._wake.clear()
            await self._wake.wait()

    def _on_connected(self, failed_attempts: int) -> None:
        self._connected = True
        self._connects += 1
        where = f"{self._config.host}:{self._config.port}"
        if failed_attempts:
            log.info("MQTT connected to %s after %d failed attempts; %d messages queued",
                     where, failed_attempts, self._queued)
        else:
            log.info("MQTT connected to %s", where)

    def _on_failure(self, attempt: int, error: BaseException | None) -> None:
        self._failures += 1
        where = f"{self._config.host}:{self._config.port}"
        if attempt == 1:
            log.error("MQTT broker %s unavailable (%s); retrying, %d messages queued",
                      where, error, self._queued)
        else:
            log.debug("MQTT broker %s still unavailable (%s)", where, error)

    async def _backoff(self, delay: float) -> None:
        """Sleep before reconnecting, cut short by shutdown."""
        if self._closing:
            await asyncio.sleep(0.2)  # final delivery attempts: quick, the caller has a deadline
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_closing(), delay * random.uniform(0.5, 1.0))

    async def _wait_closing(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()


def _log_crash(task: asyncio.Task[None]) -> None:
    """A notifier loop that dies is a bug; say so at once rather than at shutdown."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.critical("MQTT notifier task crashed; events now only queue up", exc_info=error)
