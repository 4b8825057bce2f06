"""``state-store``: the daemon's own state files (the alarm store, the InfluxDB spool) could not
be used as they were. Raised by the daemon at start (see ``daemon/sqlitefile.py``), through the
normal alarm path, so it reaches MQTT, webhooks and InfluxDB like any other alarm.

One alarm per file (the channel is the file's name), critical: the box still watches for fire,
but history is gone (a damaged file, moved aside) or will not survive a restart (in memory).
A damaged file's alarm is raised and returns to normal at once: the fresh file works, and what
is left is for a person to acknowledge that the history was lost. An in-memory store's alarm
stays active for the run. Pure: time is an argument.
"""

from __future__ import annotations

from rules.model import Condition, Severity

NAME = "state-store"
DEVICE = "firewarden"  # the daemon itself, as for ``alarm-flood``


def conditions(file: str, *, damaged: bool, message: str, now: float) -> list[Condition]:
    """The conditions to feed the engine for one file's start-up problem."""
    raised = Condition(rule=NAME, device=DEVICE, channel=file, active=True,
                       severity=Severity.CRITICAL, ts=now, message=message)
    if not damaged:
        return [raised]
    return [raised, Condition(rule=NAME, device=DEVICE, channel=file, active=False,
                              severity=Severity.CRITICAL, ts=now,
                              message=f"{message} (a fresh file is in use)")]
