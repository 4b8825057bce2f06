"""What a meter's or controller's registers hold, given the true currents and voltages.

Eastron SDM120/SDM630 ([S1], [S2]): every register is an IEEE-754 float32; the meter refreshes
its registers about once a second (assumption, [S16]), so a poll at ``t`` reads the values of
the last refresh tick before ``t``. Current and VA are true RMS (all harmonics); active power
is the true mean power. Reactive power is made one of two ways, per meter:

* ``displacement``: from the fundamental only, Q = V1*I1*sin(phi1), as metering chips
  (ADE7953/ATT7053 style) compute it; signed, + inductive (lagging), - capacitive (assumption:
  IEC 62053-23 quadrant convention, the protocol document does not say).
* ``sqrt``: sqrt(S^2 - P^2) with S = Vrms*Irms, which counts harmonic current as "reactive";
  never negative.

Power factor is P/S for both, signed by the direction of the current as the SDM630 protocol
says ([S1] note 1: positive for forward (import) current); every load here imports. Total
kWh is import + export ([S1] note 3).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.corpus.loads import HARMONICS
from bench.corpus.site import CircuitState
from bench.corpus.timeseries import F64

PROFILE_DIR = Path(__file__).resolve().parents[2] / "drivers" / "profiles"
Key = tuple[str, str | None]
# Source reactance (transformer + feeder) seen at the box for harmonic voltage drop; assumption.
X_SOURCE = 0.04


@lru_cache(maxsize=8)
def profile_points(profile: str) -> tuple[Key, ...]:
    """The (quantity, channel) keys a shipped profile declares, in file order."""
    data = tomllib.loads((PROFILE_DIR / f"{profile}.toml").read_text("utf-8"))
    default = data.get("defaults", {}).get("channel")
    return tuple((str(p["quantity"]), p.get("channel", default)) for p in data["point"])


def f32(x: F64) -> F64:
    """Round to the nearest float32, as the register holds it (kept as float64 values)."""
    out: F64 = np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)
    return out


def phase_values(state: CircuitState, v: F64, method: str) -> dict[str, F64]:
    """Per-phase quantities of one measuring element."""
    irms = np.sqrt(np.sum(np.abs(state.ih) ** 2, axis=1))
    s = v * irms
    p = state.p
    q = state.q if method == "displacement" else np.sqrt(np.maximum(s * s - p * p, 0.0))
    pf = np.where(s > 1e-9, p / np.maximum(s, 1e-9), 1.0)
    return {"voltage": v, "current": irms, "power": p, "apparent_power": s,
            "reactive_power": q, "power_factor": pf}


def voltage_thd(state: CircuitState, v: F64, background: F64) -> F64:
    """Voltage THD (%) at the box: the grid's background plus this box's harmonic drop."""
    vh = np.abs(state.ih[:, 1:]) * (HARMONICS[1:] * X_SOURCE)[None, :]
    local = 100.0 * np.sqrt(np.sum(vh * vh, axis=1)) / v
    out: F64 = np.sqrt(background * background + local * local)
    return out


def sdm120(vals: dict[str, F64], freq: F64, e_import: F64, e_export: F64) -> dict[Key, F64]:
    """Registers of a single-phase SDM120 (every point on channel L1)."""
    regs: dict[Key, F64] = {(k, "L1"): f32(x) for k, x in vals.items()}
    regs[("frequency", "L1")] = f32(freq)
    regs[("energy_import", "L1")] = f32(e_import)
    regs[("energy_export", "L1")] = f32(e_export)
    regs[("energy", "L1")] = f32(e_import + e_export)
    return regs


def sdm630(phases: dict[str, dict[str, F64]], thd: dict[str, F64], freq: F64, e_import: F64,
           e_export: F64) -> dict[Key, F64]:
    """Registers of a three-phase four-wire SDM630: per phase and system totals."""
    regs: dict[Key, F64] = {}
    for ph, vals in phases.items():
        for k in ("voltage", "current", "power", "power_factor"):
            regs[(k, ph)] = f32(vals[k])
        regs[("voltage_thd", ph)] = f32(thd[ph])
    p = np.sum([vals["power"] for vals in phases.values()], axis=0)
    s = np.sum([vals["apparent_power"] for vals in phases.values()], axis=0)
    q = np.sum([vals["reactive_power"] for vals in phases.values()], axis=0)
    # System VA and var: arithmetic sums of the phase values (assumption; the protocol does not
    # define them); system PF = system W / system VA.
    regs[("power", "total")] = f32(p)
    regs[("apparent_power", "total")] = f32(s)
    regs[("reactive_power", "total")] = f32(q)
    regs[("power_factor", "total")] = f32(np.where(s > 1e-9, p / np.maximum(s, 1e-9), 1.0))
    regs[("frequency", "total")] = f32(freq)
    regs[("energy_import", "total")] = f32(e_import)
    regs[("energy_export", "total")] = f32(e_export)
    regs[("energy", "total")] = f32(e_import + e_export)
    return regs


def controller_current(watts: F64, v: F64, true_pf: float, noise: F64) -> F64:
    """Lamp-circuit RMS current as the controller reports it: uint16 mA, 0 when dark."""
    amps = watts / (v * true_pf)
    ma = np.where(watts > 0, np.round(amps * 1000.0 + noise), 0.0)
    out: F64 = np.clip(ma, 0.0, 65535.0) * 0.001
    return out
