"""Illegal wiring and load signatures: step loads on public circuits.

Per watched sub-circuit (``circuit_kinds``: stairwell lighting and public circuits by default)
and phase, a step tracker follows the active power P and the apparent power S (the meter's VA
register, or V x I). A jump of at least ``step_w`` (or ``noise_k`` x the circuit's own poll-to-
poll noise, on lift and pump circuits) above the level before it opens a *layer*; a second
load switched on while the first runs opens a layer above it (two bikes, a heater next to a
charger), and a drop the size of a lower layer ends that one. A layer lasts while its excess
stays above ``end_fraction`` of its step, tolerating ``end_polls`` - 1 polls below (a meter
glitch, a thermostat click). On lighting circuits a step within ``switch_window`` of civil
dusk or dawn may be the lamps: it counts as a charger only once it creeps or tapers (lamps hold
flat), and never as an unexpected load; a drop there moves the baseline down.

Features of a layer, never of the whole circuit: its step, its own power factor
(sum of ΔP / sum of ΔS: the *true* PF, so a charger without PFC reads ~0.5 whether the meter's
var register counts harmonics or not), its duration, and its shape (a charger's level creeps up
in constant current and tapers in constant voltage; lamps, timers and appliances hold flat).
The circuit also remembers when and how big its recent steps were: a load that starts at the
same time of day at the same size on earlier days is a timer (lobby lights), not a person.

* ``resistive-load``: a step of at least ``resistive_w`` with step PF >= ``resistive_pf``
  on for ``resistive_delay`` within ``resistive_window`` (a heater cycling on its thermostat
  counts, a kettle does not);
* ``ebike-charging``: a layer of ``ebike_min_w``..``ebike_max_w`` held ``ebike_min_duration``
  with a confidence >= ``ebike_confidence``; the confidence (0-1, the alarm's value) weighs the
  charger's shape, its PF (no PFC: low; active PFC: near 1, neither for nor against), a typical
  charger size, the hour (60 % of e-bike fires start 20:00-05:00; daytime charging exists, so
  the hour adds, it never gates); lamps and timers hold flat to the watt, a charger does not;
* ``unexpected-load``: any other layer held ``unexpected_delay`` that is not routine and lifts
  the circuit above the most it drew around that hour on the last days (the upper quartile of
  each hour, kept per circuit: a guard booth's evening TV, a pump's morning demand are usual),
  once a day is known (on public circuits only at night, where daytime loads are legitimate).

Every alarm's message carries its evidence: step, PF of the step, duration, baseline.
``unmetered-tap`` (energy balance of a box) lives in ``rules.taps``.

Pure: state in, state and conditions out; time and time of day come from the readings.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.lighting import SunDay, day_of
from rules.model import Condition
from rules.taps import tap_rules  # the box balance: its own module, same config table
from rules.wiring_config import (
    BASELINE_POLLS,
    EBIKE,
    FLOOR_POLLS,
    FLOOR_SHARE,
    MAX_LAYERS,
    MAX_OPENS,
    MAX_PHASE_W,
    MIN_BURST,
    NAME,
    NOISE_POLLS,
    PHASES,
    PROFILE_DAYS,
    RESISTIVE,
    ROUTINE_DAYS,
    SEVERITIES,
    SHAPE_EVERY,
    SHAPE_SAMPLES,
    STEADY_POLLS,
    STEADY_SPREAD,
    TAP,
    UNEXPECTED,
    WiringConfig,
    clock,
)
from rules.wiring_state import (
    Burst,
    CircuitState,
    Layer,
    busy_factor,
    charger_like,
    ebike_confidence,
    facts,
    floor,
    routine,
    shape_word,
    shaped,
    steady,
    usual,
)


@dataclass(frozen=True, slots=True)
class CircuitRule:
    """Step signatures on one sub-circuit meter (``rules.base.Rule``); a state per phase."""

    site: SiteInfo
    params: WiringConfig
    lighting: bool  # a lighting circuit: lamps switch at dusk and dawn; any time is odd
    s_from: frozenset[Quantity]  # {APPARENT_POWER}, {VOLTAGE, CURRENT}, {REACTIVE_POWER} ...
    max_w: float = MAX_PHASE_W

    @property
    def quantities(self) -> frozenset[Quantity]:
        return frozenset({Quantity.POWER}) | self.s_from

    def key(self, reading: Reading) -> Hashable:
        return NAME, reading.device, reading.channel

    def step(self, state: CircuitState | None,
             reading: Reading) -> tuple[CircuitState, list[Condition]]:
        return evaluate_circuit(state or CircuitState(), reading, self)



def evaluate_circuit(state: CircuitState, reading: Reading,
                     rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    """Feed one power, apparent power, reactive power, PF, voltage or current reading."""
    if not reading.good or reading.channel not in PHASES or not math.isfinite(reading.value):
        return state, []
    q, ts, value = reading.quantity, reading.ts, reading.value
    if q is Quantity.POWER:
        if abs(value) > rule.max_w:
            return state, []
        state, out = _power(state, reading, rule)
        return _pair(state, ts), out
    if q not in rule.s_from:
        return state, []
    if q is Quantity.VOLTAGE:
        state = replace(state, volts=(ts, value))
    elif q is Quantity.CURRENT:
        state = replace(state, amps=(ts, value))
    else:
        state = replace(state, apparent=(ts, value))
    return _pair(state, ts), []



def _apparent(state: CircuitState, ts: float) -> float | None:
    """The poll's apparent power (VA), from whichever source the meter serves."""
    if state.volts is not None and state.amps is not None and \
            state.volts[0] == ts == state.amps[0]:
        return abs(state.volts[1] * state.amps[1])
    if state.apparent is None or state.apparent[0] != ts:
        return None
    return abs(state.apparent[1])



def _pair(state: CircuitState, ts: float) -> CircuitState:
    """Once a poll has both P and S: keep S for the baseline, or add to the top layer's PF."""
    last = state.last
    if last is None or last[0] != ts:
        return state
    s = _apparent(state, ts)
    if s is None:
        return state
    state = replace(state, apparent=None, volts=None, amps=None, last_s=s)  # used once
    if not state.layers:
        return replace(state, recent_s=(*state.recent_s, s)[-BASELINE_POLLS:])
    top = state.layers[-1]
    if top.base_s is None:
        return state
    dp, ds = last[1] - top.base, s - top.base_s
    if dp <= 0 or ds <= 0:
        return state
    top = replace(top, sum_dp=top.sum_dp + dp, sum_ds=top.sum_ds + ds)
    return replace(state, layers=(*state.layers[:-1], top))



_QUANTITY_FOR_S = (frozenset({Quantity.APPARENT_POWER}),
                   frozenset({Quantity.VOLTAGE, Quantity.CURRENT}))



def s_sources(device: DeviceInfo) -> frozenset[Quantity]:
    """Where a meter's apparent power comes from: its VA register, else V x I (true RMS
    either way: the var register of a metering chip counts only the phase shift, which
    misses a charger's harmonics)."""
    for quantities in _QUANTITY_FOR_S:
        if all(device.serves(q) for q in quantities):
            return quantities
    return frozenset()



def _power(state: CircuitState, reading: Reading,
           rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    p, ts = reading.value, reading.ts
    params = rule.params
    day = day_of(rule.site, state.day, ts)
    previous = state.last[1] if state.last is not None else None
    # the circuit's noise from every poll: one step among NOISE_POLLS barely moves a median
    diffs = state.diffs if previous is None else \
        (*state.diffs, abs(p - previous))[-NOISE_POLLS:]
    history = (*state.history, p)[-2 * FLOOR_POLLS:]
    state = replace(state, last=(ts, p), day=day, diffs=diffs, history=history,
                    first_ts=ts if state.first_ts is None else state.first_ts)
    out: list[Condition] = []
    if not state.verdicts and len(state.recent) >= BASELINE_POLLS - 1:
        state = replace(state, verdicts=True)
        out += [_condition(name, reading, False, 0.0, "no step load")
                for name in (EBIKE, RESISTIVE, UNEXPECTED)]
    state = _profile(state, day, ts, p)
    state, gone = _heater_gone(state, reading, rule)
    out += gone
    switching = rule.lighting and _near_switch(day, ts, params.switch_window)
    threshold = max(params.step_w, params.noise_k * state.noise)
    if not state.layers:
        if len(state.recent) >= 3 and previous is not None:
            base = state.base
            rise = p - base
            if rise >= threshold and p - previous >= 0.5 * rise:
                return _open(state, reading, rule, base, _median_or_none(state.recent_s), out,
                             at_switch=switching)
        return replace(state, recent=(*state.recent, p)[-BASELINE_POLLS:]), out
    top = state.layers[-1]
    if switching and previous is not None and previous - p >= params.step_w:
        drop = previous - p
        lamps = [la for la in state.layers
                 if la.at_switch and abs(la.level - drop) <= 0.5 * max(la.level, 1.0)]
        if lamps and lamps[-1] is top:
            return _follow(state, reading, rule, day, out)  # the lamps' own layer ends
        if lamps:
            state, ended = _drop_lower(state, drop, reading, rule)
            return _follow(state, reading, rule, day, out + ended)
        # lamps that were on before any layer opened went off at dawn: every layer's
        # baseline moves down with them
        state = replace(state, layers=tuple(replace(la, base=la.base - drop)
                                            for la in state.layers))
        return _follow(state, reading, rule, day, out)
    if previous is not None and len(state.layers) < MAX_LAYERS and top.polls >= 3:
        under = top.base + top.level
        rise = p - under
        if rise >= threshold and p - previous >= 0.5 * rise:
            return _open(state, reading, rule, under, state.last_s, out, at_switch=switching)
    if previous is not None and len(state.layers) > 1 and previous - p >= threshold:
        state, ended = _drop_lower(state, previous - p, reading, rule)
        out += ended
    return _follow(state, reading, rule, day, out)



def _median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None



def _open(state: CircuitState, reading: Reading, rule: CircuitRule, base: float,
          base_s: float | None, out: list[Condition],
          at_switch: bool = False) -> tuple[CircuitState, list[Condition]]:
    phase = str(reading.channel)
    used = {la.channel for la in state.layers}
    channel = next(c for n in range(1, MAX_LAYERS + 2)
                   if (c := phase if n == 1 else f"{phase}.{n}") not in used)
    layer = Layer(start=reading.ts, channel=channel, base=base, base_s=base_s,
                  floor_before=floor(state.history[:-1]), at_switch=at_switch)
    opens = (*(t for t in state.opens if reading.ts - t < 86400), reading.ts)[-MAX_OPENS:]
    state = replace(state, layers=(*state.layers, layer), opens=opens)
    day = state.day
    assert day is not None
    return _follow(state, reading, rule, day, out)



def _drop_lower(state: CircuitState, drop: float, reading: Reading,
                rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    """A step down the size of a lower layer: that load went off while the top one runs."""
    layers = list(state.layers)
    k = min(range(len(layers)), key=lambda i: abs(layers[i].level - drop))
    gone = layers[k]
    if k == len(layers) - 1 or abs(gone.level - drop) > 0.5 * max(gone.level, 1.0):
        return state, []  # the top layer's own end, or no layer that size
    level = gone.level
    rest = layers[:k] + [replace(la, base=la.base - level) for la in layers[k + 1:]]
    state = replace(state, layers=tuple(rest))
    return _closed(state, gone, reading, rule), _clear(gone, reading, level, rule)



def _near_switch(day: SunDay, ts: float, window: float) -> bool:
    return abs(ts - day.dusk) <= window or abs(ts - day.dawn) <= window



def _follow(state: CircuitState, reading: Reading, rule: CircuitRule, day: SunDay,
            out: list[Condition]) -> tuple[CircuitState, list[Condition]]:
    """The top layer's poll: its excess, its end, and what it looks like so far."""
    layer = state.layers[-1]
    params, p = rule.params, reading.value
    excess = p - layer.base
    first = layer.first if len(layer.first) >= 3 else (*layer.first, excess)
    recent = (*layer.recent, excess)[-3:]
    layer = replace(layer, polls=layer.polls + 1, first=first, recent=recent)
    end_at = max(params.step_w / 2, params.end_fraction * layer.step)
    on = excess >= end_at
    chunk = (*layer.chunk, excess)
    shape = layer.shape
    if len(chunk) >= SHAPE_EVERY:
        shape, chunk = (*shape, statistics.median(chunk))[-SHAPE_SAMPLES:], ()
    on_levels = (*layer.on_levels, excess)[-STEADY_POLLS:] if on else layer.on_levels
    layer = replace(layer, below=0 if on else layer.below + 1, on_levels=on_levels,
                    on_polls=layer.on_polls + (1 if on else 0), chunk=chunk, shape=shape,
                    peak=max(layer.peak, layer.level) if layer.polls >= 3 else layer.peak)
    if layer.polls >= 3 and layer.below >= params.end_polls:
        state = replace(state, layers=state.layers[:-1])
        state = _closed(state, layer, reading, rule)
        if not state.layers:  # the polls below the end are the baseline again
            state = replace(state, recent=tuple(layer.base + e for e in
                                                layer.recent[-layer.below:]), recent_s=())
        return state, out + _clear(layer, reading, layer.level, rule)
    if not on:
        return replace(state, layers=(*state.layers[:-1], layer)), out  # judged when on
    layer, raised = _judge(layer, state, reading, rule, day)
    return replace(state, layers=(*state.layers[:-1], layer)), out + raised



def _closed(state: CircuitState, layer: Layer, reading: Reading,
            rule: CircuitRule) -> CircuitState:
    if RESISTIVE in layer.raised:  # held through the thermostat's off time (_heater_gone)
        state = replace(state, heater=(layer.channel, reading.ts))
    return _remember(state, layer, reading, rule)



def _remember(state: CircuitState, layer: Layer, reading: Reading,
              rule: CircuitRule) -> CircuitState:
    """Remember a finished layer: its start (routine) and, if large and resistive, its
    on-time (a heater's thermostat cycles add up)."""
    params, ts = rule.params, reading.ts
    starts = tuple(s for s in state.starts if ts - s[0] <= ROUTINE_DAYS * 86400 + 3600)
    starts = (*starts, (layer.start, layer.step))[-64:]
    bursts = tuple(b for b in state.bursts if ts - b.end <= params.resistive_window)
    pf = layer.pf
    if layer.step >= params.resistive_w and (pf is None or pf >= params.resistive_pf):
        on_time = layer.on_polls * _poll(layer, ts - layer.start)
        if on_time >= MIN_BURST:  # a kettle's boil is not a thermostat cycle
            bursts = (*bursts, Burst(ts, on_time))[-16:]
    return replace(state, starts=starts, bursts=bursts)



def _clear(layer: Layer, reading: Reading, level: float, rule: CircuitRule) -> list[Condition]:
    duration = reading.ts - layer.start
    return [_condition(name, reading, False, level,
                       f"step gone after {duration / 60:.0f} min "
                       f"(now {level:+.0f} W over {layer.base:.0f} W)", channel=layer.channel)
            for name in sorted(layer.raised - {RESISTIVE})]



def _profile(state: CircuitState, day: SunDay, ts: float, p: float) -> CircuitState:
    """Gather the hour's powers; at the hour's end keep their upper quartile in its slot."""
    hour = (day.start, min(23, int(day.hour(ts))))
    if state.hour == hour or state.hour is None:
        return replace(state, hour=hour, hour_powers=(*state.hour_powers, p))
    slot = state.hour[1]
    profile = state.profile
    if len(state.hour_powers) >= 10:  # a mostly silent hour says nothing
        ordered = sorted(state.hour_powers)
        upper = ordered[(3 * len(ordered)) // 4]
        profile = (*profile[:slot], (*profile[slot], upper)[-PROFILE_DAYS:], *profile[slot + 1:])
    return replace(state, hour=hour, hour_powers=(p,), profile=profile)



def _heater_gone(state: CircuitState, reading: Reading,
                 rule: CircuitRule) -> tuple[CircuitState, list[Condition]]:
    """A heater's alarm clears once it has stayed off a whole ``resistive_window``: one
    page per heater, not one per thermostat cycle."""
    held = state.heater
    if held is None or reading.ts - held[1] <= rule.params.resistive_window or any(
            la.channel == held[0] and RESISTIVE in la.raised for la in state.layers):
        return state, []
    off = (reading.ts - held[1]) / 60
    return replace(state, heater=None), [_condition(
        RESISTIVE, reading, False, 0.0, f"off for {off:.0f} min", channel=held[0])]



def _judge(layer: Layer, state: CircuitState, reading: Reading, rule: CircuitRule,
           day: SunDay) -> tuple[Layer, list[Condition]]:
    params, ts = rule.params, reading.ts
    raised = set(layer.raised)
    out: list[Condition] = []
    duration = ts - layer.start
    step, pf = layer.step, layer.pf
    evidence = _evidence(layer, duration, rule)
    if RESISTIVE not in raised and layer.polls >= 3 and step >= params.resistive_w and \
            (pf is None or pf >= params.resistive_pf) and steady(layer.on_levels) and \
            abs(statistics.median(layer.on_levels) - step) <= STEADY_SPREAD * step:
        on_time = layer.on_polls * _poll(layer, duration) + sum(
            min(b.on_time, params.resistive_window - (ts - b.end))
            for b in state.bursts if ts - b.end <= params.resistive_window)
        if state.heater is not None and state.heater[0] == layer.channel:
            raised.add(RESISTIVE)  # the same heater's next thermostat cycle: still raised
        elif on_time >= params.resistive_delay * busy_factor(state):
            raised.add(RESISTIVE)
            out.append(_condition(RESISTIVE, reading, True, layer.level,
                                  f"{step:+.0f} W resistive step, on {on_time / 60:.0f} min "
                                  f"in {params.resistive_window / 60:.0f}: heater or similar "
                                  f"on a circuit not rated for it ({evidence})",
                                  limit=params.resistive_w, channel=layer.channel,
                                  evidence=(*facts(layer, duration, state),
                                            ("on_min", round(on_time / 60, 1)))))
    if EBIKE not in raised and RESISTIVE not in raised and \
            duration >= params.ebike_min_duration and \
            params.ebike_min_w <= step <= params.ebike_max_w and \
            charger_like(layer, state) and (not layer.at_switch or shaped(layer)):
        confidence = ebike_confidence(layer, state, params, day)
        layer = replace(layer, confidence=confidence)
        if confidence >= params.ebike_confidence:
            raised.add(EBIKE)
            out.append(_condition(
                EBIKE, reading, True, round(confidence, 2),
                f"likely e-bike charging, confidence {confidence:.2f} ({evidence}, "
                f"{shape_word(layer)})", limit=params.ebike_confidence,
                channel=layer.channel, evidence=facts(layer, duration, state)))
            if UNEXPECTED in raised:
                raised.discard(UNEXPECTED)
                out.append(_condition(UNEXPECTED, reading, False, layer.level,
                                      "identified as e-bike charging", channel=layer.channel))
    night = params.night(day.hour(ts))
    envelope = usual(state, day.hour(ts))
    above_usual = envelope is not None and layer.base + layer.level > envelope + params.step_w
    if not raised & {EBIKE, RESISTIVE, UNEXPECTED} and not layer.at_switch and above_usual and \
            duration >= params.unexpected_delay \
            and (rule.lighting or night) and layer.level >= params.step_w \
            and not routine(state, layer, params) and \
            floor(state.history) - layer.floor_before >= FLOOR_SHARE * layer.step:
        raised.add(UNEXPECTED)
        kind = "lighting" if rule.lighting else "public"
        out.append(_condition(UNEXPECTED, reading, True, layer.level,
                              f"unexpected load on a {kind} circuit ({evidence})",
                              limit=params.step_w, channel=layer.channel,
                              evidence=facts(layer, duration)))
    return replace(layer, raised=frozenset(raised)), out



def _poll(layer: Layer, duration: float) -> float:
    return duration / max(1, layer.polls - 1)



def _evidence(layer: Layer, duration: float, rule: CircuitRule) -> str:
    pf = layer.pf
    pf_text = f"PF of the step {pf:.2f}" if pf is not None else "PF of the step unknown"
    return (f"step {layer.step:+.0f} W on {layer.base:.0f} W, now {layer.level:+.0f} W, "
            f"{pf_text}, {duration / 60:.0f} min since "
            f"{clock(layer.start, rule.site.timezone)}")



def _condition(rule: str, reading: Reading, active: bool, value: float, what: str,
               limit: float | None = None, channel: str | None = None,
               evidence: tuple[tuple[str, float], ...] = ()) -> Condition:
    channel = channel or reading.channel
    where = reading.device if channel in (None, "L1") else f"{reading.device} {channel}"
    if channel is not None and "." in channel:
        where += " (a second load)"
    message = f"{where}: {what}" if active else f"{where}: {rule} cleared ({what})"
    return Condition(rule=rule, device=reading.device, channel=channel, active=active,
                     severity=SEVERITIES[rule], ts=reading.ts, value=round(value, 3),
                     limit=limit, message=message, evidence=evidence)



def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, list[Rule]] = {}
    meters = [(d, c) for d, c in devices if d.serves(Quantity.POWER) and d.kind != "fire-panel"]
    for device, config in meters:
        if device.kind in config.circuit_kinds:
            max_w = MAX_PHASE_W if device.rated_current is None else \
                max(1000.0, 3 * 250.0 * device.rated_current)
            out.setdefault(device.name, []).append(CircuitRule(
                site=site, params=config, lighting=device.kind == "lighting",
                s_from=s_sources(device), max_w=max_w))
    for name, rules in tap_rules(site, meters).items():
        out.setdefault(name, []).extend(rules)
    return out



SPEC = RuleSpec(
    name=NAME, params=WiringConfig, build=_build,
    summary="illegal wiring: e-bike charging, resistive loads and unexpected load on "
            "lighting/public circuits; unmetered taps (a box's energy balance)",
    alarms={EBIKE: "warning: an e-bike charger's signature (confidence 0-1 as the value)",
            RESISTIVE: "warning: a large PF~1 step (heater) on a circuit not meant for it",
            UNEXPECTED: "warning: sustained extra load on a lighting or public circuit",
            TAP: "critical: a box's incomer draws more energy than its metered sub-circuits"})

