"""Shipped profiles: valid, cited, and faithful to the register maps in domain.md §4."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.measurements import Quantity
from drivers.profile import (
    ByteOrder,
    DataType,
    ProfileError,
    RegisterType,
    load_profile,
    shipped_profiles,
)

EXPECTED = {"eastron-sdm630", "eastron-sdm120", "acrel-adw300", "residual-current-temperature",
            "modbus-smoke-detector", "lighting-controller", "chint-ddsu666", "chint-dtsu666",
            "firewater-transmitter"}


def test_every_required_profile_ships() -> None:
    """The device models of the field-side issues are all there."""
    assert set(shipped_profiles()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_loads_and_cites_its_source(name: str) -> None:
    """Each profile validates and its file starts with a comment naming where the map is from."""
    profile = load_profile(name)
    assert profile.name == name
    assert profile.profile.source
    text = (Path(__file__).parents[2] / "drivers" / "profiles" / f"{name}.toml").read_text("utf-8")
    assert text.startswith("# ")


@pytest.mark.parametrize(("name", "key", "address", "table", "dtype", "scale"), [
    ("eastron-sdm630", "voltage/L1", 0x0000, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("eastron-sdm630", "current/L3", 0x000A, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("eastron-sdm630", "power/total", 0x0034, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("eastron-sdm630", "energy/total", 0x0156, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("eastron-sdm120", "frequency/L1", 0x0046, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("acrel-adw300", "voltage/L2", 21, RegisterType.HOLDING, DataType.UINT16, 0.1),
    ("acrel-adw300", "current/L1", 26, RegisterType.HOLDING, DataType.UINT16, 0.01),
    ("acrel-adw300", "power/total", 36, RegisterType.HOLDING, DataType.INT32, 1.0),
    ("acrel-adw300", "energy_import/total", 62, RegisterType.HOLDING, DataType.INT32, 0.01),
    ("lighting-controller", "relay/8", 7, RegisterType.COIL, DataType.BOOL, 1.0),
    # CHINT DDSU666 (Tasmota xnrg_11_ddsu666: FC04 floats, P and Q in kW/kvar)
    ("chint-ddsu666", "voltage/L1", 0x2000, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("chint-ddsu666", "power/L1", 0x2004, RegisterType.INPUT, DataType.FLOAT32, 1000.0),
    ("chint-ddsu666", "power_factor/L1", 0x200A, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    ("chint-ddsu666", "energy_export/L1", 0x400A, RegisterType.INPUT, DataType.FLOAT32, 1.0),
    # CHINT DTSU666 (manual ZTY0.464.1448 Table 11: FC03 floats at display resolution)
    ("chint-dtsu666", "voltage/L1", 0x2006, RegisterType.HOLDING, DataType.FLOAT32, 0.1),
    ("chint-dtsu666", "current/L3", 0x2010, RegisterType.HOLDING, DataType.FLOAT32, 0.001),
    ("chint-dtsu666", "power/total", 0x2012, RegisterType.HOLDING, DataType.FLOAT32, 0.1),
    ("chint-dtsu666", "power_factor/total", 0x202A, RegisterType.HOLDING, DataType.FLOAT32,
     0.001),
    ("chint-dtsu666", "frequency/total", 0x2044, RegisterType.HOLDING, DataType.FLOAT32, 0.01),
    ("chint-dtsu666", "energy_import/total", 0x401E, RegisterType.HOLDING, DataType.FLOAT32,
     1.0),
])
def test_register_map_matches_domain_notes(name: str, key: str, address: int,
                                           table: RegisterType, dtype: DataType,
                                           scale: float) -> None:
    """Spot checks against the vendor maps recorded in domain.md §4."""
    point = next(p for p in load_profile(name).points if p.key == key)
    assert (point.address, point.table, point.type, point.scale) == (address, table, dtype, scale)
    if dtype is DataType.FLOAT32:
        assert point.order is ByteOrder.ABCD


def test_energy_counters_poll_slowly() -> None:
    """Energy counters carry their own slow poll interval so they never load the bus."""
    for name in ("eastron-sdm630", "eastron-sdm120", "acrel-adw300", "chint-ddsu666",
                 "chint-dtsu666"):
        energy = [p for p in load_profile(name).points
                  if p.quantity in (Quantity.ENERGY, Quantity.ENERGY_IMPORT)]
        assert energy
        assert all(p.poll == 60.0 for p in energy)


@pytest.mark.parametrize(("body", "fault"), [
    ('[[point]]\nquantity="current"\naddress=1\n', "profile: Field required"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n', "point: Field required"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n'
     '[[point]]\nquantity="current"\naddress=1\nregister="coil"\n',
     "point[0]: Value error, coil points must have type 'bool'"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n'
     '[[point]]\nquantity="fire"\naddress=1\ntype="bits"\n',
     "point[0]: Value error, type 'bits' needs 'bit'"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n'
     '[[point]]\nquantity="current"\naddress=1\n[[point]]\nquantity="current"\naddress=2\n',
     "point 'current' is defined twice"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n'
     '[[point]]\nquantity="current"\naddress=70000\n', "point[0].address: Input should be"),
    ('[profile]\nname="x"\nmanufacturer="m"\nmodel="m"\nsource="s"\n'
     '[[point]]\nquantity="current"\naddress=1\norder="XYZW"\n', "point[0].order: Input should"),
    ('[profile\n', "TOML syntax error"),
])
def test_malformed_profile_names_file_and_field(tmp_path: Path, body: str, fault: str) -> None:
    """A broken user profile is refused with its path and the faulty field."""
    path = tmp_path / "mine.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    assert str(path) in str(info.value)
    assert fault in str(info.value)
