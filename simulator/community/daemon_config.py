"""The firewarden config for a running community: point a daemon at the simulator.

``daemon_config(community, endpoints)`` returns plain data shaped like the config file
(``[site]``, one ``[[bus]]`` of type tcp per building gateway, every ``[[device]]`` with its
location tags and kind - lighting controllers with their lamps in ``[device.rules.lighting]``
- one ``[[fire_panel]]`` per building); add ``[influxdb]``/``[mqtt]``
and write it with ``simulator.toml_writer.dump_toml``. It validates with
``daemon.config.validate_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from simulator.community.topology import Community, Lighting


@dataclass(frozen=True, slots=True)
class FirePanelEndpoint:
    """How a daemon receives one building's panel: listening as a TCP server (the UITD
    connects to it) or reading a tty (the other end of the UITD's pty pair)."""

    transport: Literal["tcp-server", "serial"]
    port: int | str
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running community can be reached, per building id."""

    modbus: Mapping[str, tuple[str, int]]  # the building's Modbus TCP gateway
    fire_panels: Mapping[str, FirePanelEndpoint]  # empty when no UITD is emulated


def daemon_config(community: Community, endpoints: Endpoints, *, poll: str = "2s",
                  timeout: str = "1s") -> dict[str, Any]:
    """The config tables for a daemon watching ``community`` at ``endpoints``."""
    buses = []
    for b in community.buildings:
        host, port = endpoints.modbus[b.id]
        buses.append({"name": b.bus, "type": "tcp", "host": host, "port": port,
                      "timeout": timeout})
    devices = []
    lights = {b.lighting.name: b.lighting for b in community.buildings}
    own = {box.incomer: 3 * box.base_w for box in community.boxes()}
    for d in community.devices():
        entry: dict[str, Any] = {"name": d.name, "bus": d.bus, "unit": d.unit,
                                 "profile": d.profile, "poll": poll, "building": d.building}
        for key in ("box", "circuit", "floor", "area"):
            if getattr(d, key):
                entry[key] = getattr(d, key)
        entry["kind"] = d.kind
        if d.rated_current is not None:
            entry["rated_current"] = d.rated_current
        if d.name in lights:
            entry["rules"] = {"lighting": lighting_rules(lights[d.name])}
        if d.name in own:  # the box's own unmetered draw: the tap balance allows for it
            entry["rules"] = {"wiring": {"box_own_w": own[d.name]}}
        devices.append(entry)
    panels = []
    for b in community.buildings:
        ep = endpoints.fire_panels.get(b.id)
        if ep is None:
            continue
        panel: dict[str, Any] = {"name": b.panel.name, "transport": ep.transport,
                                 "port": ep.port, "building": b.id}
        if ep.host:
            panel["host"] = ep.host
        panels.append(panel)
    out: dict[str, Any] = {
        "site": {"id": community.site, "name": community.name,
                 "latitude": community.latitude, "longitude": community.longitude,
                 "timezone": community.timezone},
        "bus": buses,
        "device": devices,
    }
    if panels:
        out["fire_panel"] = panels
    return out


def lighting_rules(lighting: Lighting) -> dict[str, Any]:
    """``[device.rules.lighting]`` for a simulated controller: its lamps on each channel in
    use (the list's length: the rule leaves the other channels alone) and one lamp's current,
    so the lighting rule knows what each channel should draw."""
    return {"lamps": list(lighting.lamps), "lamp_current": lighting.lamp_current}
