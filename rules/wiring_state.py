"""A circuit's state in the wiring tracker (its layers of stacked loads, bursts, history) and
the pure features judged on it: trend, shape, floor, routine, busy-ness, e-bike confidence,
the evidence numbers an alarm carries."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from rules.lighting import SunDay
from rules.wiring_config import (
    BUSY,
    BUSY_VERY,
    FLOOR_POLLS,
    FLOOR_SHARE,
    ROUTINE_EXACT,
    STEADY_POLLS,
    STEADY_SPREAD,
    WiringConfig,
)


@dataclass(frozen=True, slots=True)
class Layer:
    """One load switched on, followed from its step up to its step down."""

    start: float
    # the alarm's channel: the phase; "L1.2" for a second load on top of one ("/" would split
    # the MQTT topic)
    channel: str
    base: float  # W under this layer (the circuit's baseline plus the layers below)
    base_s: float | None  # VA under it
    floor_before: float = 0.0  # the circuit's floor before the step
    at_switch: bool = False  # began as the lamps switch at dusk: flat, it is the lamps
    polls: int = 0
    first: tuple[float, ...] = ()  # the first three excesses
    recent: tuple[float, ...] = ()  # the last three excesses
    below: int = 0  # polls in a row below the end threshold
    on_polls: int = 0  # polls above it
    peak: float = 0.0  # highest 3-poll median
    on_levels: tuple[float, ...] = ()  # the latest excesses while on (steadiness)
    sum_dp: float = 0.0  # paired active and apparent excess: the step's own PF
    sum_ds: float = 0.0
    shape: tuple[float, ...] = ()  # one median level per SHAPE_EVERY polls
    chunk: tuple[float, ...] = ()  # the excesses of the shape sample being filled
    raised: frozenset[str] = frozenset()
    confidence: float = 0.0

    @property
    def step(self) -> float:
        return statistics.median(self.first) if self.first else 0.0

    @property
    def level(self) -> float:
        return statistics.median(self.recent) if self.recent else 0.0

    @property
    def pf(self) -> float | None:
        if self.sum_ds <= 0.0 or self.sum_dp <= 0.0:
            return None
        return min(1.0, self.sum_dp / self.sum_ds)



@dataclass(frozen=True, slots=True)
class Burst:
    """A closed large resistive layer (a heater's thermostat cycle, a kettle)."""

    end: float
    on_time: float



@dataclass(frozen=True, slots=True)
class CircuitState:
    recent: tuple[float, ...] = ()  # last powers outside layers (the baseline)
    recent_s: tuple[float, ...] = ()
    diffs: tuple[float, ...] = ()  # |poll-to-poll change|: the noise
    history: tuple[float, ...] = ()  # every recent power, for the floor
    opens: tuple[float, ...] = ()  # when layers opened over the last day: how busy it is
    heater: tuple[str, float] | None = None  # (channel, last on) of a heater alarm held
    hour: tuple[float, int] | None = None  # (day start, local hour) being gathered
    hour_powers: tuple[float, ...] = ()
    # per local hour, the upper quartile of power on each of the last PROFILE_DAYS days
    profile: tuple[tuple[float, ...], ...] = ((),) * 24
    last: tuple[float, float] | None = None  # (ts, W) of the latest power
    apparent: tuple[float, float] | None = None  # (ts, VA) of the latest apparent power
    volts: tuple[float, float] | None = None  # (ts, V) for S = V x I
    amps: tuple[float, float] | None = None
    last_s: float | None = None  # VA of the last poll that had one
    layers: tuple[Layer, ...] = ()
    bursts: tuple[Burst, ...] = ()
    starts: tuple[tuple[float, float], ...] = ()  # (ts, W) of recent steps: routine
    first_ts: float | None = None
    day: SunDay | None = None
    verdicts: bool = False  # first (healthy) verdicts emitted

    @property
    def base(self) -> float:
        return statistics.median(self.recent) if self.recent else 0.0

    @property
    def noise(self) -> float:
        """Robust spread of poll-to-poll changes (median absolute change x 1.4826 / sqrt 2)."""
        return statistics.median(self.diffs) * 1.05 if len(self.diffs) >= 10 else 0.0



def usual(state: CircuitState, hour: float) -> float | None:
    """The most this circuit drew around this hour on earlier days (upper quartiles of the
    hour before, this one and the next); None until a day is known."""
    h = int(hour) % 24
    values = [v for k in (h - 1, h, h + 1) for v in state.profile[k % 24]]
    return max(values) if len(values) >= 2 else None



def routine(state: CircuitState, layer: Layer, params: WiringConfig,
            tolerance: float | None = None) -> bool:
    """The same step at the same time of day on ``routine_days`` earlier days: a timer."""
    window = params.routine_tolerance if tolerance is None else tolerance
    days = set()
    for ts, watts in state.starts:
        ago = layer.start - ts
        if ago < 43200:
            continue
        off = ago % 86400
        off = min(off, 86400 - off)
        if off <= window and abs(watts - layer.step) <= \
                max(params.step_w / 2, 0.25 * layer.step):
            days.add(round(ago / 86400))
    return len(days) >= params.routine_days



def trend(layer: Layer) -> float:
    """Relative change of the level from the first hour's start to its latest sample
    (positive: creeping up, negative: tapering); 0 with too few samples."""
    if len(layer.shape) < 4 or layer.step <= 0:
        return 0.0
    first = statistics.median(layer.shape[:2])
    return (statistics.median(layer.shape[-2:]) - first) / max(first, 1.0)



def busy_penalty(state: CircuitState) -> float:
    """Loads come and go all day on a circuit with a lift, a pump or a guard booth: a step
    there is weaker evidence than on a stairwell where nothing else moves."""
    steps = len(state.opens)
    return 0.3 if steps >= BUSY_VERY else 0.15 if steps >= BUSY else 0.0



def busy_factor(state: CircuitState) -> float:
    """How much longer a heater must be seen on a busy circuit (a lift's evening rush, a guard
    booth's kettle then rice cooker look like a heater for a while)."""
    steps = len(state.opens)
    return 2.0 if steps >= BUSY_VERY else 1.5 if steps >= BUSY else 1.0



def steady(levels: Sequence[float]) -> bool:
    """A heating element draws the same to the watt while it is on (P ~ V², the voltage moves
    a few %); a lift's runs, a cooker's phases and a vacuum moving about do not. The trimmed
    range (one outlier either side dropped: a lift run on top) within STEADY_SPREAD."""
    if len(levels) < STEADY_POLLS:
        return False
    ordered = sorted(levels)[1:-1]
    mid = statistics.median(ordered)
    return mid > 0 and ordered[-1] - ordered[0] <= STEADY_SPREAD * mid



def charger_like(layer: Layer, state: CircuitState) -> bool:
    """A charger is there all the time: the circuit's floor (its low decile over FLOOR_POLLS)
    has risen by most of the step since before it. A freezer's or a lift's cycles come and go
    and leave the floor where it was; so do appliances switched on and off around the step."""
    step = layer.step
    if not 0.3 * step <= layer.level <= 2.0 * step:
        return False
    return floor(state.history) - layer.floor_before >= FLOOR_SHARE * step



def floor(history: Sequence[float]) -> float:
    """The low decile of the last FLOOR_POLLS powers: what stays on through every cycle."""
    recent = sorted(history[-FLOOR_POLLS:])
    return recent[len(recent) // 10] if recent else 0.0



def wander(layer: Layer) -> float:
    """The largest change between consecutive five-minute levels of a layer."""
    jumps = [abs(b - a) for a, b in itertools.pairwise(layer.shape)]
    return max(jumps) if jumps else 0.0



def flat(layer: Layer) -> bool:
    """Held within 2 % for the whole layer: lamps, a timer, an appliance at one setting."""
    if len(layer.shape) < 6:
        return False
    mid = statistics.median(layer.shape)
    return mid > 0 and (max(layer.shape) - min(layer.shape)) <= 0.02 * mid



def shaped(layer: Layer) -> bool:
    """Creeping up (constant current) or tapering (constant voltage): not a lamp."""
    return layer.level < 0.85 * layer.peak or trend(layer) >= 0.02



def shape_word(layer: Layer) -> str:
    t = trend(layer)
    if layer.level < 0.85 * layer.peak:
        return "tapering"
    if t >= 0.02:
        return "creeping up"
    return "steady"



def ebike_confidence(layer: Layer, state: CircuitState, params: WiringConfig,
                     day: SunDay) -> float:
    """How much a held layer looks like an e-bike charger (sources: bench/corpus)."""
    c = 0.45
    pf = layer.pf
    if pf is not None:
        if pf <= 0.75:
            c += 0.15  # a switched-mode charger without PFC: harmonics
        elif pf < 0.93:
            c -= 0.15  # a motor or a mixed appliance
    if 80.0 <= layer.step <= 400.0:
        c += 0.05  # 48-72 V packs at 1.5-5 A
    t = trend(layer)
    if layer.level < 0.85 * layer.peak or t >= 0.02:
        c += 0.15  # constant current creeping up, or constant voltage tapering
    elif flat(layer):
        c -= 0.2  # lamps or a timer hold flat to the watt
    if params.night(day.hour(layer.start) % 24):
        c += 0.1
    if routine(state, layer, params, tolerance=ROUTINE_EXACT):
        c -= 0.3  # the same load at the same minute as on an earlier day: a timer, a pump
    c -= busy_penalty(state)
    return max(0.0, min(1.0, c))



def facts(layer: Layer, duration: float,
          state: CircuitState | None = None) -> tuple[tuple[str, float], ...]:
    """A layer's evidence as numbers (InfluxDB fields, MQTT ``evidence``)."""
    out = [("steps_24h", float(len(state.opens)) if state else 0.0),
           ("step_w", round(layer.step, 1)), ("level_w", round(layer.level, 1)),
           ("floor_before_w", round(layer.floor_before, 1)),
           ("wander_w", round(wander(layer), 1)),
           ("baseline_w", round(layer.base, 1)), ("duration_min", round(duration / 60, 1)),
           ("trend", round(trend(layer), 3))]
    if layer.pf is not None:
        out.append(("step_pf", round(layer.pf, 3)))
    if layer.confidence:
        out.append(("confidence", round(layer.confidence, 2)))
    return tuple(out)

