"""Durations as people write them in configs and profiles: ``"500ms"``, ``"2s"``, ``"5m"``."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"2s"``, ``"5m"``, ``"1h"`` or a bare number of seconds, to seconds.

    NaN, infinities and negative numbers are refused here, for every duration at once: a NaN
    passes every ``<``/``>`` bound unnoticed (``nan > 0`` and ``nan <= 60`` are both false, so
    an unbounded field takes it) and then spins a timer loop or never fires.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. '500ms', '2s', '5m', '1h')")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
