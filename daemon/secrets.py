"""Secrets from files, including systemd credentials (``LoadCredential=``).

A secret path in the config may name ``${CREDENTIALS_DIRECTORY}``, the private, read-only,
in-memory directory systemd fills for the unit (``password_file =
"${CREDENTIALS_DIRECTORY}/mqtt-password"``); other ``${VAR}`` references are expanded too.
Secrets are read once, at start; a missing one is a startup error naming the config field and
the path, never the content. Nothing here logs a secret.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from daemon.config import Config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretError(RuntimeError):
    """A secret cannot be read; the message says which and why (never its content)."""


class UnsetVariable(SecretError):
    """The path names an environment variable that is not set (e.g. outside systemd)."""


def resolve(path: Path, what: str) -> Path:
    """``path`` with ``${VAR}`` references expanded; SecretError if one is not set."""
    text = str(path)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            hint = (" (set by systemd for a unit with LoadCredential=; outside systemd give a "
                    "plain path)") if name == "CREDENTIALS_DIRECTORY" else ""
            raise UnsetVariable(f"{what}: {text} uses ${{{name}}}, which is not set{hint}")
        return found

    return Path(_VAR.sub(value, text))


def read_secret(path: Path | None, what: str) -> str | None:
    """The secret in ``path`` without its trailing newline; None when no path is set."""
    if path is None:
        return None
    resolved = resolve(path, what)
    try:
        secret = resolved.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {resolved}: {exc.strerror or exc}") from None
    if not secret:
        # an installer placeholder nobody filled: an empty password would fail obscurely later
        raise SecretError(f"{what}: {resolved} is empty")
    return secret


def secret_paths(config: Config) -> list[tuple[str, Path]]:
    """Every secret file a config names, as (config field, path)."""
    found: list[tuple[str, Path | None]] = [
        ("influxdb.password_file", config.influxdb.password_file),
        ("influxdb.token_file", config.influxdb.token_file),
        ("mqtt.password_file", config.mqtt.password_file)]
    for i, hook in enumerate(config.webhooks):
        found += [(f"webhook[{i}].url_file", hook.url_file),
                  (f"webhook[{i}].secret_file", hook.secret_file)]
    return [(what, path) for what, path in found if path is not None]


def check_secrets(config: Config) -> list[str]:
    """One line per secret that cannot be read (empty: all fine); reads, never logs them."""
    problems: list[str] = []
    for what, path in secret_paths(config):
        try:
            read_secret(path, what)
        except SecretError as exc:
            problems.append(str(exc))
    return problems
