"""Logging set-up: journal-friendly under systemd, timestamped on a terminal.

When stderr is the journal (``JOURNAL_STREAM`` names its device and inode, as systemd sets it
for ``StandardError=journal``), each line is ``<N>logger: message`` with N the syslog priority:
journald stores it at that priority (``journalctl -p warning`` works) and adds its own
timestamps, so ours would only be noise. Anywhere else: ``time LEVEL logger: message``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# syslog priorities (sd-daemon.h SD_*): emerg 0 ... debug 7
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
            logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``; continuation lines (tracebacks) keep the priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def to_journal(stream: TextIO = sys.stderr) -> bool:
    """Whether ``stream`` is the journal connection systemd gave us (not a redirect)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return stat.st_dev == int(device) and stat.st_ino == int(inode)


def setup(level: str, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log transitions ourselves
