"""The code a submission carries: a model's file and every project module it needs.

``submission.py`` must run where only torch exists, so the model's source and the project
modules it imports (transitively: the base class, the backbones, the feature spec, ...) are
embedded into it as one flat file, dependencies first, their project imports dropped (the
modules before them define those names). That asks three things of the code, each checked
here with a message that names the file: project imports name things, not modules
(``from overnight.models.base import RTModel``); at module level, the embedded files import
only the standard library, torch and the model's declared extra library; and no two of them
define the same module-level name.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

PROJECT = "overnight"
_LIB = Path(__file__).resolve().parents[2]  # the folder that holds the project's package
# What every submission runs besides the model: the ensemble (members averaged, or a
# blend's weighted) and the base module (Challenge 2's constant predictor).
ALWAYS_EMBEDDED = ("overnight.models.ensemble", "overnight.models.base")
_ALLOWED_LIBRARIES = ("torch",)


class EmbeddingError(ValueError):
    """Code that cannot be embedded into ``submission.py``, in one line naming the file."""


@dataclasses.dataclass(frozen=True)
class EmbeddedModule:
    """One file as the submission embeds it."""

    label: str  # what the submission's banner calls it: overnight/models/base.py, wide.py
    path: Path
    source: str  # without its __future__ and project imports


def embedded_modules(model_files: Sequence[Path], extra_libraries: Sequence[str] = ()
                     ) -> list[EmbeddedModule]:
    """The model files (one, or a blend's members') and the project modules they need,
    dependencies first, each once; ``extra_libraries``: the models' declared extra
    libraries.

    Raises
    ------
    EmbeddingError
        A project import of a module rather than of names, a module-level import of a
        library the scorer lacks, or one name defined at module level by two files.
    """
    allowed = (*_ALLOWED_LIBRARIES, *extra_libraries)
    order: list[Path] = []
    starts = [*(Path(f).resolve() for f in model_files),
              *(_module_file(name, model_files[0]) for name in ALWAYS_EMBEDDED)]
    for start in starts:
        _visit(start, allowed, order, set())
    modules = [EmbeddedModule(_label(path), path, _strip_project_imports(path))
               for path in order]
    _check_names(modules)
    return modules


def _visit(path: Path, allowed: tuple[str, ...], order: list[Path], stack: set[Path]) -> None:
    """Depth first, each file after what it imports (``order`` grows)."""
    if path in order:
        return
    if path in stack:
        raise EmbeddingError(f"{path}: imports itself through the project's modules")
    stack.add(path)
    for dependency in _project_dependencies(path, allowed):
        _visit(dependency, allowed, order, stack)
    stack.discard(path)
    order.append(path)


def _project_dependencies(path: Path, allowed: tuple[str, ...]) -> Iterable[Path]:
    """The project files ``path`` imports at module level; other imports must be allowed."""
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                _check_library(path, node, alias.name, allowed)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            if module.split(".")[0] == PROJECT:
                yield _module_file(module, path, node.lineno)
            elif module != "__future__":
                _check_library(path, node, module, allowed)


def _check_library(path: Path, node: ast.stmt, module: str, allowed: tuple[str, ...]) -> None:
    top = module.split(".")[0]
    if top == PROJECT:
        raise EmbeddingError(f"{path}:{node.lineno}: `import {module}`: import names from the "
                             f"project's modules (from {module} import ...), which "
                             "submission.py embeds")
    if top not in allowed and top not in sys.stdlib_module_names:
        raise EmbeddingError(f"{path}:{node.lineno}: imports {module}, which the scorer does "
                             f"not have: a submission runs with {' and '.join(allowed)} and "
                             "the standard library (import others inside a function, and "
                             "name them in the model's extra_requirement)")


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module an ``import from`` names, relative imports resolved inside the project."""
    if not node.level:
        return node.module or ""
    try:
        package = path.resolve().parent.relative_to(_LIB).parts
    except ValueError:
        raise EmbeddingError(f"{path}:{node.lineno}: a relative import outside the project's "
                             "package; import from overnight.models.base and the like") from None
    base = package[:len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _module_file(module: str, importer: Path, lineno: int = 0) -> Path:
    """The file of a project module; a package (or a missing module) is an error."""
    stem = _LIB.joinpath(*module.split("."))
    if stem.with_suffix(".py").is_file():
        return stem.with_suffix(".py").resolve()
    what = "a package" if stem.is_dir() else "not a module of the project"
    raise EmbeddingError(f"{importer}:{lineno}: imports from {module}, {what}: import from "
                         "the module that defines the names")


def _label(path: Path) -> str:
    try:
        return path.relative_to(_LIB).as_posix()
    except ValueError:
        return path.name


def _strip_project_imports(path: Path) -> str:
    """The file's source without its ``__future__`` and project imports (the template's
    header and the modules embedded before it give those names)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] in (PROJECT, "__future__")):
            drop.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    return "".join(line for i, line in enumerate(lines) if i not in drop).strip("\n")


def _check_names(modules: list[EmbeddedModule]) -> None:
    """No two embedded files define one module-level name (one would replace the other)."""
    owner: dict[str, EmbeddedModule] = {}
    for module in modules:
        for name in _defined_names(module.source):
            if name in owner:
                raise EmbeddingError(
                    f"{module.path}: defines {name!r} at module level, as {owner[name].path} "
                    "does; submission.py embeds both into one file: rename one")
            owner[name] = module


def _defined_names(source: str) -> Iterable[str]:
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name) and not name.id.startswith("__"):
                    yield name.id
