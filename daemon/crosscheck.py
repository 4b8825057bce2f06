"""Checks across a config's tables, beyond each field's own validation: names, profiles,
rule parameters, listener ports, the state dir and the serial line budget. Each returns the
error lines (field path and value) that ``daemon.config`` reports."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from drivers.modbus.planner import wire_time_ms
from drivers.modbus.poller import PolledDevice, bus_cost, device_plan
from drivers.modbus.registry import bus_type
from drivers.profile import Profile, ProfileError, Workarounds, load_profile
from rules.catalog import CATALOG

if TYPE_CHECKING:
    from daemon.config import Config


def rule_params(config: Config, errors: list[str]) -> dict[tuple[str, str], Any]:
    """Every rule's parameters: site-wide under key (rule, ""), per device where it sets some.

    Each is validated by the rule's own parameter dataclass, so a wrong key or value is an
    error naming ``rules.<name>.<key>`` or ``device[i].rules.<name>.<key>``.
    """
    out: dict[tuple[str, str], Any] = {}
    for name in config.rules:
        if name not in CATALOG:
            errors.append(f"rules.{name}: unknown rule (known: {', '.join(CATALOG)})")
    for name, spec in CATALOG.items():
        site = config.rules.get(name, {})
        adapter: TypeAdapter[Any] = TypeAdapter(spec.params)
        try:
            out[(name, "")] = adapter.validate_python(site)
        except ValidationError as exc:
            errors += [format_error(e, f"rules.{name}") for e in exc.errors()]
            continue
        for i, device in enumerate(config.devices):
            own = device.rules.get(name)
            if own is None:
                continue
            try:
                out[(name, device.name)] = adapter.validate_python({**site, **own})
            except ValidationError as exc:
                errors += [format_error(e, f"device[{i}].rules.{name}") for e in exc.errors()]
    for i, device in enumerate(config.devices):
        for name in device.rules:
            if name not in CATALOG:
                errors.append(f"device[{i}].rules.{name}: unknown rule "
                              f"(known: {', '.join(CATALOG)})")
    return out


def cross_check(config: Config, base_dir: Path) -> tuple[list[str], dict[str, Profile]]:
    errors: list[str] = []
    profiles: dict[str, Profile] = {}
    _unique_names(errors, "bus", [b.name for b in config.buses])
    _unique_names(errors, "device", [d.name for d in config.devices])
    _unique_names(errors, "fire_panel", [f.name for f in config.fire_panels])
    _unique_names(errors, "webhook", [w.name for w in config.webhooks])
    devices = {d.name for d in config.devices}
    for i, panel in enumerate(config.fire_panels):
        # Panel readings carry the panel's name as their device: it must not be a meter's too.
        if panel.name in devices:
            errors.append(f"fire_panel[{i}].name: {panel.name!r} is also a device name")
        seen: set[tuple[int | None, int]] = set()
        for j, zone in enumerate(panel.zones):
            if (zone.system, zone.zone) in seen:
                errors.append(f"fire_panel[{i}].zone[{j}].zone: {zone.zone} is mapped twice"
                              + (f" for system {zone.system}" if zone.system is not None else ""))
            seen.add((zone.system, zone.zone))
    errors += _listener_conflicts(config)
    errors += _state_dir_problems(config.daemon.state_dir)
    buses = {b.name: b for b in config.buses}
    units: dict[tuple[str, int], str] = {}
    # one validated copy per profile file, shared by every device that names it (profiles are
    # frozen): 1000 meters of one model are one profile in memory, not 1000 (~15 KB each)
    loaded: dict[str, Profile | ProfileError] = {}
    for i, device in enumerate(config.devices):
        where = f"device[{i}]"
        bus = buses.get(device.bus)
        if bus is None:
            known = ", ".join(buses) or "none defined"
            errors.append(f"{where}.bus: {device.bus!r} is not a defined bus (buses: {known})")
        else:
            lowest, highest = bus_type(bus).units
            if not lowest <= device.unit <= highest:
                errors.append(f"{where}.unit: {device.unit} is outside {lowest}-{highest} for "
                              f"a serial line bus ({bus.name})")
            owner = units.setdefault((bus.name, device.unit), device.name)
            if owner != device.name:
                errors.append(f"{where}.unit: {device.unit} already used by {owner} on bus "
                              f"{bus.name}")
        profile_or_error = loaded.get(device.profile)
        if profile_or_error is None:
            try:
                profile_or_error = load_profile(device.profile, base_dir)
            except ProfileError as exc:
                profile_or_error = exc
            loaded[device.profile] = profile_or_error
        if isinstance(profile_or_error, ProfileError):
            errors.append(f"{where}.profile: {profile_or_error}")
            continue
        profile = profile_or_error
        profiles[device.name] = _with_device_quirks(profile, device.workarounds)
        if device.kind == "incomer" and device.rated_current is None:
            errors.append(f"{where}.rated_current: an incomer needs its breaker rating (A)")
    return errors, profiles

# The shipped unit runs as a DynamicUser with no capabilities (systemd/firewarden.service), so
# it cannot bind below this; the check refuses such a port instead of the daemon failing later.
FIRST_UNPRIVILEGED_PORT = 1024

_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "*"})


def _listener_conflicts(config: Config) -> list[str]:
    """Fire-panel listeners that cannot all be opened: a TCP port below 1024, two listeners
    on one address and port (a wildcard address overlaps every address), two users of one
    serial port (fire panels and RTU buses)."""
    errors: list[str] = []
    tcp: list[tuple[str, str, int]] = []  # (path, host, port)
    ttys: dict[str, str] = {tty: f"bus[{i}] {b.name}" for i, b in enumerate(config.buses)
                            if (tty := bus_type(b).tty(b)) is not None}
    for i, panel in enumerate(config.fire_panels):
        where = f"fire_panel[{i}]"
        if not panel.enabled:
            continue
        if panel.transport == "serial":
            owner = ttys.setdefault(str(panel.port), f"{where} {panel.name}")
            if owner != f"{where} {panel.name}":
                errors.append(f"{where}.port: {panel.port!r} is already used by {owner}")
            continue
        if panel.transport != "tcp-server" or not isinstance(panel.port, int):
            continue
        host = (panel.host or "").strip()
        if panel.port < FIRST_UNPRIVILEGED_PORT:
            errors.append(
                f"{where}.port: {panel.port} is a privileged port (< "
                f"{FIRST_UNPRIVILEGED_PORT}); the firewarden service has no "
                f"CAP_NET_BIND_SERVICE and cannot listen on it: use a port >= "
                f"{FIRST_UNPRIVILEGED_PORT} (set the UITD's destination port to it, or "
                f"redirect, e.g. nft 'tcp dport {panel.port} redirect to :9000')")
        for other, other_host, port in tcp:
            if port == panel.port and (host == other_host or {host, other_host} & _ANY_ADDRESS):
                errors.append(f"{where}.port: {panel.port} on {host or '0.0.0.0'} collides "
                              f"with {other} (listening on {other_host or '0.0.0.0'}:{port})")
                break
        tcp.append((where, host, panel.port))
    return errors


def _state_dir_problems(path: Path) -> list[str]:
    """A state_dir (or a parent of it) that exists as something other than a directory."""
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                what = "it" if part == path else f"its parent {str(part)!r}"
                return [f"daemon.state_dir: {str(path)!r}: {what} exists and is not a "
                        f"directory"]
            return []
    return []


def line_budget(config: Config, profiles: Mapping[str, Profile]) -> list[str]:
    """Serial lines whose poll plan needs more wire time than a second has are refused."""
    errors: list[str] = []
    for i, bus in enumerate(config.buses):
        if not bus_type(bus).serial_line:
            continue
        ms_per_s = 0.0
        for device in config.devices:
            if device.bus == bus.name and device.enabled:
                polled = PolledDevice(config=device, profile=profiles[device.name])
                for interval, requests in device_plan(polled, bus_cost(bus, polled.profile)):
                    ms_per_s += wire_time_ms(requests, baudrate=bus.baudrate) / interval
        if ms_per_s > 1000:
            errors.append(f"bus[{i}]: its devices' polls need ~{ms_per_s:.0f} ms of line time "
                          f"per second at {bus.baudrate} baud ({ms_per_s / 10:.0f}% of the line); "
                          f"poll more slowly, split the line or raise the baud rate")
    return errors


def _with_device_quirks(profile: Profile, quirks: Workarounds | None) -> Profile:
    """The profile with the keys a device's own [device.workarounds] sets overriding it."""
    if quirks is None or not quirks.model_fields_set:
        return profile
    merged = profile.workarounds.model_copy(
        update={k: getattr(quirks, k) for k in quirks.model_fields_set})
    return profile.model_copy(update={"workarounds": merged})


def _unique_names(errors: list[str], table: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            errors.append(f"{table}[{i}].name: {name!r} already used by {table}[{seen[name]}]")
        seen.setdefault(name, i)


def format_error(err: Mapping[str, Any], prefix: str = "") -> str:
    path = prefix
    for part in err["loc"]:
        if isinstance(part, str) and re.search(r"[\[(]", part):
            continue  # pydantic's name for a union member (``tuple[int, ...]``): not a path
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{path}: required field is missing"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{path}: unknown key (got {err.get('input')!r})"
    value = err.get("input")
    if isinstance(value, dict | list):  # a whole table: the message already names the values
        return f"{path}: {msg}"
    return f"{path}: {msg} (got {value!r})"
