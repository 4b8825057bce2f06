"""A throwaway Debian 12 machine booted with systemd-nspawn: systemd as PID 1, for tests that
need the real service manager (sandbox, watchdog, reload, credentials, device policy).

The root is built once with debootstrap and cached outside the checkout in
``$FIREWARDEN_TEST_CACHE`` (default /var/cache/firewarden-test) as ``root-<hash of the
package list>``; it is built in a temporary directory and renamed into place, so an
interrupted build is never reused. Each boot runs on a fresh copy of it (``Machine``), removed
afterwards, so the cache never sees what a test installed. Needs root, debootstrap and
systemd-nspawn (``apt-get install systemd-container debootstrap``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "mosquitto",
            "mosquitto-clients", "socat")
CACHE = Path(os.environ.get("FIREWARDEN_TEST_CACHE", "/var/cache/firewarden-test"))
STALE = 3 * 3600.0  # s: leftovers of killed runs older than this are removed
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1


def mirror() -> str:
    """The host's Debian mirror (from its apt sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for uri in re.findall(r"^\s*(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    return "http://deb.debian.org/debian"


def _clean_stale() -> None:
    for leftover in [*CACHE.glob(".build-*"), *CACHE.glob(".run-*")]:
        if time.time() - leftover.stat().st_mtime > STALE:
            shutil.rmtree(leftover, ignore_errors=True)


def cached_root() -> Path:
    """The minimal Debian root with ``PACKAGES``, built now if it is not cached yet."""
    key = hashlib.sha256(f"{SUITE} minbase {','.join(PACKAGES)}".encode()).hexdigest()[:16]
    root = CACHE / f"root-{key}"
    if root.is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    _clean_stale()
    build = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=CACHE))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                        SUITE, str(build / "root"), mirror()],
                       check=True, capture_output=True, timeout=1800)
        try:
            (build / "root").rename(root)  # atomic: the cache holds whole roots only
        except OSError:
            if not root.is_dir():  # else another run finished first: use its root
                raise
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"debootstrap failed:\n{exc.stdout.decode()[-3000:]}"
                           f"{exc.stderr.decode()[-3000:]}") from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return root


def _die_with_parent() -> None:
    """In the nspawn child: SIGTERM it (= power the container off) if the test process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Machine:
    """A booted copy of ``image``; a context manager that always powers it off (or kills it)
    and removes the copy. ``run`` executes a command inside, with a clean environment."""

    def __init__(self, *, image: Path, name: str = "firewarden-test") -> None:
        self.image = image
        self.name = name
        self._dir = Path(tempfile.mkdtemp(prefix=".run-", dir=image.parent))
        self.root = self._dir / "root"
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.pid = 0  # the container's systemd, as seen from here

    def __enter__(self) -> Self:
        try:
            self._boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _boot(self) -> None:
        subprocess.run(["cp", "-a", "--reflink=auto", str(self.image), str(self.root)],
                       check=True, timeout=300)
        # A unified cgroup hierarchy (even on a hybrid host) plus CAP_BPF and bpf(): what
        # systemd on a real box uses for DevicePolicy=/DeviceAllow=; nspawn's defaults
        # leave the container's systemd unable to enforce them, silently.
        self._nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "-b", "--console=passive",
             "--register=no", "--keep-unit", "--private-network", f"--machine={self.name}",
             "--capability=CAP_BPF", "--system-call-filter=bpf"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while not self.pid:
            if self._nspawn.poll() is not None or time.monotonic() > deadline:
                out = self._nspawn.stdout.read().decode() if self._nspawn.stdout else ""
                raise RuntimeError(f"systemd-nspawn did not boot the container:\n{out}")
            self.pid = self._find_init()
            time.sleep(0.1)
        while True:  # PID 1 is there; its bus socket comes a moment later
            state = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=90)
            if state.stdout.strip() in ("running", "degraded"):
                return
            if "Failed to connect to bus" not in state.stderr or time.monotonic() > deadline:
                raise RuntimeError(f"container did not boot: {state.stdout}{state.stderr}")
            time.sleep(0.2)

    def _find_init(self) -> int:
        assert self._nspawn is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            head, _, rest = stat.rpartition(") ")
            if head.partition("(")[2] == "systemd" and rest.split()[1] == str(self._nspawn.pid):
                return int(entry.name)
        return 0

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            input: str | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the container (all its namespaces), as root, clean environment."""
        clean = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_COLORS": "0",
                 "SYSTEMD_PAGER": "", **(env or {})}
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", "env", "-i",
             *(f"{k}={v}" for k, v in clean.items()), *argv],
            input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def path(self, inside: str) -> Path:
        """A path inside the container, as reached from here (through its PID 1's root: the
        container's own mounts, /run and /dev included)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def close(self) -> None:
        proc = self._nspawn
        if proc is not None and proc.poll() is None:
            if self.pid:
                self.run("systemctl", "poweroff", "--no-block", check=False, timeout=30)
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)
