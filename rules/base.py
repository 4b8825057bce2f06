"""What every rule is: a pure step function over one source's state.

A rule object holds its parameters (frozen) and says which quantities it listens to and which
state a reading belongs to (``key``: usually the device and channel; wider for rules that
compare sources, such as a box's incomer against its sub-circuits). The engine keeps the
states; the rule never stores anything itself::

    state, outputs = rule.step(state_or_None, reading)

Outputs are Conditions, and derived Readings the rule computes for people (e.g. a circuit's
``thermal_load`` %), which the daemon stores like measured ones. Rules emit a condition on
their first verdict and on every change of verdict, never on every reading; the alarm state
machine takes it from there. Rules that can fire without a reading (a silent device, a lamp
that should be on at dusk) also implement ``tick``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from core.measurements import Quantity, Reading
from rules.model import Condition

Output = Condition | Reading


class Rule(Protocol):
    @property
    def quantities(self) -> frozenset[Quantity]: ...

    def key(self, reading: Reading) -> Hashable: ...

    def step(self, state: Any, reading: Reading) -> tuple[Any, Sequence[Output]]: ...


@runtime_checkable
class TickingRule(Protocol):
    """A rule whose verdict can change with time alone."""

    def tick(self, states: Iterable[tuple[Hashable, Any]],
             now: float) -> tuple[dict[Hashable, Any], Sequence[Output]]:
        """Given its states (key, state), return the ones that changed and any outputs."""
        ...


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """Where the community is: for dusk and dawn, and local time of day."""

    latitude: float = 31.23
    longitude: float = 121.47
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a rule may know of a device: its config and the points its profile serves."""

    name: str
    kind: str  # config kind: incomer, lighting, sockets, public, ebike-charging, detector,
    #            smoke, other; "fire-panel" for [[fire_panel]]
    profile_kind: str = ""  # the profile's kind: meter, detector, smoke, lighting
    points: frozenset[tuple[Quantity, str | None]] = frozenset()
    poll: float = 0.0  # seconds between polls (0: pushed, e.g. a fire panel)
    # each point's own poll interval where it differs from ``poll`` (profiles poll energy
    # counters and batteries more slowly)
    intervals: Mapping[tuple[Quantity, str | None], float] = field(default_factory=dict)
    rated_current: float | None = None  # A
    breaker_curve: str = "C"
    building: str = ""
    box: str = ""
    circuit: str = ""
    floor: str = ""
    area: str = ""

    def serves(self, quantity: Quantity) -> bool:
        return any(q is quantity for q, _ in self.points)

    def channels(self, quantity: Quantity) -> list[str | None]:
        return sorted((c for q, c in self.points if q is quantity), key=lambda c: c or "")


Build = Callable[[SiteInfo, Sequence[tuple[DeviceInfo, Any]]], Mapping[str, Sequence[Rule]]]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    params: type  # a frozen dataclass; every field defaulted; ``enabled: bool`` among them
    build: Build
    summary: str = ""
    alarms: Mapping[str, str] = field(default_factory=dict)  # alarm rule name -> what it means
