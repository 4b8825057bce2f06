"""Line protocol: escaping, value types, timestamps, readings and alarm points."""

from __future__ import annotations

import pytest

from core.measurements import Quantity, Reading
from daemon.sinks.lineprotocol import (
    FieldValue,
    alarm_line,
    escape_key,
    escape_measurement,
    format_value,
    line,
    reading_line,
    series_key,
    timestamp_ns,
)
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity


@pytest.mark.parametrize(("name", "expected"), [
    ("power", "power"),
    ("my power", r"my\ power"),
    ("a,b", r"a\,b"),
    ("a=b", "a=b"),  # '=' needs no escape in a measurement
    ('q"uote', 'q"uote'),
    ("电力 监测", r"电力\ 监测"),
    ("line\nbreak", r"line\ break"),
    ("trail\\", "trail"),  # unrepresentable in 1.x: dropped
    ("back\\slash", "back\\slash"),
])
def test_escape_measurement(name: str, expected: str) -> None:
    """Measurements escape commas and spaces only."""
    assert escape_measurement(name) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("building", "building"),
    ("12 栋", r"12\ 栋"),
    ("a,b", r"a\,b"),
    ("a=b", r"a\=b"),
    (" ,=", r"\ \,\="),
    ('say "hi"', r'say\ "hi"'),
    ("江畔人家", "江畔人家"),
    ("tab\there", r"tab\ here"),
    ("c:\\dir", "c:\\dir"),  # a backslash before an ordinary character is literal
    ("end\\", "end"),
    ("a\\,b", r"a\,b"),  # backslash before a separator cannot be said in 1.x: dropped
])
def test_escape_key(text: str, expected: str) -> None:
    """Tag keys, tag values and field keys escape commas, equals signs and spaces."""
    assert escape_key(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (1.5, "1.5"),
    (230.0, "230.0"),
    (0.1 + 0.2, "0.30000000000000004"),  # shortest round-trip, no precision lost
    (-0.001, "-0.001"),
    (1e21, "1e+21"),
    (3, "3i"),
    (-7, "-7i"),
    (True, "true"),
    (False, "false"),
    ("plain", '"plain"'),
    ('say "hi"', r'"say \"hi\""'),
    ("c:\\temp", r'"c:\\temp"'),
    ('\\"', r'"\\\""'),
    ("a, b=c", '"a, b=c"'),  # separators are fine inside quotes
    ("剩余电流超限 350 mA", '"剩余电流超限 350 mA"'),
    ("two\nlines", r'"two\nlines"'),
])
def test_format_value(value: FieldValue, expected: str) -> None:
    """Field values carry their type: floats plain, integers with i, bools, quoted strings."""
    assert format_value(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_format_value_rejects_non_finite(value: float) -> None:
    """NaN and infinities have no line-protocol form."""
    with pytest.raises(ValueError, match="non-finite"):
        format_value(value)


@pytest.mark.parametrize(("ts", "expected"), [
    (0.0, 0),
    (1, 1_000_000_000),
    (1700000000.123, 1700000000_123000000),  # int(ts * 1e9) would give ...123000064
    (1700000000.000001, 1700000000_000001000),
    (1699999999.9999998, 1699999999_999999800),
    (1.5, 1_500_000_000),
    (-1.25, -1_250_000_000),
    (-0.5, -500_000_000),
    (1e-10, 0),
    (1.2345678915, 1_234_567_892),  # more than 9 decimals: rounded half-even
    (1e16, 10**25),
])
def test_timestamp_ns(ts: float, expected: int) -> None:
    """Seconds become nanoseconds through the float's decimal form, without drift."""
    assert timestamp_ns(ts) == expected


def test_series_key_sorts_tags_and_skips_empty() -> None:
    """Tags are sorted by key; empty keys or values are left out."""
    key = series_key("power", {"site": "s", "building": "", "box": "1", "": "x", "a b": "c,d"})
    assert key == r"power,a\ b=c\,d,box=1,site=s"


def test_line_with_every_type() -> None:
    """A point joins series, fields (in order) and the nanosecond timestamp."""
    text = line("m", {"t": "v"}, {"f": 1.0, "i": 2, "b": True, "s": "x y"}, 1.25)
    assert text == 'm,t=v f=1.0,i=2i,b=true,s="x y" 1250000000'


def test_line_needs_a_field() -> None:
    """A point without fields is invalid line protocol."""
    with pytest.raises(ValueError, match="no fields"):
        line("m", {}, {}, 0)


@pytest.mark.parametrize(("reading", "expected"), [
    (Reading(ts=1700000000.5, device="b12-box1-main", quantity=Quantity.CURRENT, value=12.5,
             channel="L2"),
     "power,box=1,building=12\\ 栋,device=b12-box1-main,phase=L2,site=jiangpan "
     "current_a=12.5 1700000000500000000"),
    (Reading(ts=1700000000.0, device="rcm-1", quantity=Quantity.RESIDUAL_CURRENT, value=35,
             channel="3"),
     "leakage,box=1,building=12\\ 栋,channel=3,device=rcm-1,site=jiangpan "
     "residual_ma=35.0 1700000000000000000"),
    (Reading(ts=1.0, device="m", quantity=Quantity.ONLINE, value=1.0),
     "device_health,box=1,building=12\\ 栋,device=m,site=jiangpan online=1.0 1000000000"),
])
def test_reading_line(reading: Reading, expected: str) -> None:
    """Readings use their quantity's measurement, field and channel tag; values stay floats."""
    assert reading_line(reading, "jiangpan", {"building": "12 栋", "box": "1", "floor": ""}) \
        == expected


def _event(kind: EventKind, **alarm: object) -> AlarmEvent:
    base: dict[str, object] = {
        "alarm_id": "leakage:rcm-1:3", "rule": "leakage", "device": "rcm-1",
        "severity": Severity.CRITICAL, "state": AlarmState.UNACKED, "channel": "3",
        "value": 350.0, "message": '剩余电流 350 mA > "300"', "context": {"building": "12"}}
    return AlarmEvent(kind=kind, alarm=Alarm(**{**base, **alarm}),  # type: ignore[arg-type]
                      ts=1700000000.25, previous=AlarmState.NORMAL)


def test_alarm_line() -> None:
    """Alarm transitions land in ``alarms`` with rule/severity/channel tags, the event kind
    and string fields."""
    assert alarm_line(_event(EventKind.RAISED), "jiangpan") == (
        "alarms,building=12,channel=3,device=rcm-1,rule=leakage,severity=critical,"
        'site=jiangpan state="unacknowledged",event="raised",value=350.0,'
        'message="剩余电流 350 mA > \\"300\\"",alarm_id="leakage:rcm-1:3" 1700000000250000000')


def test_alarm_line_without_value_takes_building_from_tags() -> None:
    """No value field when the alarm has none; building falls back to the device's tags."""
    text = alarm_line(_event(EventKind.CLEARED, value=None, context={}, message=""),
                      "s", {"building": "7"})
    assert text.startswith("alarms,building=7,channel=3,device=rcm-1,")
    assert "value=" not in text
    assert 'message=""' in text
