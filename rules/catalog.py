"""The rule catalog: every rule module's ``SPEC``, found by name, built per device from config.

A rule module (``rules/leakage.py`` ...) declares ``SPEC = RuleSpec(...)``: its name (the
``[rules.<name>]`` config table and the alarm ids' first part), its parameters as a frozen
dataclass whose every field has a documented default, and ``build``, which turns the site and
the devices it applies to (each with its resolved parameters) into rule objects per device.
Rules that compare devices (a box's incomer against its sub-circuits) get them all at once.

Parameters resolve as: the dataclass defaults, then ``[rules.<name>]``, then the device's own
``[device.rules.<name>]``. The daemon validates both tables against the dataclass (unknown keys
and bad values are config errors naming the path); rules only ever see valid parameters.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

from rules.base import DeviceInfo, Rule, RuleSpec, SiteInfo


def _discover() -> dict[str, RuleSpec]:
    import rules

    found: dict[str, RuleSpec] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(rules.__path__)):
        spec = getattr(importlib.import_module(f"rules.{module}"), "SPEC", None)
        if isinstance(spec, RuleSpec):
            found[spec.name] = spec
    return found


CATALOG: dict[str, RuleSpec] = _discover()


def build_rules(site: SiteInfo, devices: Sequence[DeviceInfo],
                params: Callable[[str, str], Any]) -> dict[str, list[Rule]]:
    """Every catalog rule for every device it applies to; ``params(rule, device)`` gives the
    resolved parameters (``enabled`` false leaves the device out)."""
    out: dict[str, list[Rule]] = {d.name: [] for d in devices}
    for name, spec in CATALOG.items():
        chosen = [(d, p) for d in devices if getattr(p := params(name, d.name), "enabled", True)]
        if not chosen:
            continue
        for device, rules in spec.build(site, chosen).items():
            out.setdefault(device, []).extend(rules)
    return out
