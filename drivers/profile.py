"""Device models as data: a profile is a TOML file mapping quantities to Modbus registers.

The shipped profiles live in ``drivers/profiles/<name>.toml``; a user's own profile is used by
path. Adding a device model never needs code. See ``drivers/profiles/README.md`` for the format.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.durations import Duration
from core.measurements import Quantity

PROFILE_DIR = Path(__file__).parent / "profiles"


class RegisterType(StrEnum):
    """Modbus table a point is read from, with its read function code."""

    COIL = "coil"  # FC01
    DISCRETE = "discrete"  # FC02
    HOLDING = "holding"  # FC03
    INPUT = "input"  # FC04

    @property
    def function_code(self) -> int:
        return {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[self.value]

    @property
    def is_bit(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.DISCRETE)


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BITS = "bits"  # one bit of a 16-bit register, picked by ``bit``
    BOOL = "bool"  # a coil or discrete input

    @property
    def width(self) -> int:
        """Registers (or bits, for BOOL) one value occupies."""
        return {
            "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
            "float32": 2, "float64": 4, "bits": 1, "bool": 1,
        }[self.value]


class ByteOrder(StrEnum):
    """Order of the bytes of a value as they arrive, A being the most significant byte.

    ABCD is big-endian throughout; CDAB swaps words (common on meters); BADC swaps bytes within
    words; DCBA is fully little-endian. For 16-bit values only the byte order within the
    word (AB or BA) matters; for 64-bit values the pattern extends word-wise.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


_FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Point(BaseModel):
    """One quantity (optionally one channel/phase of it) at one address."""

    model_config = _FROZEN

    quantity: Quantity
    channel: str | None = None
    address: Annotated[int, Field(ge=0, le=65535)]
    table: RegisterType = Field(RegisterType.HOLDING, alias="register")
    type: DataType = DataType.UINT16
    order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    sentinels: tuple[float, ...] = ()  # raw values the device sends for "no value"
    # per-quantity interval override, e.g. "60s" for energy counters
    poll: Annotated[Duration, Field(gt=0, le=86_400)] | None = None
    # the plausible range of the engineering value, overriding the quantity's own
    # (core.measurements.PLAUSIBLE); a value outside it is a glitch: bad quality, counted
    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    max: Annotated[float, Field(allow_inf_nan=False)] | None = None

    @property
    def width(self) -> int:
        return self.type.width

    @property
    def key(self) -> str:
        return f"{self.quantity.value}/{self.channel}" if self.channel else self.quantity.value

    @model_validator(mode="after")
    def _type_fits_register(self) -> Point:
        if self.table.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"{self.table.value} points must have type 'bool', not "
                             f"{self.type.value!r}")
        if not self.table.is_bit and self.type is DataType.BOOL:
            raise ValueError(f"type 'bool' needs register 'coil' or 'discrete', not "
                             f"{self.table.value!r}")
        if self.type is DataType.BITS and self.bit is None:
            raise ValueError("type 'bits' needs 'bit' (0-15)")
        if self.address + self.width - 1 > 65535:
            raise ValueError(f"address {self.address} + width {self.width} passes 65535")
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


class Hole(BaseModel):
    """Registers the device refuses to read (reads that span them get an exception)."""

    model_config = _FROZEN

    table: RegisterType = Field(alias="register")
    start: Annotated[int, Field(ge=0, le=65535)]
    end: Annotated[int, Field(ge=0, le=65535)]

    @model_validator(mode="after")
    def _ordered(self) -> Hole:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Workarounds(BaseModel):
    """Named device quirks, instead of ad-hoc code paths."""

    model_config = _FROZEN

    # extra silence before the next frame, for devices slow to turn their line around
    pause_after_ms: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    one_request_per_point: bool = False  # firmware that answers only exact-length reads
    max_registers: Annotated[int, Field(ge=1, le=125)] = 125  # smaller read limit than the spec
    max_bits: Annotated[int, Field(ge=1, le=2000)] = 2000
    close_on_error: bool = False  # gateways that need a fresh TCP connection after an error
    # 32-bit values the device refuses to split: register reads must start at an even address
    # and span an even count (a single-register read excepted), e.g. Eastron meters
    register_pairs: bool = False


class ProfileInfo(BaseModel):
    model_config = _FROZEN

    name: str
    manufacturer: str
    model: str
    source: str  # vendor manual or document this map was taken from
    description: str = ""
    kind: Literal["meter", "detector", "smoke", "lighting", "other"] = "other"


class Profile(BaseModel):
    """A device model: what to read and how to decode it."""

    model_config = _FROZEN

    profile: ProfileInfo
    points: tuple[Point, ...] = Field(alias="point", min_length=1)
    holes: tuple[Hole, ...] = Field(default=(), alias="hole")
    workarounds: Workarounds = Workarounds()

    @property
    def name(self) -> str:
        return self.profile.name

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: object) -> object:
        """``[defaults]`` fills every point's unset keys, so a map lists only what varies."""
        if isinstance(data, dict) and isinstance(data.get("defaults"), dict):
            data = dict(data)
            defaults = data.pop("defaults")
            points = data.get("point")
            if isinstance(points, list):
                data["point"] = [{**defaults, **p} if isinstance(p, dict) else p for p in points]
        return data

    @model_validator(mode="after")
    def _unique_points(self) -> Profile:
        seen: set[str] = set()
        for point in self.points:
            if point.key in seen:
                raise ValueError(f"point {point.key!r} is defined twice")
            seen.add(point.key)
        return self


class ProfileError(ValueError):
    """A profile could not be found or is malformed; the message names the file and field."""


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with firewarden."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def resolve_profile_path(ref: str, base_dir: Path | None = None) -> Path:
    """A shipped profile by name, or a user's profile by path (relative to the config file)."""
    if "/" not in ref and not ref.endswith(".toml"):
        path = PROFILE_DIR / f"{ref}.toml"
        if not path.is_file():
            raise ProfileError(
                f"unknown profile {ref!r}; shipped: {', '.join(shipped_profiles())}")
        return path
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ProfileError(f"profile file {str(path)!r} does not exist")
    return path


def load_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """Load and validate a profile; errors name the file, the field path and the value."""
    path = resolve_profile_path(ref, base_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ProfileError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                           f"{exc.start}); save the file as UTF-8") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: TOML syntax error: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ProfileError(f"{path}: arrays or tables nested too deeply") from exc
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError("; ".join(
            f"{path}: {_loc(err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors())) from exc


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
