"""``firewarden check``: the resolved plan, so a user sees what will happen before it happens."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from daemon.assembly import device_rules
from daemon.config import LoadedConfig
from daemon.secrets import SecretError, UnsetVariable, read_secret, secret_paths
from drivers.modbus.planner import wire_time_ms
from drivers.modbus.poller import PolledDevice, bus_cost, device_plan
from drivers.modbus.registry import bus_type
from rules.catalog import CATALOG
from rules.overcurrent import Overcurrent


def render_plan(loaded: LoadedConfig) -> str:
    """A readable tree: site, outputs, buses with devices and their requests, rules."""
    config = loaded.config
    site = config.site
    lines = [
        f"config {loaded.path}: OK",
        f"site {site.id} ({site.name or 'unnamed'}), {site.latitude}, {site.longitude}, "
        f"{site.timezone}",
        f"influxdb {config.influxdb.api} {config.influxdb.url} "
        f"database={config.influxdb.database} batch={config.influxdb.batch_size} "
        f"flush={config.influxdb.flush_interval:g}s spool_max={config.influxdb.spool_max_mb} MB",
        f"mqtt {config.mqtt.host}:{config.mqtt.port} topics "
        f"{config.mqtt.topic_prefix}/{site.id}/...",
    ]
    rules = device_rules(loaded)
    for bus in config.buses:
        devices = [d for d in config.devices if d.bus == bus.name]
        serial_line = bus_type(bus).serial_line  # framing, wire time and load are the line's
        lines.append(f"bus {bus.name}: {bus.type} {bus.endpoint}"
                     + (f" {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
                        if serial_line else "")
                     + f", timeout {bus.timeout:g}s, {len(devices)} device(s)")
        bus_ms = 0.0
        for device in devices:
            profile = loaded.profiles[device.name]
            groups = device_plan(PolledDevice(config=device, profile=profile),
                                 bus_cost(bus, profile))
            where = "/".join(v for v in (device.building, device.box, device.circuit) if v)
            state = "" if device.enabled else " (disabled)"
            n_requests = sum(len(reqs) for _, reqs in groups)
            lines.append(f"  device {device.name}{state}: unit {device.unit}, "
                         f"profile {profile.name}, {where or '-'}, "
                         f"{len(profile.points)} points in {n_requests} request(s)")
            for interval, requests in groups:
                ms = wire_time_ms(requests, baudrate=bus.baudrate)
                bus_ms += ms / interval
                wire = f", ~{ms:.1f} ms on the wire at {bus.baudrate} baud" \
                    if serial_line else ""
                lines.append(f"    every {interval:g}s: {len(requests)} request(s){wire}")
                for req in requests:
                    lines.append(f"      {req.table.value:<8} fc{req.table.function_code:02d} "
                                 f"addr {req.address:>5} count {req.count:>3}: "
                                 + ", ".join(p.key for p in req.points))
            lines.append(f"    rules: {_rule_names(rules[device.name].rules)}")
            for oc in rules[device.name].rules:
                if isinstance(oc, Overcurrent):
                    c = oc.params
                    lines.append(f"    rule overcurrent: > {oc.limit:g} A for {c.on_delay:g}s,"
                                 f" clears below {oc.rated_current * c.clear_factor:g} A")
        if serial_line:
            lines.append(f"  bus load ~{bus_ms / 10:.1f}% of the line at {bus.baudrate} baud")
    for panel in config.fire_panels:
        state = "" if panel.enabled else " (disabled)"
        lines.append(f"fire panel {panel.name}{state}: GB/T 26875.3 {panel.transport} "
                     f"{panel.endpoint}, building {panel.building or '-'}, communication "
                     f"fault after {panel.heartbeat_timeout:g}s of silence")
        for zone in panel.zones:
            system = f"system {zone.system} " if zone.system is not None else ""
            where = ", ".join(f"{k} {v}" for k, v in (
                ("building", zone.building or panel.building), ("floor", zone.floor),
                ("area", zone.area)) if v)
            lines.append(f"    {system}zone {zone.zone}: {where or '-'}")
        lines.append(f"    rules: {_rule_names(rules[panel.name].rules)} (fire lane: first "
                     f"out)")
    lines += _rule_parameters(loaded)
    lines += _secrets(loaded)
    return "\n".join(lines)


def _rule_names(rules: Sequence[object]) -> str:
    """The catalog names of a device's rules (the module each rule object comes from)."""
    names = sorted({type(r).__module__.rsplit(".", 1)[-1] for r in rules})
    spec_names = {module: spec.name for spec in CATALOG.values()
                  for module in [spec.build.__module__.rsplit(".", 1)[-1]]}
    return ", ".join(spec_names.get(n, n) for n in names) or "none"


def _rule_parameters(loaded: LoadedConfig) -> list[str]:
    """Every catalog rule with its site-wide parameters (defaults and [rules.<name>])."""
    lines = ["rules (site-wide; [device.rules.<name>] overrides per device):"]
    for name in CATALOG:
        params = loaded.params(name, "")
        values = ", ".join(f"{f.name}={_show(getattr(params, f.name))}"
                           for f in dataclasses.fields(params) if f.name != "enabled")
        state = "" if getattr(params, "enabled", True) else " (disabled)"
        lines.append(f"  {name}{state}: {values or '-'}")
    alarms = loaded.config.alarms
    lines.append(f"alarms: chattering at {alarms.chatter_count} in {alarms.chatter_window:g}s, "
                 f"flood above {alarms.flood_count} in {alarms.flood_window:g}s"
                 + "".join(f"; {rule}: {rule_config.overrides()}"
                           for rule, rule_config in alarms.rule.items()))
    return lines


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def _secrets(loaded: LoadedConfig) -> list[str]:
    """Where each secret comes from and whether it can be read now (never its content)."""
    found = secret_paths(loaded.config)
    if not found:
        return []
    lines = ["secrets:"]
    for what, path in found:
        try:
            read_secret(path, what)
            state = "readable"
        except UnsetVariable:
            state = "a systemd credential: not checked here (CREDENTIALS_DIRECTORY unset)"
        except SecretError as exc:
            state = f"NOT READABLE: {exc}"
        lines.append(f"  {what}: {path} ({state})")
    return lines


def secret_problems(loaded: LoadedConfig) -> list[str]:
    """Secrets that can be checked here and are unreadable or empty (``check`` fails on them:
    the daemon would refuse to start)."""
    problems = []
    for what, path in secret_paths(loaded.config):
        try:
            read_secret(path, what)
        except UnsetVariable:
            continue
        except SecretError as exc:
            problems.append(str(exc))
    return problems
