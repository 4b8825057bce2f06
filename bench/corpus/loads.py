"""Appliance, charger and lamp models: current spectra and power profiles over time.

A load is a power profile (W at 220 V, :mod:`bench.corpus.timeseries`) and a current spectrum:
the fundamental's displacement angle and the odd harmonics 3..25 as phasors relative to the
fundamental. Loads on a circuit add as phasors per harmonic, so a meter's RMS current, VA and
"sqrt" var come out of the physics rather than out of a per-load power factor. Every number
cites a source in ``SOURCES.md`` by its tag ([S1]...); untagged numbers are stated assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from bench.corpus.timeseries import F64, Profile, merge, value_noise

HARMONICS = np.arange(1, 27, 2)  # odd orders 1..25; triplens and all, single-phase loads
V_NOM = 220.0
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Current phasors per harmonic, relative to a fundamental of magnitude 1."""

    key: str
    c: np.ndarray  # complex, shape (len(HARMONICS),); c[0] = exp(-j*phi), phi > 0 lagging

    @property
    def dpf(self) -> float:
        """Displacement power factor cos(phi) of the fundamental."""
        return float(self.c[0].real)

    @property
    def true_pf(self) -> float:
        """Power factor P/S with a sinusoidal voltage: dpf times the distortion factor."""
        return self.dpf / float(np.sqrt(np.sum(np.abs(self.c) ** 2)))

    @property
    def rms_ratio(self) -> float:
        """RMS current over fundamental current."""
        return float(np.sqrt(np.sum(np.abs(self.c) ** 2)))


def _harmonic_phases(lead: float) -> np.ndarray:
    # A current pulse centred at the voltage peak moved earlier by `lead` radians has, in the
    # sin(h*theta) reference, phase pi/2*(1-h) + h*lead (derivation in SOURCES.md, "spectra").
    phases: np.ndarray = math.pi / 2 * (1 - HARMONICS) + HARMONICS * lead
    return phases


@lru_cache(maxsize=512)
def linear(pf: float, leading: bool = False) -> Spectrum:
    """A linear load (resistor, motor, capacitor dropper) with this displacement factor."""
    phi = math.acos(min(max(pf, 0.0), 1.0)) * (-1.0 if leading else 1.0)
    c = np.zeros(HARMONICS.size, dtype=np.complex128)
    c[0] = complex(math.cos(phi), -math.sin(phi))
    return Spectrum(f"lin:{pf:.3f}:{int(leading)}", c)


@lru_cache(maxsize=512)
def distorted(pf_disp: float, thd: float, leading: bool = False, slope: float = 1.3) -> Spectrum:
    """A mildly distorted load: displacement ``pf_disp``, current THD ``thd``, falling spectrum."""
    phi = math.acos(min(max(pf_disp, 0.0), 1.0)) * (-1.0 if leading else 1.0)
    mags = np.zeros(HARMONICS.size)
    mags[1:] = HARMONICS[1:].astype(np.float64) ** -slope
    mags[1:] *= thd / float(np.sqrt(np.sum(mags[1:] ** 2)))
    c = mags * np.exp(1j * _harmonic_phases(-phi))
    c[0] = complex(math.cos(phi), -math.sin(phi))
    return Spectrum(f"dist:{pf_disp:.3f}:{thd:.3f}:{int(leading)}:{slope:.2f}", c)


_N = 4096
_THETA = np.arange(_N) * (2 * math.pi / _N)


def _pulse_phasors(width: float, lead: float) -> np.ndarray:
    # Capacitor-input bridge rectifier: the current flows in a raised-cosine pulse of conduction
    # width `width` just before each voltage peak ([S5]); negative half-wave mirrored.
    def pulse(centre: float) -> np.ndarray:
        x = (_THETA - centre + math.pi) % (2 * math.pi) - math.pi
        out: np.ndarray = np.where(np.abs(x) < width / 2, np.cos(math.pi * x / width) ** 2, 0.0)
        return out

    wave = pulse(math.pi / 2 - lead) - pulse(3 * math.pi / 2 - lead)
    spec = np.fft.rfft(wave)[HARMONICS] * (2.0 / _N)
    phasors: np.ndarray = 1j * spec  # A*exp(j*psi) in the sin(h*theta) reference
    return phasors


@lru_cache(maxsize=8)
def _df_table(lead_mdeg: int) -> tuple[np.ndarray, np.ndarray]:
    lead = math.radians(lead_mdeg / 1000.0)
    widths = np.linspace(0.25, 3.0, 120)
    dfs = []
    for w in widths:
        ph = _pulse_phasors(float(w), lead)
        dfs.append(abs(ph[0]) / float(np.sqrt(np.sum(np.abs(ph) ** 2))))
    return widths, np.asarray(dfs)


@lru_cache(maxsize=512)
def rectifier(true_pf: float, lead_deg: float) -> Spectrum:
    """A capacitor-input rectifier (no PFC) with this true power factor and fundamental lead."""
    lead = math.radians(lead_deg)
    # The pulse width is solved so that dpf * distortion factor equals the wanted true PF.
    widths, dfs = _df_table(0)
    target_df = min(max(true_pf / math.cos(lead), float(dfs[0])), float(dfs[-1]))
    width = float(np.interp(target_df, dfs, widths))
    ph = _pulse_phasors(width, lead)
    c = ph / abs(ph[0])
    return Spectrum(f"rect:{true_pf:.3f}:{lead_deg:.1f}", c)


@lru_cache(maxsize=512)
def pfc(thd: float, lead_deg: float) -> Spectrum:
    """An active-PFC front end: near-sinusoidal current, small lead from the EMI capacitor."""
    return distorted(math.cos(math.radians(lead_deg)), thd, leading=True, slope=1.0)


@dataclass(eq=False)
class Load:
    """One appliance (or merged group of identical small ones) on one circuit."""

    kind: str
    profile: Profile
    spectrum: Spectrum
    vexp: float = 0.0  # P ~ (V/220)**vexp: 2 for resistors, 0 for regulated electronics
    noise: float = 0.0  # relative amplitude of smooth power fluctuations
    noise_tau: float = 60.0
    key: int = 0
    overshoot: float = 0.0  # lamp drivers: relative overshoot just after switch-on
    overshoot_tau: float = 2.0
    softstart: float = 0.0  # lamp drivers: seconds of ramp after switch-on
    edges: F64 = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if (self.overshoot or self.softstart) and self.edges.size == 0:
            self.edges = self.profile.rising_edges()

    def power(self, t: F64, v: F64) -> F64:
        """Active power (W) at times ``t`` with supply voltage ``v``."""
        p = self.profile.at(t)
        if self.vexp:
            p = p * (v / V_NOM) ** self.vexp
        if self.noise:
            p = p * np.clip(1.0 + self.noise * value_noise(self.key, t, self.noise_tau), 0.0, None)
        if self.edges.size:
            i = np.searchsorted(self.edges, t, side="right") - 1
            dt = np.where(i >= 0, t - self.edges[np.clip(i, 0, None)], 1e9)
            if self.overshoot:
                p = p * (1.0 + self.overshoot * np.exp(-dt / self.overshoot_tau))
            if self.softstart:
                p = p * np.clip(dt / self.softstart, 0.0, 1.0)
        return p

    def energy_factor(self, t: F64, v: F64) -> F64:
        """Multiplier on the nominal profile's energy in a cell centred at ``t``."""
        f = np.ones(t.shape)
        if self.vexp:
            f = f * (v / V_NOM) ** self.vexp
        if self.noise:
            f = f * np.clip(1.0 + self.noise * value_noise(self.key, t, self.noise_tau), 0.0, None)
        return f


@dataclass(frozen=True)
class Episode:
    """A benign or labelled stretch of activity to report alongside the loads."""

    kind: str
    start: float
    end: float
    detail: dict[str, object]


class Span:
    """The corpus time span, with local-day helpers (Asia/Shanghai has no DST: UTC+8)."""

    def __init__(self, t0: float, days: float) -> None:
        self.t0 = t0
        self.days = days
        self.end = t0 + days * DAY
        self.n_days = math.ceil(days)

    def at(self, day: int, hour: float) -> float:
        """Epoch seconds of local ``hour`` (may exceed 24) on local day ``day``."""
        return self.t0 + day * DAY + hour * HOUR

    def times(self, day: int, hours: F64) -> F64:
        """Epoch seconds of several local hours on local day ``day``."""
        out: F64 = self.t0 + day * DAY + hours * HOUR
        return out

    def weekend(self, day: int) -> bool:
        """True on Saturday and Sunday (day 0 is the start date's weekday, see ``weekday0``)."""
        return (self.weekday0 + day) % 7 >= 5

    weekday0 = 0  # set by the generator from the start date


Rng = np.random.Generator


def thermostat(rng: Rng, start: float, end: float, on: tuple[float, float],
               off: tuple[float, float], first_on: float = 0.0) -> tuple[F64, F64]:
    """On-intervals of a bang-bang thermostat between ``start`` and ``end`` (minutes ranges)."""
    s, e = [], []
    t = start
    first = True
    while t < end:
        dur = (first_on if first and first_on else rng.uniform(*on)) * 60.0
        s.append(t)
        e.append(min(t + dur, end))
        t += dur + rng.uniform(*off) * 60.0
        first = False
    return np.asarray(s), np.asarray(e)


def constant(kind: str, span: Span, watts: float, spectrum: Spectrum, key: int,
             noise: float = 0.0, tau: float = 600.0) -> Load:
    """An always-on load for the whole span."""
    return Load(kind, Profile.build([span.t0 - DAY], [span.end + DAY], [watts]), spectrum,
                noise=noise, noise_tau=tau, key=key)


# --- refrigeration ---------------------------------------------------------------------------

def fridge(rng: Rng, span: Span, key: int, *, big: bool = False) -> list[Load]:
    """Compressor cycling with start-up surge, settling and (frost-free) defrost heater."""
    # [S10]: running 70-150 W (freezers up to ~200 W), cycles 15-30 min on / 30-60 min off in a
    # cool November kitchen (duty 20-40 %), start-up surge 3-5x running power for about a second.
    run_w = rng.uniform(120, 200) if big else rng.uniform(70, 150)
    pf = rng.uniform(0.6, 0.8)
    t = span.t0 - rng.uniform(0, 3600)
    s, e, s_in = [], [], []
    while t < span.end:
        on = rng.uniform(15, 30) * 60
        s.append(t)
        e.append(t + on)
        s_in.append(t)
        t += on + rng.uniform(30, 60) * 60
    st, en = np.asarray(s), np.asarray(e)
    # The running power settles from ~1.3x to the steady value over the first two minutes as
    # the pressures equalise (assumption), then drifts slowly (noise).
    settle = np.minimum(st + 120, en)
    prof = Profile.build(np.concatenate((st, settle)), np.concatenate((settle, en)),
                         np.concatenate((np.full(st.size, 1.3 * run_w), np.full(st.size, run_w))),
                         np.concatenate((np.full(st.size, run_w), np.full(st.size, run_w))))
    loads = [Load("fridge", prof, distorted(pf, 0.12), noise=0.03, noise_tau=120, key=key)]
    # The 1 s average of the locked-rotor surge (~6x for ~0.3 s) is about 3x running power at a
    # poor power factor; a register refreshed once a second catches it in at most one update.
    surge_s = np.asarray(s_in)
    loads.append(Load("fridge", Profile.build(surge_s, surge_s + 1.0,
                                              np.full(surge_s.size, rng.uniform(2.5, 4) * run_w)),
                      linear(0.45)))
    if not big and rng.random() < 0.5:
        # Frost-free: a 150-300 W defrost heater every 8-24 h for 15-30 min (assumption).
        ds = np.arange(span.t0 + rng.uniform(0, 8 * HOUR), span.end, rng.uniform(8, 24) * HOUR)
        de = ds + rng.uniform(15, 30) * 60
        loads.append(Load("fridge", Profile.build(ds, de, np.full(ds.size, rng.uniform(150, 300))),
                          linear(1.0), vexp=2.0))
    return loads


# --- e-bike chargers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChargerModel:
    """A charger/battery pairing as sold in China; numbers in SOURCES.md."""

    chemistry: str  # "lead-acid" | "lithium"
    volts: int
    cells: int
    amps: tuple[float, float]
    capacity: tuple[float, ...]


CHARGERS = (
    # [S7]: lead-acid three-stage chargers: CC ~1.8 A (36V12Ah) to 2.45 V/cell, CV taper to a
    # "turn-light" current ~0.3 A, float 2.3 V/cell at ~50 mA. 48/60/72 V packs of 12 V blocks.
    ChargerModel("lead-acid", 48, 24, (1.8, 3.0), (12.0, 20.0)),
    ChargerModel("lead-acid", 60, 30, (2.0, 3.0), (20.0,)),
    ChargerModel("lead-acid", 72, 36, (2.5, 3.5), (20.0, 32.0)),
    # Lithium packs: 13S/16S/20S NMC, CC/CV to 4.2 V/cell then stop ([S9]: a 4 A charger peaks
    # at 185 W and tapers to zero when full).
    ChargerModel("lithium", 48, 13, (2.0, 5.0), (12.0, 20.0, 24.0)),
    ChargerModel("lithium", 60, 16, (2.0, 5.0), (20.0, 30.0)),
    ChargerModel("lithium", 36, 10, (1.5, 2.0), (10.0,)),
)
CHARGER_SHARE = (0.25, 0.18, 0.12, 0.22, 0.13, 0.10)  # assumption: lead-acid ~55 % of the fleet


def charger_session(rng: Rng, t_plug: float, t_unplug: float) -> tuple[Load, dict[str, object]]:
    """One plugged-in charging session: CC bulk, CV taper, float/idle until unplugged."""
    model = CHARGERS[int(rng.choice(len(CHARGERS), p=CHARGER_SHARE))]
    lead = model.chemistry == "lead-acid"
    amps = rng.uniform(*model.amps)
    cap = float(rng.choice(model.capacity))
    has_pfc = rng.random() < (0.12 if lead else 0.25)  # assumption: PFC is the exception
    pulse = lead and not has_pfc and rng.random() < 0.2
    eff = rng.uniform(0.85, 0.92) if has_pfc else rng.uniform(0.78, 0.88)
    overhead = rng.uniform(1.0, 3.0)
    dod = rng.uniform(0.3, 0.85)
    need_ah = dod * cap * (1.15 if lead else 1.02)  # charge factor: lead-acid gassing losses
    cc_frac = rng.uniform(0.75, 0.85) if lead else rng.uniform(0.85, 0.92)
    t_cc = cc_frac * need_ah / amps * HOUR
    if lead:
        v0 = model.cells * rng.uniform(2.02, 2.12)
        v_cv = model.cells * rng.uniform(2.42, 2.47)
        i_end = rng.uniform(0.3, 0.5)  # turn-light current [S7]
        v_float = model.cells * rng.uniform(2.26, 2.30)
        float_w = v_float * rng.uniform(0.03, 0.10) / eff + overhead
    else:
        v0 = model.cells * rng.uniform(3.55, 3.8)
        v_cv = model.cells * rng.uniform(4.15, 4.2)
        i_end = rng.uniform(0.1, 0.25)
        float_w = rng.uniform(0.3, 1.0)  # terminated: only the charger's standby
    rem_ah = (1.0 - cc_frac) * need_ah
    tau = max(rem_ah / max(amps - i_end, 0.1), 0.05) * HOUR
    t_cv = tau * math.log(amps / i_end)
    p_start = v0 * amps / eff + overhead
    p_cc_end = v_cv * amps / eff + overhead
    # CC: battery voltage (and input power) climbs through bulk; concave, so two pieces.
    t1 = t_plug + min(t_cc, 600.0)
    t2 = t_plug + t_cc
    v_knee = v0 + 0.6 * (v_cv - v0)
    s = [t_plug, t1]
    e = [t1, t2]
    a = [p_start, v_knee * amps / eff + overhead]
    b = [v_knee * amps / eff + overhead, p_cc_end]
    # CV: current decays exponentially; six linear pieces with equal current ratios.
    n = 6
    for k in range(n):
        ta = t2 + t_cv * k / n
        tb = t2 + t_cv * (k + 1) / n
        ia = amps * math.exp(-(ta - t2) / tau)
        ib = amps * math.exp(-(tb - t2) / tau)
        s.append(ta)
        e.append(tb)
        a.append(v_cv * ia / eff + overhead)
        b.append(v_cv * ib / eff + overhead)
    t_done = t2 + t_cv
    s.append(t_done)
    e.append(max(t_unplug, t_done))
    a.append(float_w)
    b.append(float_w)
    prof = Profile.build(s, e, a, b).clip(t_plug, t_unplug)
    if has_pfc:
        thd, lead_deg = rng.uniform(0.06, 0.2), rng.uniform(2.0, 8.0)
        spec = pfc(round(thd, 2), round(lead_deg))
    else:
        # [S4], [S5]: no-PFC switch-mode input: true PF 0.45-0.65, displacement PF ~0.97-0.99
        # leading; the low PF is distortion (a large 3rd harmonic), not phase shift.
        spec = rectifier(round(rng.uniform(0.45, 0.65), 2), round(rng.uniform(4.0, 14.0)))
    kind = f"{model.chemistry}-{model.volts}V-{'PFC' if has_pfc else 'no-PFC'}"
    if pulse:
        kind += "-pulse"
    load = Load("ebike", prof, spec, noise=0.25 if pulse else 0.02,
                noise_tau=2.0 if pulse else 300.0, key=int(rng.integers(1 << 62)))
    detail: dict[str, object] = {
        "charger": kind, "cc_w": round(0.5 * (p_start + p_cc_end)), "pf": round(spec.true_pf, 3),
        "hours": round((t_unplug - t_plug) / HOUR, 2),
        "charge_hours": round(min(t_cc + t_cv, t_unplug - t_plug) / HOUR, 2),
        "battery": f"{model.volts}V{cap:g}Ah", "dc_amps": round(amps, 2),
    }
    return load, detail


# --- heaters --------------------------------------------------------------------------------

def heater_session(rng: Rng, start: float, end: float, *, kind: str | None = None,
                   ) -> tuple[Load, dict[str, object]]:
    """A resistive space heater session: thermostat cycling, oil heater stages or PTC fan."""
    kind = kind or str(rng.choice(["heater", "oil-heater", "fan-heater"], p=[0.4, 0.35, 0.25]))
    if kind == "oil-heater":
        # Two elements (e.g. 800 + 1200 W) on selector stages; long warm-up, then the
        # thermostat cycles the selected stage (assumption based on common 2 kW oil radiators).
        lo, hi = (800.0, 1200.0) if rng.random() < 0.5 else (1000.0, 1000.0)
        watts = (lo + hi) if rng.random() < 0.6 else hi
        s, e = thermostat(rng, start, end, (8, 25), (4, 15), first_on=rng.uniform(20, 45))
        prof = Profile.build(s, e, np.full(s.size, watts))
        spec = linear(1.0)
        detail: dict[str, object] = {"appliance": kind, "watts": watts, "stages": [lo, hi]}
    elif kind == "fan-heater":
        # PTC elements draw ~1.3x their rated power cold and settle within a minute or two.
        watts = float(rng.choice([1500.0, 1800.0, 2000.0]))
        s, e = thermostat(rng, start, end, (5, 20), (3, 10), first_on=rng.uniform(15, 40))
        mid = np.minimum(s + 90, e)
        prof = Profile.build(np.concatenate((s, mid)), np.concatenate((mid, e)),
                             np.concatenate((np.full(s.size, 1.3 * watts),
                                             np.full(s.size, watts))),
                             np.concatenate((np.full(s.size, watts), np.full(s.size, watts))))
        spec = linear(0.99)
        detail = {"appliance": kind, "watts": watts}
    else:
        watts = float(rng.choice([1000.0, 1200.0, 1500.0, 2000.0, 2200.0]))
        if rng.random() < 0.3:
            s, e = np.asarray([start]), np.asarray([end])
        else:
            s, e = thermostat(rng, start, end, (5, 20), (3, 12), first_on=rng.uniform(10, 30))
        prof = Profile.build(s, e, np.full(s.size, watts))
        spec = linear(1.0)
        detail = {"appliance": kind, "watts": watts}
    detail["cycles"] = int(s.size)
    detail["hours"] = round((end - start) / HOUR, 2)
    return Load("heater", prof, spec, vexp=2.0), detail


# --- households --------------------------------------------------------------------------------

class Household:
    """Appliances of one flat; a daily routine drawn per day."""

    def __init__(self, rng: Rng, span: Span, keys: Callable[[], int], *,
                 occupants: str | None = None, heater: bool | None = None) -> None:
        self.rng, self.span, self.keys = rng, span, keys
        self.kind = occupants or str(rng.choice(["workers", "retired", "vacant"],
                                                p=[0.62, 0.30, 0.08]))
        self.loads: list[Load] = []
        self.episodes: list[Episode] = []
        self.heater = (rng.random() < 0.25) if heater is None else heater

    def ep(self, kind: str, start: float, end: float, **detail: object) -> None:
        """Record an episode (confounder) of this flat."""
        self.episodes.append(Episode(kind, start, end, dict(detail)))

    def add(self, kind: str, s: list[float], e: list[float], p: list[float], spec: Spectrum,
            vexp: float = 0.0, noise: float = 0.0, tau: float = 60.0) -> None:
        """Add a load from session lists."""
        if s:
            self.loads.append(Load(kind, Profile.build(s, e, p), spec, vexp=vexp, noise=noise,
                                   noise_tau=tau, key=self.keys()))

    def build(self) -> Household:
        """Draw the flat's appliances and their use over the span."""
        rng, span = self.rng, self.span
        # Router/ONU + set-top box standby + idle adapters: always on ([S14]: small SMPS).
        self.loads.append(constant("router-onu", span, rng.uniform(8, 25),
                                   rectifier(0.5, 8.0), self.keys(), noise=0.05))
        self.ep("router-onu", span.t0, span.end, watts="8-25")
        if self.kind == "vacant":
            return self
        self.loads.extend(fridge(rng, span, self.keys()))
        self.ep("fridge", span.t0, span.end, appliance="fridge")
        tv_w = rng.uniform(60, 150)
        tv_spec = pfc(0.15, 3.0) if tv_w > 100 and rng.random() < 0.5 else rectifier(0.62, 6.0)
        light_w = rng.uniform(25, 90)
        light_spec = rectifier(0.55, 8.0) if rng.random() < 0.5 else pfc(0.2, 5.0)
        has_wh = rng.random() < 0.7
        wh_w = float(rng.choice([1500.0, 2000.0, 2500.0, 3000.0]))
        has_ac = rng.random() < 0.5
        has_blanket = rng.random() < 0.4
        has_ebike = rng.random() < 0.25
        has_laptop = rng.random() < 0.5
        has_washer_heat = rng.random() < 0.4
        lists: dict[str, tuple[list[float], list[float], list[float]]] = {}

        def put(name: str, s: float, e: float, p: float) -> None:
            lst = lists.setdefault(name, ([], [], []))
            lst[0].append(s)
            lst[1].append(e)
            lst[2].append(p)

        washer: list[tuple[float, float, float]] = []
        ebike_next = span.t0 + rng.uniform(0, 2) * DAY
        for d in range(span.n_days):
            wk = span.weekend(d)
            if self.kind == "retired":
                wake, leave, back, sleep = (rng.normal(6.0, 0.3), None, None,
                                            rng.normal(21.8, 0.5))
            else:
                wake = rng.normal(8.0 if wk else 6.8, 0.4)
                leave = None if wk else rng.normal(7.9, 0.25)
                back = None if wk else rng.normal(18.3, 0.6)
                sleep = rng.normal(23.3 if wk else 23.0, 0.5)
            home_eve = back if back is not None else 16.5 + rng.uniform(0, 1.5)
            # Lights: dark before ~6:40 and after ~17:20 in November Nanjing.
            if wake < 6.6:
                put("lights", span.at(d, wake), span.at(d, min(6.7, leave or 6.7)),
                    light_w * 0.5)
            put("lights", span.at(d, max(17.2, home_eve)), span.at(d, sleep),
                light_w * rng.uniform(0.7, 1.0))
            self.ep("flat-lights", span.at(d, max(17.2, home_eve)), span.at(d, sleep))
            # Kettle (~1.8-2.2 kW, 3-5 min), morning and sometimes evening.
            kettle_w = 2000.0
            for hh, prob in ((wake + 0.2, 0.8), (home_eve + 1.5, 0.45)):
                if rng.random() < prob:
                    t = span.at(d, hh)
                    dur = rng.uniform(3, 5) * 60
                    put("kettle", t, t + dur, kettle_w)
                    self.ep("kettle", t, t + dur, watts=kettle_w)
            # Dinner: rice cooker ([S11]: 500-800 W ~30 min, keep-warm 30-70 W for hours).
            cook = home_eve + rng.uniform(0.2, 0.6) if self.kind != "retired" else 17.2
            if rng.random() < 0.7:
                t = span.at(d, cook)
                rc_w = rng.uniform(500, 800)
                dur = rng.uniform(25, 35) * 60
                warm = rng.uniform(0.5, 4.0) * HOUR
                put("rice-cooker", t, t + dur, rc_w)
                put("rice-cooker-warm", t + dur, t + dur + warm, rng.uniform(40, 70))
                self.ep("rice-cooker", t, t + dur + warm, watts=round(rc_w), keep_warm_h=round(
                    warm / HOUR, 2))
            if rng.random() < 0.8:
                t = span.at(d, cook + 0.4)
                hob_end = t + rng.uniform(20, 45) * 60
                while t < hob_end:
                    step = rng.uniform(2, 6) * 60
                    put("induction-hob", t, min(t + step, hob_end),
                        float(rng.choice([800.0, 1200.0, 1600.0, 2000.0])))
                    t += step
                put("range-hood", span.at(d, cook + 0.4) - 60, hob_end + 120,
                    rng.uniform(150, 220))
                self.ep("induction-hob", span.at(d, cook + 0.4), hob_end)
            if rng.random() < 0.3:
                t = span.at(d, cook + 1.1)
                dur = rng.uniform(1, 5) * 60
                put("microwave", t, t + dur, rng.uniform(1100, 1300))
                self.ep("microwave", t, t + dur)
            # TV evenings, some weekend afternoons.
            if rng.random() < 0.8:
                ts, te = span.at(d, home_eve + 0.8), span.at(d, sleep - 0.3)
                if te > ts:
                    put("tv", ts, te, tv_w)
                    self.ep("tv", ts, te, watts=round(tv_w))
            if (wk or self.kind == "retired") and rng.random() < 0.4:
                ts = span.at(d, rng.uniform(13.5, 15))
                put("tv", ts, ts + rng.uniform(1, 3) * HOUR, tv_w)
            if has_laptop and rng.random() < 0.6:
                ts = span.at(d, home_eve + rng.uniform(1, 2))
                te = ts + rng.uniform(1.5, 4) * HOUR
                lw = rng.uniform(30, 65)
                put("laptop-charger", ts, te, lw)
                self.ep("laptop-charger", ts, te, watts=round(lw))
            ts = span.at(d, sleep - rng.uniform(0, 0.5))
            te = ts + rng.uniform(1, 2.5) * HOUR
            pw = rng.uniform(5, 18)
            put("phone-charger", ts, te, pw)
            self.ep("phone-charger", ts, te, watts=round(pw, 1))
            # Storage water heater: evening showers, Jiangsu off-peak (21:00-08:00) heating.
            if has_wh:
                t = span.at(d, rng.uniform(20.5, 22.5))
                dur = rng.uniform(30, 70) * 60
                put("water-heater", t, t + dur, wh_w)
                self.ep("water-heater", t, t + dur, watts=wh_w)
                for hh in (rng.uniform(4, 7), rng.uniform(12, 16)):
                    t = span.at(d, hh)
                    put("water-heater", t, t + rng.uniform(8, 15) * 60, wh_w)
            if has_ac and rng.random() < 0.55:
                self._ac(d, home_eve + rng.uniform(0, 0.5), sleep + rng.uniform(-0.5, 0.5))
            if self.heater and rng.random() < 0.5:
                ts = span.at(d, home_eve + rng.uniform(0.3, 1.5))
                te = span.at(d, sleep)
                if te > ts + 600:
                    load, det = heater_session(rng, ts, te)
                    self.loads.append(load)
                    self.ep("heater-in-flat", ts, te, **det)
            if has_blanket and rng.random() < 0.7:
                ts = span.at(d, sleep - 0.5)
                te = ts + rng.uniform(1, 3) * HOUR
                bw = rng.uniform(40, 100)
                put("electric-blanket", ts, te, bw)
                self.ep("electric-blanket", ts, te, watts=round(bw))
            if rng.random() < (0.6 if wk else 0.3):
                washer.append((span.at(d, rng.uniform(9, 11) if wk else home_eve + 1.2),
                               rng.uniform(150, 300), rng.uniform(300, 500)))
            if has_ebike and span.at(d, 18) >= ebike_next:
                tp = span.at(d, rng.uniform(19, 23.5))
                tu = span.at(d + 1, rng.uniform(6.5, 8.0))
                load, det = charger_session(rng, tp, tu)
                self.loads.append(load)
                self.ep("ebike-in-flat", tp, tu, **det)
                ebike_next = tp + rng.uniform(1, 3) * DAY
        specs = {
            "lights": (light_spec, 0.0), "kettle": (linear(1.0), 2.0),
            "rice-cooker": (linear(1.0), 2.0), "rice-cooker-warm": (linear(1.0), 2.0),
            "induction-hob": (pfc(0.12, 2.0), 0.0), "range-hood": (linear(0.9), 0.0),
            "microwave": (distorted(0.95, 0.3), 0.0), "tv": (tv_spec, 0.0),
            "laptop-charger": (rectifier(0.52, 8.0), 0.0),
            "phone-charger": (rectifier(0.5, 10.0), 0.0),
            "water-heater": (linear(1.0), 2.0), "electric-blanket": (linear(1.0), 2.0),
        }
        for name, (s, e, p) in lists.items():
            spec, vexp = specs[name]
            noise = 0.1 if name == "tv" else 0.0
            self.add(name, s, e, p, spec, vexp=vexp, noise=noise, tau=20.0)
        self._washer(washer, has_washer_heat)
        return self

    def _ac(self, d: int, start_h: float, end_h: float) -> None:
        # Inverter heat pump in heating mode: a hard start, then modulation; defrost every
        # 40-90 min in cold humid weather (assumption); active PFC, PF 0.95-0.99.
        rng, span = self.rng, self.span
        t, end = span.at(d, start_h), span.at(d, end_h)
        if end <= t + 1200:
            return
        self.ep("inverter-ac", t, end, mode="heating")
        s, e, a, b = [t], [t + rng.uniform(10, 20) * 60], [0.0], [rng.uniform(1200, 1800)]
        s.append(e[-1])
        a.append(b[-1])
        t = e[-1] + rng.uniform(5, 10) * 60
        e.append(t)
        b.append(rng.uniform(400, 900))
        while t < end:
            run = rng.uniform(40, 90) * 60
            s.append(t)
            e.append(min(t + run, end))
            a.append(b[-1])
            b.append(rng.uniform(300, 900))
            t += run
            if t >= end:
                break
            dfr = rng.uniform(5, 8) * 60
            s.append(t)
            e.append(min(t + dfr, end))
            a.append(rng.uniform(150, 250))
            b.append(a[-1])
            t += dfr
            s.append(t)
            e.append(min(t + 600, end))
            a.append(rng.uniform(1000, 1500))
            b.append(rng.uniform(500, 900))
            t += 600
        self.loads.append(Load("inverter-ac", Profile.build(s, e, a, b), pfc(0.08, 3.0),
                               noise=0.05, noise_tau=30.0, key=self.keys()))

    def _washer(self, runs: list[tuple[float, float, float]], heat: bool) -> None:
        # Drum motor reverses every ~15 s (12 s on / 3 s pause) during wash and rinse; spin
        # at 300-500 W; a front loader heats 1.8-2 kW for 10-20 min on warm programmes.
        rng = self.rng
        ms, me, mp, hs, he = [], [], [], [], []
        for t0, agit_w, spin_w in runs:
            t = t0 + 180
            if heat and rng.random() < 0.6:
                dur = rng.uniform(10, 20) * 60
                hs.append(t)
                he.append(t + dur)
                t += dur
            for phase_min in (rng.uniform(15, 25), rng.uniform(6, 9), rng.uniform(6, 9)):
                n = int(phase_min * 60 / 15)
                starts = t + 15.0 * np.arange(n)
                ms.extend(starts.tolist())
                me.extend((starts + 12.0).tolist())
                mp.extend([agit_w] * n)
                t += phase_min * 60 + 120
            spin = rng.uniform(5, 10) * 60
            ms.append(t)
            me.append(t + spin)
            mp.append(spin_w)
            self.ep("washing-machine", t0, t + spin, heater=bool(hs and hs[-1] >= t0))
        self.add("washing-machine", ms, me, mp, distorted(0.6, 0.25))
        self.add("washing-machine", hs, he, [1900.0] * len(hs), linear(1.0), vexp=2.0)


# --- public-area loads -------------------------------------------------------------------------

def community_demand(hour: F64, weekend: np.ndarray) -> F64:
    """Relative residential activity (0..1) by local hour; shapes trips, water use, voltage."""
    wkd = np.array([0.45, 0.38, 0.33, 0.31, 0.31, 0.34, 0.48, 0.62, 0.58, 0.52, 0.52, 0.60,
                    0.62, 0.55, 0.50, 0.50, 0.55, 0.70, 0.88, 1.00, 1.00, 0.95, 0.80, 0.62, 0.45])
    wke = np.array([0.48, 0.40, 0.34, 0.31, 0.30, 0.31, 0.36, 0.45, 0.58, 0.66, 0.70, 0.74,
                    0.72, 0.64, 0.60, 0.60, 0.64, 0.76, 0.90, 1.00, 1.00, 0.96, 0.84, 0.66, 0.48])
    hrs = np.arange(25.0)
    out: F64 = np.where(weekend, np.interp(hour, hrs, wke), np.interp(hour, hrs, wkd))
    return out


def lift(rng: Rng, span: Span, key: int, floors: int) -> tuple[list[Load], list[Episode]]:
    """A retrofit/residential traction lift: standby, car light+fan after calls, runs."""
    # [S12] VDI 4707: standby dominates a residential lift's energy. Standby (controller, drive,
    # door operator) 120-250 W; car light + fan +100-200 W switched off 5-15 min after the last
    # call. Runs on a single-phase circuit are smaller than the brief's 3-10 kW three-phase
    # drives: 1.5-3 kW cruise, 1.5-2x at acceleration, 10-40 s (assumption, see SOURCES.md).
    standby = rng.uniform(120, 250)
    car_w = rng.uniform(100, 200)
    car_off = rng.uniform(5, 15) * 60
    rated = rng.uniform(1.5, 3.0)
    loads = [constant("lift-standby", span, standby, rectifier(0.6, 5.0), key, noise=0.03)]
    eps = [Episode("lift-standby", span.t0, span.end, {"watts": round(standby)})]
    trips: list[float] = []
    for d in range(span.n_days):
        wk = np.full(24, span.weekend(d))
        rate = 2.0 + 18.0 * community_demand(np.arange(24.0) + 0.5, wk) ** 2 * floors / 15.0
        for h in range(24):
            n = rng.poisson(rate[h] if 6 <= h <= 23 else rate[h] * 0.25)
            trips.extend(np.sort(span.times(d, h + rng.uniform(0, 1, n))).tolist())
    ts = np.asarray(sorted(trips))
    ts = ts[(ts >= span.t0) & (ts < span.end)]
    s, e, a, b = [], [], [], []
    for t in ts:
        dur = rng.uniform(10, 40)
        # Power depends on the load imbalance against the 45 % counterweight: an empty car
        # going down or a full car going up needs motoring power; the reverse brakes into the
        # resistor (no regeneration back to the grid in residential drives: assumption).
        cruise = rated * 1000 * rng.uniform(0.15, 1.0)
        acc = min(4.0, dur / 3)
        s.extend([t, t + acc, t + dur - acc])
        e.extend([t + acc, t + dur - acc, t + dur])
        a.extend([cruise * 1.8, cruise, cruise * 0.6])
        b.extend([cruise * 1.2, cruise, 0.3 * cruise])
    runs = Load("lift-run", Profile.build(s, e, a, b), rectifier(0.82, -4.0))
    # Car light + fan: on from a call until car_off seconds after the last one.
    if ts.size:
        gaps = np.diff(ts) > car_off
        starts = np.concatenate(([ts[0]], ts[1:][gaps]))
        ends = np.concatenate((ts[:-1][gaps] + car_off, [ts[-1] + car_off]))
        car = Load("lift-car", Profile.build(starts, ends, np.full(starts.size, car_w)),
                   rectifier(0.55, 6.0))
        loads.append(car)
        hours = np.floor((ts - span.t0) / HOUR)
        for hval in np.unique(hours):
            sel = ts[hours == hval]
            eps.append(Episode("lift-run", float(sel[0]), float(sel[-1] + 40),
                               {"runs": int(sel.size)}))
    loads.append(runs)
    return loads, eps


def booster_pump(rng: Rng, span: Span, key: int) -> tuple[list[Load], list[Episode]]:
    """A VFD booster pump following water demand, sleeping and restarting at night."""
    # Constant-pressure VFD set: power follows flow (morning/evening peaks); below a minimum
    # flow it sleeps and restarts for 1-3 min every 10-40 min (assumption, typical 变频供水).
    # Sized so a ~60-flat block uses ~8-15 kWh a day: 36 m3 lifted ~50 m is ~5 kWh hydraulic
    # at ~40 % wire-to-water efficiency (assumption, back-of-envelope).
    pmax = rng.uniform(1100, 2200)
    s, e, a, b = [], [], [], []
    for d in range(span.n_days):
        wk = span.weekend(d)
        t = span.at(d, 0)
        end = span.at(d, 24)
        while t < end:
            h = (t - span.at(d, 0)) / HOUR
            dem = float(community_demand(np.asarray([h]), np.asarray([wk]))[0])
            if dem < 0.42:  # sleep mode: short pressure-keeping restarts
                on = rng.uniform(1, 3) * 60
                s.append(t)
                e.append(t + on)
                a.append(pmax * 0.35)
                b.append(pmax * 0.3)
                t += on + rng.uniform(10, 40) * 60
            else:
                step = 120.0
                s.append(t)
                e.append(t + step)
                a.append(pmax * (0.1 + 0.9 * dem ** 3))
                b.append(pmax * (0.1 + 0.9 * dem ** 3))
                t += step
    load = Load("booster-pump", Profile.build(s, e, a, b), rectifier(0.68, 3.0), noise=0.08,
                noise_tau=45.0, key=key)
    return [load], [Episode("booster-pump", span.t0, span.end, {"max_w": round(pmax)})]


def timed_lights(rng: Rng, span: Span, key: int, on_h: float, off_h: float, kind: str,
                 watts: float, spec: Spectrum) -> tuple[Load, list[Episode]]:
    """Lights on a fixed daily timer (time switch: same minute every day)."""
    s = np.asarray([span.at(d, on_h) for d in range(-1, span.n_days)])
    dur = ((off_h - on_h) % 24.0) * HOUR
    load = Load(kind, Profile.build(s, s + dur, np.full(s.size, watts)), spec, key=key)
    eps = [Episode(kind, float(x), float(x + dur), {"watts": round(watts), "pf": round(
        spec.true_pf, 2)}) for x in s if x + dur > span.t0 and x < span.end]
    return load, eps


def voice_stair_leds(rng: Rng, span: Span, key: int, floors: int, flats: int,
                     dark_h: tuple[float, float], interior: bool
                     ) -> tuple[list[Load], list[Episode]]:
    """Sound/light-activated stair lamps: a pulse per landing as residents climb."""
    # [S15]: 声光控 switches light a landing lamp for a fixed delay (10-90 s) when it is dark and
    # a sound is heard; lamps 3-10 W. Capacitor-dropper LED lamps draw a leading current (PF
    # ~0.3-0.5, assumption). An interior stairwell is dark all day.
    lamp_w = rng.uniform(3, 10)
    delay = rng.uniform(30, 90)
    s_all, e_all = [], []
    eps: list[Episode] = []
    for d in range(span.n_days):
        wk = np.full(24, span.weekend(d))
        trips_h = flats * 0.6 * community_demand(np.arange(24.0) + 0.5, wk)
        night_s: list[float] = []
        for h in range(24):
            hh = h + 0.5
            dark = interior or hh >= dark_h[0] or hh < dark_h[1]
            if not dark:
                continue
            for t in span.times(d, h + rng.uniform(0, 1, rng.poisson(trips_h[h]))):
                top = int(rng.integers(1, floors + 1))
                climb = rng.uniform(8, 14)  # seconds per floor
                for f in range(top):
                    s_all.append(t + f * climb)
                    e_all.append(t + f * climb + delay)
                night_s.append(float(t))
        if night_s:
            eps.append(Episode("voice-stair-led", min(night_s), max(night_s) + delay * floors,
                               {"trips": len(night_s), "lamp_w": round(lamp_w, 1)}))
    st = np.asarray(s_all)
    prof = Profile.stack(st, np.asarray(e_all), np.full(st.size, lamp_w)).clip(span.t0 - DAY,
                                                                             span.end + DAY)
    # Electronic sound/light switches idle at ~0.3-0.5 W each.
    idle = constant("voice-switch-idle", span, floors * rng.uniform(0.3, 0.5), linear(0.3, True),
                    key)
    return [Load("voice-stair-led", prof, distorted(0.4, 0.3, leading=True)), idle], eps


def cctv(rng: Rng, span: Span, key: int, n: int, dusk: F64, dawn: F64
         ) -> tuple[list[Load], list[Episode]]:
    """CCTV cameras on 12 V adapters; IR illuminators on from dusk to dawn."""
    # [S13]: cameras 2-6 W, IR adds a few W to ~8 W each at night.
    base = n * rng.uniform(3, 6)
    ir = n * rng.uniform(3, 8)
    # Each dusk pairs with the first dawn after it; each camera's light sensor differs a bit.
    nxt = np.searchsorted(dawn, dusk)
    ok = nxt < dawn.size
    on = dusk[ok] + rng.uniform(-600, 600, int(ok.sum()))
    off = dawn[nxt[ok]] + rng.uniform(-600, 600, int(ok.sum()))
    loads = [constant("cctv", span, base, rectifier(0.5, 8.0), key, noise=0.02),
             Load("cctv-ir", Profile.build(on, off, np.full(on.size, ir)), rectifier(0.5, 8.0))]
    eps = [Episode("cctv-ir", float(x), float(y), {"watts": round(ir, 1), "cameras": n})
           for x, y in zip(on, off, strict=True)]
    return loads, eps


def intercom(rng: Rng, span: Span, key: int) -> tuple[list[Load], list[Episode]]:
    """Door-entry panel, magnetic lock and bus supply; call bursts during the day."""
    # Transformer-fed supply (PF ~0.7 lagging, assumption); a call powers the bus +10-25 W.
    base = rng.uniform(8, 20)
    calls = []
    for d in range(span.n_days):
        for t in span.times(d, rng.uniform(7, 22, rng.poisson(12))):
            calls.append(float(t))
    cs = np.asarray(sorted(calls))
    loads = [constant("intercom", span, base, distorted(0.7, 0.15), key),
             Load("intercom", Profile.build(cs, cs + rng.uniform(20, 60, cs.size),
                                            np.full(cs.size, rng.uniform(10, 25))),
                  distorted(0.7, 0.15))]
    return loads, [Episode("intercom", span.t0, span.end, {"watts": round(base, 1)})]


def vacuum(rng: Rng, span: Span) -> tuple[Load | None, list[Episode]]:
    """Stair cleaning with a vacuum on 1-2 mornings a week."""
    # Universal motor vacuum, 1-1.4 kW, PF ~0.95, mild harmonics (assumption; class A in
    # IEC 61000-3-2 [S6]).
    s, e, p, eps = [], [], [], []
    watts = rng.uniform(1000, 1400)
    for d in range(span.n_days):
        if rng.random() < 0.22:
            t = span.at(d, rng.uniform(8.5, 11))
            dur = rng.uniform(5, 20) * 60
            s.append(t)
            e.append(t + dur)
            p.append(watts)
            eps.append(Episode("vacuum", t, t + dur, {"watts": round(watts)}))
    if not s:
        return None, []
    return Load("vacuum", Profile.build(s, e, p), distorted(0.95, 0.15), vexp=1.0), eps


def guard_booth(rng: Rng, span: Span, keys: Callable[[], int]) -> tuple[list[Load],
                                                                       list[Episode]]:
    """The gatehouse on building 1's public circuit: kettle, rice cooker, TV, small fridge."""
    loads = fridge(rng, span, keys())
    eps = [Episode("fridge", span.t0, span.end, {"appliance": "guard-booth fridge"})]
    ks, ke, rs, re_, ws, we = [], [], [], [], [], []
    for d in range(span.n_days):
        for _ in range(rng.poisson(4)):
            t = span.at(d, rng.uniform(6, 22))
            dur = rng.uniform(3, 5) * 60
            ks.append(t)
            ke.append(t + dur)
            eps.append(Episode("kettle", t, t + dur, {"watts": 1800}))
        for meal in (11.0, 17.0):
            if rng.random() < 0.6:
                t = span.at(d, meal + rng.uniform(0, 0.7))
                rs.append(t)
                re_.append(t + rng.uniform(25, 35) * 60)
                ws.append(re_[-1])
                we.append(re_[-1] + rng.uniform(1, 5) * HOUR)
                eps.append(Episode("rice-cooker", t, we[-1], {"watts": 650, "keep_warm_w": 55}))
    loads.append(Load("kettle", Profile.build(ks, ke, [1800.0] * len(ks)), linear(1.0), vexp=2))
    loads.append(Load("rice-cooker", Profile.build(rs, re_, [650.0] * len(rs)), linear(1.0),
                      vexp=2))
    loads.append(Load("rice-cooker", merge([Profile.build(ws, we, [55.0] * len(ws))]),
                      linear(1.0), vexp=2))
    tv_s = [span.at(d, 18.5) for d in range(span.n_days)]
    loads.append(Load("tv", Profile.build(tv_s, [t + 4 * HOUR for t in tv_s], [70.0] * len(tv_s)),
                      rectifier(0.6, 6.0), noise=0.1, noise_tau=20, key=keys()))
    eps.extend(Episode("tv", t, t + 4 * HOUR, {"watts": 70}) for t in tv_s)
    loads.append(constant("phone-charger", span, 6.0, rectifier(0.5, 10.0), keys()))
    return loads, eps
