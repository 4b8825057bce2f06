"""Pure assembly: a validated config turned into what the daemon runs (site and device info,
the rules per device, alarm policies, InfluxDB tags). No I/O, so the simulator and the benches
build exactly what the daemon builds."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from core.measurements import Quantity
from daemon.config import Config, DeviceConfig, LoadedConfig
from daemon.panels import zone_locator
from daemon.sqlitefile import StateProblem
from drivers.modbus.poller import point_interval
from rules import statestore
from rules.base import DeviceInfo, SiteInfo
from rules.catalog import build_rules
from rules.engine import DeviceRules, RuleEngine
from rules.model import AlarmEvent
from rules.policy import FloodPolicy, Policies

log = logging.getLogger("firewarden")


def site_info(config: Config) -> SiteInfo:
    site = config.site
    return SiteInfo(latitude=site.latitude, longitude=site.longitude, timezone=site.timezone)


def device_infos(loaded: LoadedConfig) -> list[DeviceInfo]:
    """What the rules may know of each enabled device and fire panel."""
    config = loaded.config
    # devices of one model and poll share their point set and intervals (read-only)
    shared: dict[tuple[int, float], tuple[frozenset[tuple[Quantity, str | None]],
                                          Mapping[tuple[Quantity, str | None], float]]] = {}
    infos = []
    for d in config.devices:
        if not d.enabled:
            continue
        profile = loaded.profiles[d.name]
        key = (id(profile), d.poll)
        if key not in shared:
            shared[key] = (frozenset((p.quantity, p.channel) for p in profile.points),
                           {(p.quantity, p.channel): point_interval(p, d.poll)
                            for p in profile.points})
        points, intervals = shared[key]
        infos.append(DeviceInfo(
            name=d.name, kind=d.kind, profile_kind=profile.profile.kind, points=points,
            poll=d.poll, rated_current=d.rated_current, breaker_curve=d.breaker_curve,
            intervals=intervals, building=d.building, box=d.box, circuit=d.circuit,
            floor=d.floor, area=d.area))
    infos += [DeviceInfo(name=p.name, kind="fire-panel", profile_kind="fire-panel",
                         building=p.building) for p in config.fire_panels if p.enabled]
    return infos


def device_rules(loaded: LoadedConfig) -> dict[str, DeviceRules]:
    """Each device's rules from the catalog, with its location for the alarms' context."""
    config = loaded.config
    built = build_rules(site_info(config), device_infos(loaded), loaded.params)
    out: dict[str, DeviceRules] = {}
    for device in config.devices:
        out[device.name] = DeviceRules(rules=tuple(built.get(device.name, ())),
                                       context=_context(device))
    for panel in config.fire_panels:
        context = {"kind": "fire-panel"} | ({"building": panel.building} if panel.building else {})
        out[panel.name] = DeviceRules(rules=tuple(built.get(panel.name, ())), context=context,
                                      locate=zone_locator(panel))
    return out


def policies(config: Config) -> Policies:
    alarms = config.alarms
    return Policies(rules={name: rule.overrides() for name, rule in alarms.rule.items()},
                    chatter_count=alarms.chatter_count, chatter_window=alarms.chatter_window)


def flood_policy(config: Config) -> FloodPolicy:
    return FloodPolicy(count=config.alarms.flood_count, window=config.alarms.flood_window)


def device_tags(config: Config) -> dict[str, dict[str, str]]:
    """InfluxDB tags per device: its location plus the bus it hangs on (fire panels: their
    link, e.g. ``gb26875-tcp-server``)."""
    tags = {d.name: {**d.tags(), "bus": d.bus, "kind": d.kind} for d in config.devices}
    for panel in config.fire_panels:
        tags[panel.name] = {"bus": f"gb26875-{panel.transport}", "kind": "fire-panel"} | (
            {"building": panel.building} if panel.building else {})
    return tags


def state_store_events(engine: RuleEngine, problems: Sequence[StateProblem | None],
                       now: float) -> list[AlarmEvent]:
    """The ``state-store`` alarms for state files that could not be used as they were."""
    events: list[AlarmEvent] = []
    for problem in filter(None, problems):
        for condition in statestore.conditions(problem.path.name, damaged=problem.damaged,
                                               message=problem.message, now=now):
            events += engine.apply(condition, now)
    return events


def _context(device: DeviceConfig) -> dict[str, str]:
    return {**device.tags(), "kind": device.kind}

