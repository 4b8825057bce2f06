"""Piecewise-linear power profiles and counter-based noise, evaluated at arbitrary times.

Every load in the corpus is a :class:`Profile`: sorted, non-overlapping segments whose power
changes linearly from ``p0`` to ``p1`` (W at 220 V). A profile is evaluated at any array of
times with one ``searchsorted`` and integrated exactly (energy counters), so nothing is ever
sampled on a fixed 1 s grid. Noise comes from a counter-based hash of (key, time index): the
value at a time does not depend on which other times are asked for, so a poll at ``t`` reads
the same registers whether it is evaluated alone or among 20 000 others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: U64) -> U64:
    # splitmix64 finaliser; uint64 arithmetic wraps modulo 2**64 in numpy arrays, as intended.
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    out: U64 = z ^ (z >> np.uint64(31))
    return out


def hash_uniform(key: int, index: npt.NDArray[np.int64]) -> F64:
    """Uniform [0, 1) values, a pure function of (key, index)."""
    with np.errstate(over="ignore"):
        k = np.uint64(key & 0xFFFFFFFFFFFFFFFF)
        x = index.astype(np.uint64) * _M2 + k
        z = _splitmix(_splitmix(x) ^ k)
    out: F64 = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


def value_noise(key: int, t: F64, tau: float) -> F64:
    """Smooth noise in [-1, 1] with correlation time ``tau`` seconds (smoothstep-interpolated)."""
    x = t / tau
    k = np.floor(x)
    f = x - k
    ki = k.astype(np.int64)
    a = hash_uniform(key, ki) * 2.0 - 1.0
    b = hash_uniform(key, ki + 1) * 2.0 - 1.0
    s = f * f * (3.0 - 2.0 * f)
    out: F64 = a + (b - a) * s
    return out


def step_noise(key: int, t: F64, tau: float) -> F64:
    """Piecewise-constant noise in [-1, 1], a new value every ``tau`` seconds."""
    out: F64 = hash_uniform(key, np.floor(t / tau).astype(np.int64)) * 2.0 - 1.0
    return out


@dataclass(frozen=True)
class Profile:
    """Sorted, non-overlapping piecewise-linear segments; zero outside them."""

    start: F64
    end: F64
    p0: F64
    p1: F64
    cum: F64  # integral (J at 220 V) of all segments before segment i

    @staticmethod
    def empty() -> Profile:
        """A profile that is zero everywhere."""
        z = np.zeros(0)
        return Profile(z, z, z, z, z)

    @staticmethod
    def build(start: F64 | list[float], end: F64 | list[float], p0: F64 | list[float],
              p1: F64 | list[float] | None = None) -> Profile:
        """Sort segments, trim overlaps (a segment ends where the next begins), drop empties."""
        s = np.asarray(start, dtype=np.float64)
        e = np.asarray(end, dtype=np.float64)
        a = np.asarray(p0, dtype=np.float64)
        b = a.copy() if p1 is None else np.asarray(p1, dtype=np.float64)
        if s.size == 0:
            return Profile.empty()
        order = np.argsort(s, kind="stable")
        s, e, a, b = s[order], e[order], a[order], b[order]
        nxt = np.append(s[1:], np.inf)
        trimmed = np.minimum(e, nxt)
        # A trimmed linear segment keeps its slope: its end value is re-interpolated.
        span = np.where(e > s, e - s, 1.0)
        b = a + (b - a) * np.clip((trimmed - s) / span, 0.0, 1.0)
        e = trimmed
        keep = e > s
        s, e, a, b = s[keep], e[keep], a[keep], b[keep]
        seg = 0.5 * (a + b) * (e - s)
        cum = np.concatenate(([0.0], np.cumsum(seg)[:-1])) if s.size else np.zeros(0)
        return Profile(s, e, a, b, cum)

    @staticmethod
    def stack(start: F64, end: F64, power: F64) -> Profile:
        """Sum of possibly overlapping constant pulses, as a non-overlapping profile."""
        if start.size == 0:
            return Profile.empty()
        times = np.concatenate((start, end))
        delta = np.concatenate((power, -power))
        order = np.argsort(times, kind="stable")
        times, delta = times[order], delta[order]
        level = np.cumsum(delta)
        # Only the last event at a given time sets the level that follows it.
        last = np.append(times[1:] != times[:-1], True)
        t_u, lv = times[last], level[last]
        seg_s, seg_e, seg_p = t_u[:-1], t_u[1:], lv[:-1]
        keep = seg_p > 1e-9
        return Profile.build(seg_s[keep], seg_e[keep], seg_p[keep])

    def __len__(self) -> int:
        return int(self.start.size)

    def _index(self, t: F64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        idx = np.searchsorted(self.start, t, side="right") - 1
        safe = np.clip(idx, 0, None)
        inside = (idx >= 0) & (t < self.end[safe])
        return safe, inside

    def at(self, t: F64) -> F64:
        """Power at each time (0 between segments)."""
        if self.start.size == 0:
            return np.zeros(t.shape)
        i, inside = self._index(t)
        s, e = self.start[i], self.end[i]
        frac = np.clip((t - s) / np.maximum(e - s, 1e-12), 0.0, 1.0)
        p = self.p0[i] + (self.p1[i] - self.p0[i]) * frac
        out: F64 = np.where(inside, p, 0.0)
        return out

    def integral(self, t: F64) -> F64:
        """Integral of the profile from -inf to each time (J at 220 V)."""
        if self.start.size == 0:
            return np.zeros(t.shape)
        idx = np.searchsorted(self.start, t, side="right") - 1
        i = np.clip(idx, 0, None)
        s, e, a, b = self.start[i], self.end[i], self.p0[i], self.p1[i]
        dt = np.clip(t, s, e) - s
        slope = (b - a) / np.maximum(e - s, 1e-12)
        part = a * dt + 0.5 * slope * dt * dt
        out: F64 = np.where(idx >= 0, self.cum[i] + part, 0.0)
        return out

    def total(self) -> float:
        """Integral over all segments (J at 220 V)."""
        if self.start.size == 0:
            return 0.0
        return float(self.cum[-1] + 0.5 * (self.p0[-1] + self.p1[-1]) * (self.end[-1]
                                                                        - self.start[-1]))

    def clip(self, lo: float, hi: float) -> Profile:
        """The part of the profile inside [lo, hi)."""
        if self.start.size == 0:
            return self
        s = np.maximum(self.start, lo)
        e = np.minimum(self.end, hi)
        keep = e > s
        span = np.maximum(self.end - self.start, 1e-12)
        a = self.p0 + (self.p1 - self.p0) * (s - self.start) / span
        b = self.p0 + (self.p1 - self.p0) * (e - self.start) / span
        return Profile.build(s[keep], e[keep], a[keep], b[keep])

    def scaled(self, k: float) -> Profile:
        """The profile times a constant."""
        return Profile(self.start, self.end, self.p0 * k, self.p1 * k, self.cum * k)

    def rising_edges(self) -> F64:
        """Times where the profile turns on after being zero (segment starts after a gap)."""
        if self.start.size == 0:
            return np.zeros(0)
        prev_end = np.concatenate(([-np.inf], self.end[:-1]))
        out: F64 = self.start[self.start > prev_end + 1e-6]
        return out


def merge(profiles: list[Profile]) -> Profile:
    """Concatenate profiles whose segments do not overlap each other (e.g. sessions)."""
    parts = [p for p in profiles if len(p)]
    if not parts:
        return Profile.empty()
    return Profile.build(np.concatenate([p.start for p in parts]),
                         np.concatenate([p.end for p in parts]),
                         np.concatenate([p.p0 for p in parts]),
                         np.concatenate([p.p1 for p in parts]))
