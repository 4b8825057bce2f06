"""Modbus errors and link counters, shared by every transport, the poller and the scanner.

The kinds (see ``drivers.modbus.transport`` for what each means to the poller):

- ``ModbusDeviceError``: the device answered with a Modbus exception; the link is fine.
- ``ModbusTimeoutError`` and ``ModbusFrameError`` (``CrcError``, ``FrameError``): one device
  did not answer, or answered garbage; the link stays open.
- ``ModbusLinkError``: the link itself failed; the caller closes and reconnects.

This module imports nothing from the transports, so that every transport module can import
it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

BUSY = 6  # Modbus exception "server device busy": retry later, the link is fine


class ModbusError(Exception):
    """A Modbus read failed."""


class ModbusDeviceError(ModbusError):
    """The device answered with a Modbus exception response (``code``)."""

    NAMES: ClassVar[dict[int, str]] = {
        1: "illegal function", 2: "illegal data address", 3: "illegal data value",
        4: "device failure", 5: "acknowledge", 6: "device busy", 8: "memory parity error",
        10: "gateway path unavailable", 11: "gateway target did not respond"}

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"Modbus exception {code} ({self.NAMES.get(code, 'unknown')})")

    @property
    def busy(self) -> bool:
        """Busy is not broken: retry without reconnecting."""
        return self.code == BUSY


class ModbusLinkError(ModbusError):
    """No usable answer: timeout, connection refused or lost, malformed reply. Reconnect."""


class ModbusTimeoutError(ModbusError):
    """The device did not answer in time. A device fault: the link stays open."""


class ModbusFrameError(ModbusError):
    """The answer was garbled or did not fit the request. A device (or wiring) fault: the
    link stays open."""


class CrcError(ModbusFrameError):
    """The answer's CRC does not match: line noise, a baud-rate mismatch, a collision."""


class FrameError(ModbusFrameError):
    """A clean (or truncated) frame that does not answer the request: other unit or function,
    wrong byte count, wrong length."""


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Per-unit transaction faults a transport has seen since it was made (across
    reconnects)."""

    crc_errors: int = 0
    frame_errors: int = 0
    timeouts: int = 0

    @property
    def garbled(self) -> int:
        """Answers that arrived but could not be used (CRC or framing)."""
        return self.crc_errors + self.frame_errors


class UnsupportedBusError(NotImplementedError):
    """The bus type is valid config but has no transport yet."""
