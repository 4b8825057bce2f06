"""The pure community model: what every simulated device serves at simulated time ``t``.

``CommunityModel(scenario).sample(t)`` returns ``{device: {(quantity, channel): value}}`` in
engineering units (V, A, W, VA, var, kWh, mA, °C, dB/m, %, lx), keyed exactly like the device's
profile points. It is deterministic: noise is a hash of (seed, stream, time bucket), never
global RNG state, so the same scenario serves the same values on every run and ``sample`` can
be called for any ``t`` in any order. ``without`` leaves chosen events out (the counterfactual
"what would it serve without the e-bike"), which is how tests prove the truth file right.

Electrical model: each sub-circuit draws P (its load curve x noise, plus events) at its own PF,
so Q = P·tan(acos PF); loads on a phase add as P and Q (not as amps), I = |S| / V. The incomer
phase carries its sub-circuits on that phase, the box's own small unmetered draw, and any
unmetered tap: so a tap shows up as incomer power above the sum of the sub-circuits by exactly
the tap's power. Energy counters integrate the noise-free curves and the events analytically,
so they never decrease and cost nothing to evaluate at any ``t``.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from simulator.community.daylight import Daylight
from simulator.community.events import (
    Event,
    cycling_on,
    ebike_joules,
    ebike_watts,
    progress,
)
from simulator.community.plant import firewater_values, pump_meter_values
from simulator.community.scenario import Scenario
from simulator.community.topology import (
    PHASES,
    Box,
    Building,
    Circuit,
    Lighting,
    SmokeDetector,
)

Key = tuple[str, str | None]
Values = dict[Key, float]
Sample = dict[str, Values]

NOMINAL_V = 230.0
STAIR_STANDBY_W = 4.0  # motion-sensor drivers while the stair lights are off
BOX_PF = 0.8  # the box's own draw (contactor coils, meters)
SENTINEL_TEMPERATURE = 3276.7  # raw 0x7FFF: open probe
NO_LUX = 65535.0  # raw 0xFFFF: no sensor fitted

# Load shapes, share of the circuit's peak at each local hour 0..24 (linear in between).
HOUSEHOLD = (0.22, 0.18, 0.15, 0.14, 0.14, 0.16, 0.28, 0.50, 0.52, 0.38, 0.33, 0.36, 0.42,
             0.36, 0.32, 0.32, 0.36, 0.50, 0.72, 0.92, 1.00, 0.98, 0.80, 0.45, 0.22)
PUBLIC = (0.12, 0.10, 0.10, 0.10, 0.10, 0.12, 0.25, 0.55, 0.75, 0.80, 0.80, 0.75, 0.65,
          0.70, 0.80, 0.80, 0.75, 0.70, 0.70, 0.65, 0.55, 0.40, 0.25, 0.15, 0.12)


def _cumulative(shape: tuple[float, ...]) -> tuple[float, ...]:
    """Integral of a shape from 00:00 to each hour knot, in shape-seconds."""
    out, acc = [0.0], 0.0
    for a, b in itertools.pairwise(shape):
        acc += (a + b) / 2 * 3600
        out.append(acc)
    return tuple(out)


_CUM = {"household": _cumulative(HOUSEHOLD), "public": _cumulative(PUBLIC)}
_SHAPES = {"household": HOUSEHOLD, "public": PUBLIC}


def shape_at(curve: str, hour: float) -> float:
    """The load shape (0..1) of ``curve`` at local ``hour`` (0..24)."""
    knots = _SHAPES[curve]
    k = min(23, int(hour))
    return knots[k] + (knots[k + 1] - knots[k]) * (hour - k)


def _shape_integral(curve: str, seconds_of_day: float) -> float:
    knots, cum = _SHAPES[curve], _CUM[curve]
    hour = seconds_of_day / 3600
    k = min(23, int(hour))
    x = seconds_of_day - k * 3600
    return cum[k] + knots[k] * x + (knots[k + 1] - knots[k]) * x * x / 7200


def stream_id(*parts: str) -> int:
    """A stable number for a noise stream (crc32: the same on every run and machine)."""
    return zlib.crc32("/".join(parts).encode())


@dataclass(frozen=True, slots=True)
class _Time:
    """What every device at one instant shares."""

    t: float
    hour: float  # local hour 0..24
    day: int  # local day number
    shape: float  # household shape now (drives voltage sag and the detector's leakage)
    dark: bool
    ambient: float  # °C


class CommunityModel:
    """The scenario's community as a function of time (see the module docstring)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.community = scenario.community
        self.seed = scenario.seed
        zone = scenario.zone
        stamp = datetime.fromtimestamp(scenario.start, zone).utcoffset()
        self.offset = stamp.total_seconds() if stamp is not None else 0.0
        self.daylight = Daylight(self.community.latitude, self.community.longitude, zone,
                                 self.offset)
        self.ref = scenario.start  # energy counters count from here (plus their start value)
        self._ref_day = math.floor((self.ref + self.offset) / 86400)
        self._ref_sod = self.ref + self.offset - self._ref_day * 86400
        self.events_by_target: dict[str, list[Event]] = {}
        for event in scenario.events:
            self.events_by_target.setdefault(event.target, []).append(event)
        detectors = {box.detector for box in self.community.boxes()}
        self._panel_events = [e for e in scenario.events
                              if e.kind in ("smoke-fire", "detector-fault")
                              and e.target not in detectors]
        self._streams: dict[tuple[str, ...], int] = {}
        self._constants: dict[tuple[str, ...], float] = {}
        self._knots: dict[tuple[int, float], tuple[int, float, float]] = {}

    # -- noise ---------------------------------------------------------------------------------

    def _sid(self, *parts: str) -> int:
        sid = self._streams.get(parts)
        if sid is None:
            sid = self._streams[parts] = stream_id(*parts)
        return sid

    def noise(self, sid: int, bucket: int) -> float:
        """Uniform in [-1, 1), a pure function of (seed, stream, bucket). Python's tuple hash
        of ints does not depend on PYTHONHASHSEED."""
        return (hash((self.seed, sid, bucket)) & 0xFFFFFF) / 8388608.0 - 1.0

    def smooth(self, sid: int, t: float, period: float = 300.0) -> float:
        """Value noise: uniform knots every ``period`` s, linear in between (slow wander).
        The two knots around ``t`` are memoised per stream (sampling walks forward)."""
        x = t / period
        b = math.floor(x)
        knots = self._knots.get((sid, period))
        if knots is None or knots[0] != b:
            knots = self._knots[(sid, period)] = (b, self.noise(sid, b), self.noise(sid, b + 1))
        return knots[1] + (knots[2] - knots[1]) * (x - b)

    def fine(self, sid: int, t: float, period: float = 10.0) -> float:
        """Step noise per ``period`` s bucket (poll-to-poll jitter)."""
        return self.noise(sid, math.floor(t / period))

    def constant(self, *parts: str) -> float:
        """A per-device constant in [0, 1) (baselines, counter start values)."""
        value = self._constants.get(parts)
        if value is None:
            value = self._constants[parts] = (self.noise(self._sid(*parts), 0) + 1.0) / 2.0
        return value

    # -- time ----------------------------------------------------------------------------------

    def when(self, t: float) -> _Time:
        lt = t + self.offset
        day = math.floor(lt / 86400)
        hour = (lt - day * 86400) / 3600
        ambient = 20.0 + 4.0 * math.sin(2 * math.pi * (hour - 9) / 24)
        return _Time(t, hour, day, shape_at("household", hour), self.daylight.dark(t), ambient)

    def dark(self, t: float) -> bool:
        """Whether the safety lamps are scheduled on (civil dusk to civil dawn)."""
        return self.daylight.dark(t)

    # -- public --------------------------------------------------------------------------------

    def sample(self, t: float, devices: Collection[str] | None = None, *,
               without: Collection[int] = ()) -> Sample:
        """Every served value at ``t`` (or only ``devices``'), leaving out the events whose
        index is in ``without``."""
        now = self.when(t)
        skip = frozenset(without)
        out: Sample = {}
        for building in self.community.buildings:
            self._building(building, now, devices, skip, out)
        return out

    def faults(self, t: float) -> dict[str, str]:
        """Devices misbehaving at ``t``: ``"silent"``, or a garbage mode (``"random"``,
        ``"exception"``, ``"busy"``)."""
        out: dict[str, str] = {}
        for target, events in self.events_by_target.items():
            for e in events:
                if e.start <= t < e.end:
                    if e.kind == "device-silent":
                        out[target] = "silent"
                    elif e.kind == "device-garbage":
                        out.setdefault(target, e.text("mode"))
        return out

    def garbage_words(self, device: str, t: float, count: int) -> list[int]:
        """``count`` random 16-bit words for a device answering garbage (new every 10 s)."""
        sid, bucket = self._sid(device, "garbage"), math.floor(t / 10)
        return [hash((self.seed, sid, bucket, k)) & 0xFFFF for k in range(count)]

    def panel_events(self) -> list[Event]:
        """Events the fire panels report over GB/T 26875.3 (fires and faults)."""
        return list(self._panel_events)

    # -- devices -------------------------------------------------------------------------------

    def _building(self, b: Building, now: _Time, devices: Collection[str] | None,
                  skip: frozenset[int], out: Sample) -> None:
        for box in b.boxes:
            names = (box.incomer, box.detector, *(c.name for c in box.circuits))
            if devices is not None and not any(n in devices for n in names):
                continue
            want_box = devices is None or box.incomer in devices or box.detector in devices
            volts = self._voltages(box, now)
            per_phase: dict[str, list[float]] = {p: [0.0, 0.0] for p in PHASES}
            energy_sum = 0.0
            for c in box.circuits:
                p, q, e = self._circuit(c, now, skip)
                per_phase[c.phase][0] += p
                per_phase[c.phase][1] += q
                energy_sum += e
                if devices is None or c.name in devices:
                    out[c.name] = self._meter1(c, now, p, q, e, volts[PHASES.index(c.phase)])
            if want_box:
                incomer, phase_i = self._incomer(box, now, skip, per_phase, volts, energy_sum)
                if devices is None or box.incomer in devices:
                    out[box.incomer] = incomer
                if devices is None or box.detector in devices:
                    out[box.detector] = self._detector(box, now, skip, phase_i)
        for s in b.smoke:
            if devices is None or s.name in devices:
                out[s.name] = self._smoke(s, now, skip)
        if devices is None or b.lighting.name in devices:
            out[b.lighting.name] = self._lighting(b.lighting, now, skip)
        fw = b.firewater
        if fw is not None and (devices is None or fw.name in devices):
            out[fw.name] = firewater_values(self, fw, now.t, skip)
        meter = b.pump_meter
        if meter is not None and (devices is None or meter.name in devices):
            out[meter.name] = pump_meter_values(self, meter, now.t)

    def _voltages(self, box: Box, now: _Time) -> tuple[float, float, float]:
        sag = 4.0 * now.shape  # the evening peak pulls the voltage down a little
        return tuple(  # type: ignore[return-value]
            NOMINAL_V + 2.0 - sag + 1.5 * self.smooth(self._sid(box.name, "v", p), now.t, 600)
            + 0.3 * self.fine(self._sid(box.name, "vf", p), now.t)
            for p in PHASES)

    def _circuit(self, c: Circuit, now: _Time, skip: frozenset[int]) -> \
            tuple[float, float, float]:
        """P (W), Q (var) and the energy counter (kWh) of a sub-circuit."""
        role = c.spec
        t = now.t
        sid = self._sid(c.name)
        wander = self.smooth(sid, t)
        jitter = self.fine(sid + 1, t)
        if role.curve == "stair":
            base = (role.peak_w if now.dark else STAIR_STANDBY_W) * \
                (1.0 + 0.1 * wander + 0.15 * jitter)
        else:
            base = role.peak_w * shape_at(role.curve, now.hour) * \
                (1.0 + 0.15 * wander + 0.04 * jitter)
        pf = min(0.99, role.pf + 0.02 * self.smooth(sid + 2, t, 900))
        p = max(0.0, base)
        q = p * math.tan(math.acos(pf))
        joules = self._base_joules(c, t)
        for e in self.events_by_target.get(c.name, ()):
            if t <= e.start or e.kind not in ("ebike", "heater"):
                continue
            if e.index not in skip:
                joules += self._event_joules(e, t)
            if t < e.end and e.index not in skip:
                w = self._event_watts(e, t)
                p += w
                q += w * math.tan(math.acos(e.number("pf")))
        start_kwh = 500.0 + 4000.0 * self.constant(c.name, "kwh")
        return p, q, start_kwh + joules / 3.6e6

    def _base_joules(self, c: Circuit, t: float) -> float:
        role = c.spec
        if role.curve == "stair":
            return STAIR_STANDBY_W * (t - self.ref) + (role.peak_w - STAIR_STANDBY_W) * \
                self.daylight.dark_seconds(self.ref, t)
        lt = t + self.offset
        day = math.floor(lt / 86400)
        integral = (day - self._ref_day) * _CUM[role.curve][-1] \
            + _shape_integral(role.curve, lt - day * 86400) \
            - _shape_integral(role.curve, self._ref_sod)
        return role.peak_w * integral

    @staticmethod
    def _event_watts(e: Event, t: float) -> float:
        if e.kind == "ebike":
            return ebike_watts(t - e.start, e.number("cc_w"), e.number("cc"), e.number("cv"),
                               e.number("end_fraction"))
        if e.kind == "heater":
            return e.number("watts")
        return 0.0

    @staticmethod
    def _event_joules(e: Event, t: float) -> float:
        elapsed = min(t, e.end) - e.start
        if e.kind == "ebike":
            return ebike_joules(elapsed, e.number("cc_w"), e.number("cc"), e.number("cv"),
                                e.number("end_fraction"))
        if e.kind == "heater":
            return e.number("watts") * elapsed
        if e.kind == "unmetered-tap":
            return e.number("amps") * NOMINAL_V * e.number("pf") * elapsed
        return 0.0

    def _meter1(self, c: Circuit, now: _Time, p: float, q: float, kwh: float,
                volts: float) -> Values:
        s = math.hypot(p, q)
        pf = p / s if s > 0 else 1.0
        hz = 50.0 + 0.03 * self.smooth(self._sid("hz"), now.t, 120)
        ch = "L1"  # an SDM120 calls its one phase L1 whatever phase it is wired to
        return {("voltage", ch): volts, ("current", ch): s / volts, ("power", ch): p,
                ("apparent_power", ch): s, ("reactive_power", ch): q,
                ("power_factor", ch): pf, ("frequency", ch): hz,
                ("energy_import", ch): kwh, ("energy_export", ch): 0.0, ("energy", ch): kwh}

    def _incomer(self, box: Box, now: _Time, skip: frozenset[int],
                 per_phase: dict[str, list[float]], volts: tuple[float, float, float],
                 circuits_kwh: float) -> tuple[Values, tuple[float, float, float]]:
        t = now.t
        out: Values = {}
        joules = 3 * box.base_w * (t - self.ref)
        taps = [e for e in self.events_by_target.get(box.incomer, ())
                if e.kind == "unmetered-tap" and e.index not in skip]
        for e in taps:
            if t > e.start:
                joules += self._event_joules(e, t)
        total_p = total_q = total_s = 0.0
        amps: list[float] = []
        for k, phase in enumerate(PHASES):
            p, q = per_phase[phase]
            own = box.base_w * (1.0 + 0.2 * self.fine(self._sid(box.name, "own", phase), t))
            p += own
            q += own * math.tan(math.acos(BOX_PF))
            for e in taps:
                if e.start <= t < e.end and e.text("phase") == phase:
                    tap_w = e.number("amps") * volts[k] * e.number("pf")
                    p += tap_w
                    q += tap_w * math.tan(math.acos(e.number("pf")))
            s = math.hypot(p, q)
            amps.append(s / volts[k])
            out[("voltage", phase)] = volts[k]
            out[("current", phase)] = s / volts[k]
            out[("power", phase)] = p
            out[("power_factor", phase)] = p / s if s > 0 else 1.0
            out[("voltage_thd", phase)] = 1.6 + 0.8 * now.shape + \
                0.15 * self.fine(self._sid(box.name, "thd", phase), t, 30)
            total_p += p
            total_q += q
            total_s += s
        kwh = circuits_kwh + 2000.0 * self.constant(box.name, "kwh") + joules / 3.6e6
        out[("power", "total")] = total_p
        out[("apparent_power", "total")] = total_s
        out[("reactive_power", "total")] = total_q
        out[("power_factor", "total")] = total_p / total_s if total_s > 0 else 1.0
        out[("frequency", "total")] = 50.0 + 0.03 * self.smooth(self._sid("hz"), t, 120)
        out[("energy_import", "total")] = kwh
        out[("energy_export", "total")] = 0.0
        out[("energy", "total")] = kwh
        return out, (amps[0], amps[1], amps[2])

    def _detector(self, box: Box, now: _Time, skip: frozenset[int],
                  phase_amps: tuple[float, float, float]) -> Values:
        t = now.t
        sid = self._sid(box.detector)
        baseline = 40.0 + 80.0 * self.constant(box.detector, "base")
        residual = baseline + 20.0 * now.shape + 6.0 * self.smooth(sid, t) + 2.0 * \
            self.fine(sid + 1, t)
        temps = [now.ambient + 3.0 + 22.0 * (i / box.rated_current) ** 2 +
                 0.3 * self.smooth(sid + 2 + k, t, 600) for k, i in enumerate(phase_amps)]
        temps.append(now.ambient + 2.0 + 0.2 * self.smooth(sid + 9, t, 600))
        fault = 0
        for e in self.events_by_target.get(box.detector, ()):
            if not e.start <= t < e.end or e.index in skip:
                continue
            if e.kind == "leakage-creep":
                ramp = e.number("ramp") or (e.end - e.start)
                residual += max(0.0, e.number("to_ma") - baseline) * progress(t - e.start, ramp)
            elif e.kind == "cable-heating":
                k = int(e.number("channel")) - 1
                ramp = e.number("ramp") or (e.end - e.start)
                temps[k] += max(0.0, e.number("to_c") - temps[k]) * progress(t - e.start, ramp)
            elif e.kind == "detector-fault":
                fault |= 1 << int(e.number("probe"))
        alarm = int(residual >= self.community.residual_alarm_ma)
        for k, temp in enumerate(temps):
            if temp >= self.community.temperature_alarm_c:
                alarm |= 1 << (k + 1)
        if fault & 1:
            residual = 0.0
        for k in range(4):
            if fault & (1 << (k + 1)):
                temps[k] = SENTINEL_TEMPERATURE
                alarm &= ~(1 << (k + 1))
        out: Values = {("residual_current", "1"): min(65535.0, max(0.0, round(residual)))}
        for k, temp in enumerate(temps):
            out[("temperature", str(k + 1))] = round(temp, 1)
        out[("detector_alarm", None)] = float(alarm)
        out[("detector_fault", None)] = float(fault)
        return out

    def _smoke(self, s: SmokeDetector, now: _Time, skip: frozenset[int]) -> Values:
        t = now.t
        obscuration = 0.03 + 0.01 * self.smooth(self._sid(s.name), t)
        fire = fault = 0.0
        for e in self.events_by_target.get(s.name, ()):
            if e.start <= t < e.end and e.index not in skip:
                if e.kind == "smoke-fire":
                    fire = 1.0
                    obscuration += e.number("obscuration") * progress(t - e.start, 120.0)
                elif e.kind == "detector-fault":
                    fault = 1.0
        days = (t - self.ref) / 86400
        battery = max(20.0, min(100.0, round(98.0 - 8.0 * self.constant(s.name, "batt")
                                             - 0.2 * days)))
        return {("fire", None): fire, ("smoke_fault", None): fault,
                ("obscuration", None): round(max(0.0, obscuration), 2),
                ("battery", None): battery}

    def _lighting(self, light: Lighting, now: _Time, skip: frozenset[int]) -> Values:
        t = now.t
        out: Values = {}
        events = [e for e in self.events_by_target.get(light.name, ())
                  if e.kind == "lamp-failure" and e.start <= t < e.end
                  and e.index not in skip]  # silent/garbage faults are the runner's business
        for ch in range(1, 9):
            key = str(ch)
            if ch > len(light.lamps):
                out[("relay", key)] = 0.0
                out[("lamp_current", key)] = 0.0
                continue
            lamps = light.lamps[ch - 1]
            relay = now.dark
            lit, ok = relay, lamps
            for e in events:
                if int(e.number("channel")) != ch:
                    continue
                mode = e.text("mode")
                if mode == "one":
                    ok = min(ok, lamps - 1)
                elif mode == "all":
                    ok = 0
                elif mode == "day-burning":
                    lit = True  # stuck relay contact: lit whatever the coil says
                elif mode == "cycling" and not cycling_on(t - e.start, e.number("period")):
                    lit = False
            amps = ok * light.lamp_current * (1.0 + 0.01 * self.fine(
                self._sid(light.name, key), t)) if lit else 0.0
            out[("relay", key)] = 1.0 if relay else 0.0
            out[("lamp_current", key)] = round(amps, 3)
        out[("lux", None)] = round(self.daylight.lux(t)) if light.lux_sensor else NO_LUX
        return out

