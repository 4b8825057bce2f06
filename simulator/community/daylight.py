"""Dusk, dawn and daylight for the site (astral), cached per local day.

The safety lamps switch on at civil dusk and off at civil dawn (sun 6° below the horizon),
as a photocell needs; lux follows the same sun times so a photocell rule sees the same
evening. Polar days/nights (astral raises) fall back to 06:00/18:00.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import sun


@dataclass(frozen=True, slots=True)
class SunDay:
    """One local day's sun times, epoch seconds."""

    dawn: float
    sunrise: float
    sunset: float
    dusk: float


class Daylight:
    """Sun times for a site; ``offset`` (s) maps epoch to the local standard day used by the
    model (a fixed offset, so local days never repeat or skip)."""

    def __init__(self, latitude: float, longitude: float, zone: ZoneInfo, offset: float) -> None:
        self._observer = Observer(latitude=latitude, longitude=longitude)
        self._zone = zone
        self._offset = offset
        self._days: dict[int, SunDay] = {}
        self._dark_before: dict[int, float] = {}
        self._ref_day: int | None = None

    def day(self, day: int) -> SunDay:
        """Sun times of local day number ``day`` (days since 1970-01-01 local)."""
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._compute(day)
        return cached

    def _compute(self, day: int) -> SunDay:
        local_date: date = datetime.fromtimestamp(day * 86400, UTC).date()
        start = day * 86400 - self._offset
        try:
            s = sun(self._observer, date=local_date, tzinfo=self._zone)
            return SunDay(s["dawn"].timestamp(), s["sunrise"].timestamp(),
                          s["sunset"].timestamp(), s["dusk"].timestamp())
        except ValueError:  # the sun never reaches the angle that day
            return SunDay(start + 6 * 3600 - 1800, start + 6 * 3600, start + 18 * 3600,
                          start + 18 * 3600 + 1800)

    def dark(self, t: float) -> bool:
        """Between civil dusk and civil dawn: the lamps should be lit."""
        s = self.day(math.floor((t + self._offset) / 86400))
        return t < s.dawn or t >= s.dusk

    def lux(self, t: float) -> float:
        """Outdoor illuminance: ~0.5 lx at night, log ramps through twilight (3 lx at civil
        dusk/dawn, 400 lx at sunset/sunrise), a sine arch to ~20 klx at noon."""
        s = self.day(math.floor((t + self._offset) / 86400))
        if t < s.dawn or t >= s.dusk:
            return 0.5
        if t < s.sunrise:
            return _log_lerp(3.0, 400.0, (t - s.dawn) / max(1.0, s.sunrise - s.dawn))
        if t >= s.sunset:
            return _log_lerp(400.0, 3.0, (t - s.sunset) / max(1.0, s.dusk - s.sunset))
        frac = (t - s.sunrise) / max(1.0, s.sunset - s.sunrise)
        return 400.0 + 19600.0 * math.sin(math.pi * frac)

    def dark_seconds(self, ref: float, t: float) -> float:
        """Dark seconds between ``ref`` and ``t`` (for the stair lights' energy counter);
        before ``ref`` half of the time counts, so the result still grows with ``t``."""
        if t <= ref:
            return 0.5 * (t - ref)
        ref_day = math.floor((ref + self._offset) / 86400)
        if self._ref_day != ref_day:
            self._ref_day, self._dark_before = ref_day, {}
        day = math.floor((t + self._offset) / 86400)
        return self._dark_until_day(day) + self._dark_in_day(day, t) \
            - self._dark_in_day(ref_day, ref)

    def _dark_until_day(self, day: int) -> float:
        """Dark seconds from the start of the reference day to the start of ``day``."""
        assert self._ref_day is not None
        if day <= self._ref_day:
            return 0.0
        known = self._dark_before.get(day)
        if known is None:
            d = max((k for k in self._dark_before if k < day), default=self._ref_day)
            acc = self._dark_before.get(d, 0.0)
            while d < day:
                acc += self._dark_in_day(d, (d + 1) * 86400 - self._offset)
                d += 1
                self._dark_before[d] = acc
            known = acc
        return known

    def _dark_in_day(self, day: int, t: float) -> float:
        """Dark seconds from the start of local ``day`` until ``t`` (within that day)."""
        start = day * 86400 - self._offset
        s = self.day(day)
        return max(0.0, min(t, s.dawn) - start) + max(0.0, t - s.dusk)


def _log_lerp(a: float, b: float, frac: float) -> float:
    frac = min(1.0, max(0.0, frac))
    return math.exp(math.log(a) + (math.log(b) - math.log(a)) * frac)
