"""GB/T 26875.3-2011 codec, the public API (pure: no I/O, no clock reads).

Frames: ``decode_frame``/``encode_frame``, ``StreamDecoder`` for byte streams, replies
(``ack_for``, ``nak_for``, ``heartbeat``), and two renderings: ``frame_to_json`` (nested,
JSON-able) and ``describe`` (text for people, used by ``firewarden gb26875 decode``).
The layers live in ``wire`` (errors, time, text, flags), ``tables`` (type codes), ``objects``
(information object layouts), ``adu`` (ADU bodies) and ``frame`` (header, checksum, stream);
this module re-exports them.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from drivers.gb26875.adu import MAX_ADU, Adu, AduType, decode_adu, encode_adu
from drivers.gb26875.frame import (
    MAX_FRAME,
    Command,
    Frame,
    Header,
    StreamDecoder,
    ack_for,
    checksum,
    command_name,
    decode_frame,
    encode_frame,
    heartbeat,
    nak_for,
)
from drivers.gb26875.objects import (
    AduObject,
    ClockTime,
    ComponentAnalog,
    ComponentConfig,
    ComponentRef,
    ComponentStatus,
    Operation,
    OperationQuery,
    Reserved,
    SoftwareVersion,
    SystemConfig,
    SystemRef,
    SystemStatus,
    SystemTime,
    UitdConfig,
    UitdOperation,
    UitdOperationQuery,
    UitdStatus,
    UitdVersion,
)
from drivers.gb26875.tables import analog_kind, component_type_name, system_type_name
from drivers.gb26875.wire import (
    ComponentStatusFlags,
    Flags,
    FrameError,
    FrameErrorReason,
    OperationFlags,
    SystemStatusFlags,
    UitdOperationFlags,
    UitdStatusFlags,
)

__all__ = [
    "MAX_ADU",
    "MAX_FRAME",
    "Adu",
    "AduObject",
    "AduType",
    "ClockTime",
    "Command",
    "ComponentAnalog",
    "ComponentConfig",
    "ComponentRef",
    "ComponentStatus",
    "ComponentStatusFlags",
    "Flags",
    "Frame",
    "FrameError",
    "FrameErrorReason",
    "Header",
    "Operation",
    "OperationFlags",
    "OperationQuery",
    "Reserved",
    "SoftwareVersion",
    "StreamDecoder",
    "SystemConfig",
    "SystemRef",
    "SystemStatus",
    "SystemStatusFlags",
    "SystemTime",
    "UitdConfig",
    "UitdOperation",
    "UitdOperationFlags",
    "UitdOperationQuery",
    "UitdStatus",
    "UitdStatusFlags",
    "UitdVersion",
    "ack_for",
    "checksum",
    "decode_adu",
    "decode_frame",
    "decode_hex",
    "describe",
    "encode_adu",
    "encode_frame",
    "frame_to_json",
    "heartbeat",
    "nak_for",
    "object_to_json",
]


def decode_hex(text: str) -> Frame:
    """Decode one frame written as hex (spaces, ``:``/``-`` separators and ``0x`` allowed).

    Raises ValueError for text that is no hex, FrameError (a ValueError) for a bad frame.
    """
    cleaned = text.strip().lower().replace("0x", "")
    for sep in " :-\t\n,":
        cleaned = cleaned.replace(sep, "")
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"not hex: {text[:60]!r}") from None
    return decode_frame(data)


def object_to_json(obj: AduObject) -> dict[str, Any]:
    """One information object as a flat dict: fields, flag booleans, type names, scaled value."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, Flags):
            out[field.name] = value.word
            out.update(value.as_dict())
        elif isinstance(value, datetime):
            out[field.name] = value.isoformat()
        else:
            out[field.name] = value
        if field.name == "system_type":
            out["system_type_name"] = system_type_name(value)
            out["system_type_name_zh"] = system_type_name(value, zh=True)
        elif field.name == "component_type":
            out["component_type_name"] = component_type_name(value)
            out["component_type_name_zh"] = component_type_name(value, zh=True)
    if isinstance(obj, ComponentAnalog):
        kind = analog_kind(obj.analog_type)
        out.update(analog_type_name=kind.name, analog_type_name_zh=kind.name_zh,
                   value=obj.value, unit=kind.unit)
    return out


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """Nested JSON-able form: ``{"header": {...}, "adu": {type, type_name, objects} | None}``.

    Frames whose ADU is kept raw (user-defined types or commands) add ``raw_adu`` as hex.
    """
    h = frame.header
    out: dict[str, Any] = {
        "header": {
            "serial": h.serial,
            "version": list(h.version),
            "time": None if h.time is None else h.time.isoformat(),
            "source": h.source,
            "destination": h.destination,
            "command": command_name(h.command),
        },
        "adu": None,
    }
    if frame.adu is not None:
        out["adu"] = {
            "type": int(frame.adu.type),
            "type_name": frame.adu.type.name.lower(),
            "objects": [object_to_json(obj) for obj in frame.adu.objects],
        }
    elif frame.raw_adu:
        out["raw_adu"] = frame.raw_adu.hex()
    return out


def _describe_object(obj: AduObject) -> str:
    parts: list[str] = []
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, Flags):
            active = value.active()
            if value.other:
                active.append(f"reserved bits {value.other:#x}")
            parts.append(f"{field.name}=[{', '.join(active) or 'none'}]")
        elif isinstance(value, datetime):
            parts.append(f"{field.name}={value:%Y-%m-%d %H:%M:%S}")
        elif field.name == "time" and value is None:
            parts.append(f"{field.name}=invalid")
        elif field.name == "system_type":
            parts.append(f"system={system_type_name(value, zh=True)} ({value})")
        elif field.name == "component_type":
            parts.append(f"component={component_type_name(value, zh=True)} ({value})")
        elif field.name == "analog_type" and isinstance(obj, ComponentAnalog):
            kind = analog_kind(value)
            parts.append(f"{kind.name}={obj.value:g}{' ' + kind.unit if kind.unit else ''}")
        elif field.name == "raw":
            continue
        elif isinstance(value, str):
            parts.append(f"{field.name}={value!r}")
        else:
            parts.append(f"{field.name}={value}")
    return ", ".join(parts)


def describe(frame: Frame) -> str:
    """Multi-line text for people: the header line, then one line per object."""
    h = frame.header
    when = "invalid time" if h.time is None else f"{h.time:%Y-%m-%d %H:%M:%S}"
    lines = [f"serial {h.serial}, version {h.version[0]}.{h.version[1]}, "
             f"{when}, {command_name(h.command)} ({int(h.command)}), "
             f"{h.source} -> {h.destination}, ADU {len(frame.raw_adu)} bytes"]
    if frame.adu is not None:
        n = len(frame.adu.objects)
        lines.append(f"{frame.adu.type.name.lower()} (type {int(frame.adu.type)}), "
                     f"{n} object{'' if n == 1 else 's'}")
        lines.extend(f"  {i}. {_describe_object(obj)}"
                     for i, obj in enumerate(frame.adu.objects, 1))
    elif frame.raw_adu:
        lines.append(f"raw ADU: {frame.raw_adu.hex(' ')}")
    return "\n".join(lines)
