"""The config file: TOML validated once into frozen pydantic models, then cross-checked.

Every error names its path and the offending value (``device[3].unit: 7 already used by
b12-box2 on bus b12-rs485``), one line each, so ``firewarden check`` can print them all at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from core.durations import Duration, parse_duration
from daemon.config_notify import EscalationConfig, ReportConfig, notify_errors
from daemon.crosscheck import cross_check, format_error, line_budget, rule_params
from drivers.modbus.registry import bus_type, known_bus_type
from drivers.profile import Profile, Workarounds

__all__ = ["Duration", "parse_duration"]  # re-exported for callers of the config

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=64)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SiteConfig(_Frozen):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", max_length=64)]
    name: str = ""
    latitude: Annotated[float, Field(ge=-90, le=90)] = 0.0
    longitude: Annotated[float, Field(ge=-180, le=180)] = 0.0
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class InfluxConfig(_Frozen):
    url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "firewarden"  # v1
    retention_policy: str | None = None  # v1
    username: str | None = None  # v1
    password_file: Path | None = None  # v1
    org: str | None = None  # v2
    bucket: str | None = None  # v2
    token_file: Path | None = None  # v2
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_interval: Annotated[Duration, Field(gt=0, le=3600)] = 1.0
    timeout: Annotated[Duration, Field(gt=0, le=600)] = 10.0
    spool_max_mb: Annotated[int, Field(ge=1, le=100_000)] = 512
    gzip: Literal["auto", "always", "never"] = "auto"  # auto: unless the server is loopback

    @model_validator(mode="after")
    def _v2_needs_bucket(self) -> InfluxConfig:
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("api 'v2' needs org and bucket")
        return self


class MqttConfig(_Frozen):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    client_id: str | None = None
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]+$")] = "firewarden"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    # Home Assistant MQTT discovery: one device per meter, detector and panel with a
    # "problem" (and, where it can report fire, a "smoke") binary sensor, plus a site sensor.
    homeassistant: bool = False
    discovery_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]+$")] = "homeassistant"
    # cmd/<verb> bodies carry "ts" (unix s, when sent): older or newer than this is refused, so
    # a command captured or left retained cannot be replayed later (daemon/commands.py)
    command_max_age: Annotated[Duration, Field(ge=10, le=3600)] = 300.0

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        # an empty host makes the MQTT client fail at every connect: no alarm leaves the box
        if not value.strip():
            raise ValueError("needs a broker host name or address, e.g. '127.0.0.1'")
        return value


class BusConfig(_Frozen):
    # the keys of every bus type; its class (drivers.modbus.transports) checks what it needs
    name: Name
    type: Annotated[str, PlainValidator(known_bus_type)]  # a name in drivers.modbus.registry
    port: str | int | None = None  # rtu: device path; tcp, rtu-over-tcp: TCP port
    host: str | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout: Annotated[Duration, Field(gt=0, le=60)] = 1.0
    pause: Annotated[Duration, Field(ge=0, le=10)] = 0.0  # extra silence between frames
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    # devices polled at once: a serial line carries one frame at a time (1); a Modbus TCP
    # device or a gateway that answers its units in parallel can take more, so that a dead
    # unit's timeouts do not hold up its neighbours (see README "Dead units on a gateway")
    concurrency: Annotated[int, Field(ge=1, le=64)] = 1

    @model_validator(mode="after")
    def _endpoint(self) -> BusConfig:
        kind = bus_type(self)
        kind.check(self)
        if kind.serial_line and self.concurrency != 1:
            raise ValueError(f"concurrency = {self.concurrency}: a {self.type} bus carries one "
                             f"frame at a time, so it must be 1")
        return self

    @property
    def endpoint(self) -> str:
        return bus_type(self).endpoint(self)


class DeviceConfig(_Frozen):
    name: Name
    bus: str
    unit: Annotated[int, Field(ge=0, le=255)]
    profile: str
    poll: Annotated[Duration, Field(ge=0.1, le=86_400)] = 2.0
    building: str = ""
    box: str = ""
    circuit: str = ""
    floor: str = ""
    zone: str = ""
    area: str = ""
    kind: Literal["incomer", "lighting", "sockets", "public", "ebike-charging", "detector",
                  "smoke", "other"] = "other"
    rated_current: Annotated[float, Field(gt=0, le=6300)] | None = None  # A, breaker In
    breaker_curve: Literal["B", "C", "D"] = "C"
    enabled: bool = True
    # where this device comes on the morning report's lamp patrol (lower first; unset: after
    # the numbered ones, by building then area)
    patrol_order: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    # This unit's quirks, on top of its profile's (e.g. one meter with old firmware).
    workarounds: Workarounds | None = None
    # [device.rules.<name>]: this device's rule parameters on top of [rules.<name>]
    rules: dict[str, dict[str, Any]] = {}

    def tags(self) -> dict[str, str]:
        """Location tags for InfluxDB and alarm context (empty ones left out)."""
        return {k: v for k, v in (("building", self.building), ("box", self.box),
                                  ("circuit", self.circuit), ("floor", self.floor),
                                  ("zone", self.zone), ("area", self.area)) if v}


class FirePanelZone(_Frozen):
    """Where a panel zone (区号) is, so a fire alarm says "12栋 3F east stairwell", not "2-3-25"."""

    zone: Annotated[int, Field(ge=0, le=0xFFFF)]
    system: Annotated[int, Field(ge=0, le=255)] | None = None  # None: any system address
    building: str = ""  # default: the panel's building
    floor: str = ""
    area: str = ""


class FirePanelConfig(_Frozen):
    """A GB/T 26875.3 feed from a fire panel's user information transmission device (UITD).

    ``port`` is the tty path for ``serial`` and the TCP port otherwise; ``host`` is the address
    to listen on (``tcp-server``, default all) or to connect to (``tcp-client``).
    """

    name: Name
    transport: Literal["serial", "tcp-server", "tcp-client"]
    port: str | int
    host: str | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    building: str = ""
    # Our 6-byte address for ACK/NAK replies; 0 answers as whatever address the UITD sent to.
    address: Annotated[int, Field(ge=0, lt=1 << 48)] = 0
    # No frame (heartbeats included) for this long: the link is a communication fault.
    heartbeat_timeout: Annotated[Duration, Field(ge=5, le=3600)] = 90.0
    # tcp-server: idle connections must not eat the descriptors or lock a real UITD out; the
    # one idle longest (never sent a valid frame first) makes room for a new one
    max_connections: Annotated[int, Field(ge=1, le=256)] = 16
    max_per_source: Annotated[int, Field(ge=1, le=256)] = 4
    # tcp-server: a connection without a valid frame for this long is closed
    idle_timeout: Annotated[Duration, Field(ge=1, le=3600)] = 30.0
    enabled: bool = True
    zones: tuple[FirePanelZone, ...] = Field(default=(), alias="zone")

    @model_validator(mode="after")
    def _endpoint(self) -> FirePanelConfig:
        if self.transport == "serial":
            if not isinstance(self.port, str) or not self.port:
                raise ValueError(f"serial fire panel needs port = a serial device path, "
                                 f"got {self.port!r}")
        else:
            if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
                raise ValueError(f"{self.transport} fire panel needs port = a TCP port "
                                 f"1-65535, got {self.port!r}")
            if self.transport == "tcp-client" and not self.host:
                raise ValueError("tcp-client fire panel needs host = the UITD's address")
        if self.max_per_source > self.max_connections:
            raise ValueError(f"max_per_source = {self.max_per_source} is more than "
                             f"max_connections = {self.max_connections}")
        return self

    @property
    def endpoint(self) -> str:
        if self.transport == "serial":
            return f"{self.port} {self.baudrate} 8N1"
        return f"{self.host or '0.0.0.0'}:{self.port}"


class WebhookConfig(_Frozen):
    """``[[webhook]]``: alarm pages to an HTTP endpoint (generic JSON, a WeCom group robot or a
    DingTalk robot). Robot URLs carry their key: put them in ``url_file`` (mode 0600), not in
    the config."""

    name: Name
    format: Literal["json", "wecom", "dingtalk"] = "json"
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    url_file: Path | None = None
    secret_file: Path | None = None  # DingTalk "加签" secret (SEC...), signs every request
    min_severity: Literal["fire", "critical", "warning", "info"] = "warning"
    # which alarm events page (defaults: new alarms, re-alarms, chattering, floods)
    events: tuple[Literal["raised", "realarm", "chattering", "cleared", "acknowledged",
                          "removed", "latched", "reset", "shelved", "unshelved",
                          "out_of_service", "in_service", "chatter_ended"], ...] = (
        "raised", "realarm", "chattering")
    mention: tuple[str, ...] = ()  # mobile numbers (robots) to @ on fire and critical alarms
    timeout: Annotated[Duration, Field(gt=0, le=120)] = 10.0
    retry_max: Annotated[Duration, Field(ge=1, le=3600)] = 300.0  # cap of the retry backoff

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("set exactly one of url and url_file")
        if self.secret_file is not None and self.format != "dingtalk":
            raise ValueError("secret_file signs DingTalk robot requests; "
                             f"format is {self.format!r}")
        return self

    @property
    def sink(self) -> str:
        """The alarm store's outbox name for this webhook."""
        return f"webhook:{self.name}"


class AlarmRuleConfig(_Frozen):
    """``[alarms.rule.<name>]``: how one alarm rule's alarms behave (unset: its severity's
    default, see rules/policy.py)."""

    on_delay: Annotated[Duration, Field(ge=0, le=86_400)] | None = None
    off_delay: Annotated[Duration, Field(ge=0, le=86_400)] | None = None
    latching: bool | None = None
    realarm_after: Annotated[Duration, Field(gt=0, le=7 * 86_400)] | None = None
    shelvable: bool | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set}


class AlarmsConfig(_Frozen):
    """``[alarms]``: chattering and flood limits (ISA-18.2 defaults) and per-rule behaviour."""

    chatter_count: Annotated[int, Field(ge=2, le=100)] = 3
    chatter_window: Annotated[Duration, Field(gt=0, le=86_400)] = 60.0
    flood_count: Annotated[int, Field(ge=1, le=10_000)] = 10
    flood_window: Annotated[Duration, Field(gt=0, le=86_400)] = 600.0
    rule: dict[str, AlarmRuleConfig] = {}


class DaemonConfig(_Frozen):
    state_dir: Path = Path("/var/lib/firewarden")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    queue_size: Annotated[int, Field(ge=100, le=1_000_000)] = 10_000


class Config(_Frozen):
    site: SiteConfig
    influxdb: InfluxConfig = InfluxConfig()
    mqtt: MqttConfig = MqttConfig()
    daemon: DaemonConfig = DaemonConfig()
    buses: tuple[BusConfig, ...] = Field(default=(), alias="bus")
    devices: tuple[DeviceConfig, ...] = Field(default=(), alias="device")
    fire_panels: tuple[FirePanelConfig, ...] = Field(default=(), alias="fire_panel")
    # [rules.<name>]: site-wide rule parameters, validated against the rule catalog
    rules: dict[str, dict[str, Any]] = {}
    alarms: AlarmsConfig = AlarmsConfig()
    webhooks: tuple[WebhookConfig, ...] = Field(default=(), alias="webhook")
    # [[escalation]] chains and the [report] (daemon/config_notify.py)
    escalations: tuple[EscalationConfig, ...] = Field(default=(), alias="escalation")
    report: ReportConfig | None = None

    def bus(self, name: str) -> BusConfig:
        return next(b for b in self.buses if b.name == name)

    def device(self, name: str) -> DeviceConfig:
        return next(d for d in self.devices if d.name == name)


class ConfigError(Exception):
    """The config is invalid; ``errors`` holds one ``path: problem`` line per fault."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with its device profiles and rule parameters resolved."""

    config: Config
    profiles: Mapping[str, Profile]  # device name -> profile
    path: Path
    rule_params: Mapping[tuple[str, str], Any] = field(default_factory=dict)  # (rule, device)

    def params(self, rule: str, device: str) -> Any:
        """A rule's parameters for a device (defaults and [rules.<name>] if not configured)."""
        found = self.rule_params.get((rule, device))
        return found if found is not None else self.rule_params[(rule, "")]


def load_config(path: Path) -> LoadedConfig:
    """Read, validate and cross-check a config file, or raise ConfigError listing every fault."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        # universal newlines, as text mode reads it
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at "
                           f"offset {exc.start}); save the file as UTF-8"]) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}:{_toml_line(exc, text)}: TOML syntax error: {exc}"]) from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ConfigError([f"{path}: arrays or tables nested too deeply (a config needs a "
                           f"few levels)"]) from exc
    return validate_config(raw, path)


def validate_config(raw: dict[str, Any], path: Path) -> LoadedConfig:
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([format_error(err) for err in exc.errors()]) from exc
    errors, profiles = cross_check(config, path.parent)
    errors += notify_errors([w.name for w in config.webhooks], config.escalations,
                            config.report)
    params = rule_params(config, errors)
    if not errors:
        errors = line_budget(config, profiles)
    if errors:
        raise ConfigError(errors)
    return LoadedConfig(config=config, profiles=profiles, path=path, rule_params=params)


def _toml_line(exc: tomllib.TOMLDecodeError, text: str) -> str:
    lineno = getattr(exc, "lineno", None)  # Python 3.14+
    if lineno is None:
        match = re.search(r"line (\d+)", str(exc))
        # "at end of document": the last line
        lineno = match.group(1) if match else text.count("\n") + (not text.endswith("\n"))
    return str(lineno)
