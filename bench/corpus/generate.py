"""Drawing a community, its loads and its events from a seed.

Everything random comes from one ``numpy.random.Generator`` seeded from a SHA-256 of
(family, seed); draws happen in a fixed order, so the same (family, seed, days, buildings,
start) always gives the same corpus. Rates of illegal charging, heaters, taps and lamp faults
are stated in SOURCES.md; they are the benchmark's assumptions, not tuned to any detector.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np

from bench.corpus import loads as L
from bench.corpus.loads import DAY, HOUR, Episode, Household, Load, Span
from bench.corpus.records import CorpusDevice
from bench.corpus.site import (
    PHASES,
    Channel,
    Circuit,
    Controller,
    Daylight,
    Site,
    VoltageModel,
    bool_segments,
    hysteresis,
    intervals_and,
    rolling_all,
    sun_elevation,
)
from bench.corpus.timeseries import F64, Profile

LAT, LON, TZ = 32.06, 118.78, "Asia/Shanghai"  # Nanjing
CST = timezone(timedelta(hours=8))
RELAY_STEP = 10.0


@dataclass
class Runtime:
    """Per-device polling behaviour: register refresh phase, timeouts, offline windows."""

    offset: float
    miss_p: float
    key: int
    offline: Profile
    e_import0: float = 0.0
    e_export0: float = 0.0


@dataclass
class Draft:
    """What generation produces; the public Corpus wraps it."""

    site: Site
    devices: list[CorpusDevice] = field(default_factory=list)
    runtime: dict[str, Runtime] = field(default_factory=dict)
    labels: list[tuple[str, str, str | None, Episode]] = field(default_factory=list)
    confounders: list[tuple[str, str, str | None, Episode]] = field(default_factory=list)


def stable_seed(family: str, seed: int) -> int:
    """A 64-bit seed from (family, seed), independent of Python's hash randomisation."""
    digest = hashlib.sha256(f"firewarden-corpus/{family}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def local_midnight(start: str) -> tuple[float, int]:
    """Epoch seconds of local midnight (UTC+8) on ``start`` and its weekday (Mon = 0)."""
    d = date.fromisoformat(start)
    return datetime(d.year, d.month, d.day, tzinfo=CST).timestamp(), d.weekday()


class Generator:
    """Builds one corpus draft; methods run in a fixed order for determinism."""

    def __init__(self, family: str, seed: int, days: float, buildings: int, start: str) -> None:
        self.rng = np.random.default_rng(stable_seed(family, seed))
        t0, wd = local_midnight(start)
        self.span = Span(t0, days)
        self.span.weekday0 = wd
        self.buildings = buildings
        rng = self.rng
        cloud = np.empty(self.span.n_days + 1)
        var = np.empty(self.span.n_days + 1)
        for d in range(cloud.size):
            # Nanjing November: about 40 % clear, 35 % broken cloud, 20 % overcast, 5 % dark
            # rain days (assumption from climate normals: ~150 sunshine hours in November).
            kind = rng.choice(4, p=[0.4, 0.35, 0.2, 0.05])
            cloud[d] = [rng.uniform(0.85, 1.0), rng.uniform(0.45, 0.85),
                        rng.uniform(0.15, 0.4), rng.uniform(0.04, 0.12)][kind]
            var[d] = [0.05, 0.35, 0.15, 0.1][kind]
        self.daylight = Daylight(LAT, LON, t0, cloud, var, self.key())
        self.voltage = self._voltage()
        self.site = Site(t0, self.span.end, LAT, LON, self.voltage, self.daylight)
        n_grid = math.ceil(days * DAY / 60.0)
        self.site.energy_grid = t0 + 60.0 * np.arange(n_grid + 1, dtype=np.float64)
        self.draft = Draft(self.site)
        self.counts: dict[str, int] = {}
        # Dusk/dawn per local day (sun at 0 deg), used by CCTV IR and astronomical timers.
        self.sunset, self.sunrise = self._sun_times()

    def key(self) -> int:
        """A fresh key for counter-based noise."""
        return int(self.rng.integers(1 << 62))

    def _voltage(self) -> VoltageModel:
        rng, span = self.rng, self.span
        v_tap, drop, offset, keys = {}, {}, {}, {}
        for b in range(1, self.buildings + 1):
            bs = str(b)
            # GB/T 12325 [S3]: 220 V single-phase supply within +7 %/-10 % (198-235.4 V).
            # 10/0.4 kV transformers are set ~5 % high at no load; weak old feeders sag to
            # ~205-212 V at the evening peak, strong ones stay above ~220 V (assumption).
            v_tap[bs] = rng.uniform(233.0, 237.0)
            weak = rng.random() < 0.35
            base = rng.uniform(21.0, 27.0) if weak else rng.uniform(8.0, 14.0)
            for ph in PHASES:
                drop[(bs, ph)] = base * rng.uniform(0.85, 1.15)
                offset[(bs, ph)] = rng.uniform(-2.5, 2.5)
                keys[(bs, ph)] = self.key()
        # Site-wide events: faults upstream (short dips), feeder switching (sustained low),
        # night swells after tap changes (assumption: a few per week).
        s, e, a, b_ = [], [], [], []
        self.v_events: list[Episode] = []
        for _ in range(rng.poisson(1.2 * span.days / 7)):
            t = span.t0 + rng.uniform(0, span.days) * DAY
            dur = rng.uniform(0.3, 2.0)
            depth = rng.uniform(35.0, 100.0)
            s.append(t)
            e.append(t + dur)
            a.append(-depth)
            b_.append(-depth)
            self.v_events.append(Episode("voltage-sag", t, t + dur, {"depth_v": round(depth)}))
        for _ in range(rng.poisson(0.8 * span.days / 7)):
            t = span.t0 + rng.uniform(0, span.days) * DAY
            dur = rng.uniform(10, 40) * 60
            depth = rng.uniform(10.0, 18.0)
            s.extend([t, t + 30, t + dur - 30])
            e.extend([t + 30, t + dur - 30, t + dur])
            a.extend([0.0, -depth, -depth])
            b_.extend([-depth, -depth, 0.0])
            self.v_events.append(Episode("voltage-sag", t, t + dur, {"depth_v": round(depth),
                                                                     "sustained": True}))
        for _ in range(rng.poisson(1.0 * span.days / 7)):
            t = span.at(int(rng.integers(0, span.n_days)), rng.uniform(0.5, 5.0))
            dur = rng.uniform(5, 60) * 60
            rise = rng.uniform(5.0, 9.0)
            s.extend([t, t + 20, t + dur - 20])
            e.extend([t + 20, t + dur - 20, t + dur])
            a.extend([0.0, rise, rise])
            b_.extend([rise, rise, 0.0])
            self.v_events.append(Episode("voltage-swell", t, t + dur, {"rise_v": round(rise)}))
        return VoltageModel(span.t0, span.weekday0, v_tap, drop, offset, keys,
                            Profile.build(s, e, a, b_), self.key(), self.key())

    def _sun_times(self) -> tuple[F64, F64]:
        span = self.span
        t = span.t0 - DAY + 60.0 * np.arange(int((span.days + 2) * 1440), dtype=np.float64)
        up = sun_elevation(t, LAT, LON) > -0.83
        d = np.diff(up.astype(np.int8))
        rises = t[1:][d == 1]
        sets = t[1:][d == -1]
        return sets, rises

    # --- devices ------------------------------------------------------------------------------

    def _runtime(self, name: str, *, energy: tuple[float, float] | None = None) -> None:
        rng, span = self.rng, self.span
        s, e = [], []
        for _ in range(rng.poisson(1.0 * span.days / 14)):
            t = span.t0 + rng.uniform(0, span.days) * DAY
            s.append(t)
            e.append(t + rng.uniform(2, 15) * 60)
        rt = Runtime(rng.uniform(0.0, 1.0), rng.uniform(0.001, 0.005), self.key(),
                     Profile.build(s, e, [1.0] * len(s)))
        if energy:
            rt.e_import0 = rng.uniform(*energy)
            rt.e_export0 = round(rng.uniform(0.0, 0.3), 2) if rng.random() < 0.2 else 0.0
        self.draft.runtime[name] = rt

    def _bus_outage(self, names: list[str]) -> None:
        # An RS-485 bus fault takes every meter of a box offline at once for a few minutes.
        rng, span = self.rng, self.span
        for _ in range(rng.poisson(0.5 * span.days / 14)):
            t = span.t0 + rng.uniform(0, span.days) * DAY
            dur = rng.uniform(3, 20) * 60
            for n in names:
                off = self.draft.runtime[n].offline
                self.draft.runtime[n].offline = Profile.stack(
                    np.concatenate((off.start, [t])), np.concatenate((off.end, [t + dur])),
                    np.concatenate((off.p0, [1.0])))

    def _label(self, kind: str, device: str, channel: str | None, ep: Episode) -> None:
        if ep.start < self.span.end and ep.end > ep.start:
            ep = Episode(ep.kind, ep.start, min(ep.end, self.span.end), ep.detail)
            self.draft.labels.append((kind, device, channel, ep))

    def _conf(self, device: str, channel: str | None, eps: list[Episode]) -> None:
        for ep in eps:
            if ep.end > self.span.t0 and ep.start < self.span.end:
                self.draft.confounders.append((ep.kind, device, channel, ep))

    def run(self) -> Draft:
        """Generate every building in order."""
        for b in range(1, self.buildings + 1):
            self._building(str(b))
        return self.draft

    def _building(self, b: str) -> None:
        rng = self.rng
        high = rng.random() < 0.35
        floors = int(rng.integers(11, 19)) if high else int(rng.integers(5, 8))
        has_lift = high or rng.random() < 0.25  # retrofit lifts in old blocks (加装电梯)
        n_boxes = int(rng.integers(1, 3))
        # Illegal charging clusters where bikes are parked: per-building hotspot factor.
        hotspot = float(rng.lognormal(0.0, 0.6))
        boxes = [f"{b}{'AB'[i]}" for i in range(n_boxes)]
        ctl_circuit: Circuit | None = None
        for i, box in enumerate(boxes):
            public = self._box(b, box, floors, has_lift, hotspot, guard=(b == "1" and i == 0))
            if i == 0:
                ctl_circuit = public
        assert ctl_circuit is not None
        self._controller(b, ctl_circuit)

    def _box(self, b: str, box: str, floors: int, has_lift: bool, hotspot: float,
             guard: bool) -> Circuit:
        rng, span = self.rng, self.span
        prefix = f"b{box}"
        incomer = f"{prefix}-incomer"
        meters = [incomer]
        self.draft.devices.append(CorpusDevice(
            incomer, "eastron-sdm630", "incomer", b, box, "main", None, 63.0,
            str(rng.choice(["displacement", "sqrt"])), (), 0.0))
        self._runtime(incomer, energy=(20000.0, 60000.0))
        shift = int(rng.integers(0, 3))
        per_phase_meters = {ph: 0 for ph in PHASES}
        for k in range(int(rng.integers(1, 4))):
            ph = PHASES[(k + shift) % 3]
            name = f"{prefix}-sockets-{k + 1}"
            self._submeter(name, "sockets", b, box, "sockets", ph, 40.0)
            per_phase_meters[ph] += 1
            loads: list[Load] = []
            for _ in range(int(rng.integers(2, 5))):
                hh = Household(rng, span, self.key).build()
                loads.extend(hh.loads)
                self._conf(name, "L1", hh.episodes)
            self.site.circuits.append(Circuit(name, b, box, ph, loads, name))
            meters.append(name)
        # Stair lighting.
        ph = PHASES[int(rng.integers(0, 3))]
        name = f"{prefix}-stair-lighting"
        self._submeter(name, "lighting", b, box, "stair-lighting", ph, 16.0)
        per_phase_meters[ph] += 1
        meters.append(name)
        stair = self._stair_loads(name, b, floors)
        stair_c = Circuit(name, b, box, ph, stair, name)
        self.site.circuits.append(stair_c)
        # Public circuit.
        ph = PHASES[int(rng.integers(0, 3))]
        pname = f"{prefix}-public"
        self._submeter(pname, "public", b, box, "public", ph, 32.0)
        per_phase_meters[ph] += 1
        meters.append(pname)
        pub_loads, lobby_on = self._public_loads(pname, floors, has_lift, guard)
        public_c = Circuit(pname, b, box, ph, pub_loads, pname)
        self.site.circuits.append(public_c)
        # Illegal use of the stair and public circuits: the labels.
        for circ, where, lob in ((stair_c, "stairwell", None), (public_c, "public", lobby_on)):
            self._illegal(circ, where, hotspot, lob)
        # The box's own unmetered draw: meter supplies ([S2]: SDM120 < 2 W), the SDM630,
        # indicator lamps and a contactor coil holding (~2-3 W at PF ~0.3, assumption).
        for j, ph in enumerate(PHASES):
            own = [L.constant("own-draw", span, 0.8 * per_phase_meters[ph] + 0.4 + (
                1.5 if j == 0 else 0.0), L.rectifier(0.5, 10.0), self.key())]
            if j == shift:
                own.append(L.constant("contactor-coil", span, rng.uniform(2.0, 3.0),
                                       L.linear(0.3), self.key()))
            self.site.circuits.append(Circuit(f"{prefix}-own-{ph}", b, box, ph, own, None))
        if rng.random() < 0.3:
            self._tap(b, box, incomer)
        self._conf(incomer, None, self.v_events)
        self._bus_outage(meters)
        return public_c

    def _submeter(self, name: str, kind: str, b: str, box: str, circuit: str, ph: str,
                  rated: float) -> None:
        self.draft.devices.append(CorpusDevice(
            name, "eastron-sdm120", kind, b, box, circuit, ph, rated,
            str(self.rng.choice(["displacement", "sqrt"])), (), 0.0))
        self._runtime(name, energy=(1000.0, 30000.0))

    def _stair_loads(self, name: str, b: str, floors: int) -> list[Load]:
        rng, span = self.rng, self.span
        loads: list[Load] = []
        interior = rng.random() < 0.3
        flats = 2 * floors
        ls, eps = L.voice_stair_leds(rng, span, self.key(), floors, flats, (17.5, 6.5), interior)
        loads += ls
        self._conf(name, "L1", eps)
        ls, eps = L.cctv(rng, span, self.key(), int(rng.integers(2, 7)), self.sunset,
                         self.sunrise)
        loads += ls
        self._conf(name, "L1", eps)
        ls, eps = L.intercom(rng, span, self.key())
        loads += ls
        self._conf(name, "L1", eps)
        # Exit signs and emergency lamps trickle-charging their batteries: ~1-3 W per floor.
        loads.append(L.constant("emergency-lights", span, floors * rng.uniform(1.0, 3.0),
                                L.rectifier(0.5, 10.0), self.key()))
        self._conf(name, "L1", [Episode("emergency-lights", span.t0, span.end, {})])
        vac, eps = L.vacuum(rng, span)
        if vac is not None:
            loads.append(vac)
            self._conf(name, "L1", eps)
        return loads

    def _public_loads(self, name: str, floors: int, has_lift: bool, guard: bool,
                      ) -> tuple[list[Load], float | None]:
        rng, span = self.rng, self.span
        loads: list[Load] = []
        if has_lift:
            ls, eps = L.lift(rng, span, self.key(), floors)
            loads += ls
            self._conf(name, "L1", eps)
        if rng.random() < (0.6 if floors > 10 else 0.25):
            ls, eps = L.booster_pump(rng, span, self.key())
            loads += ls
            self._conf(name, "L1", eps)
        lobby_on: float | None = None
        if rng.random() < 0.7:
            lobby_on = float(rng.choice([17.5, 18.0, 18.5]))
            off = float(rng.choice([22.5, 23.0, 23.5]))
            # Old lobby fittings: T8 tubes on magnetic ballasts (PF ~0.5 lagging) or cheap
            # LED tubes without PFC (PF ~0.5-0.6, [S4]); 40-150 W.
            spec = L.distorted(0.5, 0.15) if rng.random() < 0.5 else L.rectifier(0.55, 8.0)
            load, eps = L.timed_lights(rng, span, self.key(), lobby_on, off,
                                       "timer-lobby-light", rng.uniform(40, 150), spec)
            loads.append(load)
            self._conf(name, "L1", eps)
        if rng.random() < 0.8:
            loads.append(L.constant("catv-amplifier", span, rng.uniform(15, 40),
                                    L.distorted(0.8, 0.1), self.key()))
            self._conf(name, "L1", [Episode("catv-amplifier", span.t0, span.end, {})])
        if rng.random() < 0.6:
            loads.append(L.constant("router-onu", span, rng.uniform(20, 60),
                                    L.rectifier(0.55, 8.0), self.key(), noise=0.05))
            self._conf(name, "L1", [Episode("router-onu", span.t0, span.end,
                                            {"where": "network cabinet"})])
        if rng.random() < 0.2:
            loads += L.fridge(rng, span, self.key(), big=True)
            self._conf(name, "L1", [Episode("freezer", span.t0, span.end,
                                            {"where": "corridor shop freezer"})])
        if rng.random() < 0.25:
            loads.append(L.constant("parcel-locker", span, rng.uniform(30, 80),
                                    L.rectifier(0.6, 6.0), self.key(), noise=0.05))
            self._conf(name, "L1", [Episode("parcel-locker", span.t0, span.end, {})])
        if guard:
            ls, eps = L.guard_booth(rng, span, self.key)
            loads += ls
            self._conf(name, "L1", eps)
            if rng.random() < 0.4:
                hh = Household(rng, span, self.key, occupants="retired", heater=False)
                for d in range(span.n_days):
                    if rng.random() < 0.5:
                        hh._ac(d, 18.0 + rng.uniform(0, 1), 22.0 + rng.uniform(0, 2))
                loads += hh.loads
                self._conf(name, "L1", hh.episodes)
            if rng.random() < 0.3:
                for d in range(span.n_days):
                    if rng.random() < 0.5:
                        ts = span.at(d, rng.uniform(18, 21))
                        te = span.at(d, rng.uniform(23, 31))
                        load, det = L.heater_session(rng, ts, min(te, span.end))
                        loads.append(load)
                        det["where"] = "guard booth"
                        self._label("resistive-load", name, "L1",
                                    Episode("resistive-load", ts, min(te, span.end), det))
        return loads, lobby_on

    def _illegal(self, circ: Circuit, where: str, hotspot: float, lobby_on: float | None) -> None:
        # Flying-lead charging (飞线充电) and heaters on stair/public circuits. Rates per circuit
        # per week: e-bikes ~0.8 x hotspot, heaters ~0.4 x hotspot (assumption: 0-3 a week).
        rng, span = self.rng, self.span
        name = circ.meter
        assert name is not None
        plugs: list[tuple[float, float]] = []
        for _ in range(rng.poisson(0.8 * hotspot * span.days / 7)):
            d = int(rng.integers(0, span.n_days))
            if rng.random() < 0.75:
                tp = span.at(d, float(np.clip(rng.normal(21.0, 1.3), 19.0, 25.0)))
                # Pulled when the owner leaves in the morning, or earlier by whoever objects.
                tu = span.at(d + 1, rng.uniform(6.0, 8.0))
                tu = min(max(tu, tp + 2 * HOUR), tp + rng.uniform(7.5, 10.0) * HOUR)
            else:
                tp = span.at(d, rng.uniform(8.0, 17.0))
                tu = tp + rng.uniform(2, 8) * HOUR
            plugs.append((tp, tu))
            if rng.random() < 0.2:  # a second bike joins while the first is charging
                t2 = tp + rng.uniform(10, 120) * 60
                plugs.append((t2, t2 + rng.uniform(3, 10) * HOUR))
        if lobby_on is not None and plugs and rng.random() < 0.3:
            d = int(rng.integers(0, span.n_days))
            tp = span.at(d, lobby_on) + rng.uniform(2, 10) * 60
            plugs.append((tp, tp + rng.uniform(6.0, 10.0) * HOUR))
        for _ in range(rng.poisson(0.4 * hotspot * span.days / 7)):
            d = int(rng.integers(0, span.n_days))
            ts = span.at(d, rng.normal(19.5, 1.5) if rng.random() < 0.6
                         else rng.uniform(9, 17))
            te = ts + rng.uniform(1, 6) * HOUR
            load, det = L.heater_session(rng, ts, te)
            det["where"] = where
            circ.loads.append(load)
            self._label("resistive-load", name, "L1", Episode("resistive-load", ts, te, det))
            if rng.random() < 0.35:  # a bike on charge while the heater cycles
                tp = ts + rng.uniform(0, 0.8) * (te - ts)
                plugs.append((tp, tp + rng.uniform(3, 9) * HOUR))
        for tp, tu in plugs:
            if tp >= span.end:
                continue
            # Sessions last 2-10 h: an overnight plug is pulled by morning or earlier.
            tu = min(tu, tp + 10 * HOUR, span.end)
            load, det = L.charger_session(rng, tp, tu)
            det["where"] = where
            circ.loads.append(load)
            self._label("ebike-charging", name, "L1", Episode("ebike-charging", tp, tu, det))

    def _tap(self, b: str, box: str, incomer: str) -> None:
        # A flat feeding itself from upstream of the sub-meters on one phase (窃电).
        rng, span = self.rng, self.span
        ph = PHASES[int(rng.integers(0, 3))]
        hh = Household(rng, span, self.key, occupants=str(rng.choice(["workers", "retired"])),
                       heater=rng.random() < 0.5).build()
        windows: list[tuple[float, float]] = []
        if rng.random() < 0.6:
            ts = span.t0 + rng.uniform(0.3, max(0.4, span.days - 1.0)) * DAY
            te = min(span.end, ts + rng.uniform(1, 6) * DAY)
            windows.append((ts, te))
        else:
            for d in sorted(rng.choice(span.n_days, size=min(span.n_days, int(
                    rng.integers(1, 4))), replace=False)):
                ts = span.at(int(d), rng.uniform(17, 20))
                windows.append((ts, min(span.end, ts + rng.uniform(3, 12) * HOUR)))
        tap_loads: list[Load] = []
        for ts, te in windows:
            if te <= ts:
                continue
            energy = 0.0
            for ld in hh.loads:
                clipped = ld.profile.clip(ts, te)
                energy += clipped.total()
                if len(clipped):
                    tap_loads.append(Load(ld.kind, clipped, ld.spectrum, ld.vexp, ld.noise,
                                          ld.noise_tau, ld.key))
            det: dict[str, object] = {"phase": ph, "source": "flat",
                                      "mean_w": round(energy / (te - ts)),
                                      "appliances": sorted({ld.kind for ld in hh.loads})}
            self._label("unmetered-tap", incomer, None, Episode("unmetered-tap", ts, te, det))
        self.site.circuits.append(Circuit(f"b{box}-tap-{ph}", b, box, ph, tap_loads, None))

    # --- lighting controller -------------------------------------------------------------------

    def _controller(self, b: str, feed: Circuit) -> None:
        rng, span = self.rng, self.span
        name = f"b{b}-lighting-ctl"
        used = sorted(rng.choice(np.arange(1, 9), size=int(rng.integers(3, 7)), replace=False))
        watts = float(rng.choice([20.0, 24.0, 30.0, 36.0, 40.0, 50.0, 60.0]))
        # IEC 61000-3-2 class C [S6]: >25 W lighting needs a high PF; <=25 W lamps are often
        # cheap non-PFC drivers. Constant-power drivers ([S18]): current ~ 1/V.
        if watts > 25 or rng.random() < 0.5:
            spec = L.pfc(round(rng.uniform(0.1, 0.25), 2), round(rng.uniform(5, 12)))
            plate_pf = 0.9
        else:
            spec = L.rectifier(round(rng.uniform(0.55, 0.7), 2), 8.0)
            plate_pf = 0.5
        plate = round(watts / (220.0 * plate_pf), 3)
        mode = str(rng.choice(["timer", "astro", "photocell"], p=[0.4, 0.3, 0.3]))
        has_sensor = mode == "photocell" or rng.random() < 0.5
        grid = span.t0 + RELAY_STEP * np.arange(int(span.days * DAY / RELAY_STEP) + 1,
                                                 dtype=np.float64)
        local_h = ((grid - span.t0) % DAY) / HOUR
        spikes_s, spikes_e, spikes_p = [], [], []
        lux_eps: list[Episode] = []
        for d in range(span.n_days):
            for _ in range(rng.poisson(3)):
                t = span.at(d, rng.uniform(18, 30))
                dur = rng.uniform(3, 30)
                spikes_s.append(t)
                spikes_e.append(t + dur)
                spikes_p.append(rng.uniform(20, 300))
                lux_eps.append(Episode("lux-noise", t, t + dur, {"lux": round(spikes_p[-1])}))
        ctl = Controller(name, b, feed.phase, {}, has_sensor, rng.uniform(0.05, 0.4),
                         rng.uniform(0.0, 2.0), Profile.stack(np.asarray(spikes_s),
                                                              np.asarray(spikes_e),
                                                              np.asarray(spikes_p)),
                         self.key(), self.daylight)
        if mode == "timer":
            on_h = float(rng.choice([17.5, 18.0, 18.5]))
            off_h = float(rng.choice([6.0, 6.5, 7.0]))
            dark = (local_h >= on_h) | (local_h < off_h)
        elif mode == "astro":
            a = rng.uniform(0, 20) * 60
            b_ = rng.uniform(0, 20) * 60
            sets = np.round((self.sunset + a) / 60.0) * 60.0
            rises = np.round((self.sunrise - b_) / 60.0) * 60.0
            dark = np.ones(grid.size, dtype=bool)
            for r in rises:
                nxt = sets[sets > r]
                if nxt.size:
                    dark &= ~((grid >= r) & (grid < nxt[0]))
        else:
            lux = ctl.lux(grid)
            on_th = rng.uniform(10, 30)
            off_th = on_th * rng.uniform(2, 4)
            k = int(rng.uniform(60, 180) / RELAY_STEP)
            dark = hysteresis(rolling_all(lux < on_th, k), rolling_all(lux > off_th, k), True)
            day_on = bool_segments(grid, dark & (sun_elevation(grid, LAT, LON) > 3.0),
                                   RELAY_STEP)
            self._conf(name, None, [Episode("overcast-dark", float(s), float(e), {})
                                    for s, e in zip(day_on.start, day_on.end, strict=True)
                                    if e - s >= 300])
        if has_sensor:
            self._conf(name, None, lux_eps)
        lamps = [0] * 8
        transient = rng.choice(3, p=[0.6, 0.3, 0.1])
        overshoot = rng.uniform(0.02, 0.08) if transient == 0 else 0.0
        soft = [0.0, rng.uniform(1, 3), rng.uniform(30, 60)][transient]
        faults = self._fault_plan(list(used))
        for ch in used:
            n = int(rng.integers(1, 7))
            lamps[ch - 1] = n
            variant = rng.choice(3, p=[0.6, 0.25, 0.15])
            if variant == 0:
                allowed = np.ones(grid.size, dtype=bool)
            elif variant == 1:  # courtyard lamps off at midnight-ish until the next dusk
                cut = float(rng.choice([23.0, 23.5, 24.0]))
                allowed = ~((local_h >= cut) | (local_h < 12.0))
            else:  # off 23:00-05:00, on again until dawn
                allowed = ~((local_h >= 23.0) | (local_h < 5.0))
            relay = bool_segments(grid, dark & allowed, RELAY_STEP)
            load = self._channel(name, feed.meter or "", ch, n, watts, spec, relay,
                                 faults.get(ch), overshoot, soft)
            feed.loads.append(load)
            ctl.channels[ch] = Channel(ch, n, load, relay, spec)
        self.site.controllers.append(ctl)
        self.draft.devices.append(CorpusDevice(
            name, "lighting-controller", "lighting-controller", b, None, None, None, None, None,
            tuple(lamps), plate))
        self._runtime(name)

    def _fault_plan(self, used: list[int]) -> dict[int, tuple[str, int]]:
        rng, span = self.rng, self.span
        plan: dict[int, tuple[str, int]] = {}
        n = min(len(used), int(rng.poisson(1.6 * span.days / 14)))
        for ch in rng.choice(used, size=n, replace=False):
            kind = str(rng.choice(["partial", "out", "day-burning", "cycling"],
                                  p=[0.35, 0.25, 0.2, 0.2]))
            plan[int(ch)] = (kind, int(rng.integers(0, max(1, span.n_days - 1))))
        return plan

    def _channel(self, ctl: str, feed: str, ch: int, n: int, watts: float, spec: L.Spectrum,
                 relay: Profile, fault: tuple[str, int] | None, overshoot: float,
                 soft: float) -> Load:
        rng, span = self.rng, self.span
        far = (span.t0 - 2 * DAY, span.end + 2 * DAY)
        alive: list[tuple[F64, F64]] = [(np.asarray([far[0]]), np.asarray([far[1]]))
                                        for _ in range(n)]
        energized = relay
        chs = str(ch)
        if fault is not None:
            kind, day = fault
            ons = relay.rising_edges()
            ons = ons[ons >= span.at(day, 12.0)]
            offs = relay.end[relay.end >= span.at(day, 12.0)]
            repair: float | None = None
            if rng.random() < 0.4:
                repair = span.at(day + int(rng.integers(1, 5)), rng.uniform(9, 17))
            end = min(repair, span.end) if repair is not None else span.end
            if kind == "day-burning" and offs.size:
                t = float(offs[0]) if rng.random() < 0.7 else span.at(day + 1, rng.uniform(
                    9, 15))
                cause = "relay-welded" if t == float(offs[0]) else "contactor-bypassed"
                stuck_end = end if repair is not None else far[1]
                if t < end:
                    st = Profile.stack(np.concatenate((relay.start, [t])),
                                       np.concatenate((relay.end, [stuck_end])),
                                       np.ones(len(relay) + 1))
                    energized = st
                    self._label("lamp-day-burning", ctl, chs, Episode(
                        "lamp-day-burning", t, end, {"cause": cause, "lamps": n}))
            elif ons.size:
                t_fail = float(ons[0]) if rng.random() < 0.6 else float(
                    ons[0] + rng.uniform(0.5, 8) * HOUR)
                back = repair if repair is not None else far[1]
                if kind == "cycling":
                    k = int(rng.integers(1, 4))
                    death = float(ons[min(k, ons.size - 1)] + rng.uniform(0, 6) * HOUR) \
                        if ons.size > 1 else span.end
                    back = max(back, death)
                    s, e = [], []
                    t = t_fail
                    while t < death:
                        on = rng.uniform(10, 180)
                        s.append(t)
                        e.append(min(t + on, death))
                        t += on + rng.uniform(5, 60)
                    flick_s = np.concatenate(([far[0]], s, [back]))
                    flick_e = np.concatenate(([t_fail], e, [far[1]]))
                    keep = flick_e > flick_s
                    alive[0] = (flick_s[keep], flick_e[keep])
                    if t_fail < span.end:
                        self._label("lamp-cycling", ctl, chs, Episode(
                            "lamp-cycling", t_fail, min(death, span.end),
                            {"lamp": 1, "of": n}))
                    if death < end:
                        if n == 1:
                            self._label("lamp-out", ctl, chs, Episode(
                                "lamp-out", death, end, {"cause": "last-lamp", "of": 1}))
                        else:
                            self._label("lamp-partial", ctl, chs, Episode(
                                "lamp-partial", death, end, {"dead": 1, "of": n}))
                elif kind == "out" or n == 1:
                    for i in range(n):
                        alive[i] = (np.asarray([far[0], back]), np.asarray([t_fail, far[1]]))
                    cause = "last-lamp" if n == 1 else str(rng.choice(["cable-fault", "fuse"]))
                    if t_fail < end:
                        self._label("lamp-out", ctl, chs, Episode(
                            "lamp-out", t_fail, end, {"cause": cause, "of": n}))
                else:
                    # Mostly one driver dies; a cable fault part-way along takes several.
                    dead = 1 if rng.random() < 0.75 else int(rng.integers(1, n))
                    for i in range(dead):
                        alive[i] = (np.asarray([far[0], back]), np.asarray([t_fail, far[1]]))
                    if t_fail < end:
                        self._label("lamp-partial", ctl, chs, Episode(
                            "lamp-partial", t_fail, end, {"dead": dead, "of": n}))
        ss, ee, pp = [], [], []
        for i in range(n):
            lw = watts * rng.uniform(0.97, 1.03)
            lit_s, lit_e = intervals_and(energized, alive[i][0], alive[i][1])
            ss.append(lit_s)
            ee.append(lit_e)
            pp.append(np.full(lit_s.size, lw))
        prof = Profile.stack(np.concatenate(ss), np.concatenate(ee), np.concatenate(pp))
        load = Load("safety-lamps", prof, spec, overshoot=overshoot, softstart=soft)
        if feed:
            self._conf(feed, "L1", [Episode("safety-lamps", float(s), float(e), {
                "controller": ctl, "channel": ch, "watts": round(n * watts)})
                for s, e in zip(relay.start, relay.end, strict=True)])
        return load


def generate(family: str, seed: int, days: float, buildings: int, start: str) -> Draft:
    """Draw a whole community and its events."""
    return Generator(family, seed, days, buildings, start).run()
