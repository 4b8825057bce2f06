"""MQTT security against a real mosquitto: TLS with a private CA, passwords, the electricians'
ACL from examples/mosquitto/acl, command topics that can only ever touch alarms, and secrets
that appear in no log, command line or environment.

The broker (one per module) has a plain listener and a TLS listener, refuses anonymous
clients, and enforces examples/mosquitto/acl plus, for the tests only, an ``observer`` user
who may read everything (to prove what did or did not reach subscribers).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from core.measurements import Quantity, Reading
from daemon.commands import clip
from daemon.config import InfluxConfig, MqttConfig
from daemon.notify.mqtt import MqttNotifier
from daemon.pipeline import AlarmDesk
from daemon.sinks.influx import InfluxSink
from daemon.store import AlarmStore
from drivers.profile import load_profile
from rules.engine import DeviceRules, RuleEngine
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import InfluxDB, Mosquitto
from simulator.toml_writer import dump_toml
from tests.services import MqttCollector, eventually, missing, require

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
ACL = ROOT / "examples" / "mosquitto" / "acl"

DAEMON_PASSWORD = "mqtt-Ω-daemon-密码-7f3a9c"  # the point is to see these never leak
ELECTRICIAN_PASSWORD = "elec-pass-42b1"
OBSERVER_PASSWORD = "observer-pass-9d0e"
INFLUX_TOKEN = "influx-token-b5c1e0d8a7f6"
INFLUX_PASSWORD = "influx-pass-0c4f2a91"
SECRETS = (DAEMON_PASSWORD, INFLUX_TOKEN, INFLUX_PASSWORD)
VERBS = ("ack", "shelve", "unshelve", "reset", "out-of-service", "in-service")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    require(Mosquitto)
    if not Mosquitto.tls_available():
        missing("openssl")
    work = tmp_path_factory.mktemp("mosquitto-secure")
    acl = work / "acl"
    acl.write_text(ACL.read_text(encoding="utf-8")
                   + "\n# test only: sees everything\nuser observer\ntopic read #\n",
                   encoding="utf-8")
    with Mosquitto(workdir=work / "broker", tls=True, acl_file=acl,
                   users={"firewarden": DAEMON_PASSWORD, "electrician": ELECTRICIAN_PASSWORD,
                          "observer": OBSERVER_PASSWORD}) as started:
        yield started


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto) -> Path:
    """A CA the broker's certificate was not issued by."""
    other = Mosquitto(workdir=tmp_path_factory.mktemp("other-ca"), tls=True)
    return other.make_certificates()


def _tls_port(broker: Mosquitto) -> int:
    assert broker.tls_port is not None
    return broker.tls_port


class SecureCollector(MqttCollector):
    """tests.services.MqttCollector as a named user over TLS (or plain, ``tls=False``)."""

    def __init__(self, broker: Mosquitto, user: str, password: str, *,
                 topics: tuple[str, ...] = ("#",), tls: bool = True) -> None:
        super().__init__(host=broker.host, port=broker.port, topics=topics)
        self._client = aiomqtt.Client(
            broker.host, _tls_port(broker) if tls else broker.port, username=user,
            password=password, identifier=f"{user}-{uuid.uuid4().hex[:6]}",
            tls_params=aiomqtt.TLSParameters(ca_certs=str(broker.ca_file)) if tls else None)


def _site() -> str:
    return f"sec{uuid.uuid4().hex[:8]}"


def _secret_file(tmp: Path, name: str, secret: str) -> Path:
    path = tmp / name
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _notifier_config(broker: Mosquitto, tmp: Path, *, password: str = DAEMON_PASSWORD,
                     ca: Path | None = None) -> MqttConfig:
    return MqttConfig(host=broker.host, port=_tls_port(broker), username="firewarden",
                      password_file=_secret_file(tmp, f"pw-{uuid.uuid4().hex[:6]}", password),
                      tls_ca=ca or broker.ca_file, client_id=f"fw-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlarmStore]:
    with AlarmStore(tmp_path / "alarms.db", sinks=["mqtt"]) as opened:
        yield opened


# --- TLS and passwords ----------------------------------------------------------------------

async def test_notifier_connects_over_tls_with_password(broker: Mosquitto, store: AlarmStore,
                                                        tmp_path: Path) -> None:
    """The daemon's notifier: username + password from a file, TLS verifying the private CA
    (hostname 127.0.0.1 against the certificate's SAN IP); an electrician sees it online."""
    site = _site()
    config = _notifier_config(broker, tmp_path)
    async with (
        SecureCollector(broker, "electrician", ELECTRICIAN_PASSWORD,
                        topics=(f"firewarden/{site}/status",)) as electrician,
        MqttNotifier(config=config, site=site, outbox=store) as notifier,
    ):
        await eventually(lambda: notifier.connected, within=15, what="TLS session")
        await electrician.wait_for(lambda m: m.payload == b"online")
    assert notifier.stats.connect_failures == 0


@pytest.mark.parametrize("problem", ["wrong password", "unknown CA"])
async def test_refused_session_is_reported_once_and_retried(
        broker: Mosquitto, store: AlarmStore, tmp_path: Path, stranger_ca: Path,
        caplog: pytest.LogCaptureFixture, problem: str) -> None:
    """A wrong password or a broker certificate from another CA: no session, one clear ERROR
    line, retries (DEBUG) and no crash; the notifier still closes cleanly."""
    if problem == "wrong password":
        config = _notifier_config(broker, tmp_path, password="not-the-password")
        reason = "Not authorized"
    else:
        config = _notifier_config(broker, tmp_path, ca=stranger_ca)
        reason = "CERTIFICATE_VERIFY_FAILED"
    caplog.set_level(logging.DEBUG, logger="daemon.notify.mqtt")
    async with MqttNotifier(config=config, site=_site(), outbox=store, retry_initial=0.05,
                            retry_max=0.1, close_timeout=2) as notifier:
        await eventually(lambda: notifier.stats.connect_failures >= 3, within=20,
                         what="three refused attempts")
        assert not notifier.connected
    records = [r for r in caplog.records if r.name == "daemon.notify.mqtt"]
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].levelno == logging.ERROR  # not CRITICAL: the task did not crash
    message = errors[0].getMessage()
    assert f"{broker.host}:{_tls_port(broker)}" in message
    assert reason.lower() in message.lower(), message
    assert "retrying" in message
    assert sum(r.levelno == logging.DEBUG for r in records) >= 2
    assert "not-the-password" not in caplog.text
    assert DAEMON_PASSWORD not in caplog.text


async def test_plain_text_client_cannot_use_the_tls_port(broker: Mosquitto) -> None:
    """An MQTT client without TLS gets no session on the TLS listener: aiomqtt fails, and a
    raw CONNECT packet gets no CONNACK (0x20), only a TLS alert or a closed socket."""
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, _tls_port(broker), username="electrician",
                                  password=ELECTRICIAN_PASSWORD, timeout=3):
            pass

    def raw_connect() -> bytes:
        client_id = b"plain"
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
        payload = len(client_id).to_bytes(2, "big") + client_id
        packet = bytes((0x10, len(variable) + len(payload))) + variable + payload
        with socket.create_connection((broker.host, _tls_port(broker)), timeout=3) as sock:
            sock.sendall(packet)
            try:
                return sock.recv(64)
            except (TimeoutError, ConnectionResetError):
                return b""

    answer = await asyncio.to_thread(raw_connect)
    assert not answer.startswith(b"\x20"), answer


# --- the electricians' ACL ------------------------------------------------------------------

def _desk(tmp: Path) -> tuple[AlarmDesk, AlarmStore]:
    store = AlarmStore(tmp / "desk.db", sinks=["mqtt"])
    store.open()
    engine = RuleEngine(devices={"panel": DeviceRules()})
    influx = InfluxSink(config=InfluxConfig(), site="t", device_tags={})
    desk = AlarmDesk(engine=engine, store=store, influx=influx)
    desk.publish(engine.evaluate(Reading(ts=100.0, device="panel", quantity=Quantity.FIRE,
                                         value=1.0, channel="1-3-25")))
    return desk, store


async def test_electrician_acl(broker: Mosquitto, tmp_path: Path) -> None:
    """With examples/mosquitto/acl: an electrician acknowledges an alarm (the command reaches
    the daemon's handler, the result comes back) but what they publish to events, alarms or
    status reaches no subscriber, and they receive nothing outside their topics."""
    site = _site()
    base = f"firewarden/{site}"
    alarm_id = "fire:panel:1-3-25"
    desk, store = _desk(tmp_path)
    config = _notifier_config(broker, tmp_path)
    try:
        async with (
            SecureCollector(broker, "observer", OBSERVER_PASSWORD) as observer,
            SecureCollector(broker, "electrician", ELECTRICIAN_PASSWORD,
                            topics=("#", f"{base}/status", f"{base}/cmd/result")) as electrician,
            MqttNotifier(config=config, site=site, outbox=store,
                         on_command=desk.command) as notifier,
        ):
            desk.notifiers.append(notifier)
            await eventually(lambda: notifier.connected, within=15, what="daemon session")
            await electrician.wait_for(lambda m: m.topic == f"{base}/status")
            await asyncio.sleep(0.3)  # the daemon's cmd/+ subscription is in place

            await electrician.publish(f"{base}/cmd/ack", json.dumps(
                {"alarm_id": alarm_id, "by": "李师傅", "id": "e1", "ts": time.time()}).encode())
            result = await electrician.wait_for(
                lambda m: m.topic == f"{base}/cmd/result" and b'"e1"' in m.payload)
            answer = json.loads(result.payload)
            assert (answer["ok"], answer["state"]) == (True, "acknowledged"), answer
            assert desk.engine.alarms[alarm_id].acked_by == "李师傅"
            await electrician.wait_for(lambda m: m.topic == f"{base}/events"
                                       and b'"acknowledged"' in m.payload)
            await electrician.wait_for(lambda m: m.topic.startswith(f"{base}/alarms/"))

            # Forged state: the broker drops these (the publisher is not told: MQTT 3.1.1).
            forged = {f"{base}/events": b'{"event": "cleared", "forged": true}',
                      f"{base}/alarms/{alarm_id}": b"",
                      f"{base}/status": b"offline-forged",
                      f"{base}/other": b"forged", "homeassistant/x/config": b"forged"}
            for topic, payload in forged.items():
                await electrician.publish(topic, payload, retain=topic.endswith("status"))
            # Messages the electrician must not read (published by the daemon's account).
            async with SecureCollector(broker, "firewarden", DAEMON_PASSWORD,
                                       topics=()) as daemon_user:
                for topic in (f"{base}/cmd/ack", f"{base}/internal", f"{base}/cmd/x"):
                    await daemon_user.publish(topic, b"private")
                await daemon_user.publish(f"{base}/status", b"online-marker", retain=False)
            # In-order delivery from each publisher: once the marker is here, all is.
            await observer.wait_for(lambda m: m.payload == b"online-marker")
            await electrician.wait_for(lambda m: m.payload == b"online-marker")
            seen = [m for m in observer.messages if b"forged" in m.payload]
            assert seen == [], seen
            private = [m for m in electrician.messages if m.payload == b"private"]
            assert private == [], private
            assert {m.topic for m in observer.messages if m.payload == b"private"} == {
                f"{base}/cmd/ack", f"{base}/internal", f"{base}/cmd/x"}
            allowed = (f"{base}/status", f"{base}/events", f"{base}/cmd/result")
            for message in electrician.messages:
                assert message.topic in allowed or message.topic.startswith(
                    f"{base}/alarms/") or not message.topic.startswith(f"{base}/"), message
            assert all(m.topic.startswith("firewarden/") and m.topic.split("/")[2] in (
                "status", "events", "alarms", "cmd") for m in electrician.messages)
    finally:
        store.close()


# --- command topics only touch alarms ---------------------------------------------------------

def test_command_path_imports_and_calls_only_alarm_code() -> None:
    """Structurally: daemon/commands.py imports only the alarm state machine (and hashlib,
    math), and AlarmDesk.command/publish call only the parser, the freshness check, the rule
    engine, the store, the notifiers' wake, InfluxDB's alarm queue, the watchers and the
    escalation step (an ack ends its chain at once): no transport, no config."""
    tree = ast.parse((ROOT / "daemon" / "commands.py").read_text(encoding="utf-8"))
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    assert modules <= {"__future__", "json", "dataclasses", "hashlib", "math",
                       "rules.alarm"}, modules
    called: set[str] = set()
    for method in (AlarmDesk.command, AlarmDesk.publish):
        body = ast.parse(textwrap.dedent(inspect.getsource(method)))
        for node in ast.walk(body):
            if isinstance(node, ast.Call):
                func = node.func
                called.add(func.attr if isinstance(func, ast.Attribute) else ast.unparse(func))
    assert called <= {"parse_command", "command", "signal", "_clock", "publish", "record",
                      "wake", "add_alarm", "watcher", "warning", "info", "str",
                      "UnknownAlarm", "CommandRefused", "admit", "_wall", "_refusal",
                      "escalate"}, called


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    conf: Path
    log: Path
    meter: SimulatedDevice
    sim: ModbusTcpSimulator
    site: str
    creds: Path


@contextlib.asynccontextmanager
async def running_daemon(tmp: Path, broker: Mosquitto, influxdb: InfluxDB) -> AsyncIterator[
        Daemon]:
    """``firewarden run`` as a process: MQTT over TLS as user firewarden (password from
    ``${CREDENTIALS_DIRECTORY}``), InfluxDB token and password from there too, polling a
    simulated meter over Modbus TCP that is in overcurrent (an alarm to command)."""
    creds = tmp / "credentials"
    creds.mkdir(mode=0o700)
    for name, secret in (("mqtt-password", DAEMON_PASSWORD), ("influx-token", INFLUX_TOKEN),
                         ("influx-password", INFLUX_PASSWORD)):
        _secret_file(creds, name, secret)
    site = _site()
    meter = SimulatedDevice(profile=load_profile("eastron-sdm630"), unit=1)
    meter.set("current", 80.0, channel="L2")
    async with ModbusTcpSimulator(devices=[meter]) as sim:
        raw = {
            "site": {"id": site},
            "daemon": {"state_dir": str(tmp / "state")},
            "influxdb": {"url": influxdb.url, "api": "v2", "org": "-",
                         "bucket": f"{site}/autogen", "flush_interval": "200ms",
                         "timeout": "2s", "username": "fw",
                         "password_file": "${CREDENTIALS_DIRECTORY}/influx-password",
                         "token_file": "${CREDENTIALS_DIRECTORY}/influx-token"},
            "mqtt": {"host": broker.host, "port": _tls_port(broker), "username": "firewarden",
                     "password_file": "${CREDENTIALS_DIRECTORY}/mqtt-password",
                     "tls_ca": str(broker.ca_file), "keepalive": 5},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port,
                     "timeout": "500ms"}],
            "device": [{"name": "b1-main", "bus": "gw", "unit": 1, "profile": "eastron-sdm630",
                        "poll": "250ms", "building": "1", "kind": "incomer",
                        "rated_current": 63}],
            "rules": {"overcurrent": {"on_delay": "300ms"}},
        }
        conf = tmp / "fw.toml"
        conf.write_text(dump_toml(raw), encoding="utf-8")
        log = tmp / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)],
                env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT)
        try:
            yield Daemon(proc, conf, log, meter, sim, site, creds)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _alarm_raised(collector: MqttCollector, site: str) -> bool:
    return any(m.topic == f"firewarden/{site}/events" and b'"raised"' in m.payload
               for m in collector.messages)


def _registers(meter: SimulatedDevice) -> dict[str, list[Any]]:
    return {key: list(meter.registers(point.quantity, point.channel or None))
            for key, point in meter.points.items()}


async def test_command_topics_never_write_devices_or_config(
        broker: Mosquitto, influxdb: InfluxDB, tmp_path: Path) -> None:
    """Every verb, garbage verbs, garbage bodies and topic-injection attempts sent to a running
    daemon: the simulated meter's registers and the config file are unchanged, no Modbus write
    reached the device, and only alarms moved."""
    async with running_daemon(tmp_path, broker, influxdb) as daemon:
        base = f"firewarden/{daemon.site}"
        async with SecureCollector(broker, "electrician", ELECTRICIAN_PASSWORD) as electrician:
            await eventually(lambda: _alarm_raised(electrician, daemon.site), within=30,
                             what=f"the overcurrent alarm\n{daemon.log.read_text()}")
            registers = _registers(daemon.meter)
            config = daemon.conf.read_bytes()
            config_mtime = daemon.conf.stat().st_mtime_ns
            writes: list[tuple[int, int, Any]] = []
            context: Any = daemon.meter.context
            original = context.setValues

            def record(func_code: int, address: int, values: Any) -> Any:
                writes.append((func_code, address, values))
                return original(func_code, address, values)

            context.setValues = record
            alarm_id = "overcurrent:b1-main:L2"
            bodies = [
                {"alarm_id": alarm_id, "by": "li", "ts": time.time()},
                {"alarm_id": alarm_id, "by": "li", "minutes": 30, "ts": time.time()},
                {"alarm_id": "modbus:b1-main", "by": "li", "register": 40001, "value": 0},
                {"alarm_id": alarm_id, "by": "li", "write": {"unit": 1, "address": 0}},
                {"device": "b1-main", "unit": 1, "address": 0, "value": 1},
                {"config": {"mqtt": {"host": "evil"}}, "by": "li"},
            ]
            sent = 0
            # (not cmd/result: the daemon ignores it, and what an electrician writes there
            # goes straight to the other readers of cmd/result; see examples/mosquitto/acl)
            verbs = [*VERBS, "write", "set", "config", "reload", "modbus", "", "x" * 300,
                     "..", "%2e%2e", "ack;rm -rf ~", "写入"]
            for verb in verbs:
                for body in bodies:
                    await electrician.publish(f"{base}/cmd/{verb}", json.dumps(body).encode())
                    sent += 1
                await electrician.publish(f"{base}/cmd/{verb}", b"\xff\x00garbage")
            for topic in (f"{base}/cmd/../../x", f"{base}/cmd/ack/../../../config",
                          f"{base}/cmd/ack/extra", f"{base}/cmd//ack", f"{base}/cmd",
                          f"{base}/cmd/ack;rm -rf /"):
                await electrician.publish(topic, json.dumps(bodies[0]).encode())
            for wildcard in (f"{base}/cmd/#", f"{base}/cmd/+"):
                with pytest.raises(ValueError, match=r"wildcard|Publish topic"):
                    await electrician.publish(wildcard, b"{}")  # refused by the client already
            marker = {"alarm_id": alarm_id, "by": "li", "id": "last", "ts": time.time()}
            await electrician.publish(f"{base}/cmd/ack", json.dumps(marker).encode())
            await electrician.wait_for(lambda m: m.topic == f"{base}/cmd/result"
                                       and b'"last"' in m.payload, timeout=20)
            await asyncio.sleep(1.0)  # a few more polls of the meter
            context.setValues = original

            results = [json.loads(m.payload) for m in electrician.on(f"{base}/cmd/result")]
            # one answer per command the daemon subscribes to (cmd/<one level>, not result)
            answered = {str(r["verb"]) for r in results}
            assert answered == {clip(v) for v in verbs}, answered  # and no long echo
            # no injection topic reached the handler (none is one level under cmd/)
            assert len(results) == len(verbs) * (len(bodies) + 1) + 1, len(results)
            assert all(isinstance(r.get("ok"), bool) for r in results)
            assert all(isinstance(r.get("error"), str) for r in results if not r["ok"])
            accepted = [r for r in results if r["ok"]]
            assert {r["verb"] for r in accepted} <= set(VERBS)
            assert {r["alarm_id"] for r in accepted} <= {alarm_id}
            assert writes == [], writes
            assert _registers(daemon.meter) == registers
            assert daemon.conf.read_bytes() == config
            assert daemon.conf.stat().st_mtime_ns == config_mtime
            assert daemon.proc.poll() is None, daemon.log.read_text()
    output = daemon.log.read_text(encoding="utf-8")
    assert "Traceback" not in output, output
    assert daemon.proc.returncode == 0, output


async def test_daemon_over_tls_keeps_secrets_out_of_logs_cmdline_and_environment(
        broker: Mosquitto, influxdb: InfluxDB, tmp_path: Path) -> None:
    """The daemon as a process: MQTT over TLS with a password, InfluxDB token and password,
    all from ``${CREDENTIALS_DIRECTORY}``. ``firewarden alarms ack`` (TLS + password as an
    electrician) acknowledges its alarm. No secret is in /proc/<pid>/cmdline, in
    /proc/<pid>/environ (only the directory's path) or anywhere in the log."""
    async with (
        running_daemon(tmp_path, broker, influxdb) as daemon,
        SecureCollector(broker, "electrician", ELECTRICIAN_PASSWORD) as electrician,
    ):
        await eventually(lambda: _alarm_raised(electrician, daemon.site), within=30,
                         what=f"the overcurrent alarm\n{daemon.log.read_text()}")
        assert "MQTT connected to 127.0.0.1" in daemon.log.read_text(encoding="utf-8")
        proc_dir = Path(f"/proc/{daemon.proc.pid}")
        cmdline = (proc_dir / "cmdline").read_bytes()
        environ = (proc_dir / "environ").read_bytes()
        assert f"CREDENTIALS_DIRECTORY={daemon.creds}".encode() in environ.split(b"\0")

        # the operator's CLI over TLS, as an electrician with their own config and password
        cli_conf = tmp_path / "electrician.toml"
        cli_conf.write_text(dump_toml({
            "site": {"id": daemon.site}, "daemon": {"state_dir": str(tmp_path / "state")},
            "mqtt": {"host": broker.host, "port": _tls_port(broker),
                     "username": "electrician", "tls_ca": str(broker.ca_file),
                     "password_file": str(_secret_file(tmp_path, "elec-pw",
                                                       ELECTRICIAN_PASSWORD))}}),
            encoding="utf-8")
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "daemon.cli", "alarms", "-c",
                             str(cli_conf), "ack", "overcurrent:b1-main:L2", "--by", "li"],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "is now acknowledged" in done.stdout
        await electrician.wait_for(lambda m: m.topic == f"firewarden/{daemon.site}/events"
                                   and b'"acknowledged"' in m.payload)
    output = daemon.log.read_bytes()
    assert daemon.proc.returncode == 0, output.decode()
    for secret in (*SECRETS, ELECTRICIAN_PASSWORD):
        for where, text in (("cmdline", cmdline), ("environ", environ), ("log", output),
                            ("alarms CLI", (done.stdout + done.stderr).encode())):
            assert secret.encode() not in text, f"{secret!r} in {where}"
