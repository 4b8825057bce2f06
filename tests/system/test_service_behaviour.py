"""The daemon as systemd runs it: secrets from a credentials directory (never logged),
journal-formatted logs, and SIGHUP reloads (a broken config refused, the old one kept)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.services import Mosquitto, free_port, port_open
from simulator.toml_writer import dump_toml
from tests.services import NotifySocket, eventually

pytestmark = pytest.mark.system
ROOT = Path(__file__).parents[2]
SECRET = "s3cr3t-Ω-不要记录"  # the point is to see it never logged


def _config(tmp: Path, mqtt_port: int, panel_port: int, *, password: bool = True) -> Path:
    mqtt: dict[str, object] = {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 5}
    if password:
        mqtt |= {"username": "fw", "password_file": "${CREDENTIALS_DIRECTORY}/mqtt-password"}
    raw = {
        "site": {"id": "svc"},
        "daemon": {"state_dir": str(tmp / "state")},
        "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s"},
        "mqtt": mqtt,
        "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel_port}],
    }
    path = tmp / "fw.toml"
    path.write_text(dump_toml(raw), encoding="utf-8")
    return path


def _start(conf: Path, tmp: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
                                env={**os.environ, **env}, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


async def test_credentials_are_used_and_never_logged(tmp_path: Path) -> None:
    """The MQTT password comes from $CREDENTIALS_DIRECTORY (the broker refuses anonymous
    clients, so being online proves it was read); no log line contains it; with stderr as the
    journal (JOURNAL_STREAM) lines carry <N> priorities and no timestamps."""
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "mqtt-password").write_text(SECRET + "\n", encoding="utf-8")
    log = tmp_path / "daemon.log"
    log.touch()
    stat = log.stat()
    with Mosquitto(workdir=tmp_path / "mosquitto", users={"fw": SECRET}) as broker:
        conf = _config(tmp_path, broker.port, free_port())
        notify = NotifySocket(tmp_path / "notify.sock")
        proc = _start(conf, tmp_path, {"CREDENTIALS_DIRECTORY": str(creds),
                                       "NOTIFY_SOCKET": str(notify.path),
                                       "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, log)
        try:
            await notify.wait_for("READY=1", within=20)
            await eventually(lambda: "MQTT connected" in log.read_text(encoding="utf-8"),
                             within=15, what="an authenticated MQTT session")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 20)
    output = log.read_text(encoding="utf-8")
    assert code == 0, output
    assert "MQTT connected to 127.0.0.1" in output, output
    assert SECRET not in output
    lines = [line for line in output.splitlines() if line]
    assert lines
    assert all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines[:5]
    assert "<6>firewarden: running: site svc" in output


async def test_missing_credential_stops_at_start_naming_it(tmp_path: Path) -> None:
    conf = _config(tmp_path, free_port(), free_port())
    for env, reason in (({}, "${CREDENTIALS_DIRECTORY}/mqtt-password uses "
                             "${CREDENTIALS_DIRECTORY}, which is not set"),
                        ({"CREDENTIALS_DIRECTORY": str(tmp_path / "none")},
                         "cannot read " + str(tmp_path / "none" / "mqtt-password"))):
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
            env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30,
            check=False)
        assert out.returncode == 2, out.stderr
        assert f"cannot start: mqtt.password_file: {reason}" in out.stderr


async def test_sighup_reloads_a_good_config_and_refuses_a_broken_one(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    first, second = free_port(), free_port()
    conf = _config(tmp_path, mosquitto.port, first, password=False)
    log = tmp_path / "daemon.log"
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = _start(conf, tmp_path, {"NOTIFY_SOCKET": str(notify.path)}, log)
    try:
        await notify.wait_for("READY=1", within=20)
        assert port_open("127.0.0.1", first)

        # A broken config: refused with the reason, the old one keeps running.
        good = conf.read_text(encoding="utf-8")
        conf.write_text(good.replace('id = "svc"', 'id = "Bad Site"'), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        await notify.wait_for("RELOADING=1", within=10)
        await eventually(lambda: "reload refused" in log.read_text(encoding="utf-8"),
                         within=10)
        text = log.read_text(encoding="utf-8")
        assert "reload refused: site.id: String should match pattern" in text
        assert "still running the previous config" in text
        await notify.wait_for("READY=1", within=10, count=2)
        await eventually(lambda: any("reload refused" in m for m in notify.drain()),
                         within=15, what="STATUS= saying the reload was refused")
        assert port_open("127.0.0.1", first)
        assert proc.poll() is None

        # A good new config: the daemon switches to it (the panel listens on the new port).
        conf.write_text(good.replace(f"port = {first}", f"port = {second}"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        await eventually(lambda: port_open("127.0.0.1", second), within=20,
                         what="the reloaded config's listener")
        assert not port_open("127.0.0.1", first)
        await notify.wait_for("READY=1", within=10, count=3)
        assert "reloaded " in log.read_text(encoding="utf-8")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
    assert code == 0, log.read_text(encoding="utf-8")
    assert "Traceback" not in log.read_text(encoding="utf-8")


def test_check_reports_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """`check` says where each secret comes from; an empty or missing one it can check is an
    error (the daemon would not start); a systemd credential outside systemd is only noted."""
    from daemon.cli import main

    conf = _config(tmp_path, free_port(), free_port())
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert main(["check", "-c", str(conf)]) == 0
    assert "mqtt.password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password (a systemd credential: "\
           "not checked here" in capsys.readouterr().out
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text("\n", encoding="utf-8")  # an unfilled placeholder
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert main(["check", "-c", str(conf)]) == 2
    assert f"error: mqtt.password_file: {creds / 'mqtt-password'} is empty" in \
        capsys.readouterr().err
    (creds / "mqtt-password").write_text(SECRET, encoding="utf-8")
    assert main(["check", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "(readable)" in out
    assert SECRET not in out
