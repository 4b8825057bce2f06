"""Safety lighting: lamps out, partly out, burning by day, cycling.

Dark hours come from civil dusk and dawn at the site (astral), gated by the controller's lux
sensor when it serves one (hysteresis: dark below ``lux_dark``, light again above
``lux_light``); a bad, absent or stale lux reading falls back to the astronomical schedule.
Per relay channel of a lighting controller, each poll:

* ``lamp-out``: the lamps should be lit (commanded on; dark, without a relay point) and the
  channel draws less than ``out_fraction`` x its expected current for ``polls`` polls.
* ``lamp-partial``: lit, but about one lamp's share (or more) is missing ("1 of 4 lamps out").
* ``lamp-day-burning``: current while commanded off (or in daylight without a relay point):
  a stuck relay or a bypassed contactor. It clears only once the lamps are seen off.
* ``lamp-cycling``: the channel's current jumps by a lamp's share ``cycle_count`` times within
  ``cycle_window`` of lit time: a failing lamp or ballast.

A relay commanded off is respected: a timer that cuts the lamps at midnight is a schedule, not
a failure (``lamp-out`` needs the lamps to be asked for light, by the relay or, without a relay
point, by the dark).

LED drivers draw constant power, so a channel's current follows 1/V: the evening sag raises
it, the night swell (GB/T 12325 allows -10 %..+7 %) lowers it by about as much as one of eight
lamps. When the building has a meter, the rule reads its voltage and compares currents at the
nominal ``nominal_v`` (I x V / V nominal). The reference is ``lamps`` x ``lamp_current``
(nameplate, at ``nominal_v``) until the channel has been seen lit and healthy for ``learn_polls``
polls; from then on it is the median of those healthy polls (a nameplate is a round number, the
lamps are what they are: until then only a deficit of half of it is judged). A poll is
healthy when it is within half a lamp of the reference, so a lamp that dies is never learnt as
normal; a partial verdict clears at half the deficit that raised it. With ``lamp_current`` 0
the first lit polls set the reference: it works unconfigured but only sees failures that happen
after it started.
Pure: time is the readings'.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from annotated_types import Ge, Gt, Le
from astral import Observer
from astral.sun import sun

from core.durations import Duration
from core.measurements import Quantity, Reading
from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo
from rules.model import Condition, Severity

NAME = "lighting"
OUT, PARTIAL, DAY_BURNING, CYCLING = "lamp-out", "lamp-partial", "lamp-day-burning", \
    "lamp-cycling"
# Safety lamps light dark corners; an outage is fixed on the next round, it is not a fire
# risk, so every lighting alarm is a warning (no half-hourly re-alarm all night long).
SEVERITY = Severity.WARNING
# A nameplate current is a hint: installers type the catalogue value of a similar lamp. Only a
# channel drawing under half of it on its first nights is judged against it.
NAMEPLATE_TOLERANCE = 0.5


# -- the sun ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SunDay:
    """One local day at the site, epoch seconds: [start, end) and civil dawn and dusk."""

    start: float
    end: float
    dawn: float
    dusk: float

    def dark(self, t: float) -> bool:
        return t < self.dawn or t >= self.dusk

    def hour(self, t: float) -> float:
        """Local clock hour 0..24 (DST days are 23 or 25 hours long; close enough)."""
        return (t - self.start) / 3600


@functools.lru_cache(maxsize=4096)
def _sun_day(latitude: float, longitude: float, timezone: str, day: date) -> SunDay:
    zone = ZoneInfo(timezone)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone).timestamp()
    try:
        s = sun(Observer(latitude=latitude, longitude=longitude), date=day, tzinfo=zone)
        return SunDay(start, end, s["dawn"].timestamp(), s["dusk"].timestamp())
    except ValueError:  # polar day or night: the sun never reaches -6°; assume 06:00-18:00
        return SunDay(start, end, start + 6 * 3600, start + 18 * 3600)


def sun_day(site: SiteInfo, t: float) -> SunDay:
    """The site's local day containing epoch ``t`` (memoised: a pure function of its args)."""
    local = datetime.fromtimestamp(t, UTC).astimezone(ZoneInfo(site.timezone)).date()
    return _sun_day(site.latitude, site.longitude, site.timezone, local)


def day_of(site: SiteInfo, known: SunDay | None, t: float) -> SunDay:
    """``known`` if ``t`` falls in it, else the day of ``t`` (skips the zone conversion)."""
    if known is not None and known.start <= t < known.end:
        return known
    return sun_day(site, t)


# -- parameters -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LightingConfig:
    """``[rules.lighting]`` / ``[device.rules.lighting]``: every lighting controller (a device
    serving ``lamp_current``)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    enabled: bool = True
    # lamps per channel: one count for every channel, or a list per channel 1..n (0, and the
    # channels past the list, have nothing connected and are not watched)
    lamps: int | tuple[int, ...] = 1
    lamp_current: Annotated[float, Ge(0), Le(50)] = 0.0  # A per lamp; 0: learn per channel
    out_fraction: Annotated[float, Gt(0), Le(1)] = 0.2  # lamp-out below this x expected
    partial_share: Annotated[float, Gt(0), Le(1)] = 0.6  # partial: this x one lamp missing
    off_current: Annotated[float, Ge(0), Le(5)] = 0.05  # A: above this, lamps draw current
    polls: Annotated[int, Ge(1), Le(100)] = 2  # consecutive polls to raise or clear
    cycle_count: Annotated[int, Ge(2), Le(100)] = 4  # on/off jumps ...
    cycle_window: Annotated[Duration, Gt(0), Le(86400)] = 900.0  # ... within this lit time
    # accepted for old configs, ignored: a relay commanded off in the dark is a schedule
    dark_grace: Annotated[Duration, Ge(0), Le(7200)] = 1200.0
    lux_dark: Annotated[float, Ge(0)] = 28.0  # lux below this: dark ...
    lux_light: Annotated[float, Ge(0)] = 55.0  # ... above this: light; in between: unchanged
    lux_max_age: Annotated[Duration, Gt(0), Le(86400)] = 300.0  # older lux: use the sun
    nominal_v: Annotated[float, Gt(0), Le(1000)] = 220.0  # lamp_current is rated at this
    learn_polls: Annotated[int, Ge(1), Le(1000)] = 30  # healthy lit polls before learning
    warm_up: Annotated[Duration, Ge(0), Le(3600)] = 0.0  # lit this long before a partial

    def __post_init__(self) -> None:
        counts = (self.lamps,) if isinstance(self.lamps, int) else self.lamps
        if not counts or any(isinstance(n, bool) or n < 0 for n in counts) or max(counts) < 1:
            raise ValueError(f"lamps must be whole numbers >= 0, at least one >= 1 (0: a "
                             f"channel with nothing connected; got {self.lamps!r})")
        if self.lux_dark > self.lux_light:
            raise ValueError(f"lux_dark {self.lux_dark} is above lux_light {self.lux_light}")

    def lamps_on(self, channel: int) -> int:
        """Lamps on channel ``channel`` (1-based); 0: a channel past the list, not in use."""
        if isinstance(self.lamps, int):
            return self.lamps
        return self.lamps[channel - 1] if 0 < channel <= len(self.lamps) else 0


# -- state ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verdict:
    """One alarm's debounced verdict: ``active`` after ``polls`` agreeing polls."""

    active: bool | None = None  # None: no verdict yet
    streak: int = 0  # consecutive polls disagreeing with ``active``


@dataclass(frozen=True, slots=True)
class ChannelState:
    relay: tuple[float, bool | None] | None = None  # (ts, commanded on; None: bad reading)
    current: tuple[float, float | None] | None = None  # (ts, A; None: bad reading)
    evaluated: float | None = None  # ts of the last evaluated poll
    healthy: tuple[float, ...] = ()  # recent healthy lit currents at nominal voltage
    previous: float | None = None  # last lit-expected current (cycling)
    lit_since: float | None = None  # expected lit since (warm-up)
    lit_clock: float = 0.0  # seconds spent expected lit: the cycling window's clock
    jumps: tuple[float, ...] = ()  # lit_clock of recent on/off jumps
    out: Verdict = Verdict()
    partial: Verdict = Verdict()
    day_burning: Verdict = Verdict()
    cycling: bool = False


@dataclass(frozen=True, slots=True)
class LightingState:
    """One controller: its lux hysteresis, the sun's day and every channel."""

    channels: Mapping[str, ChannelState]
    lux_dark: bool | None = None
    lux_ts: float | None = None
    volts: tuple[float, float] | None = None  # (ts, V) of the building's supply
    day: SunDay | None = None
    dark_since: float | None = None  # sky dark (sun or lux) since, for dark_grace


# -- the rule ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LightingRule:
    """The lighting alarms of one controller (``rules.base.Rule``); one state per device."""

    site: SiteInfo
    params: LightingConfig
    has_relay: frozenset[str] = frozenset()  # channels with a relay point
    controller: str = ""  # the controller's name (state key; "" keys by the reading's device)
    supply: str | None = None  # a meter in the same building: its voltage scales the current

    @property
    def quantities(self) -> frozenset[Quantity]:
        return _QUANTITIES | ({Quantity.VOLTAGE} if self.supply else set())

    def key(self, reading: Reading) -> Hashable:
        return NAME, self.controller or reading.device

    def step(self, state: LightingState | None,
             reading: Reading) -> tuple[LightingState, list[Condition]]:
        return evaluate(state or LightingState(channels={}), reading, self)


_QUANTITIES = frozenset({Quantity.RELAY, Quantity.LAMP_CURRENT, Quantity.LUX})


def evaluate(state: LightingState, reading: Reading,
             rule: LightingRule) -> tuple[LightingState, list[Condition]]:
    """Feed one relay, lamp-current or lux reading; return the new state and any change."""
    q, ts = reading.quantity, reading.ts
    p = rule.params
    if q is Quantity.VOLTAGE:
        if reading.device != rule.supply or not reading.good or \
                not 0.5 * p.nominal_v <= reading.value <= 1.5 * p.nominal_v:
            return state, []
        if state.volts is not None and state.volts[0] == ts:  # phases of one poll: average
            return replace(state, volts=(ts, (state.volts[1] + reading.value) / 2)), []
        return replace(state, volts=(ts, reading.value)), []
    if reading.device != (rule.controller or reading.device):
        return state, []
    if q is Quantity.LUX:
        if not reading.good:
            return state, []
        dark = state.lux_dark
        if reading.value < p.lux_dark:
            dark = True
        elif reading.value > p.lux_light:
            dark = False
        return replace(state, lux_dark=dark, lux_ts=ts), []
    if q not in (Quantity.RELAY, Quantity.LAMP_CURRENT) or reading.channel is None:
        return state, []
    channel = reading.channel
    ch = state.channels.get(channel, ChannelState())
    if q is Quantity.RELAY:
        ch = replace(ch, relay=(ts, reading.value >= 0.5 if reading.good else None))
    else:
        ch = replace(ch, current=(ts, reading.value if reading.good else None))
    # Evaluate once per poll, when the poll's current and relay (if served) are both in.
    if ch.current is None or ch.current[0] != ts or ch.evaluated == ts or (
            channel in rule.has_relay and (ch.relay is None or ch.relay[0] != ts)):
        return _with(state, channel, ch), []
    day = day_of(rule.site, state.day, ts)
    sky_dark = _sky_dark(state, day, ts, p)
    dark_since = (state.dark_since if state.dark_since is not None else ts) if sky_dark \
        else None
    state = replace(state, day=day, dark_since=dark_since)
    scale = 1.0
    if state.volts is not None and abs(ts - state.volts[0]) <= 300.0:
        scale = state.volts[1] / p.nominal_v  # constant-power drivers: I x V is what holds
    ch, conditions = _channel(ch, reading, rule, ts, sky_dark, dark_since, scale)
    return _with(state, channel, ch), conditions


def _with(state: LightingState, channel: str, ch: ChannelState) -> LightingState:
    return replace(state, channels={**state.channels, channel: ch})


def _sky_dark(state: LightingState, day: SunDay, ts: float, p: LightingConfig) -> bool:
    """Civil dusk to dawn, gated by a fresh lux reading when there is one: both must say
    dark (a photocell and the sun disagree by minutes at twilight, never by hours)."""
    if not day.dark(ts):
        return False
    if state.lux_dark is not None and state.lux_ts is not None and \
            ts - state.lux_ts <= p.lux_max_age:
        return state.lux_dark
    return True


def _channel(ch: ChannelState, reading: Reading, rule: LightingRule, ts: float,
             sky_dark: bool, dark_since: float | None,
             scale: float) -> tuple[ChannelState, list[Condition]]:
    p = rule.params
    amps = ch.current[1] if ch.current is not None else None
    commanded = ch.relay[1] if ch.relay is not None else None
    since_last = ts - ch.evaluated if ch.evaluated is not None else 0.0
    ch = replace(ch, evaluated=ts)
    if amps is None:
        return ch, []  # a bad current reading: no verdict either way
    expect_lit = commanded is True or (commanded is None and sky_dark)
    try:
        number = int(reading.channel or "0")
    except ValueError:
        number = 0
    lamps = p.lamps_on(number)
    if lamps == 0:
        return ch, []  # nothing connected
    out: list[Condition] = []
    ctx = _Context(reading.device, reading.channel, ts, amps, lamps, commanded, sky_dark)

    if expect_lit:
        # the reference at nominal voltage, learning, and the cycling clock
        nominal = amps * scale
        healthy = ch.healthy
        configured = lamps * p.lamp_current if p.lamp_current > 0 else None
        expected = reference(healthy, configured, p)
        share = expected / lamps if expected else None
        learning = configured is not None and len(healthy) < p.learn_polls
        # a nameplate is trusted to NAMEPLATE_TOLERANCE: a deficit inside it is the lamps
        # as they are, not a lamp out (the current they really draw becomes the reference)
        need = p.partial_share * share if share else 0.0
        if learning and expected is not None:
            need = max(need, NAMEPLATE_TOLERANCE * expected)
        settled = ch.previous is not None  # the first lit poll: drivers still soft-starting
        lit_since = ch.lit_since if settled and ch.lit_since is not None else ts
        if settled and nominal > p.off_current and (
                expected is None or nominal > expected - min(need, 0.5 * expected / lamps)
                or (learning and nominal > expected - need)):
            healthy = (*healthy, nominal)[-p.learn_polls:]
        step = max(p.off_current, 0.5 * share) if share else p.off_current
        lit_clock = ch.lit_clock + (since_last if ch.previous is not None else 0.0)
        jumps = ch.jumps
        if ch.previous is not None and abs(amps - ch.previous) >= step:
            jumps = (*jumps, lit_clock)
        jumps = tuple(j for j in jumps if lit_clock - j <= p.cycle_window)
        cycling = ch.cycling
        if not cycling and len(jumps) >= p.cycle_count:
            cycling = True
            out.append(ctx.condition(CYCLING, True, float(len(jumps)), float(p.cycle_count),
                                     f"{len(jumps)} on/off jumps in "
                                     f"{p.cycle_window / 60:g} min lit: failing lamp or "
                                     f"ballast"))
        elif cycling and (not jumps or lit_clock - jumps[-1] >= p.cycle_window):
            cycling = False
            out.append(ctx.condition(CYCLING, False, 0.0, float(p.cycle_count),
                                     f"steady for {p.cycle_window / 60:g} min lit"))
        # out and partial
        if expected is None:
            is_out, missing = amps < max(p.off_current, 1e-9), lamps
        else:
            # out: less than half of one lamp (5 of 6 dead is a partial, still lighting)
            is_out = nominal < min(p.out_fraction * expected, 0.5 * expected / lamps)
            missing = max(0, round((expected - nominal) / share)) if share else 0
            if ch.partial.active and share:  # hysteresis: clear at half the raise deficit
                need = 0.5 * need
                missing = max(missing, 1)
            if share and expected - nominal < need:
                missing = 0
        is_partial = not is_out and lamps > 1 and missing >= 1
        if cycling:
            is_out = is_partial = False
        # LED drivers soft-start and some dim up over minutes: judge a partial when warm
        is_partial = is_partial and settled and ts - lit_since >= p.warm_up
        out_v, c1 = _debounce(ch.out, is_out, p.polls, lambda a: ctx.out(a, expected))
        part_v, c2 = _debounce(ch.partial, is_partial, p.polls,
                               lambda a: ctx.partial(a, expected, missing))
        # a day-burning verdict stands while lit: it clears only on proof of the lamps off
        ch = replace(ch, healthy=healthy, previous=amps, lit_since=lit_since,
                     lit_clock=lit_clock, jumps=jumps,
                     cycling=cycling, out=out_v, partial=part_v)
        return ch, [*out, *c1, *c2]

    # not expected lit: out/partial verdicts stand (a dead lamp stays dead by day)
    burning = amps > p.off_current
    burn_v, c3 = _debounce(ch.day_burning, burning, p.polls, ctx.day_burning)
    return replace(ch, previous=None, day_burning=burn_v), c3


def reference(healthy: Sequence[float], configured: float | None,
              p: LightingConfig) -> float | None:
    """A lit channel's current at nominal voltage: the median of its healthy polls once there
    are ``learn_polls`` of them (or any, unconfigured), else the nameplate."""
    if healthy and (configured is None or len(healthy) >= p.learn_polls):
        return statistics.median(healthy)
    return configured


def _debounce(v: Verdict, now: bool, polls: int,
              make: Callable[[bool], Condition]) -> tuple[Verdict, list[Condition]]:
    """Raise or clear after ``polls`` consecutive disagreeing polls; the first verdict of a
    healthy channel is emitted as soon as it is seen (inactive, so no alarm is created)."""
    if v.active is None:
        if not now:
            return Verdict(False, 0), [make(False)]
        streak = v.streak + 1
        if streak >= polls:
            return Verdict(True, 0), [make(True)]
        return Verdict(None, streak), []
    if now == v.active:
        return (v if v.streak == 0 else Verdict(v.active, 0)), []
    streak = v.streak + 1
    if streak >= polls:
        return Verdict(now, 0), [make(now)]
    return Verdict(v.active, streak), []


@dataclass(frozen=True, slots=True)
class _Context:
    """What a message needs to say about one channel at one poll."""

    device: str
    channel: str | None
    ts: float
    amps: float
    lamps: int
    commanded: bool | None
    dark: bool

    def condition(self, rule: str, active: bool, value: float, limit: float | None,
                  what: str) -> Condition:
        where = f"{self.device} channel {self.channel}"
        message = f"{where}: {what}" if active else f"{where}: {rule} cleared ({what})"
        return Condition(rule=rule, device=self.device, channel=self.channel, active=active,
                         severity=SEVERITY, ts=self.ts, value=round(value, 3),
                         limit=None if limit is None else round(limit, 3), message=message)

    def _why(self) -> str:
        if self.commanded is True:
            return "commanded on"
        if self.commanded is False:
            return "commanded OFF during dark hours (controller schedule?)"
        return "dark hours"

    def out(self, active: bool, expected: float | None) -> Condition:
        exp = f" of {expected:.2f} A expected" if expected else ""
        if active:
            return self.condition(OUT, True, self.amps, expected,
                                  f"lamps out, {self._why()} but drawing {self.amps:.2f} A"
                                  f"{exp}: the area is dark")
        return self.condition(OUT, False, self.amps, expected, f"drawing {self.amps:.2f} A{exp}")

    def partial(self, active: bool, expected: float | None, missing: int) -> Condition:
        exp = f"{expected:.2f}" if expected else "?"
        if active:
            return self.condition(PARTIAL, True, self.amps, expected,
                                  f"{missing} of {self.lamps} lamps out: drawing "
                                  f"{self.amps:.2f} A of {exp} A expected")
        return self.condition(PARTIAL, False, self.amps, expected,
                              f"drawing {self.amps:.2f} A of {exp} A expected")

    def day_burning(self, active: bool) -> Condition:
        why = "commanded off" if self.commanded is False else "in daylight"
        if active:
            return self.condition(DAY_BURNING, True, self.amps, None,
                                  f"lamps burning {why} ({self.amps:.2f} A): stuck relay or "
                                  f"bypassed contactor")
        return self.condition(DAY_BURNING, False, self.amps, None, "lamps off as commanded")


# -- building from config ---------------------------------------------------------------------

def _build(site: SiteInfo,
           devices: Sequence[tuple[DeviceInfo, Any]]) -> Mapping[str, Sequence[Rule]]:
    out: dict[str, list[Rule]] = {}
    for device, config in devices:
        if not device.serves(Quantity.LAMP_CURRENT):
            continue
        relays = frozenset(c for c in device.channels(Quantity.RELAY) if c is not None)
        supply = _supply(device, [d for d, _ in devices])
        rule = LightingRule(site=site, params=config, has_relay=relays, controller=device.name,
                            supply=supply)
        out.setdefault(device.name, []).append(rule)
        if supply is not None:
            out.setdefault(supply, []).append(rule)
    return out


def _supply(controller: DeviceInfo, devices: Sequence[DeviceInfo]) -> str | None:
    """The building's voltage: its incomer if it has one, else any meter there."""
    if not controller.building:
        return None
    meters = [d for d in devices if d.building == controller.building and d is not controller
              and d.serves(Quantity.VOLTAGE)]
    meters.sort(key=lambda d: (d.kind != "incomer", d.name))
    return meters[0].name if meters else None


SPEC = RuleSpec(
    name=NAME, params=LightingConfig, build=_build,
    summary="safety lamps: out, partly out, burning by day, cycling (dark hours from civil "
            "dusk/dawn or the lux sensor)",
    alarms={OUT: "warning: a channel commanded on (or in dark hours) draws almost nothing",
            PARTIAL: "warning: a lit channel lacks about one lamp's current or more",
            DAY_BURNING: "warning: lamps draw current while commanded off (stuck relay)",
            CYCLING: "warning: a lit channel switches on and off repeatedly (failing lamp)"})
