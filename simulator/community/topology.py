"""The community's installed equipment as frozen data, built from a scenario's ``[community]``.

Naming is fixed so scenarios, truth files and daemon configs agree without lookups: building
``12`` is ``b12``; its box 1 has the incomer meter ``b12-box1-main`` and the sub-circuit meters
``b12-box1-sockets``, ``b12-box1-stair``, ``b12-box1-public`` (one per role); its
residual-current/temperature detector is ``b12-box1-rc``; the building has Modbus smoke
detectors ``b12-smoke1``..., one lighting controller ``b12-lights`` and a fire panel
``b12-fire-panel`` (a UITD); optionally (``firewater = true``) a fire-water converter
``b12-firewater`` with a pressure transmitter on the main (channel 1) and a level transmitter in
the roof tank (channel 2), and (``chint_meter = true``) a CHINT DDSU666 ``b12-pump-meter``
metering the fire-pump room. Every Modbus device of a building sits behind one TCP gateway
(bus ``b12-gw``), unit ids 1..N in the order boxes (incomer, sub-circuits, detector), smoke
detectors, lighting controller, fire-water converter, pump-room meter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.profile import load_profile
from simulator.community.plant import FireWater, PumpMeter

Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, ...] = ("L1", "L2", "L3")

SMOKE_COMPONENT = 42  # photoelectric smoke detector (GB/T 26875.3 component type)
PANEL_SYSTEM_TYPE = 1  # fire alarm system
PANEL_SYSTEM_ADDRESS = 1


@dataclass(frozen=True, slots=True)
class Role:
    """What a sub-circuit feeds: its daemon ``kind``, breaker, load curve and nominal size."""

    kind: str
    rated_current: float
    curve: Literal["household", "stair", "public"]
    peak_w: float  # W at the curve's 1.0 (stair: W while lit)
    pf: float


ROLES: dict[str, Role] = {
    # corridor and flats' shared sockets: the household curve
    "sockets": Role("sockets", 16.0, "household", 1400.0, 0.93),
    # stairwell lighting (motion-sensor LED): lit from civil dusk to dawn
    "stair": Role("lighting", 10.0, "stair", 90.0, 0.9),
    # public sockets (cleaning, lift machine room aux, door entry): flatter daytime curve
    "public": Role("public", 16.0, "public", 600.0, 0.9),
}


@dataclass(frozen=True, slots=True)
class Circuit:
    """One metered sub-circuit (an SDM120 on one phase)."""

    name: str  # the meter's device name, also the circuit's name in events and truth
    building: str
    box: str
    role: str
    phase: Phase
    unit: int
    rated_current: float

    @property
    def spec(self) -> Role:
        return ROLES[self.role]


@dataclass(frozen=True, slots=True)
class Box:
    """A distribution box: incomer (SDM630), sub-circuits, a residual-current detector."""

    name: str  # "b12-box1"
    building: str
    box: str
    incomer: str
    incomer_unit: int
    rated_current: float
    base_w: float  # the box's own unmetered draw (controls, meters) per phase
    circuits: tuple[Circuit, ...]
    detector: str
    detector_unit: int


@dataclass(frozen=True, slots=True)
class SmokeDetector:
    """A Modbus smoke detector, also known to the building's fire panel as a component."""

    name: str
    building: str
    unit: int
    floor: str
    zone: int
    position: int


@dataclass(frozen=True, slots=True)
class Lighting:
    """The building's dark-area safety lamp controller: lamps per relay channel."""

    name: str
    building: str
    unit: int
    lamps: tuple[int, ...]  # per channel 1..len
    lamp_current: float  # A per lamp
    lux_sensor: bool


@dataclass(frozen=True, slots=True)
class Panel:
    """The building's fire alarm panel with its UITD (GB/T 26875.3 source address)."""

    name: str
    building: str
    address: int
    system_type: int = PANEL_SYSTEM_TYPE
    system_address: int = PANEL_SYSTEM_ADDRESS


@dataclass(frozen=True, slots=True)
class Building:
    id: str
    name: str  # "b12": the prefix of every device name
    boxes: tuple[Box, ...]
    smoke: tuple[SmokeDetector, ...]
    lighting: Lighting
    panel: Panel
    firewater: FireWater | None = None
    pump_meter: PumpMeter | None = None

    @property
    def bus(self) -> str:
        return f"{self.name}-gw"


@dataclass(frozen=True, slots=True)
class Device:
    """One Modbus device as the daemon config describes it."""

    name: str
    building: str
    bus: str
    unit: int
    profile: str
    kind: str
    box: str = ""
    circuit: str = ""
    floor: str = ""
    area: str = ""
    rated_current: float | None = None


@dataclass(frozen=True, slots=True)
class Community:
    """The site: coordinates (for dusk and dawn), zone, buildings, alarm settings."""

    site: str
    name: str
    latitude: float
    longitude: float
    timezone: str
    buildings: tuple[Building, ...]
    residual_alarm_ma: float = 300.0
    temperature_alarm_c: float = 80.0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def boxes(self) -> list[Box]:
        return [box for b in self.buildings for box in b.boxes]

    def circuits(self) -> list[Circuit]:
        return [c for box in self.boxes() for c in box.circuits]

    def devices(self) -> list[Device]:
        """Every Modbus device, building by building, in unit order."""
        out: list[Device] = []
        for b in self.buildings:
            for box in b.boxes:
                out.append(Device(box.incomer, b.id, b.bus, box.incomer_unit, "eastron-sdm630",
                                  "incomer", box=box.box, circuit="main",
                                  rated_current=box.rated_current))
                out.extend(Device(c.name, b.id, b.bus, c.unit, "eastron-sdm120", c.spec.kind,
                                  box=box.box, circuit=c.role, rated_current=c.rated_current)
                           for c in box.circuits)
                out.append(Device(box.detector, b.id, b.bus, box.detector_unit,
                                  "residual-current-temperature", "detector", box=box.box))
            out.extend(Device(s.name, b.id, b.bus, s.unit, "modbus-smoke-detector", "smoke",
                              floor=s.floor) for s in b.smoke)
            out.append(Device(b.lighting.name, b.id, b.bus, b.lighting.unit,
                              "lighting-controller", "lighting", area="dark-areas"))
            if b.firewater is not None:
                out.append(Device(b.firewater.name, b.id, b.bus, b.firewater.unit,
                                  "firewater-transmitter", "other", area="pump-room"))
            if b.pump_meter is not None:
                out.append(Device(b.pump_meter.name, b.id, b.bus, b.pump_meter.unit,
                                  "chint-ddsu666", "other", circuit="fire-pump-room",
                                  area="pump-room"))
        return out

    def building(self, building_id: str) -> Building:
        return next(b for b in self.buildings if b.id == building_id)


DEFAULTS: dict[str, Any] = {
    "boxes": 1,
    "circuits": ["sockets", "stair", "public"],
    "incomer_rated": 63.0,
    "base_w": 40.0,
    "smoke_detectors": 2,
    "lamp_channels": 4,
    "lamps_per_channel": 2,
    "lamp_current": 0.18,
    "lux_sensor": True,
    "firewater": False,  # a fire-water pressure + tank level converter (firewater-transmitter)
    "chint_meter": False,  # a CHINT DDSU666 on the fire-pump room (chint-ddsu666)
}
_SITE_KEYS = {"site", "name", "latitude", "longitude", "timezone", "buildings",
              "boxes_per_building", "residual_alarm_ma", "temperature_alarm_c"}
_BUILDING_KEYS = {"id", *DEFAULTS}
_ID = re.compile(r"^[A-Za-z0-9_]{1,16}$")
_SITE = re.compile(r"^[a-z0-9_-]{1,64}$")


def build_community(table: Mapping[str, Any], errors: list[str],
                    where: str = "community") -> Community | None:
    """The community described by ``table``; problems are appended to ``errors`` (one line
    each, naming the field and value) and None returned if any."""
    start = len(errors)

    def err(field: str, message: str) -> None:
        errors.append(f"{where}.{field}: {message}")

    for key in table:
        if key not in _SITE_KEYS | set(DEFAULTS) - {"boxes"}:
            err(key, f"unknown key (known: {', '.join(sorted(_SITE_KEYS | set(DEFAULTS)))})")
    site = table.get("site", "sim")
    if not isinstance(site, str) or not _SITE.match(site):
        err("site", f"must match [a-z0-9_-]+ (got {site!r})")
    lat = _number(table.get("latitude", 31.23), -90, 90, "latitude", err)
    lon = _number(table.get("longitude", 121.47), -180, 180, "longitude", err)
    tz = table.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        err("timezone", f"unknown time zone (got {tz!r})")
    defaults = dict(DEFAULTS)
    for key in DEFAULTS:
        if key in table:
            defaults[key] = table[key]
    if "boxes_per_building" in table:
        defaults["boxes"] = table["boxes_per_building"]
    raw = table.get("buildings", 1)
    specs: list[dict[str, Any]]
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= 200:
            err("buildings", f"must be 1-200 or a list of building tables (got {raw!r})")
            raw = 1
        specs = [{"id": str(i + 1)} for i in range(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(b, dict) for b in raw):
        specs = [dict(b) for b in raw]
    else:
        err("buildings", f"must be a count or a list of tables (got {raw!r})")
        specs = []
    buildings: list[Building] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        building = _building(i, spec, defaults, seen, f"{where}.buildings[{i}]", errors)
        if building is not None:
            buildings.append(building)
    ra = _number(table.get("residual_alarm_ma", 300.0), 20, 1000, "residual_alarm_ma", err)
    ta = _number(table.get("temperature_alarm_c", 80.0), 40, 140, "temperature_alarm_c", err)
    if len(errors) > start:
        return None
    return Community(site=str(site), name=str(table.get("name", site)), latitude=lat,
                     longitude=lon, timezone=str(tz), buildings=tuple(buildings),
                     residual_alarm_ma=ra, temperature_alarm_c=ta)


def _number(value: object, lo: float, hi: float, field: str,
            err: Callable[[str, str], None]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        err(field, f"must be a number {lo:g}-{hi:g} (got {value!r})")
        return float(lo)
    return float(value)


def _building(index: int, spec: Mapping[str, Any], defaults: Mapping[str, Any],
              seen: set[str], where: str, errors: list[str]) -> Building | None:
    start = len(errors)

    def err(field: str, message: str) -> None:
        errors.append(f"{where}.{field}: {message}")

    for key in spec:
        if key not in _BUILDING_KEYS:
            err(key, f"unknown key (known: {', '.join(sorted(_BUILDING_KEYS))})")
    bid = str(spec.get("id", index + 1))
    if not _ID.match(bid):
        err("id", f"must be 1-16 letters, digits or _ (got {bid!r})")
    elif bid in seen:
        err("id", f"{bid!r} is used by another building")
    seen.add(bid)
    opt = {**defaults, **{k: v for k, v in spec.items() if k != "id"}}
    boxes = _int(opt["boxes"], 1, 8, "boxes", err)
    roles = opt["circuits"]
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles) \
            or len(set(roles)) != len(roles):
        err("circuits", f"must be distinct roles from {', '.join(ROLES)} (got {roles!r})")
        roles = ["sockets"]
    smokes = _int(opt["smoke_detectors"], 0, 32, "smoke_detectors", err)
    channels = _int(opt["lamp_channels"], 1, 8, "lamp_channels", err)
    per = opt["lamps_per_channel"]
    lamps: tuple[int, ...]
    if isinstance(per, list):
        if len(per) != channels or not all(isinstance(n, int) and 1 <= n <= 50 for n in per):
            err("lamps_per_channel", f"must be {channels} counts 1-50 (got {per!r})")
            per = [1] * channels
        lamps = tuple(int(n) for n in per)
    else:
        lamps = (_int(per, 1, 50, "lamps_per_channel", err),) * channels
    lamp_current = _number(opt["lamp_current"], 0.01, 5.0, "lamp_current", err)
    incomer_rated = _number(opt["incomer_rated"], 6, 630, "incomer_rated", err)
    base_w = _number(opt["base_w"], 0, 2000, "base_w", err)
    lux = opt["lux_sensor"]
    if not isinstance(lux, bool):
        err("lux_sensor", f"must be true or false (got {lux!r})")
    for flag in ("firewater", "chint_meter"):
        if not isinstance(opt[flag], bool):
            err(flag, f"must be true or false (got {opt[flag]!r})")
    if boxes * (len(roles) + 2) + smokes + 3 > 247:
        err("boxes", "too many devices for one gateway (247 unit ids)")
    if len(errors) > start:
        return None
    name = f"b{bid}"
    unit = 1
    box_list: list[Box] = []
    for k in range(1, boxes + 1):
        box_name = f"{name}-box{k}"
        incomer_unit = unit
        unit += 1
        circuits = []
        for j, role in enumerate(roles):
            circuits.append(Circuit(name=f"{box_name}-{role}", building=bid, box=str(k),
                                    role=role, phase=PHASES[j % 3], unit=unit,
                                    rated_current=ROLES[role].rated_current))
            unit += 1
        box_list.append(Box(name=box_name, building=bid, box=str(k), incomer=f"{box_name}-main",
                            incomer_unit=incomer_unit, rated_current=incomer_rated,
                            base_w=base_w, circuits=tuple(circuits),
                            detector=f"{box_name}-rc", detector_unit=unit))
        unit += 1
    smoke = []
    for k in range(1, smokes + 1):
        smoke.append(SmokeDetector(name=f"{name}-smoke{k}", building=bid, unit=unit,
                                   floor=str(k), zone=1, position=k))
        unit += 1
    lighting = Lighting(name=f"{name}-lights", building=bid, unit=unit, lamps=lamps,
                        lamp_current=lamp_current, lux_sensor=bool(lux))
    panel = Panel(name=f"{name}-fire-panel", building=bid, address=0x100000 + index + 1)
    firewater = pump_meter = None
    if opt["firewater"] is True:
        unit += 1
        firewater = FireWater(name=f"{name}-firewater", building=bid, unit=unit)
    if opt["chint_meter"] is True:
        unit += 1
        pump_meter = PumpMeter(name=f"{name}-pump-meter", building=bid, unit=unit)
    return Building(id=bid, name=name, boxes=tuple(box_list), smoke=tuple(smoke),
                    lighting=lighting, panel=panel, firewater=firewater, pump_meter=pump_meter)


def _int(value: object, lo: int, hi: int, field: str,
         err: Callable[[str, str], None]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        err(field, f"must be a whole number {lo}-{hi} (got {value!r})")
        return lo
    return value


@functools.cache
def profile_keys(profile: str) -> tuple[tuple[str, str | None], ...]:
    """The (quantity, channel) keys of a shipped profile's points, in profile order."""
    return tuple((p.quantity.value, p.channel) for p in load_profile(profile).points)


class _ProfileKeys(Mapping[str, tuple[tuple[str, str | None], ...]]):
    """``NAMES_BY_PROFILE[profile]``: the keys of a profile, loaded on first use."""

    _NAMES = ("eastron-sdm630", "eastron-sdm120", "residual-current-temperature",
              "modbus-smoke-detector", "lighting-controller", "firewater-transmitter",
              "chint-ddsu666")

    def __getitem__(self, key: str) -> tuple[tuple[str, str | None], ...]:
        if key not in self._NAMES:
            raise KeyError(key)
        return profile_keys(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


NAMES_BY_PROFILE: Mapping[str, tuple[tuple[str, str | None], ...]] = _ProfileKeys()


@dataclass(frozen=True, slots=True)
class PanelTarget:
    """A fire panel component an event reports on, and the Modbus detector behind it."""

    panel: str
    system_address: int
    component_type: int
    zone: int
    position: int
    device: str | None  # the Modbus smoke detector, if the component is one
    description: str

    @property
    def channel(self) -> str:
        """The daemon's channel for the component (drivers.gb26875.mapping)."""
        return f"{self.system_address}-{self.zone}-{self.position}"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a target name sits in the community (whatever kind of thing it names)."""

    name: str
    building: str
    box: str | None = None
    circuit: str | None = None
    profile: str | None = None
    box_obj: Box | None = None
    circuit_obj: Circuit | None = None
    detector_obj: Box | None = None
    smoke_obj: SmokeDetector | None = None
    lighting_obj: Lighting | None = None
    panel_obj: Panel | None = None
    firewater_obj: FireWater | None = None

    def panel_target(self, params: Mapping[str, object]) -> PanelTarget:
        """The panel component a fire/fault event on this target reports."""
        smoke = self.smoke_obj
        if smoke is not None:
            panel = f"b{smoke.building}-fire-panel"
            return PanelTarget(panel, PANEL_SYSTEM_ADDRESS, SMOKE_COMPONENT, smoke.zone,
                               smoke.position, smoke.name,
                               f"{smoke.name} F{smoke.floor}"[:31])
        if self.panel_obj is None:
            raise ValueError(f"{self.name} is neither a smoke detector nor a fire panel")
        zone, position = int(str(params["zone"])), int(str(params["position"]))
        return PanelTarget(self.panel_obj.name, self.panel_obj.system_address,
                           int(str(params["component_type"])), zone, position, None,
                           f"b{self.building} Z{zone} P{position}"[:31])


def locate(community: Community, name: str) -> Location:
    """Where ``name`` (a device, circuit, box or panel) is; KeyError if nowhere."""
    for b in community.buildings:
        if name == b.panel.name:
            return Location(name, b.id, panel_obj=b.panel)
        if name == b.lighting.name:
            return Location(name, b.id, profile="lighting-controller", lighting_obj=b.lighting)
        if b.firewater is not None and name == b.firewater.name:
            return Location(name, b.id, profile="firewater-transmitter",
                            firewater_obj=b.firewater)
        if b.pump_meter is not None and name == b.pump_meter.name:
            return Location(name, b.id, circuit="fire-pump-room", profile="chint-ddsu666")
        for s in b.smoke:
            if name == s.name:
                return Location(name, b.id, profile="modbus-smoke-detector", smoke_obj=s)
        for box in b.boxes:
            if name in (box.incomer, box.name):
                return Location(box.incomer, b.id, box.box, "main", "eastron-sdm630",
                                box_obj=box)
            if name == box.detector:
                return Location(name, b.id, box.box, None, "residual-current-temperature",
                                box_obj=box, detector_obj=box)
            for c in box.circuits:
                if name == c.name:
                    return Location(name, b.id, box.box, c.role, "eastron-sdm120",
                                    box_obj=box, circuit_obj=c)
    raise KeyError(name)
