"""Home Assistant MQTT discovery: firewarden's devices and alarms as HA entities.

Per device (meter, detector, lighting controller, fire panel) a binary sensor "Alarm"
(device_class ``problem``: on while any of its alarms is active) and, for devices that can
report fire, a binary sensor "Fire" (device_class ``smoke``); per site a sensor "Active
alarms". States are retained JSON on ``{prefix}/{site}/devices/{device}/state`` and
``{prefix}/{site}/summary``; availability follows ``{prefix}/{site}/status``. Discovery
configs are retained under ``{discovery_prefix}/<component>/<object_id>/config`` (HA's
documented layout), so HA picks them up whenever it (re)starts.

Pure functions build the messages; ``HomeAssistant`` hands them to the MQTT notifier as
retained state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rules.model import Alarm, Severity


@dataclass(frozen=True, slots=True)
class HaDevice:
    name: str
    model: str  # profile name, or "GB/T 26875.3 fire panel"
    area: str  # HA suggested_area: the building
    can_burn: bool  # reports fire (smoke detectors, fire panels)


def _payload(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _object_id(site: str, device: str, what: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in f"firewarden_{site}_{device}_{what}")


def discovery(devices: Sequence[HaDevice], *, site: str, prefix: str,
              discovery_prefix: str) -> list[tuple[str, bytes]]:
    """Retained (topic, payload) discovery configs for every entity."""
    base = f"{prefix}/{site}"
    availability = {"availability_topic": f"{base}/status", "payload_available": "online",
                    "payload_not_available": "offline"}
    out: list[tuple[str, bytes]] = []
    for device in devices:
        ha_device = {"identifiers": [_object_id(site, device.name, "device")],
                     "name": device.name, "manufacturer": "firewarden", "model": device.model,
                     "suggested_area": device.area or site}
        state = f"{base}/devices/{device.name}/state"
        entities = [("alarm", "Alarm", "problem", "{{ value_json.alarm }}")]
        if device.can_burn:
            entities.append(("fire", "Fire", "smoke", "{{ value_json.fire }}"))
        for what, label, device_class, template in entities:
            object_id = _object_id(site, device.name, what)
            config = {"name": label, "unique_id": object_id, "object_id": object_id,
                      "state_topic": state, "value_template": template, "payload_on": "ON",
                      "payload_off": "OFF", "device_class": device_class,
                      "json_attributes_topic": state, "device": ha_device, **availability}
            out.append((f"{discovery_prefix}/binary_sensor/{object_id}/config",
                        _payload(config)))
    summary_id = _object_id(site, "site", "active_alarms")
    out.append((f"{discovery_prefix}/sensor/{summary_id}/config", _payload({
        "name": "Active alarms", "unique_id": summary_id, "object_id": summary_id,
        "state_topic": f"{base}/summary", "value_template": "{{ value_json.active }}",
        "json_attributes_topic": f"{base}/summary", "state_class": "measurement",
        "icon": "mdi:alarm-light", **availability,
        "device": {"identifiers": [_object_id(site, "site", "device")],
                   "name": f"firewarden {site}", "manufacturer": "firewarden"}})))
    return out


def states(devices: Sequence[HaDevice], alarms: Iterable[Alarm], *,
           site: str, prefix: str) -> list[tuple[str, bytes]]:
    """Retained (topic, payload) states: each device's alarm/fire flags and the site summary."""
    active: dict[str, list[Alarm]] = {}
    for alarm in alarms:
        if alarm.state.active:
            active.setdefault(alarm.device, []).append(alarm)
    base = f"{prefix}/{site}"
    out: list[tuple[str, bytes]] = []
    for device in devices:
        mine = active.get(device.name, [])
        fire = any(a.severity is Severity.FIRE for a in mine)
        out.append((f"{base}/devices/{device.name}/state", _payload({
            "alarm": "ON" if mine else "OFF", "fire": "ON" if fire else "OFF",
            "active": len(mine), "alarms": sorted(a.alarm_id for a in mine)})))
    total = sum(len(v) for v in active.values())
    fires = sum(1 for v in active.values() for a in v if a.severity is Severity.FIRE)
    out.append((f"{base}/summary", _payload({"active": total, "fire": fires})))
    return out
