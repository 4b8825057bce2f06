"""The folder layout is the architecture: ``core`` <- ``drivers`` <- ``rules`` <- ``daemon``,
with ``simulator``, ``dashboards``, ``bench`` and ``fuzz`` on top. Read from the source with
``ast`` (every import, also those inside functions), so a lazy import cannot hide a wrong
dependency or a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"core": 0, "drivers": 1, "rules": 2, "daemon": 3, "simulator": 4, "dashboards": 4,
         "bench": 5, "fuzz": 5}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in LAYER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (no runtime edge)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                ids.update(id(n) for n in ast.walk(inner))
    return ids


def _resolve(name: str) -> str | None:
    """The firewarden module an import names (a submodule if it is one), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> Iterator[tuple[str, bool]]:
    """(imported firewarden module, at run time) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                yield target, id(node) not in typing_only


def _layer(module: str) -> int:
    return LAYER[module.split(".")[0]]


def test_the_layers_are_read() -> None:
    assert {"core.measurements", "drivers.modbus.poller", "rules.engine", "daemon.app",
            "simulator.demo"} <= set(MODULES)
    assert ("core.measurements", True) in set(imports("rules.engine")) or any(
        t == "core.measurements" for t, _ in imports("drivers.modbus.poller"))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_higher_layer(module: str) -> None:
    upward = sorted({t for t, _ in imports(module) if _layer(t) > _layer(module)})
    assert not upward, f"{module} (layer {module.split('.')[0]}) imports {upward}"


def test_core_imports_nothing_of_the_rest() -> None:
    for module in (m for m in MODULES if m.startswith("core")):
        assert all(t.startswith("core") for t, _ in imports(module)), module


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), run-time imports."""
    graph = {m: sorted({t for t, runtime in imports(m) if runtime}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_each_rule_module_is_named_after_its_rule() -> None:
    """``rules/<name>.py`` implements ``[rules.<name>]``, named once as ``NAME``."""
    import importlib
    import pkgutil

    import rules

    specs = 0
    for info in pkgutil.iter_modules(rules.__path__):
        module = importlib.import_module(f"rules.{info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is None:
            continue
        specs += 1
        assert spec.name == info.name, f"rules/{info.name}.py declares rule {spec.name!r}"
        assert getattr(module, "NAME", None) == spec.name, f"rules/{info.name}.py: NAME"
    assert specs >= 9


def test_no_module_over_500_lines() -> None:
    """Small modules, one job each (tests and bench are exempt)."""
    long = {m: n for m, path in MODULES.items() if not m.startswith(("bench", "tests"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}
