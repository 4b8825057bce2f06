"""An independent evaluation corpus: a physical model of a residential community's meters.

``build(family, seed)`` draws buildings, distribution boxes, circuits, appliances, illegal
chargers and heaters, unmetered taps and lamp faults; ``Corpus.series(device, times)`` says
what that device's registers hold at each poll time. The model is built from datasheets,
standards and published measurements (``SOURCES.md``), not from firewarden's rules or its
simulator, so the rules can be scored on data they were never shaped by.
"""

from __future__ import annotations

import numpy as np

from bench.corpus.generate import LAT, LON, TZ, Draft, generate
from bench.corpus.loads import HARMONICS
from bench.corpus.meters import (
    Key,
    controller_current,
    phase_values,
    profile_points,
    sdm120,
    sdm630,
    voltage_thd,
)
from bench.corpus.records import CorpusDevice, Label
from bench.corpus.site import PHASES, CircuitState, evaluate
from bench.corpus.timeseries import F64, hash_uniform

__all__ = ["FAMILIES", "Corpus", "CorpusDevice", "Label", "build"]

FAMILIES = ("tune", "holdout")
N_H = int(HARMONICS.size)


class Corpus:
    """A generated community: its devices, what should be reported, and register values."""

    latitude = LAT
    longitude = LON
    timezone = TZ

    def __init__(self, draft: Draft, family: str, seed: int) -> None:
        self.family = family
        self.seed = seed
        self._draft = draft
        self._site = draft.site
        self.start = float(draft.site.t0)
        self.end = float(draft.site.end)
        self.devices: tuple[CorpusDevice, ...] = tuple(draft.devices)
        self._by_name = {d.name: d for d in self.devices}
        self.labels: tuple[Label, ...] = tuple(
            Label(f"{kind}-{i:04d}", kind, dev, ch, ep.start, ep.end, ep.detail)
            for i, (kind, dev, ch, ep) in enumerate(draft.labels))
        self.confounders: tuple[Label, ...] = tuple(
            Label(f"c-{kind}-{i:05d}", kind, dev, ch, max(ep.start, self.start),
                  min(ep.end, self.end), ep.detail)
            for i, (kind, dev, ch, ep) in enumerate(draft.confounders))

    def device(self, name: str) -> CorpusDevice:
        """The device called ``name``."""
        return self._by_name[name]

    def series(self, device_name: str, times: np.ndarray) -> dict[Key, np.ndarray]:
        """Register values of a device polled at each epoch time (NaN: the poll failed)."""
        dev = self._by_name[device_name]
        t = np.asarray(times, dtype=np.float64)
        rt = self._draft.runtime[device_name]
        # Registers refresh once a second at a device-specific phase: a poll reads the last
        # refresh at or before its own time.
        t_reg = np.floor(t - rt.offset) + rt.offset
        regs = self.registers(device_name, t_reg)
        missed = hash_uniform(rt.key, np.round(t * 1000.0).astype(np.int64)) < rt.miss_p
        missed |= rt.offline.at(t) > 0.5
        out: dict[Key, np.ndarray] = {}
        for key in profile_points(dev.profile):
            arr = regs[key].copy()
            arr[missed] = np.nan
            out[key] = arr
        return out

    def registers(self, device_name: str, t: F64) -> dict[Key, F64]:
        """Register values computed exactly at times ``t`` (no refresh lag, no lost polls)."""
        dev = self._by_name[device_name]
        t = np.asarray(t, dtype=np.float64)
        site = self._site
        vm = site.voltage
        rt = self._draft.runtime[device_name]
        if dev.profile == "lighting-controller":
            return self._controller(device_name, t)
        assert dev.box is not None
        assert dev.var_method is not None
        freq = vm.frequency(t)
        e_exp = np.full(t.shape, rt.e_export0)
        if dev.profile == "eastron-sdm120":
            circ = next(c for c in site.circuits if c.meter == device_name)
            v = vm.v(dev.building, circ.phase, t)
            state = evaluate(circ.loads, t, v, N_H)
            e = rt.e_import0 + np.interp(t, site.energy_grid, circ.energy_j(site)) / 3.6e6
            return sdm120(phase_values(state, v, dev.var_method), freq, e, e_exp)
        phases: dict[str, dict[str, F64]] = {}
        thd: dict[str, F64] = {}
        energy = np.zeros(t.shape)
        bg = vm.thd_background(t)
        for ph in PHASES:
            v = vm.v(dev.building, ph, t)
            total = CircuitState(np.zeros(t.shape), np.zeros(t.shape),
                                 np.zeros((t.size, N_H), dtype=np.complex128))
            for circ in site.box_circuits(dev.building, dev.box, ph):
                st = evaluate(circ.loads, t, v, N_H)
                total.p += st.p
                total.q += st.q
                total.ih += st.ih
                energy += np.interp(t, site.energy_grid, circ.energy_j(site))
            phases[ph] = phase_values(total, v, dev.var_method)
            thd[ph] = voltage_thd(total, v, bg)
        return sdm630(phases, thd, freq, rt.e_import0 + energy / 3.6e6, e_exp)

    def unmetered_power(self, incomer: str, phase: str, times: np.ndarray) -> np.ndarray:
        """Truth: W on an incomer phase that no sub-meter sees (own draw + any tap)."""
        dev = self._by_name[incomer]
        assert dev.box is not None
        t = np.asarray(times, dtype=np.float64)
        v = self._site.voltage.v(dev.building, phase, t)
        out = np.zeros(t.shape)
        for circ in self._site.box_circuits(dev.building, dev.box, phase):
            if circ.meter is None:
                out += evaluate(circ.loads, t, v, N_H).p
        return out

    def _controller(self, name: str, t: F64) -> dict[Key, F64]:
        ctl = next(c for c in self._site.controllers if c.name == name)
        v = self._site.voltage.v(ctl.building, ctl.phase, t)
        regs: dict[Key, F64] = {}
        rt = self._draft.runtime[name]
        for ch in range(1, 9):
            chan = ctl.channels.get(ch)
            if chan is None:
                regs[("relay", str(ch))] = np.zeros(t.shape)
                regs[("lamp_current", str(ch))] = np.zeros(t.shape)
                continue
            regs[("relay", str(ch))] = (chan.relay.at(t) > 0.5).astype(np.float64)
            watts = chan.load.power(t, v)
            # Current transformer + ADC: a couple of mA of noise on a lit channel.
            noise = (hash_uniform(rt.key + ch, np.floor(t).astype(np.int64)) - 0.5) * 4.0
            regs[("lamp_current", str(ch))] = controller_current(watts, v,
                                                                 chan.spectrum.true_pf, noise)
        regs[("lux", None)] = ctl.lux(t)
        return regs


def build(family: str, seed: int, *, days: float = 14.0, buildings: int = 4,
          start: str = "2026-11-02") -> Corpus:
    """Generate the corpus of seed ``seed`` in ``family`` ("tune" or "holdout")."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    return Corpus(generate(family, int(seed), float(days), int(buildings), start), family, seed)
