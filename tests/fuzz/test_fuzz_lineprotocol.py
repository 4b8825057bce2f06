"""Fuzzing line-protocol escaping with an independent parser, and a round trip through a real
influxd for a sample of generated points.

The parser below follows InfluxDB's documented line protocol (1.x reference, "Special
characters"): a point is ``measurement[,tag=value...] field=value[,field=value...] [time]``;
in measurements ``\\,`` and ``\\ `` are escapes; in tag keys, tag values and field keys also
``\\=``; in double-quoted string field values ``\\"`` and ``\\\\``; a backslash before any
other character is a literal backslash. It shares no code with daemon/sinks/lineprotocol.py.

What the writer normalises on purpose (its docstring) is applied to the expected values:
newlines, carriage returns and tabs in names become spaces; backslashes right before a
character that must be escaped, or at the end, are dropped; empty tag keys/values are left
out; in string fields a newline is sent as the two characters ``\\n`` (CR as ``\\r``).
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from daemon.sinks.lineprotocol import FieldValue, line
from simulator.services import InfluxDB

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class LineError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int | None


def _name(text: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read a name up to an unescaped character of ``stops``; return it and the index."""
    out: list[str] = []
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i


def _string(text: str, i: int) -> tuple[str, int]:
    assert text[i] == '"'
    i += 1
    out: list[str] = []
    while True:
        if i >= len(text):
            raise LineError("unterminated string field")
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1


def _number(token: str) -> FieldValue:
    if token in ("t", "T", "true", "True", "TRUE"):
        return True
    if token in ("f", "F", "false", "False", "FALSE"):
        return False
    if token.endswith("i"):
        return int(token[:-1])
    value = float(token)
    if not math.isfinite(value):
        raise LineError(f"non-finite float {token}")
    return value


def parse_line(text: str) -> Point:
    """One line of line protocol, as InfluxDB documents it."""
    if "\n" in text:
        raise LineError("a point must be one line")
    if text.startswith("#"):
        raise LineError("a line starting with # is a comment")
    measurement, i = _name(text, 0, ", ", ", ")
    if not measurement:
        raise LineError("empty measurement")
    tags: dict[str, str] = {}
    while i < len(text) and text[i] == ",":
        key, i = _name(text, i + 1, "=", ",= ")
        if i >= len(text):
            raise LineError("tag without '='")
        value, i = _name(text, i + 1, ", ", ",= ")
        if not key or not value:
            raise LineError("empty tag key or value")
        tags[key] = value
    if i >= len(text) or text[i] != " ":
        raise LineError("no field set")
    i += 1
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = _name(text, i, "=", ",= ")
        if i >= len(text) or not key:
            raise LineError("bad field key")
        i += 1
        if i < len(text) and text[i] == '"':
            value, i = _string(text, i)
            fields[key] = value
        else:
            end = i
            while end < len(text) and text[end] not in ", ":
                end += 1
            fields[key] = _number(text[i:end])
            i = end
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        break
    ts: int | None = None
    if i < len(text):
        if text[i] != " ":
            raise LineError("junk after the field set")
        ts = int(text[i + 1:])
    return Point(measurement, tags, fields, ts)


# --- the writer's documented normalisation ------------------------------------------------

def _normal_name(text: str, special: str) -> str:
    text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            j = i
            while j < len(text) and text[j] == "\\":
                j += 1
            if j == len(text) or text[j] in special:
                i = j  # the whole run of backslashes is dropped
                continue
            out.append(text[i:j])
            i = j
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def normal_measurement(text: str) -> str:
    return _normal_name(text, ", ")


def normal_key(text: str) -> str:
    return _normal_name(text, ",= ")


def normal_string(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")


# --- properties ---------------------------------------------------------------------------

SPECIAL = st.sampled_from([",", "=", " ", '"', "\\", "\n", "\r", "\t", "'", "#", "栋", "江畔",
                           "电力", "\\,", "\\ ", "\\=", '\\"', "\\\\", "=\\", "é", "😀", "\0"])
TEXT = st.lists(st.one_of(SPECIAL, st.text(max_size=4)), max_size=8).map("".join)
NAME = TEXT.filter(lambda t: normal_measurement(t) != "" and not t.startswith("#"))
FIELD_VALUES: st.SearchStrategy[FieldValue] = st.one_of(
    TEXT, st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False))


def expected_point(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue],
                   ns: int) -> Point:
    want_tags = {normal_key(k): normal_key(v) for k, v in tags.items()
                 if k and v and normal_key(k) and normal_key(v)}
    want_fields = {normal_key(k): normal_string(v) if isinstance(v, str) else v
                   for k, v in fields.items()}
    return Point(normal_measurement(measurement), want_tags, want_fields, ns)


def _distinct(keys: list[str]) -> bool:
    normal = [normal_key(k) for k in keys]
    return len(set(normal)) == len(normal)


@FAST
@given(measurement=NAME, tags=st.dictionaries(TEXT, TEXT, max_size=4),
       fields=st.dictionaries(TEXT.filter(lambda k: normal_key(k) != ""), FIELD_VALUES,
                              min_size=1, max_size=4),
       seconds=st.integers(0, 2 ** 33))
def test_line_parses_back_to_the_same_values(measurement: str, tags: dict[str, str],
                                             fields: dict[str, FieldValue],
                                             seconds: int) -> None:
    """Any measurement, tags and fields (quotes, backslashes, commas, equals signs, spaces,
    newlines, Chinese, emoji) come back from the independent parser as written, modulo the
    documented normalisation; the point is always exactly one line."""
    assume(_distinct([k for k, v in tags.items() if k and v and normal_key(v)]))
    assume(_distinct(list(fields)))
    text = line(measurement, tags, fields, seconds)
    assert "\n" not in text
    parsed = parse_line(text)
    assert parsed == expected_point(measurement, tags, fields, seconds * 1_000_000_000)


def test_measurement_starting_with_hash_is_a_comment() -> None:
    """Noted, not fixed here: a measurement name starting with '#' makes the whole line a
    comment in line protocol (InfluxDB drops it silently); firewarden's measurements are
    fixed names, so this only matters if one ever comes from configuration."""
    with pytest.raises(LineError, match="comment"):
        parse_line(line("#m", {}, {"v": 1.0}, 1))


# --- through a real influxd ---------------------------------------------------------------

# influxd 1.x refuses or renames these keys, and cannot store NUL in names; not escaping
# questions, so the round trip leaves them out.
RESERVED = {"time", "_field", "_measurement"}
SERVER_TEXT = TEXT.map(lambda t: t.replace("\0", ""))
SERVER_FIELDS: st.SearchStrategy[FieldValue] = st.one_of(
    SERVER_TEXT, st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=64))


def _server_unescapes(name: str, also: str) -> bool:
    """influxd 1.x (pkg/escape.Unescape) also drops a backslash before '"' in measurements and
    field keys, and before '=' in measurements, although the documentation says only ',' and
    ' ' (and '=' for keys) are escapes: see test_influxd_unescapes_more_than_documented."""
    return any(f"\\{c}" in name for c in '"' + also)


@st.composite
def server_points(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, FieldValue]]:
    measurement = draw(SERVER_TEXT.filter(
        lambda t: normal_measurement(t).strip() != "" and not t.startswith("#")
        and not _server_unescapes(normal_measurement(t), "=")))
    tags = draw(st.dictionaries(SERVER_TEXT, SERVER_TEXT, max_size=3))
    tags = {k: v for k, v in tags.items() if normal_key(k) and normal_key(v)
            and normal_key(k) not in RESERVED}
    fields = draw(st.dictionaries(SERVER_TEXT.filter(lambda k: normal_key(k) != ""
                                                     and normal_key(k) not in RESERVED
                                                     and not _server_unescapes(normal_key(k),
                                                                               "")),
                                  SERVER_FIELDS, min_size=1, max_size=3))
    keys = [normal_key(k) for k in (*tags, *fields)]
    assume(len(set(keys)) == len(keys))
    return measurement, tags, fields


def _no_shared_keys(points: list[tuple[str, dict[str, str], dict[str, FieldValue]]]) -> bool:
    """One measurement per point and no tag or field key shared between points: a query over
    several measurements (``FROM /.*/``) merges their columns, and influxd then drops values
    whose type conflicts with another measurement's field of the same name (schema rules, not
    escaping questions)."""
    keys = [normal_key(k) for _, tags, fields in points for k in (*tags, *fields)]
    return len(set(keys)) == len(keys)


def _write(server: InfluxDB, db: str, body: str) -> None:
    params = urllib.parse.urlencode({"db": db, "precision": "ns"})
    request = urllib.request.Request(f"{server.url}/write?{params}", data=body.encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _series(server: InfluxDB, db: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"db": db, "q": "SELECT * FROM /.*/ GROUP BY *",
                                     "epoch": "ns"})
    with urllib.request.urlopen(f"{server.url}/query?{params}", timeout=10) as response:
        body = json.load(response)
    (result,) = body["results"]
    assert "error" not in result, result
    series: list[dict[str, Any]] = result.get("series", [])
    return series


@pytest.mark.integration
@settings(max_examples=3, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a server trip
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(points=st.lists(server_points(), min_size=12, max_size=12,
                      unique_by=lambda p: normal_measurement(p[0])).filter(_no_shared_keys))
def test_influxd_round_trip(influxdb: InfluxDB,
                            points: list[tuple[str, dict[str, str], dict[str, FieldValue]]]
                            ) -> None:
    """Generated points (a dozen per example, a few examples) written to influxd 1.x come back
    from ``SELECT *`` with the same measurement, tags and fields (normalised as above)."""
    db = f"fuzz_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(db)
    try:
        base = 1_700_000_000
        want = {(base + i) * 10 ** 9: expected_point(m, t, f, (base + i) * 10 ** 9)
                for i, (m, t, f) in enumerate(points)}
        lines = {(base + i) * 10 ** 9: line(m, t, f, base + i)
                 for i, (m, t, f) in enumerate(points)}
        _write(influxdb, db, "\n".join(lines.values()) + "\n")
        got: dict[int, Point] = {}
        for series in _series(influxdb, db):
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                ns = int(values.pop("time"))
                fields = {k: v for k, v in values.items() if v is not None}
                # GROUP BY * lists every tag key of the measurement; absent ones are ""
                tags = {k: v for k, v in (series.get("tags") or {}).items() if v != ""}
                got[ns] = Point(series["name"], tags, fields, ns)
        assert set(got) == set(want), [lines[ns] for ns in set(want) - set(got)]
        for ns, expected in want.items():
            actual = got[ns]
            assert (actual.measurement, actual.tags) == (expected.measurement, expected.tags), \
                lines[ns]
            assert actual.measurement == expected.measurement
            assert actual.tags == expected.tags
            # JSON brings integers back as ints and floats as floats (230.0 may come as 230)
            assert actual.fields.keys() == expected.fields.keys(), (lines[ns], actual)
            for key, value in expected.fields.items():
                if isinstance(value, float):
                    assert float(actual.fields[key]) == value, (key, actual, expected)
                else:
                    assert actual.fields[key] == value, (key, lines[ns], actual)
    finally:
        influxdb.drop_database(db)


@pytest.mark.integration
@pytest.mark.xfail(strict=True, reason="influxd 1.x unescapes \\\" in measurements and field keys "
                   "and \\= in measurements, so a literal backslash before them is lost. "
                   "Fix in lineprotocol.py: drop such backslashes like those before separators "
                   "(_MEASUREMENT_BS lookahead [, \"=], field keys [,= \"])")
@pytest.mark.parametrize(("measurement", "field"), [('m\\"', "v"), ("a\\=b", "v"),
                                                    ("m", 'a\\"b')])
def test_influxd_unescapes_more_than_documented(influxdb: InfluxDB, measurement: str,
                                                field: str) -> None:
    db = f"fuzz_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(db)
    try:
        _write(influxdb, db, line(measurement, {}, {field: 1.0}, 1) + "\n")
        (series,) = _series(influxdb, db)
        assert (series["name"], series["columns"][1]) == (normal_measurement(measurement),
                                                          normal_key(field))
    finally:
        influxdb.drop_database(db)
