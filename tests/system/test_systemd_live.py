"""The unit under a real systemd: a Debian 12 machine booted with systemd-nspawn (systemd as
PID 1), firewarden installed in it with ``systemd/install.sh`` from this checkout, then
started, reloaded, stalled and restarted by systemd itself.

Peers inside the machine: mosquitto with password auth only (the daemon's password arrives via
``LoadCredential=``), a Modbus RTU meter simulated on a socat pty pair, and nothing on the
InfluxDB port (the daemon spools). The machine has a private network, so nothing here reaches
the host's brokers. The tests run in file order on one machine (module fixture); the watchdog
test comes last and takes ~40 s. The Debian root is cached (see ``tests.system.nspawn``): the
first run builds it with debootstrap (about a minute, network to the Debian mirror).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import missing
from tests.system.nspawn import Machine, cached_root

pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]
CHECKOUT = Path(__file__).parents[2]
UNIT = "firewarden"
CONFIG = "/etc/firewarden/firewarden.toml"
SECRET = f"fw-{secrets.token_hex(12)}"  # the MQTT password: a value no log line can contain
OBSERVER = ("observer", secrets.token_hex(8))  # our own MQTT client
TREE_EXCLUDES = (".git", ".venv", "var", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                 ".hypothesis", "__pycache__", "*.egg-info")

# /dev/ttyFW0: the daemon's end of a socat pty pair (char-pts, major 136); /dev/ttyS7: a real
# 8250 node (major 4, char-ttyS, allowed) with no UART behind it; /dev/ttyFW9: a node with the
# tun device's major (10), which the unit's DevicePolicy=closed does not allow.
DEVICE = """
[[device]]
name = "{name}"
bus = "{bus}"
unit = {unit}
profile = "eastron-sdm630"
poll = "1s"
building = "1"
box = "1"
circuit = "main"
kind = "incomer"
rated_current = 63
breaker_curve = "C"
"""
BUS = """
[[bus]]
name = "{name}"
type = "rtu"
port = "{port}"
baudrate = 9600
parity = "N"
timeout = "300ms"
"""
CONFIG_TEXT = """
[site]
id = "live"
name = "nspawn"
timezone = "UTC"
latitude = 32.16
longitude = 118.95

[daemon]
state_dir = "/var/lib/firewarden"
log_level = "INFO"

[influxdb]
url = "http://127.0.0.1:8086"
database = "firewarden"

[mqtt]
host = "127.0.0.1"
port = 1883
username = "firewarden"
password_file = "${CREDENTIALS_DIRECTORY}/mqtt-password"
""" + "".join(BUS.format(name=n, port=p) for n, p in (
    ("sim", "/dev/ttyFW0"), ("uart", "/dev/ttyS7"), ("denied", "/dev/ttyFW9"))) + "".join(
    DEVICE.format(name=n, bus=b, unit=1) for n, b in (
        ("meter", "sim"), ("uart-meter", "uart"), ("denied-meter", "denied")))
MOSQUITTO = """listener 1883 127.0.0.1
allow_anonymous false
password_file /etc/mosquitto/passwd
"""


def _require_tools() -> None:
    if os.geteuid() != 0:
        missing("root (systemd-nspawn)")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            missing(tool)


def _wheelhouse(tree: Path, into: Path) -> None:
    """Wheels of the checkout copy ``tree`` and of all its dependencies, made here with the
    host's pip (and its index configuration): the machine has no network, its pip installs
    from these."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(into),
                           str(tree), "setuptools>=68"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    shutil.rmtree(tree / "build", ignore_errors=True)


def show(m: Machine, *props: str) -> dict[str, str]:
    done = m.run("systemctl", "show", UNIT, *(f"--property={p}" for p in props))
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def journal(m: Machine, *match: str) -> str:
    """The unit's whole journal (or the lines matching ``match``, e.g. ``_PID=12``)."""
    return m.run("journalctl", "--no-pager", "-o", "cat", *(match or (f"--unit={UNIT}",))).stdout


def until(check: Callable[[], object], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.25)


def _mqtt_status(m: Machine) -> str:
    """The retained ``firewarden/live/status``, as our own (password) client reads it."""
    return m.run("mosquitto_sub", "-h", "127.0.0.1", "-u", OBSERVER[0], "-P", OBSERVER[1],
                 "-t", "firewarden/live/status", "-C", "1", "-W", "5", check=False).stdout.strip()


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    """A booted machine with firewarden installed by install.sh and started."""
    _require_tools()
    with Machine(image=cached_root()) as m:
        # The checkout (install.sh's --source) and its wheels; then a pre-seeded config and
        # secret: the installer keeps both and checks them before enabling the unit.
        # (on the copy's disk, not through /proc/PID/root: setuptools needs a plain getcwd())
        tree = m.root / "srv/checkout"
        shutil.copytree(CHECKOUT, tree, ignore=shutil.ignore_patterns(*TREE_EXCLUDES))
        _wheelhouse(tree, m.root / "srv/wheels")
        etc = m.path("/etc/firewarden")
        (etc / "credentials").mkdir(parents=True, mode=0o700)
        (etc / "firewarden.toml").write_text(CONFIG_TEXT)
        (etc / "firewarden.toml").chmod(0o644)
        secret = etc / "credentials" / "mqtt-password"
        secret.write_text(SECRET + "\n")
        secret.chmod(0o600)

        # mosquitto: password clients only.
        m.path("/etc/mosquitto/conf.d/firewarden-test.conf").write_text(MOSQUITTO)
        m.run("mosquitto_passwd", "-c", "-b", "/etc/mosquitto/passwd", "firewarden", SECRET)
        m.run("mosquitto_passwd", "-b", "/etc/mosquitto/passwd", *OBSERVER)
        m.run("chown", "mosquitto:mosquitto", "/etc/mosquitto/passwd")
        m.run("systemctl", "restart", "mosquitto")

        # The serial side: the pty pair, an unbacked 8250 node and a node outside the policy.
        m.run("mkdir", "-p", "/run/fw-sim")
        m.run("mknod", "-m", "0660", "/dev/ttyS7", "c", "4", "71")
        m.run("mknod", "-m", "0660", "/dev/ttyFW9", "c", "10", "200")
        m.run("chgrp", "dialout", "/dev/ttyS7", "/dev/ttyFW9")
        m.run("systemd-run", "--unit=fw-socat", "socat",
              "pty,raw,echo=0,link=/dev/ttyFW0,group=dialout,perm=0660",
              "pty,raw,echo=0,link=/run/fw-sim/ttyB")
        until(lambda: m.path("/run/fw-sim/ttyB").is_symlink(), within=10, what="socat pty pair")

        done = m.run("bash", "/srv/checkout/systemd/install.sh", timeout=600,
                     env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/srv/wheels"}, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "keeping /etc/firewarden/firewarden.toml" in done.stdout
        assert "config ok" in done.stdout
        m.run("systemd-run", "--unit=fw-sim", "/opt/firewarden/venv/bin/python", "-m",
              "simulator.rtu", "--profile", "eastron-sdm630", "--unit", "1", "--port",
              "/run/fw-sim/ttyB", "--no-pace")
        m.run("systemctl", "start", UNIT, timeout=120)
        yield m


def test_start_is_active_with_a_status_text(machine: Machine) -> None:
    """``systemctl start`` returns after READY=1; the daemon's STATUS= text reaches systemd."""
    state = show(machine, "ActiveState", "SubState", "Type", "StatusText", "MainPID")
    assert (state["ActiveState"], state["SubState"], state["Type"]) == (
        "active", "running", "notify"), state
    assert int(state["MainPID"]) > 0
    assert re.fullmatch(r"\d+/3 devices online, \d+ alarms active, queue \d+.*",
                        state["StatusText"]), state["StatusText"]
    assert "running: site live, 3 buses, 3 devices, 0 fire panels" in journal(machine)


def test_live_exposure_is_at_most_2(machine: Machine) -> None:
    """``systemd-analyze security`` on the loaded unit, inside the machine."""
    done = machine.run("systemd-analyze", "security", "--no-pager", UNIT)
    found = re.search(r"Overall exposure level for firewarden\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout
    assert float(found.group(1)) <= 2.0, done.stdout


def test_the_credential_reaches_the_daemon_and_no_log(machine: Machine) -> None:
    """The broker accepts password clients only: the daemon's ``online`` proves it read the
    password from $CREDENTIALS_DIRECTORY; the password itself is in no journal line."""
    until(lambda: _mqtt_status(machine) == "online", within=20, what="MQTT status online")
    assert "MQTT connected to 127.0.0.1:1883" in journal(machine)
    # The broker refuses a client without the password (so "online" was not anonymous).
    refused = machine.run("mosquitto_pub", "-h", "127.0.0.1", "-t", "x", "-m", "x",
                          check=False)
    assert refused.returncode != 0
    credentials = machine.run("ls", f"/run/credentials/{UNIT}.service").stdout.split()
    assert {"mqtt-password", "influx-password", "influx-token"} <= set(credentials)
    everything = machine.run("journalctl", "--no-pager", "-o", "verbose", "-b").stdout
    assert SECRET not in everything
    assert SECRET not in journal(machine)


def test_the_state_dir_is_private_to_the_dynamic_user(machine: Machine) -> None:
    """/var/lib/private/firewarden: owned by the daemon's transient uid (not root), 0700."""
    pid = show(machine, "MainPID")["MainPID"]
    uid = int(re.search(r"^Uid:\s+(\d+)", machine.run("cat", f"/proc/{pid}/status").stdout,
                        re.M).group(1))  # type: ignore[union-attr]
    assert uid != 0
    state = machine.path("/var/lib/private/firewarden")
    until(lambda: (state / "alarms.db").exists(), within=20, what="alarms.db")
    assert (state.stat().st_uid, state.stat().st_mode & 0o7777) == (uid, 0o700)
    assert (state / "alarms.db").stat().st_uid == uid
    assert os.readlink(machine.path("/var/lib/firewarden")) == "private/firewarden"
    # Others cannot even look inside (/var/lib/private is 0700 root).
    assert machine.path("/var/lib/private").stat().st_mode & 0o077 == 0


def test_serial_ports_under_the_device_policy(machine: Machine) -> None:
    """The meter on a pty answers (DevicePolicy=closed always allows char-pts); a ttyS node is
    let through the device cgroup (the 8250 driver answers ENXIO, not EPERM); a node with a
    major outside DeviceAllow= is refused with EPERM, although the same node opens for a
    transient service in dialout without the policy."""
    until(lambda: show(machine, "StatusText")["StatusText"].startswith("1/3 devices online"),
          within=30, what="the pty meter online")
    log = journal(machine)
    assert "alarm comms:meter" not in log
    until(lambda: "bus denied: cannot open /dev/ttyFW9" in journal(machine), within=20,
          what="the denied bus tried")
    log = journal(machine)
    denied = [line for line in log.splitlines() if "bus denied: cannot open" in line]
    assert "Operation not permitted" in denied[0], denied
    uart = [line for line in log.splitlines() if "bus uart:" in line]
    assert uart, log
    assert not any("Operation not permitted" in line for line in uart), uart
    control = machine.run(
        "systemd-run", "--wait", "--pipe", "--quiet", "-p", "DynamicUser=yes",
        "-p", "SupplementaryGroups=dialout", "python3", "-c",
        "import os; os.close(os.open('/dev/ttyFW9', os.O_RDWR)); print('opened')",
        check=False)
    assert control.stdout.strip() == "opened", control.stdout + control.stderr


def test_reload_applies_a_good_config_and_keeps_it_over_a_bad_one(machine: Machine) -> None:
    """SIGHUP via ``systemctl reload``: a new device is taken into the running daemon; then
    a config with a bad field is refused, naming it, and the daemon runs on unchanged."""
    pid = show(machine, "MainPID")["MainPID"]
    config = machine.path(CONFIG)
    good = CONFIG_TEXT + DEVICE.format(name="meter-2", bus="sim", unit=2)
    config.write_text(good)
    machine.run("systemctl", "reload", UNIT)
    until(lambda: "running: site live, 3 buses, 4 devices" in journal(machine), within=30,
          what="the reloaded config running")
    assert "reloaded /etc/firewarden/firewarden.toml" in journal(machine)
    until(lambda: "/4 devices online" in show(machine, "StatusText")["StatusText"], within=20,
          what="STATUS= with four devices")
    assert show(machine, "MainPID")["MainPID"] == pid  # the same process: no restart

    config.write_text(good.replace("unit = 2", "unit = 300"))
    machine.run("systemctl", "reload", UNIT)
    until(lambda: "reload refused" in journal(machine), within=30, what="the refusal")
    refused = [line for line in journal(machine).splitlines() if "reload refused" in line]
    assert any("device[3].unit" in line and "300" in line for line in refused), refused
    until(lambda: "reload refused" in show(machine, "StatusText")["StatusText"], within=15,
          what="STATUS= saying so")
    state = show(machine, "ActiveState", "MainPID", "StatusText")
    assert (state["ActiveState"], state["MainPID"]) == ("active", pid), state
    assert "/4 devices online" in state["StatusText"]  # still the good config
    config.write_text(good)  # leave a valid config for the restart below


def test_watchdog_restarts_a_stalled_daemon_and_the_alarms_survive(machine: Machine) -> None:
    """SIGSTOP the main process: no WATCHDOG=1 for 30 s, systemd aborts it and restarts it;
    the new process loads the alarms the old one stored in the state dir."""
    until(lambda: "alarm comms:uart-meter raised" in journal(machine), within=30,
          what="a comms alarm to persist")
    before = show(machine, "MainPID", "NRestarts")
    machine.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", UNIT)
    started = time.monotonic()

    def restarted() -> bool:
        now = show(machine, "MainPID", "NRestarts", "ActiveState", "SubState")
        return (now["MainPID"] not in ("0", before["MainPID"]) and now["SubState"] == "running"
                and int(now["NRestarts"]) == int(before["NRestarts"]) + 1)

    until(restarted, within=120, what="a watchdog restart")
    assert time.monotonic() - started >= 25  # the watchdog's 30 s, not something quicker
    log = journal(machine)
    assert "Watchdog timeout" in log
    assert "Failed with result 'watchdog'" in log
    after = show(machine, "MainPID", "StatusText")
    until(lambda: "alarm store /var/lib/firewarden/alarms.db:" in journal(
        machine, f"_PID={after['MainPID']}"), within=30, what="the alarms loaded")
    loaded = re.search(r"alarm store \S+: (\d+) alarms, (\d+) active",
                       journal(machine, f"_PID={after['MainPID']}"))
    assert loaded is not None
    assert int(loaded.group(2)) >= 1, loaded.group(0)
    state = machine.path("/var/lib/private/firewarden")
    assert state.stat().st_uid != 0
    assert state.stat().st_mode & 0o7777 == 0o700
