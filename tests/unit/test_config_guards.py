"""The config guards of issue 13: each refused value gets one line naming its path and value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigError, load_config, parse_duration, validate_config


def base(tmp: Path, **tables: Any) -> dict[str, Any]:
    return {"site": {"id": "g"}, "daemon": {"state_dir": str(tmp / "state")}, **tables}


def errors(raw: dict[str, Any], tmp: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw, tmp / "fw.toml")
    return info.value.errors


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, "9" * 400 + "s"])
def test_parse_duration_refuses_non_finite_and_negative(value: object) -> None:
    with pytest.raises(ValueError, match="finite number of seconds >= 0"):
        parse_duration(value)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("flush_interval", math.nan,
     "influxdb.flush_interval: a duration must be a finite number of seconds >= 0 (got nan)"),
    ("flush_interval", math.inf,
     "influxdb.flush_interval: a duration must be a finite number of seconds >= 0 (got inf)"),
    ("flush_interval", 0, "influxdb.flush_interval: Input should be greater than 0 (got 0)"),
    ("timeout", -3, "influxdb.timeout: a duration must be a finite number of seconds >= 0 "
                    "(got -3)"),
])
def test_influx_durations(tmp_path: Path, field: str, value: object, expected: str) -> None:
    assert errors(base(tmp_path, influxdb={field: value}), tmp_path) == [expected]


@pytest.mark.parametrize("host", ["", "   "])
def test_mqtt_host_must_be_given(tmp_path: Path, host: str) -> None:
    assert errors(base(tmp_path, mqtt={"host": host}), tmp_path) == [
        f"mqtt.host: needs a broker host name or address, e.g. '127.0.0.1' (got {host!r})"]


def tcp_panel(name: str, port: int, host: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "tcp-server", "port": port,
            **({"host": host} if host else {}), **extra}


@pytest.mark.parametrize(("panels", "expected"), [
    ([tcp_panel("a", 9000), tcp_panel("b", 9000)],
     "fire_panel[1].port: 9000 on 0.0.0.0 collides with fire_panel[0] (listening on "
     "0.0.0.0:9000)"),
    ([tcp_panel("a", 9000, "10.0.0.1"), tcp_panel("b", 9000)],
     "fire_panel[1].port: 9000 on 0.0.0.0 collides with fire_panel[0] (listening on "
     "10.0.0.1:9000)"),
    ([tcp_panel("a", 9000, "10.0.0.1"), tcp_panel("b", 9000, "10.0.0.1")],
     "fire_panel[1].port: 9000 on 10.0.0.1 collides with fire_panel[0] (listening on "
     "10.0.0.1:9000)"),
    ([{"name": "a", "transport": "serial", "port": "/dev/ttyUSB0"},
      {"name": "b", "transport": "serial", "port": "/dev/ttyUSB0"}],
     "fire_panel[1].port: '/dev/ttyUSB0' is already used by fire_panel[0] a"),
])
def test_listener_collisions(tmp_path: Path, panels: list[dict[str, Any]],
                             expected: str) -> None:
    assert errors(base(tmp_path, fire_panel=panels), tmp_path) == [expected]


def test_listeners_that_can_coexist(tmp_path: Path) -> None:
    raw = base(tmp_path, fire_panel=[
        tcp_panel("a", 9000, "10.0.0.1"), tcp_panel("b", 9000, "10.0.0.2"),
        tcp_panel("c", 9001), tcp_panel("d", 9001, enabled=False),
        {"name": "e", "transport": "tcp-client", "host": "10.0.0.9", "port": 80}])
    validate_config(raw, tmp_path / "fw.toml")


def test_serial_panel_on_a_bus_port(tmp_path: Path) -> None:
    raw = base(tmp_path, bus=[{"name": "rs485", "type": "rtu", "port": "/dev/ttyUSB0"}],
               fire_panel=[{"name": "p", "transport": "serial", "port": "/dev/ttyUSB0"}])
    assert errors(raw, tmp_path) == [
        "fire_panel[0].port: '/dev/ttyUSB0' is already used by bus[0] rs485"]


def test_privileged_port(tmp_path: Path) -> None:
    [line] = errors(base(tmp_path, fire_panel=[tcp_panel("a", 502)]), tmp_path)
    assert line.startswith("fire_panel[0].port: 502 is a privileged port (< 1024); the "
                           "firewarden service has no CAP_NET_BIND_SERVICE")
    assert "use a port >= 1024" in line


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("x", encoding="utf-8")
    assert errors(base(tmp_path), tmp_path) == [
        f"daemon.state_dir: '{tmp_path / 'state'}': it exists and is not a directory"]
    raw = base(tmp_path, daemon={"state_dir": str(tmp_path / "state" / "sub")})
    assert errors(raw, tmp_path) == [
        f"daemon.state_dir: '{tmp_path / 'state' / 'sub'}': its parent "
        f"'{tmp_path / 'state'}' exists and is not a directory"]


def test_deep_nesting_and_binary_files(tmp_path: Path) -> None:
    conf = tmp_path / "fw.toml"
    conf.write_text("x = " + "[" * 5000 + "]" * 5000, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert info.value.errors == [f"{conf}: arrays or tables nested too deeply (a config needs "
                                 f"a few levels)"]
    conf.write_bytes(b"[site]\n\xff")
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert info.value.errors == [f"{conf}:2: not UTF-8 (byte 0xff at offset 7); save the file "
                                 f"as UTF-8"]
    profile = tmp_path / "p.toml"
    profile.write_bytes(b"[profile]\n\n\x80")
    conf.write_text(f'[site]\nid = "g"\n[daemon]\nstate_dir = "{tmp_path}"\n'
                    f'[[bus]]\nname = "b"\ntype = "tcp"\nhost = "h"\nport = 502\n'
                    f'[[device]]\nname = "d"\nbus = "b"\nunit = 1\nprofile = "{profile}"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert info.value.errors == [f"device[0].profile: {profile}:3: not UTF-8 (byte 0x80 at "
                                 f"offset 11); save the file as UTF-8"]
