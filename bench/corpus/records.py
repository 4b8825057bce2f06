"""The corpus's public record types: devices and labels."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CorpusDevice:
    """One polled device of the generated community."""

    name: str
    profile: str  # "eastron-sdm630" | "eastron-sdm120" | "lighting-controller"
    kind: str  # "incomer" | "sockets" | "lighting" | "public" | "lighting-controller"
    building: str
    box: str | None
    circuit: str | None  # "main" | "sockets" | "stair-lighting" | "public" | None
    phase: str | None  # incomer phase a single-phase sub-meter hangs on
    rated_current: float | None  # A, the circuit breaker
    var_method: str | None  # "displacement" | "sqrt": how the reactive-power register is made
    lamps: tuple[int, ...] = ()  # lamps per relay channel 1..8 (lighting controllers)
    lamp_current: float = 0.0  # nameplate A per lamp at 220 V, as typed into a config


@dataclass(frozen=True)
class Label:
    """An interval of physical truth: an event to report, or benign activity (confounder)."""

    id: str
    kind: str
    device: str
    channel: str | None
    start: float
    end: float
    detail: dict[str, object] = field(default_factory=dict, hash=False)
