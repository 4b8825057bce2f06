"""Durations as people write them in configs, profiles and scenarios: ``"500ms"``, ``"2s"``,
``"5m"``, ``"1h30m"``."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

# one or more number+unit parts ("1h30m"); a bare number is seconds
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _parts(text: str) -> float | None:
    text = text.replace(" ", "")
    if _NUMBER.match(text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"2s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"3w"`` or a bare number of
    seconds, to seconds. The one duration grammar of configs, profiles and scenarios.

    NaN, infinities and negative numbers are refused here, for every duration at once: a NaN
    passes every ``<``/``>`` bound unnoticed (``nan > 0`` and ``nan <= 60`` are both false, so
    an unbounded field takes it) and then spins a timer loop or never fires.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (parsed := _parts(value)) is not None:
        seconds = parsed
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. '500ms', '2s', '5m', '1h')")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
