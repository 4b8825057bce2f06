"""A linked pair of pseudo-terminals from socat: a serial cable without hardware.

``SocatPair`` runs ``socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B``; whatever is written
to one end comes out of the other. The master side opens ``a``, the simulated slaves ``b``.
``stop()`` and ``start()`` again emulate pulling and replugging the cable (a USB adapter going
away): both ends vanish, open file descriptors get an I/O error, and the paths come back.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class SocatError(RuntimeError):
    """socat is missing or did not create the pty pair in time."""


class SocatPair:
    """A socat pty pair in ``directory`` (a fresh temporary one by default); a context
    manager."""

    def __init__(self, *, directory: Path | None = None, start_timeout: float = 10.0) -> None:
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="socat-")) if directory is None \
            else directory
        self.a = self.directory / "ttyA"  # the master's end
        self.b = self.directory / "ttyB"  # the slaves' end
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("socat") is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Create the pair (again); returns once both links exist."""
        if self.running:
            return
        binary = shutil.which("socat")
        if binary is None:
            raise SocatError("socat is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._unlink()
        self._proc = subprocess.Popen(
            [binary, "-d", "-d", f"pty,raw,echo=0,link={self.a}",
             f"pty,raw,echo=0,link={self.b}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self._start_timeout
        while not (self.a.exists() and self.b.exists()):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self._proc = None
                raise SocatError(f"socat exited: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SocatError(f"socat did not create {self.a} and {self.b} in time")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill socat: both ends disappear, like an unplugged adapter."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        # socat removes its links on SIGTERM; make sure, so a stale link never points at a
        # /dev/pts number that the kernel hands to someone else
        self._unlink()

    def restart(self) -> None:
        """Unplug and replug."""
        self.stop()
        self.start()

    def _unlink(self) -> None:
        for link in (self.a, self.b):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
