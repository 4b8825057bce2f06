"""Configs that used to pass ``firewarden check`` (or crash it) and then broke the daemon.

Each is run through ``firewarden check`` and ``firewarden run`` as real processes: both must
exit 2 with one clear line naming the field's path (or the file, where no field is at fault)
and no traceback. The probes of ``check`` bind the listener ports for real: a port another
process holds is a warning naming it, a listen address that is not this machine's an error.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

BASE = """\
[site]
id = "attack"

[daemon]
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = 1

[[bus]]
name = "gw"
type = "tcp"
host = "127.0.0.1"
port = 1

[[device]]
name = "m1"
bus = "gw"
unit = 1
profile = "{profile}"
"""

DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"


def firewarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def write(tmp: Path, extra: str = "", *, profile: str = "eastron-sdm630",
          base: str = BASE) -> Path:
    conf = tmp / "fw.toml"
    conf.write_text(base.format(state=tmp / "state", profile=profile) + extra, encoding="utf-8")
    return conf


PANEL = """
[[fire_panel]]
name = "{name}"
transport = "tcp-server"
port = {port}
"""


def panel(name: str, port: int, host: str | None = None) -> str:
    return PANEL.format(name=name, port=port) + (f'host = "{host}"\n' if host else "")


# (id, extra TOML appended to the base config, text stderr must contain)
CASES = [
    ("flush-nan", '[influxdb]\nflush_interval = nan\n', "influxdb.flush_interval"),
    ("flush-inf", '[influxdb]\nflush_interval = inf\n', "influxdb.flush_interval"),
    ("flush-minus-inf", '[influxdb]\nflush_interval = -inf\n', "influxdb.flush_interval"),
    ("flush-negative", '[influxdb]\nflush_interval = -1\n', "influxdb.flush_interval"),
    ("flush-zero", '[influxdb]\nflush_interval = 0\n', "influxdb.flush_interval"),
    ("influx-timeout-nan", '[influxdb]\ntimeout = nan\n', "influxdb.timeout"),
    ("flush-huge-string", '[influxdb]\nflush_interval = "' + "9" * 400 + 's"\n',
     "influxdb.flush_interval"),
    ("rule-delay-nan", '[rules.overcurrent]\non_delay = nan\n', "rules.overcurrent.on_delay"),
    ("alarm-delay-inf", '[alarms.rule.overcurrent]\non_delay = inf\n',
     "alarms.rule.overcurrent.on_delay"),
    ("mqtt-host-empty", "", "mqtt.host"),
    ("mqtt-host-blank", "", "mqtt.host"),
    ("panels-same-port", panel("p1", 9000) + panel("p2", 9000), "fire_panel[1].port"),
    ("panels-wildcard-overlap", panel("p1", 9000, "127.0.0.1") + panel("p2", 9000),
     "fire_panel[1].port"),
    ("panel-privileged-port", panel("p1", 502), "fire_panel[0].port"),
    ("state-dir-is-a-file", "", "daemon.state_dir"),
]


@pytest.mark.parametrize(("extra", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_exits_2_naming_the_field(tmp_path: Path, command: str, extra: str,
                                             needle: str, request: pytest.FixtureRequest
                                             ) -> None:
    case = request.node.callspec.id.split("-", 1)[1]
    base = BASE
    if case.startswith("mqtt-host"):
        base = BASE.replace('host = "127.0.0.1"\nport = 1\n\n[[bus]]',
                            f'host = "{"" if case.endswith("empty") else "  "}"\nport = 1\n'
                            f'\n[[bus]]')
    conf = write(tmp_path, extra, base=base)
    if case == "state-dir-is-a-file":
        (tmp_path / "state").write_text("not a directory\n", encoding="utf-8")
    done = firewarden(command, "-c", str(conf))
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert "nothing was started" in done.stderr


def test_privileged_port_error_says_the_way_out(tmp_path: Path) -> None:
    done = firewarden("check", "-c", str(write(tmp_path, panel("p1", 80))))
    assert done.returncode == 2
    line = next(x for x in done.stderr.splitlines() if "fire_panel[0].port" in x)
    assert "80" in line
    assert "CAP_NET_BIND_SERVICE" in line
    assert ">= 1024" in line
    assert "redirect" in line


@pytest.mark.parametrize("command", ["check", "run"])
def test_deeply_nested_config(tmp_path: Path, command: str) -> None:
    conf = write(tmp_path, DEEP)
    done = firewarden(command, "-c", str(conf))
    assert done.returncode == 2, done.stderr
    assert f"{conf}: arrays or tables nested too deeply" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["check", "run"])
def test_binary_config(tmp_path: Path, command: str) -> None:
    conf = tmp_path / "fw.toml"
    conf.write_bytes(b'[site]\nid = "x"\n' + bytes(range(128, 256)) + b"\x00\x01")
    done = firewarden(command, "-c", str(conf))
    assert done.returncode == 2, done.stderr
    assert f"{conf}:3: not UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("content", [
    pytest.param(b'[profile]\nname = "x"\n\xff\xfe\x00garbage', id="binary"),
    pytest.param(DEEP.encode(), id="deep"),
])
def test_bad_profile_file(tmp_path: Path, command: str, content: bytes) -> None:
    profile = tmp_path / "meter.toml"
    profile.write_bytes(content)
    done = firewarden(command, "-c", str(write(tmp_path, profile=str(profile))))
    assert done.returncode == 2, done.stderr
    line = next(x for x in done.stderr.splitlines() if "device[0].profile" in x)
    assert str(profile) in line
    assert "not UTF-8" in line or "nested too deeply" in line
    assert "Traceback" not in done.stderr


# -- probes: check binds the listeners and writes the state directory --------------------------

def test_check_probes_a_free_port_and_the_state_dir(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "state").mkdir()
    done = firewarden("check", "-c", str(write(tmp_path, panel("p1", port, "127.0.0.1"))))
    assert done.returncode == 0, done.stderr
    assert f"probe: fire_panel[0]: can listen on 127.0.0.1:{port}" in done.stdout
    assert f"probe: daemon.state_dir: '{tmp_path / 'state'}' is writable" in done.stdout
    assert not list((tmp_path / "state").iterdir())  # the probe left nothing behind


def test_check_warns_about_a_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:  # e.g. the running daemon
        port = held.getsockname()[1]
        done = firewarden("check", "-c", str(write(tmp_path, panel("p1", port, "127.0.0.1"))))
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if "fire_panel[0].port" in x)
    assert line.startswith("warning: ")
    assert f"127.0.0.1:{port} is in use" in line
    assert "running firewarden daemon" in line


def test_check_refuses_a_listen_address_of_another_machine(tmp_path: Path) -> None:
    done = firewarden("check", "-c", str(write(tmp_path, panel("p1", 9000, "192.0.2.7"))))
    assert done.returncode == 2, done.stderr
    assert "error: fire_panel[0].host: '192.0.2.7' is not an address of this machine" in \
        done.stderr
