"""``firewarden check``'s look at the box: can the listeners bind, can the state be written.

The config may be valid and still not start here: a port taken by another program, a listen
address that is not this machine's, a state directory the user cannot write. The probes open
and close at once and leave nothing behind (a test file is removed again), and they run as
whoever runs ``check``, which may not be the service's own user, so what depends on the user
is a warning, not an error. A port that is in use is a warning too: the usual reason is the
running daemon itself.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Config


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "ok", "warning" or "error"
    text: str


def probe(config: Config) -> list[Finding]:
    """Every listener's bind and the state directory's write, as findings."""
    findings = [_bind(f"fire_panel[{i}]", panel.host, panel.port)
                for i, panel in enumerate(config.fire_panels)
                if panel.enabled and panel.transport == "tcp-server"
                and isinstance(panel.port, int)]
    return [*findings, _state_dir(config.daemon.state_dir)]


def _bind(where: str, host: str | None, port: int) -> Finding:
    shown = f"{host or '*'}:{port}"
    try:
        for sock in _sockets(host, port):
            sock.close()
    except socket.gaierror as exc:
        return Finding("error", f"{where}.host: {host!r} cannot be resolved ({exc.strerror})")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Finding("warning", f"{where}.port: {shown} is in use; fine if that is the "
                                      f"running firewarden daemon, otherwise another program "
                                      f"holds it (`ss -ltnp 'sport = :{port}'` shows which)")
        if exc.errno == errno.EADDRNOTAVAIL:
            return Finding("error", f"{where}.host: {host!r} is not an address of this machine")
        if exc.errno == errno.EACCES:
            return Finding("error", f"{where}.port: {shown}: not allowed to listen there "
                                    f"(a privileged port?); use a port >= 1024")
        return Finding("error", f"{where}: cannot listen on {shown}: {exc.strerror}")
    return Finding("ok", f"{where}: can listen on {shown}")


def _sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bound sockets, as the fire-panel listener makes them (SO_REUSEADDR, dual stack)."""
    if not host:
        family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
        return [socket.create_server(("", port), family=family,
                                     dualstack_ipv6=family == socket.AF_INET6)]
    out: list[socket.socket] = []
    try:
        for family, *_, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE):
            out.append(socket.create_server((address[0], port), family=family))
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out


def _state_dir(path: Path) -> Finding:
    where = f"daemon.state_dir: {str(path)!r}"
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK | os.X_OK):
            return Finding("ok", f"{where} does not exist yet; the daemon will create it")
        return Finding("warning", f"{where} does not exist and this user (uid {os.getuid()}) "
                                  f"cannot create it in {str(parent)!r}; the service's user "
                                  f"must be able to (systemd: StateDirectory=)")
    if not path.is_dir():
        return Finding("error", f"{where} exists and is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".firewarden-check-"):
            pass
    except OSError as exc:
        return Finding("warning", f"{where} is not writable by this user (uid {os.getuid()}: "
                                  f"{exc.strerror}); the service's user must be able to write "
                                  f"it")
    return Finding("ok", f"{where} is writable")
