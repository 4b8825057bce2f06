"""Private, throwaway instances of the peers firewarden talks to: mosquitto and influxd.

Tests, benchmarks and the demo start their own broker and database on free loopback ports in
a scratch directory, so nothing depends on (or disturbs) services already running on the box.
Each service is a small synchronous object: ``start()``, ``stop()``, or use it as a context
manager. A service can be stopped and started again on the same port with the same data,
which is how tests simulate an outage.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class ServiceError(RuntimeError):
    """A service binary is missing, or the service did not come up in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it; racy but fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Service:
    """A child process with a work directory and a log file; subclasses say how to run it.

    Subclasses implement ``_command()`` (after writing their config) and ``_ready()``.
    """

    binary: str = ""
    name: str = "service"

    def __init__(self, *, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout: float = 30.0) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.start_timeout = start_timeout
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        """Whether the binary is installed (callers skip or fail when it is not)."""
        return shutil.which(cls.binary) is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start the process and wait until it serves; raise ServiceError with its log if not."""
        if self.running:
            return self
        path = shutil.which(self.binary)
        if path is None:
            raise ServiceError(f"{self.binary} is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self._command(path)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self._proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} did not come up on {self.host}:{self.port} within "
                           f"{self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and wait for it; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process: no goodbye to clients, as in a crash or power cut."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _command(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        return port_open(self.host, self.port)


class Mosquitto(Service):
    """A private mosquitto broker: anonymous, one loopback listener.

    With ``persistence=True`` the broker saves retained messages, persistent sessions and
    their queued messages on a clean stop and loads them on the next start (same workdir).
    ``users`` (name -> password) refuses anonymous clients. ``tls=True`` adds a TLS listener
    on ``tls_port`` with a private CA (``ca_file``) and a server certificate for the host's IP
    (made with ``openssl`` in the workdir; clients need no certificate of their own).
    ``acl_file`` restricts what each user may read and write (mosquitto's ``acl_file``).
    """

    binary = "mosquitto"
    name = "mosquitto"

    def __init__(self, *, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout: float = 30.0, persistence: bool = False,
                 users: dict[str, str] | None = None, tls: bool = False,
                 tls_port: int | None = None, acl_file: Path | None = None) -> None:
        super().__init__(workdir=workdir, host=host, port=port, start_timeout=start_timeout)
        self.persistence = persistence
        self.users = users or {}  # name -> password: when set, anonymous clients are refused
        self.tls = tls
        self.tls_port = (tls_port if tls_port is not None else free_port(host)) if tls else None
        self.acl_file = acl_file
        self.ca_file = workdir / "tls" / "ca.crt"
        self.cert_file = workdir / "tls" / "server.crt"
        self.key_file = workdir / "tls" / "server.key"

    @classmethod
    def tls_available(cls) -> bool:
        """Whether ``openssl`` is installed (needed for ``tls=True``)."""
        return shutil.which("openssl") is not None

    def make_certificates(self) -> Path:
        """A private CA and a server certificate for ``host`` (SAN IP, or DNS for a name),
        valid two days, in ``workdir/tls``; kept if already there. Returns the CA file."""
        if self.ca_file.exists() and self.cert_file.exists() and self.key_file.exists():
            return self.ca_file
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ServiceError("openssl is not installed (needed for a TLS broker)")
        tls = self.ca_file.parent
        tls.mkdir(parents=True, exist_ok=True)
        ca_key, csr, ext = tls / "ca.key", tls / "server.csr", tls / "server.ext"
        try:
            socket.inet_aton(self.host)
            san = f"IP:{self.host}"
        except OSError:
            san = f"DNS:{self.host}"
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
                       encoding="utf-8")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        steps = [
            [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(self.ca_file),
             "-days", "2", "-subj", f"/CN=firewarden test CA {self.workdir.name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", *ec, "-keyout", str(self.key_file), "-out", str(csr),
             "-subj", f"/CN={self.host}"],
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey",
             str(ca_key), "-CAcreateserial", "-out", str(self.cert_file), "-days", "2",
             "-sha256", "-extfile", str(ext)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ServiceError(f"{' '.join(step[:3])} failed: {done.stderr.strip()}")
        self.key_file.chmod(0o600)
        return self.ca_file

    def _command(self, binary: str) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        persistence = (f"persistence true\npersistence_location {self.workdir}/\n"
                       if self.persistence else "persistence false\n")
        # Started as root, mosquitto drops to user "mosquitto", who cannot write our workdir.
        user = "user root\n" if os.geteuid() == 0 else ""
        auth = "allow_anonymous true\n"
        if self.users:
            passwords = self.workdir / "passwords"
            passwords.write_text("", encoding="utf-8")
            passwords.chmod(0o600)
            for name, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), name, password],
                               check=True, capture_output=True)
            auth = f"allow_anonymous false\npassword_file {passwords}\n"
        if self.acl_file is not None:
            auth += f"acl_file {self.acl_file}\n"
        tls = ""
        if self.tls:
            self.make_certificates()
            tls = (f"listener {self.tls_port} {self.host}\n"
                   f"cafile {self.ca_file}\ncertfile {self.cert_file}\nkeyfile {self.key_file}\n"
                   "require_certificate false\n")
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"{tls}"
            f"{auth}"
            f"{persistence}{user}"
            "log_dest stdout\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n",
            encoding="utf-8",
        )
        return [binary, "-c", str(conf)]

    def _ready(self) -> bool:
        return port_open(self.host, self.port) and (
            self.tls_port is None or port_open(self.host, self.tls_port))


class InfluxDB(Service):
    """A private InfluxDB 1.x (``influxd``): HTTP API on ``port``, RPC on its own free port."""

    binary = "influxd"
    name = "influxd"

    def __init__(self, *, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 start_timeout: float = 30.0) -> None:
        super().__init__(workdir=workdir, host=host, port=port, start_timeout=start_timeout)
        # The RPC (backup/restore) listener defaults to :8088; two instances would collide.
        self.rpc_port = free_port(host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self, binary: str) -> list[str]:
        conf = self.workdir / "influxdb.conf"
        data = self.workdir / "data"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            "[meta]\n"
            f'  dir = "{data / "meta"}"\n'
            "  logging-enabled = false\n"
            "[data]\n"
            f'  dir = "{data / "data"}"\n'
            f'  wal-dir = "{data / "wal"}"\n'
            "  query-log-enabled = false\n"
            "[monitor]\n"
            "  store-enabled = false\n"
            "[continuous_queries]\n"
            "  log-enabled = false\n"
            "[subscriber]\n"
            "  enabled = false\n"
            "[http]\n"
            f'  bind-address = "{self.host}:{self.port}"\n'
            "  log-enabled = false\n"
            "  pprof-enabled = false\n"
            "[logging]\n"
            '  level = "warn"\n'
            "  suppress-logo = true\n",
            encoding="utf-8",
        )
        return [binary, "-config", str(conf)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return int(response.status) == 204
        except (OSError, urllib.error.URLError):
            return False

    def query(self, db: str, q: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL; rows of every series as dicts (tags included, ``time`` in ``epoch``)."""
        params = urllib.parse.urlencode({"db": db, "q": q, "epoch": epoch})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=10) as response:
            body = json.load(response)
        rows: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise ServiceError(f"query {q!r} failed: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (idempotent in 1.x)."""
        self._post_query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self._post_query(f'DROP DATABASE "{name}"')

    def _post_query(self, q: str) -> None:
        data = urllib.parse.urlencode({"q": q}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as response:
            body = json.load(response)
        for result in body.get("results", []):
            if "error" in result:
                raise ServiceError(f"{q!r} failed: {result['error']}")


class VictoriaMetrics(Service):
    """A private VictoriaMetrics: accepts InfluxDB line protocol on ``/write`` and
    ``/api/v2/write``, answers ``/api/v1/export``. Numeric fields become metrics named
    ``{measurement}_{field}`` with the tags as labels (strings are not stored)."""

    binary = "victoria-metrics"
    name = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self, binary: str) -> list[str]:
        return [binary, f"-storageDataPath={self.workdir / 'data'}",
                f"-httpListenAddr={self.host}:{self.port}", "-retentionPeriod=100y",
                "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN"]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every series matching ``match`` as ``{"metric": {...}, "values": [...],
        "timestamps": [ms...]}``, after flushing what was just written."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        params = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{params}",
                                    timeout=10) as response:
            return [json.loads(row) for row in response.read().decode().splitlines() if row]
