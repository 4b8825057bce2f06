"""Times as scenario authors write them: durations ("4h", "1h30m", "2w"), local clock times
("18:30"), offsets ("+30m") and local ISO datetimes, all resolved against the site's zone.

Everything here is pure; epoch seconds (UTC) are the model's time axis, local wall-clock text
is only for people (scenario files, truth files, the printed timeline).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.durations import parse_duration

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"`` (for printing; whole seconds)."""
    seconds = round(seconds)
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def parse_local(value: object, zone: ZoneInfo) -> float:
    """Epoch seconds of a local ISO datetime (``"2024-11-15T17:00"``; an explicit offset
    wins over the site's zone). TOML datetimes are accepted as they come."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a local ISO datetime: {value!r} "
                             f"(use e.g. '2024-11-15T17:00')") from None
    else:
        raise ValueError(f"not a local ISO datetime: {value!r}")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=zone)
    return stamp.timestamp()


def parse_at(value: object, start: float, zone: ZoneInfo) -> float:
    """When an event starts: ``"+30m"`` after the scenario start, ``"18:30"`` the next local
    clock time at or after the start, or a full local ISO datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return start + float(value)
    if isinstance(value, time):
        value = value.strftime("%H:%M:%S")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("+"):
            return start + parse_duration(text[1:])
        match = _CLOCK.match(text)
        if match:
            hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
            if hour > 23 or minute > 59 or second > 59:
                raise ValueError(f"not a clock time: {value!r}")
            local = datetime.fromtimestamp(start, zone)
            candidate = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
            if candidate.timestamp() < start:
                candidate = (candidate.replace(tzinfo=None) + timedelta(days=1)).replace(
                    tzinfo=zone)
            return candidate.timestamp()
    try:
        return parse_local(value, zone)
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use '18:30', '+30m' or "
                         f"'2024-11-15T18:30')") from None


def local_iso(epoch: float, zone: ZoneInfo) -> str:
    """``"2024-11-15T18:30:00+08:00"``: what people read in truth files and timelines."""
    return datetime.fromtimestamp(round(epoch, 3), zone).isoformat(timespec="seconds")


def local_clock(epoch: float, zone: ZoneInfo) -> str:
    """``"11-15 18:30:05"``: a compact local stamp for the printed timeline."""
    return datetime.fromtimestamp(epoch, zone).strftime("%m-%d %H:%M:%S")
