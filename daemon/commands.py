"""Operator commands (MQTT ``cmd/<verb>``, ``firewarden alarms``): parsed and checked here.

A command is a JSON object ``{"alarm_id": ..., "by": ..., "minutes": ..., "ts": ...,
"id": ...}``; ``by`` (who did it) is required for accountability, ``minutes`` only for
``shelve`` (1 to 7 days), ``ts`` (unix seconds when it was sent) is required by ``Freshness``,
``id`` is an optional correlation id echoed in the result and remembered against replays.
Anything else, or a verb we do not know, is a ``CommandError`` with the reason, and changes
nothing. Bodies over ``MAX_COMMAND_BYTES`` are refused unread, and no answer quotes more than
``EXCERPT`` characters of what it was sent.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from rules.alarm import (
    Ack,
    Command,
    RemoveFromService,
    Reset,
    ReturnToService,
    Shelve,
    Unshelve,
)

VERBS = ("ack", "shelve", "unshelve", "reset", "out-of-service", "in-service")
MAX_SHELVE_MINUTES = 7 * 24 * 60
MAX_COMMAND_BYTES = 16 * 1024  # a real command is ~150 bytes
MAX_ID_CHARS = 64
MAX_ALARM_ID_CHARS = 200  # rule:device:channel, each a short name
EXCERPT = 40  # characters of a sender's value quoted back in an answer or the log
REMEMBERED_IDS = 4096  # commands remembered against replays (within command_max_age)
_FIELDS = frozenset({"alarm_id", "by", "minutes", "id", "ts"})


class CommandError(ValueError):
    """A command that cannot be understood or is not admitted; the message says why.
    ``refused`` names an intake refusal (``too-large``, ``retained``, ``missing-ts``,
    ``stale``, ``replayed``): counted and logged, as it may be a replay or an attack."""

    def __init__(self, message: str, refused: str | None = None) -> None:
        super().__init__(message)
        self.refused = refused


def clip(text: str, limit: int = EXCERPT) -> str:
    """``text`` cut to ``limit`` characters: a refusal never echoes a whole body."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """A sender's value for an answer or the log: its repr, clipped."""
    return clip(repr(value[:limit + 1] if isinstance(value, str) else value), limit + 2)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    verb: str
    alarm_id: str
    by: str
    minutes: float | None = None
    request_id: str | None = None
    ts: float | None = None  # when the sender sent it (unix s)

    def signal(self, now: float) -> Command:
        """The alarm state machine's input for this request at time ``now``."""
        if self.verb == "ack":
            return Ack(self.by)
        if self.verb == "shelve":
            assert self.minutes is not None  # parse_command guarantees it
            return Shelve(self.by, until=now + self.minutes * 60)
        if self.verb == "unshelve":
            return Unshelve(self.by)
        if self.verb == "reset":
            return Reset(self.by)
        if self.verb == "out-of-service":
            return RemoveFromService(self.by)
        return ReturnToService(self.by)


def too_large(size: int) -> CommandError:
    return CommandError(f"command of {size} bytes refused unread: at most {MAX_COMMAND_BYTES}",
                        refused="too-large")


def parse_command(verb: str, body: bytes) -> CommandRequest:
    """Validate one command; raise CommandError naming the problem."""
    if verb not in VERBS:
        raise CommandError(f"unknown command {excerpt(verb)} (known: {', '.join(VERBS)})")
    if len(body) > MAX_COMMAND_BYTES:
        raise too_large(len(body))
    try:
        data = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"body is not JSON: {clip(str(exc), 80)}") from None
    if not isinstance(data, dict):
        raise CommandError(f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise CommandError(f"unknown field(s) {clip(', '.join(unknown))} (known: "
                           f"{', '.join(sorted(_FIELDS))})")
    alarm_id, by, request_id = data.get("alarm_id"), data.get("by"), data.get("id")
    if not isinstance(alarm_id, str) or not alarm_id or len(alarm_id) > MAX_ALARM_ID_CHARS:
        raise CommandError(f"alarm_id must be a non-empty string of at most "
                           f"{MAX_ALARM_ID_CHARS} characters, got {excerpt(alarm_id)}")
    if not isinstance(by, str) or not by.strip():
        raise CommandError(f"by (who is doing this) must be a non-empty string, got "
                           f"{excerpt(by)}")
    if request_id is not None and (isinstance(request_id, bool)
                                   or not isinstance(request_id, str | int)
                                   or len(str(request_id)) > MAX_ID_CHARS):
        raise CommandError(f"id must be a string or number of at most {MAX_ID_CHARS} "
                           f"characters, got {excerpt(request_id)}")
    ts = data.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)
                           or not math.isfinite(ts)):
        raise CommandError(f"ts must be unix seconds (a number), got {excerpt(ts)}")
    minutes = data.get("minutes")
    if verb == "shelve":
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) \
                or not 1 <= minutes <= MAX_SHELVE_MINUTES:
            raise CommandError(f"shelve needs minutes between 1 and {MAX_SHELVE_MINUTES}, "
                               f"got {excerpt(minutes)}")
    elif minutes is not None:
        raise CommandError(f"minutes only applies to shelve, got {excerpt(minutes)} for {verb}")
    return CommandRequest(verb=verb, alarm_id=alarm_id, by=by.strip()[:64],
                          minutes=float(minutes) if minutes is not None else None,
                          request_id=str(request_id) if request_id is not None else None,
                          ts=float(ts) if ts is not None else None)


class Freshness:
    """Admits a command once, and only while it is fresh: its ``ts`` within ``max_age``
    seconds of the daemon's wall clock (either way: clocks differ), and its ``id`` (without
    one: the same verb and body) not seen before within that window. So a command captured,
    or left retained on the broker, cannot be applied again later. What it remembers is in
    memory: a daemon restart forgets it, and the ``ts`` window alone then bounds a replay."""

    def __init__(self, max_age: float, *, capacity: int = REMEMBERED_IDS) -> None:
        self.max_age = max_age
        self._capacity = capacity
        self._seen: dict[str, float] = {}  # key -> when it may be forgotten (ts + max_age)

    def admit(self, request: CommandRequest, body: bytes, now: float) -> None:
        """Remember the command, or raise CommandError (``refused`` set) saying why not."""
        if request.ts is None:
            raise CommandError(
                'ts is required: the unix time it was sent (e.g. "ts": 1731685320), so an '
                "old or retained command is not applied again", refused="missing-ts")
        age = now - request.ts
        if abs(age) > self.max_age:
            raise CommandError(
                f"stale: sent {abs(age):.0f} s {'ago' if age > 0 else 'in the future'}, "
                f"over the {self.max_age:g} s allowed (command_max_age); check the sender's "
                f"clock", refused="stale")
        for key in [k for k, until in self._seen.items() if until < now]:
            del self._seen[key]
        if request.request_id is not None:
            key = f"id {request.request_id}"
        else:
            key = "body " + hashlib.sha256(request.verb.encode() + b"\0" + body).hexdigest()
        if key in self._seen:
            which = f"id {excerpt(request.request_id)}" if request.request_id is not None \
                else "this command"
            raise CommandError(f"replayed: {which} was already received; send a new id",
                               refused="replayed")
        while len(self._seen) >= self._capacity:  # a flood of fresh ids: forget the oldest
            del self._seen[next(iter(self._seen))]
        self._seen[key] = request.ts + self.max_age
