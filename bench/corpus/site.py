"""Site topology and the physics shared by its devices: supply voltage, daylight, circuits.

A building has one or two distribution boxes; a box has a three-phase incomer and single-phase
sub-metered circuits, each a list of loads. The incomer's phase current is the phasor sum, per
harmonic, of everything on that phase: the sub-metered circuits, the box's own unmetered draw
and any unmetered tap. The supply voltage of each building phase follows the whole
community's demand (our few meters are a small part of the transformer's load), so it is
computed first and every load then reacts to it (constant-power loads draw 1/V current).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.corpus.loads import DAY, Load, Spectrum, community_demand
from bench.corpus.timeseries import F64, Profile, hash_uniform, value_noise

PHASES = ("L1", "L2", "L3")
ENERGY_STEP = 60.0  # s; energy is integrated exactly per load, voltage factor per cell


@dataclass
class CircuitState:
    """What flows in a circuit at each time: active power, fundamental var, current phasors."""

    p: F64
    q: F64  # displacement (fundamental) reactive power, + inductive
    ih: np.ndarray  # complex (n, harmonics) RMS phasors


def evaluate(loads: list[Load], t: F64, v: F64, n_h: int) -> CircuitState:
    """Sum the loads: P adds, current phasors add per harmonic (grouped by spectrum)."""
    p = np.zeros(t.shape)
    amps: dict[str, tuple[Spectrum, F64]] = {}
    for load in loads:
        pl = load.power(t, v)
        p += pl
        spec = load.spectrum
        i1 = pl / (v * spec.dpf)  # |I1| from P = V*|I1|*cos(phi) (sinusoidal voltage)
        if spec.key in amps:
            amps[spec.key] = (spec, amps[spec.key][1] + i1)
        else:
            amps[spec.key] = (spec, i1)
    ih = np.zeros((t.size, n_h), dtype=np.complex128)
    for spec, i1 in amps.values():
        ih += i1[:, None] * spec.c[None, :]
    q = -v * ih[:, 0].imag  # I1 = |I1|exp(-j*phi): Q = V*|I1|*sin(phi)
    return CircuitState(p, q, ih)


@dataclass(eq=False)
class Circuit:
    """A set of loads on one phase of a box, metered by ``meter`` (None: unmetered)."""

    name: str
    building: str
    box: str
    phase: str
    loads: list[Load]
    meter: str | None
    _energy: F64 | None = None

    def energy_j(self, site: Site) -> F64:
        """Cumulative energy (J) at the site's energy grid points, integrated load by load."""
        if self._energy is None:
            g = site.energy_grid
            mid = g[:-1] + 0.5 * ENERGY_STEP
            v_mid = site.voltage.v(self.building, self.phase, mid)
            cells = np.zeros(mid.size)
            for load in self.loads:
                cum = load.profile.integral(g)
                d = np.diff(cum)
                if load.vexp or load.noise:
                    d = d * load.energy_factor(mid, v_mid)
                cells += d
            self._energy = np.concatenate(([0.0], np.cumsum(cells)))
        return self._energy


@dataclass
class VoltageModel:
    """Per building-phase RMS voltage, frequency and background voltage THD."""

    t0: float
    weekday0: int
    v_tap: dict[str, float]  # building -> no-load secondary voltage (V)
    drop: dict[tuple[str, str], float]  # (building, phase) -> V drop at peak demand
    offset: dict[tuple[str, str], float]
    keys: dict[tuple[str, str], int]
    events: Profile  # site-wide deviations (sags, swells), V
    freq_key: int
    thd_key: int

    def demand(self, t: F64) -> F64:
        """Community demand 0..1 at local times ``t``."""
        local = (t - self.t0) / DAY
        day = np.floor(local)
        hour = (local - day) * 24.0
        weekend = ((day.astype(np.int64) + self.weekday0) % 7) >= 5
        return community_demand(hour, weekend)

    def v(self, building: str, phase: str, t: F64) -> F64:
        """Phase-to-neutral RMS voltage at the building's boxes."""
        k = self.keys[(building, phase)]
        out: F64 = (self.v_tap[building] - self.drop[(building, phase)] * self.demand(t)
                    + self.offset[(building, phase)] + 1.2 * value_noise(k, t, 300.0)
                    + 0.4 * value_noise(k + 1, t, 20.0) + self.events.at(t))
        return out

    def frequency(self, t: F64) -> F64:
        """Grid frequency (Hz): slow wander of the interconnected grid."""
        out: F64 = (50.0 + 0.03 * value_noise(self.freq_key, t, 180.0)
                    + 0.008 * value_noise(self.freq_key + 1, t, 8.0))
        return out

    def thd_background(self, t: F64) -> F64:
        """Voltage THD (%) from the rest of the community's electronics."""
        out: F64 = 1.2 + 1.8 * self.demand(t) + 0.3 * value_noise(self.thd_key, t, 900.0)
        return out


def sun_elevation(t: F64, lat: float, lon: float) -> F64:
    """Solar elevation (degrees) at epoch times (low-precision almanac, ~0.1 degree)."""
    d = t / 86400.0 + 2440587.5 - 2451545.0
    g = np.radians(357.529 + 0.98560028 * d)
    q = 280.459 + 0.98564736 * d
    lam = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.00000036 * d)
    ra = np.degrees(np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam)))
    dec = np.arcsin(np.sin(eps) * np.sin(lam))
    gmst = (18.697374558 + 24.06570982441908 * d) % 24.0
    ha = np.radians(gmst * 15.0 + lon - ra)
    la = math.radians(lat)
    el = np.arcsin(math.sin(la) * np.sin(dec) + math.cos(la) * np.cos(dec) * np.cos(ha))
    out: F64 = np.degrees(el)
    return out


def sky_lux(elev: F64) -> F64:
    """Clear-sky horizontal illuminance (lx) from solar elevation, twilight included."""
    # About 500 lx at sunset, ~1 lx at the end of civil twilight (-6 deg), ~100 klx at noon
    # with a high sun (assumption, textbook daylight figures).
    day = 500.0 + 120000.0 * np.clip(np.sin(np.radians(elev)), 0.0, None) ** 1.15
    out: F64 = np.where(elev >= 0, day, 500.0 * 10.0 ** (0.45 * np.maximum(elev, -12.0)))
    return out


@dataclass(eq=False)
class Daylight:
    """Outdoor light at the site: sun, clouds (per day + drifting), and a sensor's view."""

    lat: float
    lon: float
    t0: float
    cloud: F64  # per local day, 0.05..1 transmittance
    cloud_var: F64  # per local day, relative drift amplitude
    key: int

    def outdoor(self, t: F64) -> F64:
        """Horizontal illuminance (lx) under today's clouds."""
        day = np.clip(((t - self.t0) // DAY).astype(np.int64), 0, self.cloud.size - 1)
        c = self.cloud[day] * (1.0 + self.cloud_var[day] * value_noise(self.key, t, 1200.0))
        out: F64 = sky_lux(sun_elevation(t, self.lat, self.lon)) * np.clip(c, 0.02, 1.0)
        return out


@dataclass(eq=False)
class Channel:
    """One relay channel of a lighting controller with its lamps."""

    number: int
    lamps: int
    load: Load  # power of the lit lamps (W), constant-power LED drivers
    relay: Profile  # commanded state as 1.0 segments
    spectrum: Spectrum


@dataclass(eq=False)
class Controller:
    """A building's 8-channel lighting controller: relays, lamp current sensing, lux input."""

    name: str
    building: str
    phase: str
    channels: dict[int, Channel]
    has_sensor: bool
    sensor_factor: float
    sensor_floor: float
    spikes: Profile  # headlights, torches on the sensor (lx)
    key: int
    daylight: Daylight

    def lux(self, t: F64) -> F64:
        """Sensor illuminance (lx, uint16; 65535 when no sensor is fitted)."""
        if not self.has_sensor:
            return np.full(t.shape, 65535.0)
        raw = (self.daylight.outdoor(t) * self.sensor_factor + self.sensor_floor
               + self.spikes.at(t))
        raw = raw * (1.0 + 0.03 * (hash_uniform(self.key, np.floor(t).astype(np.int64)) - 0.5))
        out: F64 = np.clip(np.round(raw), 0.0, 65534.0)
        return out


@dataclass(eq=False)
class Site:
    """Everything generated: circuits per box, controllers, voltage and daylight models."""

    t0: float
    end: float
    lat: float
    lon: float
    voltage: VoltageModel
    daylight: Daylight
    circuits: list[Circuit] = field(default_factory=list)
    controllers: list[Controller] = field(default_factory=list)
    energy_grid: F64 = field(default_factory=lambda: np.zeros(0))

    def box_circuits(self, building: str, box: str, phase: str) -> list[Circuit]:
        """All circuits (metered or not) on one phase of one box."""
        return [c for c in self.circuits
                if c.building == building and c.box == box and c.phase == phase]


def bool_segments(t: F64, state: np.ndarray, step: float) -> Profile:
    """Segments of 1.0 where a boolean grid is true (grid spacing ``step``)."""
    s = state.astype(np.int8)
    d = np.diff(np.concatenate(([0], s, [0])))
    on = np.flatnonzero(d == 1)
    off = np.flatnonzero(d == -1)
    starts = t[0] + on * step
    ends = t[0] + off * step
    return Profile.build(starts, ends, np.ones(starts.size))


def intervals_and(a: Profile, b_s: F64, b_e: F64) -> tuple[F64, F64]:
    """Intersection of a profile's segments with sorted, disjoint intervals."""
    out_s, out_e = [], []
    i = j = 0
    while i < len(a) and j < b_s.size:
        lo = max(a.start[i], b_s[j])
        hi = min(a.end[i], b_e[j])
        if hi > lo:
            out_s.append(lo)
            out_e.append(hi)
        if a.end[i] < b_e[j]:
            i += 1
        else:
            j += 1
    return np.asarray(out_s, dtype=np.float64), np.asarray(out_e, dtype=np.float64)


def rolling_all(x: np.ndarray, k: int) -> np.ndarray:
    """True where ``x`` has been true for the last ``k`` samples (inclusive)."""
    c = np.concatenate(([0], np.cumsum(x.astype(np.int64))))
    idx = np.arange(x.size)
    lo = np.maximum(idx + 1 - k, 0)
    out: np.ndarray = (c[idx + 1] - c[lo]) == (idx + 1 - lo)
    return out & (idx + 1 >= k)


def hysteresis(on_cond: np.ndarray, off_cond: np.ndarray, initial: bool) -> np.ndarray:
    """Latch: set where ``on_cond``, reset where ``off_cond``, hold otherwise."""
    ev = np.where(on_cond, 1, np.where(off_cond, 0, -1))
    idx = np.where(ev >= 0, np.arange(ev.size), -1)
    last = np.maximum.accumulate(idx)
    state = np.where(last >= 0, ev[np.clip(last, 0, None)], 1 if initial else 0)
    out: np.ndarray = state.astype(bool)
    return out

