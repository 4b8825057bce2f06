"""Enough TOML for the configs the simulator writes (tomllib only reads)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def dump_toml(data: Mapping[str, Any], header: str = "") -> str:
    """Scalars, arrays of scalars, tables, nested tables and arrays of tables; ``header``
    becomes leading comment lines."""
    lines = [f"# {line}" for line in header.splitlines()]
    _table(lines, data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(lines: list[str], table: Mapping[str, Any], path: list[str]) -> None:
    for key, value in table.items():
        if not isinstance(value, Mapping) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        here = [*path, _key(key)]
        if isinstance(value, Mapping):
            lines.append(f"\n[{'.'.join(here)}]")
            _table(lines, value, here)
        elif _is_table_array(value):
            for item in value:
                lines.append(f"\n[[{'.'.join(here)}]]")
                _table(lines, item, here)


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() and key.isascii() \
        else json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)
