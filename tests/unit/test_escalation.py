"""The pure escalation chain (rules/escalation.py): tiers and their delays per severity,
working hours (across midnight, in the chain's time zone), how a chain ends, and resuming from
a stored state after a restart."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from rules.alarm import Ack, Reset, Shelve, Tick, transition
from rules.escalation import (
    Chain,
    ChainState,
    Escalate,
    StandDown,
    Tier,
    WorkingHours,
    chain_for,
    due_tiers,
    step,
)
from rules.model import Alarm, Condition, Severity
from rules.policy import BY_SEVERITY

SH = ZoneInfo("Asia/Shanghai")
MIN = 60.0


def at(hhmm: str, day: int = 13) -> float:
    """Epoch of 2024-11-<day> HH:MM in Shanghai (13th: a Wednesday)."""
    h, m = map(int, hhmm.split(":"))
    return datetime(2024, 11, day, h, m, tzinfo=SH).timestamp()


TIERS = (
    Tier("electricians", ("wecom-electricians",)),
    Tier("manager", ("wecom-manager",), {Severity.FIRE: 2 * MIN, Severity.CRITICAL: 10 * MIN,
                                         Severity.WARNING: 30 * MIN}),
    Tier("street", ("dingtalk-street", "json-ops"),
         {Severity.FIRE: 5 * MIN, Severity.CRITICAL: 30 * MIN, Severity.WARNING: 120 * MIN}),
)
CHAIN = Chain(name="site", tiers=TIERS)
DAYTIME = WorkingHours(start=time(8), end=time(18), timezone="Asia/Shanghai",
                       days=frozenset(range(5)))
OFFICE = replace(CHAIN, working_hours=DAYTIME, off_hours_start=1)


def raised(t: float, severity: Severity = Severity.CRITICAL, rule: str = "leakage",
           building: str = "12") -> Alarm:
    """An alarm raised at ``t`` through the real state machine."""
    a = Alarm(alarm_id=f"{rule}:d1", rule=rule, device="d1", severity=severity,
              context={"building": building})
    policy = BY_SEVERITY[severity]
    a, _ = transition(a, Condition(rule, "d1", True, severity, t), t, policy)
    assert a.in_alarm
    return a


def run(chain: Chain, alarm: Alarm, state: ChainState | None, times: list[float]
        ) -> tuple[ChainState | None, list[tuple[float, Escalate | StandDown]]]:
    out = []
    for t in times:
        state, actions = step(chain, alarm, state, t)
        out += [(t, a) for a in actions]
    return state, out


@pytest.mark.parametrize(("severity", "manager_after", "street_after"), [
    (Severity.FIRE, 2, 7), (Severity.CRITICAL, 10, 40), (Severity.WARNING, 30, 150)])
def test_tiers_follow_their_delay_per_severity(severity: Severity, manager_after: int,
                                                street_after: int) -> None:
    """Tier 1 at the raise; tier 2 after its severity's delay; tier 3 its delay after that."""
    t0 = at("10:00")
    alarm = raised(t0, severity)
    minutes = [t0 + m * MIN for m in range(0, 200)]
    state, actions = run(CHAIN, alarm, None, minutes)
    paged = [((t - t0) / MIN, a.tier_name) for t, a in actions if isinstance(a, Escalate)]
    assert paged == [(0, "electricians"), (manager_after, "manager"), (street_after, "street")]
    assert state is not None
    assert [t for t, _ in state.paged] == [0, 1, 2]


def test_nothing_is_paged_twice_and_the_last_tier_is_the_end() -> None:
    """Once every tier was paged, later looks page nobody."""
    t0 = at("10:00")
    _state, actions = run(CHAIN, raised(t0, Severity.FIRE), None,
                         [t0 + s for s in range(0, 24 * 3600, 30)])
    assert [a.tier for _, a in actions if isinstance(a, Escalate)] == [0, 1, 2]


def test_ack_stops_the_chain_and_tells_the_paged_tiers() -> None:
    """Acknowledged after 12 min (tiers 1 and 2 paged): both are told who and after how long;
    nothing more is paged."""
    t0 = at("10:00")
    alarm = raised(t0)
    state, actions = run(CHAIN, alarm, None, [t0, t0 + 10 * MIN])
    acked, _ = transition(alarm, Ack("李师傅"), t0 + 12 * MIN, BY_SEVERITY[Severity.CRITICAL])
    state, later = run(CHAIN, acked, state, [t0 + 12 * MIN, t0 + 60 * MIN, t0 + 5 * 3600])
    assert [a.tier_name for _, a in actions if isinstance(a, Escalate)] == [
        "electricians", "manager"]
    ((_, down),) = later
    assert isinstance(down, StandDown)
    assert (down.reason, down.by, down.after) == ("acknowledged", "李师傅", 12 * MIN)
    assert down.notify == ("wecom-electricians", "wecom-manager")
    assert state is not None
    assert state.ended
    assert state.ended_by == "李师傅"


def test_clear_stops_an_unlatched_chain_but_not_a_latched_fire() -> None:
    """A critical alarm that clears by itself ends its chain ("cleared"); a fire that clears
    stays latched and keeps escalating until acknowledged (reset acknowledges too)."""
    t0 = at("10:00")
    crit = raised(t0)
    policy = BY_SEVERITY[Severity.CRITICAL]
    state, _ = run(CHAIN, crit, None, [t0])
    cleared, _ = transition(crit, Condition("leakage", "d1", False, Severity.CRITICAL,
                                            t0 + MIN), t0 + MIN, policy)
    state, actions = run(CHAIN, cleared, state, [t0 + MIN, t0 + 30 * MIN])
    assert [(type(a).__name__, getattr(a, "reason", None)) for _, a in actions] == [
        ("StandDown", "cleared")]

    fire = raised(t0, Severity.FIRE, rule="fire")
    fpolicy = BY_SEVERITY[Severity.FIRE]
    fstate, _ = run(CHAIN, fire, None, [t0])
    gone, _ = transition(fire, Condition("fire", "d1", False, Severity.FIRE, t0 + MIN),
                         t0 + MIN, fpolicy)
    assert gone.latched
    assert not gone.acked
    fstate, factions = run(CHAIN, gone, fstate, [t0 + MIN, t0 + 2 * MIN, t0 + 7 * MIN])
    assert [a.tier_name for _, a in factions if isinstance(a, Escalate)] == [
        "manager", "street"]
    reset, _ = transition(gone, Reset("王经理"), t0 + 8 * MIN, fpolicy)
    fstate, ends = run(CHAIN, reset, fstate, [t0 + 8 * MIN])
    ((_, down),) = ends
    assert isinstance(down, StandDown)
    assert (down.reason, down.by, down.tiers) == (
        "acknowledged", "王经理", ("electricians", "manager", "street"))


def test_shelving_ends_the_chain() -> None:
    """Shelved by an operator: the chain ends with who shelved it."""
    t0 = at("10:00")
    alarm = raised(t0)
    state, _ = run(CHAIN, alarm, None, [t0])
    shelved, _ = transition(alarm, Shelve("li", until=t0 + 3600), t0 + MIN,
                            BY_SEVERITY[Severity.CRITICAL])
    _, actions = run(CHAIN, shelved, state, [t0 + MIN, t0 + 20 * MIN])
    assert [(a.reason, a.by) for _, a in actions if isinstance(a, StandDown)] == [
        ("shelved", "li")]


@pytest.mark.parametrize(("when", "day", "first"), [
    ("10:00", 13, "electricians"),  # Wednesday, in hours
    ("07:59", 13, "manager"),  # before the shift
    ("18:00", 13, "manager"),  # the end is exclusive
    ("10:00", 16, "manager"),  # Saturday: not a working day
])
def test_outside_working_hours_the_chain_starts_at_tier_2(when: str, day: int,
                                                          first: str) -> None:
    """Working hours in the chain's zone decide the first tier; tier 1 is skipped outside."""
    t0 = at(when, day)
    _, actions = run(OFFICE, raised(t0), None, [t0])
    (first_page,) = [a for _, a in actions if isinstance(a, Escalate)]
    assert first_page.tier_name == first
    assert first_page.off_hours is (first != "electricians")


def test_working_hours_across_midnight_and_in_the_configured_zone() -> None:
    """A 22:00-06:00 night shift on Mon-Fri: Friday 23:00 and Saturday 03:00 (Friday's shift)
    are in; Saturday 23:00 and Monday 03:00 (Sunday's shift) are out. The same instant is
    judged in the zone given, not UTC."""
    night = WorkingHours(start=time(22), end=time(6), timezone="Asia/Shanghai",
                         days=frozenset(range(5)))
    assert night.contains(at("23:00", 15))  # Friday
    assert night.contains(at("03:00", 16))  # Saturday, early: Friday's shift
    assert not night.contains(at("23:00", 16))  # Saturday
    assert not night.contains(at("03:00", 18))  # Monday, early: Sunday's shift
    assert not night.contains(at("12:00", 13))
    # 23:00 in Shanghai is 15:00 UTC: in hours for Shanghai, out for UTC
    utc = replace(night, timezone="UTC")
    assert night.contains(at("23:00", 13))
    assert not utc.contains(at("23:00", 13))


def test_restart_resumes_without_paging_again() -> None:
    """A chain stored after tier 1 and reloaded (the daemon restarted 3 min later): tier 1 is
    not paged again and tier 2 is paged when its delay since tier 1 has passed."""
    t0 = at("10:00")
    alarm = raised(t0)
    state, _ = run(CHAIN, alarm, None, [t0])
    assert state is not None
    stored = ChainState(**{f: getattr(state, f) for f in state.__dataclass_fields__})
    _, actions = run(CHAIN, alarm, stored, [t0 + m * MIN for m in range(3, 12)])
    assert [((t - t0) / MIN, a.tier_name) for t, a in actions
            if isinstance(a, Escalate)] == [(10, "manager")]
    assert all(isinstance(a, Escalate) for _, a in actions)


def test_after_a_long_outage_one_more_tier_is_due_not_all() -> None:
    """Down for hours: the next tier is paged on restart, the one after it gets its own delay
    from then."""
    t0 = at("10:00")
    alarm = raised(t0)
    state = ChainState(alarm_id=alarm.alarm_id, chain="site", started_at=t0, start_tier=0,
                       paged=((0, t0),))
    assert due_tiers(CHAIN, Severity.CRITICAL, state, t0 + 5 * 3600) == [1]


def test_chain_selection_by_rule_building_and_severity() -> None:
    """The first chain covering an alarm is used; info alarms below min_severity are not."""
    fire_chain = Chain(name="fire", tiers=TIERS, rules=frozenset({"fire"}))
    b12 = Chain(name="b12", tiers=TIERS, buildings=frozenset({"12"}))
    chains = [fire_chain, b12, CHAIN]
    t0 = at("10:00")
    assert chain_for(chains, raised(t0, Severity.FIRE, rule="fire")) is fire_chain
    assert chain_for(chains, raised(t0, building="12")) is b12
    assert chain_for(chains, raised(t0, building="3")) is CHAIN
    info = raised(t0, Severity.INFO, rule="lamp-out")
    assert chain_for(chains, info) is None
    assert step(CHAIN, info, None, t0) == (None, [])


def test_a_tick_without_change_keeps_the_state() -> None:
    """Looking again before any delay passes changes nothing and sends nothing."""
    t0 = at("10:00")
    alarm = raised(t0)
    state, _ = run(CHAIN, alarm, None, [t0])
    ticked, _ = transition(alarm, Tick(), t0 + 5, BY_SEVERITY[Severity.CRITICAL])
    assert step(CHAIN, ticked, state, t0 + 5) == (state, [])
