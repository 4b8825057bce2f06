"""Config validation: every bad config names its path and value; good configs resolve."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import ConfigError, load_config, parse_duration, validate_config

BAD = sorted((Path(__file__).parent / "configs" / "bad").glob("*.toml"))
EXAMPLE = Path(__file__).parent / "configs" / "three-meters.toml"


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_enough_bad_configs() -> None:
    """The regression folder keeps at least ten distinct bad configs."""
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_exits_2_naming_fault(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`firewarden check` exits 2 and prints the expected path and value on stderr."""
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert _expected(path) in err
    assert "Traceback" not in err


def test_every_error_is_reported_at_once() -> None:
    """Several faults in one file come back together, one line each."""
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["device"][1]["unit"] = 1
    raw["device"][2]["bus"] = "missing"
    with pytest.raises(ConfigError) as info:
        validate_config(raw, EXAMPLE)
    assert len(info.value.errors) == 2
    assert info.value.errors[0].startswith("device[1].unit: 1 already used by b12-box1-main")
    assert info.value.errors[1].startswith("device[2].bus: 'missing' is not a defined bus")


def test_example_config_resolves() -> None:
    """The demo config loads, is frozen, and its devices get their profiles."""
    loaded = load_config(EXAMPLE)
    assert loaded.config.site.id == "demo"
    assert loaded.profiles["b12-box1-main"].name == "eastron-sdm630"
    assert loaded.config.device("b12-box1-main").poll == 0.5
    with pytest.raises(ValueError, match="frozen"):
        loaded.config.site.id = "other"  # type: ignore[misc]


def test_check_prints_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """`check` on a good config exits 0 and shows each device's read requests."""
    assert main(["check", "-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "device b12-box1-main" in out
    assert "input    fc04 addr     0" in out
    assert "rule overcurrent: > 63 A for 1s" in out


def test_user_profile_by_path(tmp_path: Path) -> None:
    """A profile given as a path next to the config is used, and a broken one is named."""
    (tmp_path / "meter.toml").write_text(
        '[profile]\nname="m"\nmanufacturer="x"\nmodel="y"\nsource="z"\n'
        '[[point]]\nquantity="current"\naddress=5\n', encoding="utf-8")
    (tmp_path / "broken.toml").write_text(
        '[profile]\nname="b"\nmanufacturer="x"\nmodel="y"\nsource="z"\n'
        '[[point]]\nquantity="amps"\naddress=5\n', encoding="utf-8")
    base = '[site]\nid="t"\n[[bus]]\nname="gw"\ntype="tcp"\nhost="h"\nport=502\n'
    dev = '[[device]]\nname="{n}"\nbus="gw"\nunit={u}\nprofile="./{f}"\n'
    cfg = tmp_path / "c.toml"
    cfg.write_text(base + dev.format(n="a", u=1, f="meter.toml"), encoding="utf-8")
    assert load_config(cfg).profiles["a"].points[0].address == 5
    cfg.write_text(base + dev.format(n="b", u=2, f="broken.toml"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml: point\[0\].quantity: Input should be"):
        load_config(cfg)


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (3, 3.0), ("7", 7.0),
    ("1h30m", 5400.0), ("2d", 172800.0), ("1w", 604800.0), ("1m 30s", 90.0),
])
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Durations accept ms/s/m/h/d/w parts (one grammar for configs and scenarios) and bare
    seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "-1s", "1y", "1h30", "h", True])
def test_parse_duration_rejects(text: object) -> None:
    """Anything else is refused with the value in the message."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_device_workarounds_override_profile(tmp_path: Path) -> None:
    """[device.workarounds] changes only the keys it sets, for that device only."""
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["device"][0]["workarounds"] = {"max_registers": 40, "pause_after_ms": 25}
    loaded = validate_config(raw, EXAMPLE)
    quirks = loaded.profiles["b12-box1-main"].workarounds
    assert (quirks.max_registers, quirks.pause_after_ms, quirks.max_bits) == (40, 25.0, 2000)
    assert quirks.register_pairs  # the profile's own quirk the device did not set stays
    assert loaded.profiles["b12-box2-main"].workarounds.max_registers == 80  # the profile's
    raw["device"][0]["workarounds"] = {"max_registers": 400}
    with pytest.raises(ConfigError, match=r"device\[0\]\.workarounds\.max_registers: Input"):
        validate_config(raw, EXAMPLE)
