"""What every rule is: a pure step function over one source's state.

A rule object holds its parameters (frozen) and says which quantities it listens to and which
state a reading belongs to (``key``: usually the device and channel; wider for rules that
compare sources, such as a box's incomer against its sub-circuits). The engine keeps the
states; the rule never stores anything itself::

    state, conditions = rule.step(state_or_None, reading)

Rules emit a condition on their first verdict and on every change of verdict, never on every
reading; the alarm state machine takes it from there. Rules that can fire without a reading
(a silent device, a lamp that should be on at dusk) also implement ``tick``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Protocol, runtime_checkable

from drivers.measurements import Quantity, Reading
from rules.model import Condition


class Rule(Protocol):
    @property
    def quantities(self) -> frozenset[Quantity]: ...

    def key(self, reading: Reading) -> Hashable: ...

    def step(self, state: Any, reading: Reading) -> tuple[Any, list[Condition]]: ...


@runtime_checkable
class TickingRule(Protocol):
    """A rule whose verdict can change with time alone."""

    def tick(self, states: Iterable[tuple[Hashable, Any]],
             now: float) -> tuple[dict[Hashable, Any], list[Condition]]:
        """Given its states, return the ones that changed and any conditions."""
        ...


def per_channel(reading: Reading) -> tuple[str, str | None]:
    return reading.device, reading.channel
