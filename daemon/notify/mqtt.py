"""MQTT notifier: alarm events and retained alarm state from the store's outbox, operator
commands, and Home Assistant discovery.

Topics (design §5), with ``prefix`` = ``mqtt.topic_prefix``:

- ``{prefix}/{site}/status``: ``online`` (retained) after each connect; the last will and a
  clean shutdown both leave ``offline`` (retained).
- ``{prefix}/{site}/events``: every alarm transition as JSON with its ``event_id``, QoS 1, not
  retained.
- ``{prefix}/{site}/alarms/{alarm_id}``: the alarm's current state as JSON, QoS 1, retained;
  an empty retained payload (which deletes the retained message) once it is back to normal.
- ``{prefix}/{site}/cmd/{verb}`` (we subscribe): ``ack``, ``shelve``, ``unshelve``,
  ``reset``, ``out-of-service``, ``in-service`` with a JSON body; the answer goes to
  ``{prefix}/{site}/cmd/result``. A command must be fresh (daemon/commands.py): one that
  arrives retained (the broker stored it, and hands it over at every subscribe) is refused
  and cleared from the broker; one over ``MAX_COMMAND_BYTES`` is refused unread; an empty
  payload (how a retained message is deleted) is ignored.

Events come from the alarm store's outbox (SQLite), not from memory: a background task
publishes the pending rows in order (fire first), one QoS 1 message at a time, and deletes a
row only after the broker's PUBACK. So an event accepted while the broker is down, or just
before the daemon was killed, is sent when both are back; one whose PUBACK was lost may arrive
twice (QoS 1 is at-least-once): receivers de-duplicate on ``event_id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from daemon.commands import MAX_COMMAND_BYTES, clip, too_large
from daemon.config import Config, MqttConfig
from daemon.notify.base import CommandHandler, Notifier, capped_backoff
from daemon.secrets import read_secret
from daemon.store import Outbox, OutboxItem
from rules.model import AlarmState

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def topic_leaf(text: str) -> str:
    """``text`` as one topic level: '/' would add levels, '+' and '#' are wildcards."""
    return text.translate(_TOPIC_UNSAFE) or "_"


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class MqttStats:
    connected: bool
    queued: int  # events accepted, not yet acknowledged by the broker
    published: int
    connects: int  # successful connections since start
    connect_failures: int  # failed attempts and lost connections
    commands: int  # commands received (valid or not)
    commands_refused: int = 0  # not admitted: retained, too large, stale, replayed, no ts


REFUSAL_LOG_EVERY = 10.0  # s: at most one log line per this, so a flood cannot fill the log


def event_messages(item: OutboxItem, *, prefix: str, site: str) -> list[OutMessage]:
    """The messages one stored alarm event becomes (pure; the order is the publish order)."""
    base = f"{prefix}/{site}"
    alarm = item.alarm
    state = b"" if alarm.get("state") == AlarmState.NORMAL.value else _json(alarm)
    return [
        OutMessage(f"{base}/events", _json(item.payload), qos=1, retain=False),
        OutMessage(f"{base}/alarms/{topic_leaf(str(alarm['alarm_id']))}", state, qos=1,
                   retain=True),
    ]


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class MqttNotifier(Notifier):
    """Publishes the outbox to MQTT, reconnecting forever; takes commands; an async context
    manager. Starting does not wait for the broker: the daemon runs without one. The lifecycle
    (worker task, wake/drain, close deadline, crash restart) is daemon/notify/base.py's; this
    class adds the connection, commands and retained state."""

    def __init__(self, *, config: MqttConfig, site: str, outbox: Outbox, sink: str = "mqtt",
                 on_command: CommandHandler | None = None, retry_initial: float = 1.0,
                 retry_max: float = 30.0, close_timeout: float = 5.0) -> None:
        super().__init__(outbox=outbox, sink=sink, label="MQTT notifier",
                         task_name="mqtt-notifier", close_timeout=close_timeout)
        self._config = config
        self._site = site
        self._on_command = on_command
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.base = f"{config.topic_prefix}/{site}"
        self.status_topic = f"{self.base}/status"
        self._direct: deque[OutMessage] = deque()  # command results: transient, not stored
        self._retained: dict[str, bytes] = {}  # device states, discovery: sent on each connect
        self._connected = False
        self._password: str | None = None
        self._published = 0
        self._connects = 0
        self._failures = 0
        self._commands = 0
        self._refused = 0
        self._refusals_unlogged = 0
        self._refusal_logged = -math.inf  # monotonic

    @classmethod
    def sinks(cls, config: Config) -> list[str]:
        return ["mqtt"]

    @classmethod
    def from_config(cls, config: Config, *, outbox: Outbox,
                    on_command: CommandHandler | None = None) -> list[MqttNotifier]:
        return [cls(config=config.mqtt, site=config.site.id, outbox=outbox,
                    on_command=on_command)]

    @property
    def connected(self) -> bool:
        """Whether a broker session is up right now."""
        return self._connected

    @property
    def stats(self) -> MqttStats:
        return MqttStats(connected=self._connected, queued=self._queued,
                         published=self._published, connects=self._connects,
                         connect_failures=self._failures, commands=self._commands,
                         commands_refused=self._refused)

    def alarm_topic(self, alarm_id: str) -> str:
        return f"{self.base}/alarms/{topic_leaf(alarm_id)}"

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Keep ``topic`` retained at ``payload`` (re-sent after every reconnect); for device
        states and Home Assistant discovery, which are state, not events."""
        if self._retained.get(topic) == payload:
            return
        self._retained[topic] = payload
        self._direct.append(OutMessage(topic, payload, qos=1, retain=True))
        self.wake()

    async def _open(self) -> None:
        if self._config.password_file is not None:
            # Read once at start: a missing secret is a startup error, not a retry loop.
            self._password = read_secret(self._config.password_file, "mqtt.password_file")

    async def _close(self) -> None:
        self._connected = False

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
                    if self._on_command is not None:
                        await client.subscribe(f"{self.base}/cmd/+", qos=1)
                    self._direct = deque(OutMessage(t, p, qos=1, retain=True)
                                         for t, p in self._retained.items())
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
            await self._backoff(capped_backoff(attempt, self._retry_initial, self._retry_max))

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish the outbox until closing; raises MqttError when the connection drops."""
        async with asyncio.TaskGroup() as group:
            # The message iterator brings commands, and is how aiomqtt reports a dropped
            # connection while we idle.
            watcher = group.create_task(self._watch(client), name="mqtt-watch")
            await self._publish_outbox(client)
            watcher.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        prefix = f"{self.base}/cmd/"
        async for message in client.messages:
            topic = message.topic.value
            if not topic.startswith(prefix) or self._on_command is None:
                continue
            verb = topic[len(prefix):]
            if verb == "result":
                continue
            payload = message.payload
            body = payload if isinstance(payload, bytes) else str(payload or "").encode()
            if not body:
                continue  # deletes a retained message (ours, below): not a command
            self._commands += 1
            result = self._command(topic, verb, body, retained=message.retain)
            if "refused" in result:
                self._refusal(result)
            self._direct.append(OutMessage(f"{self.base}/cmd/result", _json(result), qos=1,
                                           retain=False))
            self.wake()

    def _command(self, topic: str, verb: str, body: bytes, *,
                 retained: bool) -> dict[str, object]:
        assert self._on_command is not None
        if retained:
            # A retained command is delivered again at every subscribe (daemon or broker
            # restart): it would be applied again, long after it was meant. Never apply one;
            # delete it from the broker so it stops coming.
            self._direct.append(OutMessage(topic, b"", qos=1, retain=True))
            return {"ok": False, "verb": clip(verb), "refused": "retained",
                    "error": "retained command refused and cleared from the broker: send "
                             "commands without the retain flag"}
        if len(body) > MAX_COMMAND_BYTES:
            return {"ok": False, "verb": clip(verb), "refused": "too-large",
                    "error": str(too_large(len(body)))}
        try:
            return self._on_command(verb, body)
        except Exception as exc:  # a handler bug answers, never kills the session
            log.exception("MQTT command %s failed", clip(verb))
            return {"ok": False, "verb": clip(verb), "error": f"internal error: {clip(str(exc))}"}

    def _refusal(self, result: dict[str, object]) -> None:
        """Count a refused command; log it, at most once per ``REFUSAL_LOG_EVERY``."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged < REFUSAL_LOG_EVERY:
            self._refusals_unlogged += 1
            return
        more = (f" ({self._refusals_unlogged} more refused since the last such line)"
                if self._refusals_unlogged else "")
        log.warning("MQTT command %s refused (%s): %s%s", result.get("verb"),
                    result.get("refused"), clip(str(result.get("error")), 200), more)
        self._refusal_logged = now
        self._refusals_unlogged = 0

    async def _publish_outbox(self, client: aiomqtt.Client) -> None:
        while True:
            progressed = True
            while progressed:
                progressed = False
                while self._direct:
                    message = self._direct[0]
                    await client.publish(message.topic, message.payload, qos=message.qos,
                                         retain=message.retain)
                    self._direct.popleft()
                    progressed = True
                for item in self._outbox.pending(self._sink, 50):
                    for message in event_messages(item, prefix=self._config.topic_prefix,
                                                  site=self._site):
                        await client.publish(message.topic, message.payload, qos=message.qos,
                                             retain=message.retain)
                        self._published += 1
                    self._outbox.delivered(self._sink, [item.seq])  # only now: PUBACKed
                    progressed = True
                    if self._direct:
                        break  # command results go out between events, not after a backlog
            self._idle.set()
            if self._closing:
                return
            self._wake.clear()
            if self._direct or self._outbox.pending(self._sink, 1):
                continue
            await self._wake.wait()

    def _on_connected(self, failed_attempts: int) -> None:
        self._connected = True
        self._connects += 1
        where = f"{self._config.host}:{self._config.port}"
        if failed_attempts:
            log.info("MQTT connected to %s after %d failed attempts; %d events queued",
                     where, failed_attempts, self._queued)
        else:
            log.info("MQTT connected to %s", where)

    def _on_failure(self, attempt: int, error: BaseException | None) -> None:
        self._failures += 1
        where = f"{self._config.host}:{self._config.port}"
        if attempt == 1:
            log.error("MQTT broker %s unavailable (%s); retrying, %d events queued",
                      where, error, self._queued)
        else:
            log.debug("MQTT broker %s still unavailable (%s)", where, error)

    async def _backoff(self, delay: float) -> None:
        """Sleep before reconnecting, cut short by shutdown."""
        if self._closing:
            await asyncio.sleep(0.2)  # final delivery attempts: quick, the caller has a deadline
            return
        await self._sleep(delay * random.uniform(0.5, 1.0))
