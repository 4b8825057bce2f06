"""Which scenario event explains each alarm the daemon raised, and which events went unalarmed.

Pure: the demo's closing table and the system tests call it with the truth records and the
alarms seen on MQTT. An alarm is explained by an event that touched its device (the event's
target or one of its truth points), that was running when the alarm was raised (or ended at
most ``grace`` simulated seconds before), and whose label is one the alarm's rule reports
(``EXPLAINS``): a comms alarm during a leakage event on the same detector is not explained by
it. Anything else, an alarm flood included, is unexplained: a false alarm or a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from simulator.community.truth import TruthRecord

# Ground-truth label -> the alarm rules (the alarm id's first part) that may report it.
EXPLAINS: Mapping[str, frozenset[str]] = {
    "ebike-charging": frozenset({"ebike-charging", "unexpected-load"}),
    "resistive-load": frozenset({"resistive-load", "unexpected-load", "overload-warning",
                                 "overload", "overcurrent"}),
    "unmetered-tap": frozenset({"unmetered-tap", "unexpected-load", "overload-warning",
                                "overload", "overcurrent"}),
    "lamp-failure": frozenset({"lamp-out", "lamp-partial"}),
    "lamp-day-burning": frozenset({"lamp-day-burning"}),
    "lamp-cycling": frozenset({"lamp-cycling", "lamp-out", "lamp-partial"}),
    "leakage": frozenset({"leakage", "leakage-prealarm", "leakage-rising", "electrical-fire"}),
    "overtemperature": frozenset({"overtemperature", "overtemperature-warning",
                                  "temperature-rise", "temperature-spread", "electrical-fire"}),
    "fire": frozenset({"fire"}),
    "detector-fault": frozenset({"detector-fault"}),
    "firewater-pressure-low": frozenset({"firewater-pressure-low", "firewater-pump-start"}),
    "comms-loss": frozenset({"comms", "comms-stale"}),
    "comms-garbage": frozenset({"comms", "comms-crc", "comms-stale"}),
}
GRACE = 1800.0  # simulated s after an event's end in which its alarms may still arrive


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    """One ``raised`` event from the daemon: its id, device and simulated time."""

    alarm_id: str
    device: str
    at: float

    @property
    def rule(self) -> str:
        return self.alarm_id.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Verdict:
    """An alarm and the event that explains it (None: unexplained)."""

    alarm: RaisedAlarm
    cause: TruthRecord | None

    @property
    def delay(self) -> float:
        """Simulated seconds from the event's start to the alarm."""
        return self.alarm.at - self.cause.start if self.cause else 0.0


def _touches(record: TruthRecord, device: str) -> bool:
    return device == record.target or any(p.device == device for p in record.points)


def cause_of(alarm: RaisedAlarm, truth: Iterable[TruthRecord], *,
             grace: float = GRACE) -> TruthRecord | None:
    """The latest-starting event that explains ``alarm``, or None."""
    candidates = [r for r in truth
                  if alarm.rule in EXPLAINS.get(r.label, frozenset())
                  and _touches(r, alarm.device) and r.start <= alarm.at <= r.end + grace]
    return max(candidates, key=lambda r: r.start, default=None)


def explain(alarms: Sequence[RaisedAlarm], truth: Sequence[TruthRecord], *,
            grace: float = GRACE) -> list[Verdict]:
    """One verdict per distinct alarm id (its first ``raised``), in the order raised."""
    seen: set[str] = set()
    verdicts = []
    for alarm in sorted(alarms, key=lambda a: a.at):
        if alarm.alarm_id not in seen:
            seen.add(alarm.alarm_id)
            verdicts.append(Verdict(alarm, cause_of(alarm, truth, grace=grace)))
    return verdicts


def unalarmed(truth: Sequence[TruthRecord], verdicts: Sequence[Verdict],
              until: float) -> list[TruthRecord]:
    """Events that had started by ``until`` and that no alarm was explained by."""
    explained = {v.cause.id for v in verdicts if v.cause is not None}
    return [r for r in truth if r.start <= until and r.id not in explained]
