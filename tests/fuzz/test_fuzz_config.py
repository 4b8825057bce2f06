"""Fuzzing the config loader: whatever the document, ``validate_config`` returns a
LoadedConfig or raises ConfigError whose every line starts with the path of the fault, and
``load_config`` turns any file content into a LoadedConfig or a ConfigError (``FILE:LINE:``
for TOML syntax errors), never a traceback."""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.config import (
    AlarmsConfig,
    BusConfig,
    ConfigError,
    DaemonConfig,
    DeviceConfig,
    FirePanelConfig,
    InfluxConfig,
    LoadedConfig,
    MqttConfig,
    SiteConfig,
    WebhookConfig,
    load_config,
    validate_config,
)
from rules.catalog import CATALOG

ROOT = Path(__file__).parents[2]
SAMPLE_PATH = ROOT / "examples" / "site-sample.toml"
SAMPLE: dict[str, Any] = tomllib.loads(SAMPLE_PATH.read_text(encoding="utf-8"))

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# The brief's shape of an error path: a top-level key, optional index, then `.key` or `[i]`.
# Segments may also hold '-': alarm rule names (`alarms.rule.lamp-out`) and a few rule names
# carry one legitimately.
PATH_LINE = re.compile(r"^[a-z_][a-z_\d]*(\[\d+\])?(\.[a-z_\d-]+|\[\d+\])*: \S")

SECTIONS: dict[str, type[BaseModel]] = {
    "site": SiteConfig, "influxdb": InfluxConfig, "mqtt": MqttConfig, "daemon": DaemonConfig,
    "alarms": AlarmsConfig,
}
ARRAYS: dict[str, type[BaseModel]] = {
    "bus": BusConfig, "device": DeviceConfig, "fire_panel": FirePanelConfig,
    "webhook": WebhookConfig,
}

KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
SCALAR: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=20), st.integers(-(2 ** 63), 2 ** 63 - 1), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1s", "500ms", "0s", "-1s", "1h", "7d", "rtu", "tcp", "N", "C",
                     "incomer", "eastron-sdm630", "b12-rs485", "/dev/ttyUSB0", "v2", "x" * 70]),
    st.datetimes(), st.dates(), st.times(),
)
VALUE: st.SearchStrategy[Any] = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3),
    max_leaves=8)


def _model_table(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """A table with some of the model's own keys (by alias) and some unknown ones."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    return st.dictionaries(st.sampled_from(names) | KEY, VALUE, max_size=6)


RULE_TABLES = st.dictionaries(st.sampled_from(sorted(CATALOG)) | KEY,
                              st.dictionaries(KEY | st.sampled_from(["enabled", "on_delay",
                                                                     "alarm_ma"]), VALUE,
                                              max_size=3), max_size=3)
DOCUMENT: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        **{name: _model_table(model) | VALUE for name, model in SECTIONS.items()},
        **{name: st.lists(_model_table(model), max_size=3) | VALUE
           for name, model in ARRAYS.items()},
        "rules": RULE_TABLES | VALUE,
        "zzz_unknown": VALUE,
    },
)


def _outcome(raw: dict[str, Any], path: Path = SAMPLE_PATH) -> LoadedConfig | ConfigError:
    try:
        return validate_config(raw, path)
    except ConfigError as exc:
        return exc


def _without_type_tags(line: str) -> str:
    """``line`` with pydantic's union-member tags taken out of its path.

    Known defect (see test_union_member_tag_in_path below): for a value that fits no member
    of a union, pydantic's ``loc`` names the member (``device[3].rules.lighting.lamps.tuple[int,
    ...]``) and _format_error prints it as a path segment. Tolerated here so the property
    keeps checking everything else (now fixed in _format_error; kept as a guard)."""
    head, sep, rest = line.partition(": ")
    out, i = "", 0
    while i < len(head):
        if head[i] == "." and (j := head.find("[", i)) > 0 and not head[j + 1:j + 2].isdigit() \
                and "." not in head[i + 1:j]:
            depth, k = 0, j
            while k < len(head):
                depth += {"[": 1, "]": -1}.get(head[k], 0)
                k += 1
                if depth == 0:
                    break
            i = k
            continue
        out += head[i]
        i += 1
    return out + sep + rest


def _assert_paths(error: ConfigError) -> None:
    assert error.errors, "a ConfigError with no lines"
    assert str(error) == "\n".join(error.errors)
    for line in error.errors:
        assert PATH_LINE.match(_without_type_tags(line)), f"no path at the start of: {line!r}"


def _check(raw: dict[str, Any]) -> LoadedConfig | ConfigError:
    result = _outcome(raw)
    if isinstance(result, ConfigError):
        _assert_paths(result)
    else:
        assert isinstance(result, LoadedConfig)
    return result


def test_the_sample_is_valid() -> None:
    """The baseline for the mutations below."""
    assert isinstance(_outcome(copy.deepcopy(SAMPLE)), LoadedConfig)


@FAST
@given(raw=DOCUMENT)
def test_generated_documents(raw: dict[str, Any]) -> None:
    """Nested tables of known and unknown keys with values of every TOML type."""
    _check(raw)


@FAST
@given(raw=DOCUMENT, site_id=st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True))
def test_generated_documents_with_a_valid_site(raw: dict[str, Any], site_id: str) -> None:
    """The same with a valid [site], so validation gets past it to the cross-checks."""
    _check({**raw, "site": {"id": site_id}})


# --- mutations of the sample ------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path in a TOML document (tables and array elements included)."""
    out: list[Path_] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*prefix, i))
            out += _paths(value, (*prefix, i))
    return out


def _tables(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _tables(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _tables(value, (*prefix, i))
    return out


def _parent(doc: Any, path: Path_) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


OUT_OF_RANGE = st.sampled_from([0, -1, -(2 ** 63), 2 ** 63 - 1, 65536, 248, 1e308, -1e-9,
                                float("nan"), float("inf"), "", " ", "-5s", "1000000h",
                                "99999999999999999999s", "1e400s"])


@st.composite
def mutations(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "retype", "range", "unknown", "duplicate"]))
        if op == "unknown":
            table = _parent(doc, (*draw(st.sampled_from(_tables(doc))), "x"))
            table[draw(KEY)] = draw(SCALAR)
            continue
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(doc, path), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "retype":
            parent[last] = draw(VALUE)
        elif op == "range":
            parent[last] = draw(OUT_OF_RANGE)
        elif op == "duplicate" and isinstance(parent, list) and isinstance(last, int):
            parent.append(copy.deepcopy(parent[last]))
    return doc


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutations())
def test_mutations_of_the_sample(raw: dict[str, Any]) -> None:
    """Deleted keys, changed types, out-of-range values, unknown keys, duplicated entries."""
    _check(raw)


# --- files -------------------------------------------------------------------------------

SYNTAX_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+): TOML syntax error: ")
TOMLISH = st.lists(st.one_of(
    st.sampled_from(["[site]", "[[bus]]", "[mqtt", "id = ", 'id = "x"', "a.b = 1", "x = [1,",
                     "x = {", '"""', "'''", "= 1", "[site]\n[site]", "port = 08",
                     "t = 1979-05-27T07:32:00Z", "k = 1__0", "", "#", "\\", "\t", "\r"]),
    st.text(max_size=15)), max_size=8).map("\n".join)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def _load_text(scratch: Path, text: str) -> LoadedConfig | ConfigError:
    path = scratch / "site.toml"
    path.write_text(text, encoding="utf-8", newline="")
    try:
        return load_config(path)
    except ConfigError as exc:
        return exc


@FAST
@given(text=st.one_of(TOMLISH, st.text(max_size=80)))
def test_any_text_file_is_a_config_or_config_error(scratch: Path, text: str) -> None:
    """Any UTF-8 text: a LoadedConfig or ConfigError; a syntax error says FILE:LINE with the
    line number inside the file."""
    result = _load_text(scratch, text)
    if isinstance(result, LoadedConfig):
        return
    try:
        # as load_config reads it: read_text translates "\r" and "\r\n" to "\n"
        text = (scratch / "site.toml").read_text(encoding="utf-8")
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        (line,) = result.errors
        match = SYNTAX_LINE.match(line)
        assert match, line
        assert match["file"] == str(scratch / "site.toml")
        assert 1 <= int(match["line"]) <= max(1, text.count("\n") + 1)
    else:
        _assert_paths(result)


@FAST
@given(text=st.builds(lambda d: tomllib_dumps(d), DOCUMENT))
def test_generated_documents_as_files(scratch: Path, text: str) -> None:
    """Generated documents written as TOML and loaded from the file: same guarantees."""
    result = _load_text(scratch, text)
    # simulator.toml_writer does not escape every control character (DEL): then the file is
    # a syntax error, which must still name FILE:LINE
    if isinstance(result, ConfigError) and not SYNTAX_LINE.match(result.errors[0]):
        _assert_paths(result)


def tomllib_dumps(doc: dict[str, Any]) -> str:
    from simulator.toml_writer import dump_toml

    try:
        return dump_toml(_toml_safe(doc))
    except (TypeError, ValueError):
        return ""


def _toml_safe(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _toml_safe(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_toml_safe(v) for v in node]
    if isinstance(node, float) and node != node:
        return 0.0
    if isinstance(node, datetime | date | time):
        return str(node)
    return node


def test_syntax_error_at_end_of_document_has_a_line(scratch: Path) -> None:
    result = _load_text(scratch, '[site]\nid = "x"\nname =')
    assert isinstance(result, ConfigError)
    assert SYNTAX_LINE.match(result.errors[0]), result.errors


def test_union_member_tag_in_path() -> None:
    raw = copy.deepcopy(SAMPLE)
    raw["device"][3]["rules"]["lighting"]["lamps"] = ""
    result = _outcome(raw)
    assert isinstance(result, ConfigError)
    assert any(e.startswith("device[3].rules.lighting.lamps: ") for e in result.errors), \
        result.errors


def test_non_utf8_file_is_a_config_error(scratch: Path) -> None:
    path = scratch / "latin1.toml"
    path.write_bytes('[site]\nid = "x"\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml:3: not UTF-8 \(byte 0xe9"):
        load_config(path)


@FAST
@given(data=st.binary(max_size=120))
def test_any_bytes_never_traceback(scratch: Path, data: bytes) -> None:
    """Raw bytes, UTF-8 or not: a LoadedConfig or a ConfigError, never a traceback."""
    path = scratch / "bytes.toml"
    path.write_bytes(data)
    result = _load_file(path)
    if isinstance(result, ConfigError):
        assert result.errors
        assert all(e.startswith(str(path)) or PATH_LINE.match(_without_type_tags(e))
                   for e in result.errors), result.errors


def _load_file(path: Path) -> LoadedConfig | ConfigError:
    try:
        return load_config(path)
    except ConfigError as exc:
        return exc
