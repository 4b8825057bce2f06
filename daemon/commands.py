"""Operator commands (MQTT ``cmd/<verb>``, ``firewarden alarms``): parsed and checked here.

A command is a JSON object ``{"alarm_id": ..., "by": ..., "minutes": ..., "id": ...}``;
``by`` (who did it) is required for accountability, ``minutes`` only for ``shelve``
(1 to 7 days), ``id`` is an optional correlation id echoed in the result. Anything else, or a
verb we do not know, is a ``CommandError`` with the reason, and changes nothing.
"""

from __future__ import annotations

import json
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
_FIELDS = frozenset({"alarm_id", "by", "minutes", "id"})


class CommandError(ValueError):
    """A command that cannot be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class CommandRequest:
    verb: str
    alarm_id: str
    by: str
    minutes: float | None = None
    request_id: str | None = None

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


def parse_command(verb: str, body: bytes) -> CommandRequest:
    """Validate one command; raise CommandError naming the problem."""
    if verb not in VERBS:
        raise CommandError(f"unknown command {verb!r} (known: {', '.join(VERBS)})")
    try:
        data = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise CommandError(f"unknown field(s) {', '.join(unknown)} (known: "
                           f"{', '.join(sorted(_FIELDS))})")
    alarm_id, by, request_id = data.get("alarm_id"), data.get("by"), data.get("id")
    if not isinstance(alarm_id, str) or not alarm_id:
        raise CommandError(f"alarm_id must be a non-empty string, got {alarm_id!r}")
    if not isinstance(by, str) or not by.strip():
        raise CommandError(f"by (who is doing this) must be a non-empty string, got {by!r}")
    if request_id is not None and not isinstance(request_id, str | int):
        raise CommandError(f"id must be a string or number, got {request_id!r}")
    minutes = data.get("minutes")
    if verb == "shelve":
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) \
                or not 1 <= minutes <= MAX_SHELVE_MINUTES:
            raise CommandError(f"shelve needs minutes between 1 and {MAX_SHELVE_MINUTES}, "
                               f"got {minutes!r}")
    elif minutes is not None:
        raise CommandError(f"minutes only applies to shelve, got {minutes!r} for {verb}")
    return CommandRequest(verb=verb, alarm_id=alarm_id, by=by.strip()[:64],
                          minutes=float(minutes) if minutes is not None else None,
                          request_id=str(request_id) if request_id is not None else None)
