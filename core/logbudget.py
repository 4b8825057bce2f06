"""One log line per cause per interval, with a count of what was held back.

A device that answers garbage on every poll, or a meter that glitches every second, must not
flood the journal: the first occurrence of a cause is logged at once, repeats within
``interval`` are only counted, and the next line that is let through says how many were held
back. Time is passed in, so this is testable without sleeping.
"""

from __future__ import annotations

from collections.abc import Hashable


class LogBudget:
    """``take(key, now)`` decides whether a line for ``key`` may be logged now."""

    __slots__ = ("_interval", "_windows")

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._windows: dict[Hashable, tuple[float, int]] = {}  # key -> (opened, held back)

    def take(self, key: Hashable, now: float) -> int | None:
        """``None``: stay quiet (the line is counted); otherwise log now, mentioning this many
        lines held back since the last one."""
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._interval or now < window[0]:
            self._windows[key] = (now, 0)
            return 0 if window is None else window[1]
        self._windows[key] = (window[0], window[1] + 1)
        return None


def held_back(count: int) -> str:
    """The suffix of a line that was let through after ``count`` were held back."""
    return f" ({count} more like this not logged)" if count else ""
