"""``[rules.wiring]``: the parameters of the wiring signatures, their alarm names and
severities, shared by the circuit tracker (``rules.wiring``) and the box balance
(``rules.taps``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from annotated_types import Ge, Gt, Le

from core.durations import Duration
from rules.model import Severity

NAME = "wiring"

EBIKE, RESISTIVE, UNEXPECTED, TAP = "ebike-charging", "resistive-load", "unexpected-load", \
    "unmetered-tap"

# Signatures are suspicions someone has to look at; a tap is a measured fact (current that
# bypasses every sub-breaker and meter), hence critical.
SEVERITIES = {EBIKE: Severity.WARNING, RESISTIVE: Severity.WARNING,
              UNEXPECTED: Severity.WARNING, TAP: Severity.CRITICAL}

PHASES = ("L1", "L2", "L3")
BASELINE_POLLS = 5
NOISE_POLLS = 30  # poll-to-poll differences kept for the circuit's noise
MAX_LAYERS = 3
FLOOR_POLLS = 30  # the circuit's floor: low decile of this many polls
FLOOR_SHARE = 0.5  # a charger lifts the floor by at least this share of its step
MAX_OPENS = 400
BUSY, BUSY_VERY = 15, 40  # steps a day on a busy circuit
STEADY_POLLS = 6  # on-polls a heater's level is judged on
STEADY_SPREAD = 0.1
MIN_BURST = 360.0  # s: shorter large resistive loads (kettles, 3-5 min) do not add up
ROUTINE_EXACT = 150.0  # s: people do not plug in at the same minute every day; timers do
SHAPE_EVERY = 5  # polls per shape sample (a median)
SHAPE_SAMPLES = 48
ROUTINE_DAYS = 7
PROFILE_DAYS = 7
MAX_PHASE_W = 250_000.0  # anything above on one phase is a garbled reading, not a load


@dataclass(frozen=True, slots=True)
class WiringConfig:
    """``[rules.wiring]`` / ``[device.rules.wiring]``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # circuits watched for e-bikes, heaters and unexpected load (device kinds)
    circuit_kinds: tuple[str, ...] = ("lighting", "public")
    step_w: Annotated[float, Gt(0)] = 50.0  # W: smallest step tracked
    noise_k: Annotated[float, Ge(0), Le(20)] = 5.0  # steps must also clear k x circuit noise
    end_fraction: Annotated[float, Gt(0), Le(1)] = 0.3  # a layer ends below this x its step
    end_polls: Annotated[int, Ge(1), Le(30)] = 3  # ... for this many polls in a row
    switch_window: Annotated[Duration, Ge(0), Le(7200)] = 900.0  # lamps switch near dusk/dawn
    ebike_min_w: Annotated[float, Ge(0)] = 50.0
    ebike_max_w: Annotated[float, Gt(0)] = 500.0
    ebike_min_duration: Annotated[Duration, Ge(0), Le(86400)] = 2700.0
    ebike_confidence: Annotated[float, Ge(0), Le(1)] = 0.6
    night_from: Annotated[float, Ge(0), Le(24)] = 20.0  # local hour
    night_to: Annotated[float, Ge(0), Le(24)] = 5.0
    resistive_w: Annotated[float, Gt(0)] = 900.0
    resistive_pf: Annotated[float, Gt(0), Le(1)] = 0.97
    resistive_delay: Annotated[Duration, Ge(0), Le(86400)] = 600.0  # on-time ...
    resistive_window: Annotated[Duration, Gt(0), Le(86400)] = 1800.0  # ... within this
    unexpected_delay: Annotated[Duration, Ge(0), Le(86400)] = 7200.0
    routine_tolerance: Annotated[Duration, Ge(0), Le(7200)] = 900.0  # same time of day +-
    routine_days: Annotated[int, Ge(1), Le(ROUTINE_DAYS)] = 1  # earlier days with that step
    # unmetered taps (rules.taps): a box's energy balance over a window
    box_own_w: Annotated[float, Ge(0)] = 0.0  # W the box itself draws, unmetered
    tap_window: Annotated[Duration, Ge(120), Le(86400)] = 1800.0
    tap_tolerance_w: Annotated[float, Ge(0)] = 80.0
    tap_tolerance_pct: Annotated[float, Ge(0), Le(100)] = 3.0
    tap_delay: Annotated[Duration, Ge(0), Le(86400)] = 600.0
    tap_clear_after: Annotated[Duration, Ge(0), Le(7 * 86400)] = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.ebike_min_w >= self.ebike_max_w:
            raise ValueError(f"ebike_min_w {self.ebike_min_w} is not below ebike_max_w "
                             f"{self.ebike_max_w}")

    def night(self, hour: float) -> bool:
        if self.night_from <= self.night_to:
            return self.night_from <= hour < self.night_to
        return hour >= self.night_from or hour < self.night_to



def clock(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%H:%M")

