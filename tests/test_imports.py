"""The library's import graph: no cycles, and no import pointing up the layers."""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
# Lowest first: a module may import its own layer's modules and those of the layers below.
LAYERS = (
    ("units", "layout", "checks", "atomic", "provenance", "config", "cli", "distributed"),
    ("hbn",), ("windows",), ("features",), ("models",), ("evaluation",), ("training",),
    ("champion",), ("night",), ("search",), ("report",),
)


def _module(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file)."""
    modules = {_module(p): p for p in (LIB / "overnight").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("overnight"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("overnight")}
        graph[name] = imported - {name}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if top in names or top == "")


def test_every_module_has_a_layer():
    for module in _graph():
        if module != "overnight":
            assert any(module.split(".")[1] in names for names in LAYERS), module


def test_no_import_points_up():
    upward = [f"{module} -> {target}" for module, targets in _graph().items()
              for target in targets if _layer(target) > _layer(module)]
    assert upward == []


def test_no_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
