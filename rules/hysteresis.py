"""Small pure helpers the rules share: an on-delay with deadband, and durations for people."""

from __future__ import annotations

# Poll timestamps jitter by milliseconds: samples spanning on_delay less this count as held.
ON_DELAY_SLACK = 0.05


def hold(active: bool | None, since: float | None, now: float, above: bool, held: bool,
         delay: float) -> tuple[bool | None, float | None, bool]:
    """One step of an on-delay with deadband; returns (active, since, changed).

    ``above``: the value is past the raise limit; ``held``: past the clear limit (inside the
    deadband an active verdict stays active). ``active`` is None until the first verdict, which
    counts as a change so a restarted daemon clears alarms that went away while it was down; an
    unfinished on-delay is no verdict yet.
    """
    if above:
        since = now if since is None else since
        if active is not True and now - since >= delay - ON_DELAY_SLACK:
            return True, since, True
        return active, since, False
    if active is True and held:
        return True, None, False
    return False, None, active is not False


def minutes(seconds: float) -> str:
    """A delay or age for people: ``100 s``, ``4.2 min``, ``30 min``, ``1.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        m = seconds / 60
        return f"{m:.0f} min" if m >= 10 or abs(m - round(m)) < 0.05 else f"{m:.1f} min"
    return f"{seconds / 3600:.1f} h"
