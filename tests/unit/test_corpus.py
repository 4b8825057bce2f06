"""The independent evaluation corpus: deterministic, faithful to the profiles, physically sane."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import FAMILIES, Corpus, build
from bench.corpus.loads import Load, linear, rectifier
from bench.corpus.meters import phase_values
from bench.corpus.site import evaluate
from bench.corpus.timeseries import Profile

PROFILES = Path(__file__).parents[2] / "drivers" / "profiles"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """A small corpus (2 days, 3 buildings) shared by the module."""
    return build("tune", 3, days=2.0, buildings=3)


def _times(c: Corpus, step: float = 60.0) -> np.ndarray:
    return np.arange(c.start + 3.7, c.end, step)


def _declared(profile: str) -> list[tuple[str, str | None]]:
    data = tomllib.loads((PROFILES / f"{profile}.toml").read_text("utf-8"))
    default = data.get("defaults", {}).get("channel")
    return [(p["quantity"], p.get("channel", default)) for p in data["point"]]


def test_families_and_api_shape(corpus: Corpus) -> None:
    """Two families; a site in eastern China; every kind of device is there."""
    assert FAMILIES == ("tune", "holdout")
    assert corpus.timezone == "Asia/Shanghai"
    assert 28 < corpus.latitude < 35
    assert 115 < corpus.longitude < 123
    assert corpus.end - corpus.start == pytest.approx(2 * 86400)
    kinds = {d.kind for d in corpus.devices}
    assert kinds == {"incomer", "sockets", "lighting", "public", "lighting-controller"}
    for d in corpus.devices:
        if d.profile == "eastron-sdm120":
            assert d.phase in ("L1", "L2", "L3")
            assert d.var_method in ("displacement", "sqrt")
        if d.profile == "lighting-controller":
            assert len(d.lamps) == 8
            assert d.lamp_current > 0


def test_same_seed_is_identical_and_families_differ() -> None:
    """Same (family, seed, days) gives identical data; holdout seed 1 is not tune seed 1."""
    a = build("tune", 1, days=1.0, buildings=2)
    b = build("tune", 1, days=1.0, buildings=2)
    h = build("holdout", 1, days=1.0, buildings=2)
    assert a.devices == b.devices
    assert a.labels == b.labels
    assert a.confounders == b.confounders
    t = _times(a, 30.0)
    for d in a.devices:
        sa, sb = a.series(d.name, t), b.series(d.name, t)
        for k in sa:
            assert np.array_equal(sa[k], sb[k], equal_nan=True), (d.name, k)
    name = a.devices[1].name
    ha = h.series(name, t) if name in {d.name for d in h.devices} else {}
    differs = (a.labels != h.labels or not ha
               or not np.array_equal(a.series(name, t)[("power", "L1")],
                                     ha.get(("power", "L1"), np.zeros(0)), equal_nan=True))
    assert differs


def test_keys_match_profile_points_exactly(corpus: Corpus) -> None:
    """Every point a profile TOML declares is produced, and nothing else."""
    t = _times(corpus, 600.0)
    for d in corpus.devices:
        declared = _declared(d.profile)
        got = corpus.series(d.name, t)
        assert sorted(got, key=str) == sorted(declared, key=str), d.name
        assert len(got) == len(declared)
        for arr in got.values():
            assert arr.shape == t.shape


def test_polls_fail_rarely_and_whole(corpus: Corpus) -> None:
    """A lost poll is NaN in every key at once; a few per thousand are lost."""
    t = _times(corpus, 10.0)
    lost = []
    for d in corpus.devices:
        regs = corpus.series(d.name, t)
        nan = np.stack([np.isnan(v) for v in regs.values()])
        assert np.all(nan.all(axis=0) == nan.any(axis=0)), d.name
        lost.append(nan[0].mean())
    assert 0.0005 < float(np.median(lost)) < 0.02


def test_series_is_pointwise(corpus: Corpus) -> None:
    """A poll's value does not depend on which other times are asked for."""
    t = _times(corpus, 60.0)
    for d in corpus.devices[:6]:
        full = corpus.series(d.name, t)
        part = corpus.series(d.name, t[100:140])
        for k in full:
            assert np.array_equal(full[k][100:140], part[k], equal_nan=True)


def test_float32_and_monotonic_energy(corpus: Corpus) -> None:
    """Eastron registers hold float32 values; energy counters never go down."""
    t = _times(corpus, 60.0)
    for d in corpus.devices:
        if not d.profile.startswith("eastron"):
            continue
        regs = corpus.series(d.name, t)
        for k, arr in regs.items():
            ok = arr[np.isfinite(arr)]
            assert np.array_equal(ok.astype(np.float32).astype(np.float64), ok), (d.name, k)
        for k in (("energy_import", "L1"), ("energy", "L1"), ("energy_import", "total"),
                  ("energy", "total")):
            if k in regs:
                e = regs[k][np.isfinite(regs[k])]
                assert np.all(np.diff(e) >= 0), (d.name, k)
                assert 1000 <= e[0] <= 61000
        if ("energy", "total") in regs:
            tot, imp = regs[("energy", "total")], regs[("energy_import", "total")]
            exp_ = regs[("energy_export", "total")]
            fin = np.isfinite(tot)
            assert np.allclose(tot[fin], imp[fin] + exp_[fin], rtol=1e-6)


def test_incomer_phase_power_is_sum_of_submeters_plus_unmetered(corpus: Corpus) -> None:
    """At the same instant, incomer P on a phase = its sub-meters' P + own draw + tap."""
    t = _times(corpus, 307.0)
    for inc in (d for d in corpus.devices if d.kind == "incomer"):
        regs = corpus.registers(inc.name, t)
        subs = [d for d in corpus.devices if d.box == inc.box and d.profile == "eastron-sdm120"]
        for ph in ("L1", "L2", "L3"):
            total = corpus.unmetered_power(inc.name, ph, t)
            for d in subs:
                if d.phase == ph:
                    total = total + corpus.registers(d.name, t)[("power", "L1")]
            assert np.allclose(regs[("power", ph)], total, rtol=2e-6, atol=1e-3), (inc.name, ph)
            assert np.all(corpus.unmetered_power(inc.name, ph, t) > 0)  # meters, coils
        assert np.allclose(regs[("power", "total")],
                           sum(regs[("power", p)] for p in ("L1", "L2", "L3")), rtol=1e-5)


def test_no_pfc_charger_has_low_pf_but_small_displacement_var() -> None:
    """A capacitor-input charger: PF 0.45-0.65 from harmonics; a displacement meter sees
    little var, a sqrt(S^2-P^2) meter sees a lot."""
    t = np.arange(0.0, 600.0, 10.0)
    v = np.full(t.size, 221.0)
    for pf, lead in ((0.45, 6.0), (0.55, 10.0), (0.65, 14.0)):
        load = Load("ebike", Profile.build([0.0], [1e6], [200.0]), rectifier(pf, lead))
        st = evaluate([load], t, v, load.spectrum.c.size)
        disp = phase_values(st, v, "displacement")
        sq = phase_values(st, v, "sqrt")
        assert np.allclose(disp["power_factor"], pf, atol=0.01)
        assert 0.45 <= float(disp["power_factor"][0]) <= 0.66
        assert np.all(np.abs(disp["reactive_power"]) < 0.3 * st.p)
        assert np.all(disp["reactive_power"] < 0)  # the fundamental leads slightly
        assert np.all(sq["reactive_power"] > st.p)
    # A linear motor load: both methods agree.
    motor = Load("fridge", Profile.build([0.0], [1e6], [100.0]), linear(0.7))
    st = evaluate([motor], t, v, motor.spectrum.c.size)
    assert np.allclose(phase_values(st, v, "displacement")["reactive_power"],
                       phase_values(st, v, "sqrt")["reactive_power"], rtol=1e-6)


def test_labelled_chargers_are_physical() -> None:
    """Every labelled charger's detail is within the published ranges."""
    chargers = [lb for s in (1, 2, 3)
                for lb in build("tune", s, days=7.0, buildings=4).labels
                if lb.kind == "ebike-charging"]
    assert chargers
    for lb in chargers:
        det = lb.detail
        cc_w = det["cc_w"]
        pf = det["pf"]
        assert isinstance(cc_w, (int, float))
        assert isinstance(pf, (int, float))
        assert 55 <= cc_w <= 420
        if "no-PFC" in str(det["charger"]):
            assert 0.44 <= pf <= 0.66
        else:
            assert pf >= 0.93
        assert 0 < lb.end - lb.start <= 10 * 3600 + 1


def test_lamps_report_zero_with_relay_open(corpus: Corpus) -> None:
    """An open relay means 0 A, unless the channel is labelled day-burning (relay stuck)."""
    t = _times(corpus, 30.0)
    for d in (d for d in corpus.devices if d.profile == "lighting-controller"):
        regs = corpus.series(d.name, t)
        for ch in range(1, 9):
            relay = regs[("relay", str(ch))]
            cur = regs[("lamp_current", str(ch))]
            stuck = np.zeros(t.size, dtype=bool)
            for lb in corpus.labels:
                if lb.device == d.name and lb.channel == str(ch) and lb.kind == "lamp-day-burning":
                    stuck |= (t >= lb.start) & (t <= lb.end)
            open_ = (relay == 0) & ~stuck
            assert np.all(cur[open_] == 0), (d.name, ch)
            if d.lamps[ch - 1] == 0:
                assert np.nanmax(cur) == 0
            # Quantised to mA like the uint16 register.
            fin = cur[np.isfinite(cur)]
            assert np.allclose(np.round(fin * 1000), fin * 1000, atol=1e-6)


def test_labels_inside_the_run(corpus: Corpus) -> None:
    """Labels and confounders lie inside [start, end] and name real devices and channels."""
    names = {d.name for d in corpus.devices}
    ids = [lb.id for lb in corpus.labels + corpus.confounders]
    assert len(ids) == len(set(ids))
    for lb in corpus.labels + corpus.confounders:
        assert lb.device in names
        assert corpus.start - 1 <= lb.start < lb.end <= corpus.end, lb
    for lb in corpus.labels:
        assert lb.kind in {"ebike-charging", "resistive-load", "unmetered-tap", "lamp-out",
                           "lamp-partial", "lamp-day-burning", "lamp-cycling"}
        dev = corpus.device(lb.device)
        if lb.kind in ("ebike-charging", "resistive-load"):
            assert dev.kind in ("lighting", "public")
            assert lb.channel == "L1"
        elif lb.kind == "unmetered-tap":
            assert dev.kind == "incomer"
            assert lb.channel is None
        else:
            assert dev.kind == "lighting-controller"
            assert lb.channel is not None
            assert dev.lamps[int(lb.channel) - 1] > 0


def test_voltage_within_supply_tolerance_most_of_the_time(corpus: Corpus) -> None:
    """GB/T 12325: 198-235.4 V; sags and swells are rare events."""
    t = _times(corpus, 60.0)
    d = next(d for d in corpus.devices if d.kind == "incomer")
    v = corpus.series(d.name, t)[("voltage", "L1")]
    v = v[np.isfinite(v)]
    inside = (v >= 198.0) & (v <= 240.0)
    assert inside.mean() > 0.97
