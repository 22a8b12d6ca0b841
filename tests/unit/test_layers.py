"""The package imports downward only and has no import cycle, counting every import: at module level,
inside functions and under TYPE_CHECKING. The layers are listed in the README's layout section."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "rec_models"
# Lowest first. A module may import modules of lower layers, and modules of its own subpackage.
LAYERS = [
    {"rec_models.names"},
    {"rec_models.config", "rec_models.faults"},
    {"rec_models.db", "rec_models.threads", "rec_models.storage"},
    {"rec_models.data", "rec_models.topn"},
    {"rec_models.evaluation", "rec_models.training"},
    {"rec_models.models"},
    {"rec_models.scoring", "rec_models.run", "rec_models.report", "rec_models.alerts"},
    {"rec_models.erasure"},
    {"rec_models.pipeline", "rec_models.ui"},
    {"rec_models.stack"},
    {"rec_models.__main__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every rec_models module this file imports, wherever the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rec_models")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("rec_models"):
            # `from rec_models.x import y` imports x, and y too where y is a module.
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _unit(module: str) -> str:
    """The layer unit a module belongs to: its subpackage, or itself for a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _layer(module: str) -> int:
    unit = _unit(module)
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the README's layout)")


def test_every_import_goes_down_a_layer_or_stays_in_its_subpackage():
    wrong = []
    for module, imported in _graph().items():
        for target in imported:
            if target == "rec_models" or _unit(target) == _unit(module):
                continue
            if _layer(target) >= _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _graph()
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_the_checker_sees_imports_inside_functions_and_type_checking(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rec_models.pipeline import Run\n"
                      "def f():\n    import rec_models.scoring\n")
    assert _imports(source) == {"rec_models.pipeline", "rec_models.pipeline.Run", "rec_models.scoring"}


def test_only_the_cli_starts_a_local_stack():
    """The pipeline runs under any Airflow: nothing but the CLI reaches the local stack's room."""
    wrong = [f"{module} imports {target}" for module, imported in _graph().items() for target in imported
             if _unit(target) == "rec_models.stack" and _unit(module) not in ("rec_models.stack", "rec_models.__main__")]
    assert not wrong, "\n".join(sorted(wrong))


def test_production_code_does_not_load_the_generator_or_the_development_server():
    for module, imported in _graph().items():
        if module.startswith(("rec_models.pipeline", "rec_models.run", "rec_models.scoring", "rec_models.db.connect")):
            assert "rec_models.data.synthetic" not in imported, module
            assert "rec_models.db.embedded" not in imported or module == "rec_models.db.connect", module
    tree = ast.parse((PACKAGE / "db" / "connect.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any(getattr(n, "module", "") == "rec_models.db.embedded" for n in top_level)
