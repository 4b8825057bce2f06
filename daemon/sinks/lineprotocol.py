"""InfluxDB line protocol, pure: escaping, value types, nanosecond timestamps.

Rules (InfluxDB 1.x line protocol reference, checked against influxd 1.6):

- measurement: escape ``,`` and space;
- tag keys, tag values, field keys: escape ``,``, ``=`` and space;
- string field values: double-quoted, escape ``"`` and ``\\``;
- floats as ``repr`` (shortest round-trip), integers with an ``i`` suffix, booleans
  ``true``/``false``; NaN and infinities cannot be written and raise ValueError;
- empty tag keys or values are left out (InfluxDB rejects them).

Two things line protocol cannot carry are normalised rather than sent broken: newlines, carriage
returns and tabs in names become spaces (a newline ends the line), and backslashes right before
an escaped character or at the end of a name are dropped (1.x parses ``a\\\\,b`` as an error and
has no way to say "literal backslash, then a separator"). Newlines inside string fields are
written as the two characters ``\\n`` so a point always stays on one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from core.measurements import Reading
from rules.model import AlarmEvent

FieldValue = float | int | bool | str

_CONTROL = str.maketrans({"\n": " ", "\r": " ", "\t": " "})
_MEASUREMENT_BS = re.compile(r"\\+(?=[, ]|$)")
_KEY_BS = re.compile(r"\\+(?=[,= ]|$)")
_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESC = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
_NS = Decimal(1_000_000_000)


def escape_measurement(name: str) -> str:
    """A measurement name as written in a line (commas and spaces escaped)."""
    name = name.translate(_CONTROL)
    if "\\" in name:
        name = _MEASUREMENT_BS.sub("", name)
    return name.translate(_MEASUREMENT_ESC)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key (commas, equals signs and spaces escaped)."""
    text = text.translate(_CONTROL)
    if "\\" in text:
        text = _KEY_BS.sub("", text)
    return text.translate(_KEY_ESC)


def format_value(value: FieldValue) -> str:
    """A field value with its type marker; bool before int because bool is an int."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write non-finite float {value!r}")
        return repr(value)
    if isinstance(value, str):
        return f'"{value.translate(_STRING_ESC)}"'
    raise TypeError(f"unsupported field type {type(value).__name__}")


def timestamp_ns(ts: float) -> int:
    """Unix seconds to integer nanoseconds, via the float's shortest decimal form.

    ``int(1700000000.123 * 1e9)`` is 1700000000123000064; going through ``repr`` gives the
    1700000000123000000 a person (and a dashboard joining on time) expects.
    """
    if isinstance(ts, int):
        return ts * 1_000_000_000
    if not math.isfinite(ts):
        raise ValueError(f"cannot write timestamp {ts!r}")
    text = repr(ts)
    whole, dot, frac = text.partition(".")
    if dot and len(frac) <= 9 and "e" not in frac:
        # Fast path (every epoch timestamp today): exact integer arithmetic on the digits.
        sign = -1 if whole.startswith("-") else 1
        return int(whole) * 1_000_000_000 + sign * int(frac.ljust(9, "0"))
    return int((Decimal(text) * _NS).to_integral_value(ROUND_HALF_EVEN))


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,tag=value,...`` with tags sorted by key (InfluxDB's preferred order)."""
    if not measurement:
        raise ValueError("empty measurement name")
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if key and value:
            escaped_key, escaped_value = escape_key(key), escape_key(value)
            if escaped_key and escaped_value:
                parts.append(f"{escaped_key}={escaped_value}")
    return ",".join(parts)


def format_line(series: str, fields: Mapping[str, FieldValue], ts: float) -> str:
    """One point from a prepared ``series_key``, its fields and a timestamp in seconds."""
    field_text = ",".join(f"{escape_key(key)}={format_value(value)}"
                          for key, value in fields.items())
    if not field_text:
        raise ValueError(f"point {series!r} has no fields")
    return f"{series} {field_text} {timestamp_ns(ts)}"


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue],
         ts: float) -> str:
    """One point of line protocol (no trailing newline)."""
    return format_line(series_key(measurement, tags), fields, ts)


def reading_series(reading: Reading, site: str, tags: Mapping[str, str]) -> str:
    """The series key a reading lands in: measurement and tags from its quantity's spec.

    ``tags`` are the device's location tags (building, box, circuit, ...); ``site``, ``device``
    and the channel tag (``phase`` on meters, ``channel`` elsewhere) are added here.
    """
    spec = reading.quantity.spec
    all_tags = {**tags, "site": site, "device": reading.device}
    if reading.channel:
        all_tags[spec.channel_tag] = reading.channel
    return series_key(spec.measurement, all_tags)


def reading_line(reading: Reading, site: str, tags: Mapping[str, str]) -> str:
    """A reading as one point. Values are always floats so a field never changes type
    (InfluxDB rejects a later integer in a float field); callers drop bad-quality readings."""
    return format_line(reading_series(reading, site, tags),
                       {reading.quantity.spec.field: float(reading.value)}, reading.ts)


def alarm_line(event: AlarmEvent, site: str, tags: Mapping[str, str] | None = None) -> str:
    """An alarm transition as a point in ``alarms``; ``building`` from the alarm's context,
    else from ``tags`` (the device's location tags)."""
    alarm = event.alarm
    building = alarm.context.get("building") or (tags or {}).get("building", "")
    fields: dict[str, FieldValue] = {"state": alarm.state.value, "event": event.kind.value}
    if alarm.value is not None and math.isfinite(alarm.value):
        fields["value"] = float(alarm.value)
    fields["message"] = alarm.message
    fields["alarm_id"] = alarm.alarm_id
    for name, number in alarm.evidence.items():  # e.g. step_w, step_pf: judge it in Grafana
        if name not in fields and math.isfinite(number):
            fields[name] = float(number)
    tags = {"site": site, "building": building, "device": alarm.device, "rule": alarm.rule,
            "severity": alarm.severity.value}
    if alarm.channel:
        tags["channel"] = alarm.channel  # one series per alarm, not per device and rule
    return line("alarms", tags, fields, event.ts)
