"""The registry as the host sees it: every model's declaration, read from the source.

The models are the classes that carry ``@register(...)`` (``declaration.py``): the built-in
ones in this package's files, one model per file, and the user's own in the files that
``[night] extra_models`` names. The catalog parses those files without running them, so it
needs neither torch nor a virtualenv: the Makefile (its model targets), the night driver
(the stages it makes) and ``make status`` ask it on the host, also when the jobs run in
containers. The registry (``registry.py``) imports the same files and finds the same classes.

``python -m overnight.models.catalog --config CONFIG`` lists the models;
``--make`` prints the lists the Makefile reads. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from overnight.config import NightConfig, load_config
from overnight.layout import model_stages, preflight_stages
from overnight.models.declaration import Declaration

BUILTIN_DIR = Path(__file__).resolve().parent
DECORATOR = "register"


class ModelFileError(ValueError):
    """A model file that cannot be used, in one line that names the file and the fault."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered model: its declaration, its class and the file that defines it."""

    declaration: Declaration
    class_name: str
    path: Path
    builtin: bool

    @property
    def name(self) -> str:
        return self.declaration.name

    def describe(self) -> str:
        """``hybrid: HybridCNN in lib/overnight/models/hybrid.py, reads eeg + features``."""
        d = self.declaration
        try:
            shown = self.path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = self.path
        return (f"{d.name}: {self.class_name} in {shown}, reads {' + '.join(d.inputs)}, "
                f"fitted by {d.fit}{', searched' if d.searched else ''}")


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Every registered model (the built-in ones by name, then the extra ones in the order
    given) and the ones the night trains."""

    entries: tuple[Entry, ...]
    night: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def entry(self, name: str) -> Entry:
        """The model called ``name``; ``ValueError`` lists the registered ones."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise ValueError(f"model={name!r}: expected one of {list(self.names)} (the registered "
                         "models; [night] extra_models adds your own)")

    def night_entries(self) -> tuple[Entry, ...]:
        return tuple(self.entry(name) for name in self.night)

    def model_stages(self) -> tuple[str, ...]:
        """The night's stages up to its models, in the order the driver makes them."""
        night = self.night_entries()
        return model_stages(tuple(e.name for e in night if not e.declaration.reads_features),
                            tuple(e.name for e in night if e.declaration.reads_features))

    def preflight_stages(self) -> tuple[str, ...]:
        return preflight_stages(self.model_stages())

    def searched(self) -> tuple[str, ...]:
        """The search's families: the night's models that declare ``searched=True``."""
        return tuple(e.name for e in self.night_entries() if e.declaration.searched)


def load_catalog(night: NightConfig | None = None, root: Path | None = None) -> Catalog:
    """The built-in models, those of ``night.extra_models`` (paths relative to ``root``,
    the checkout; default: the working directory) and the night's choice among them.

    Raises
    ------
    ModelFileError
        A model file is missing, is not valid Python, declares no model or declares one
        wrongly (a non-literal argument, a bad name), or two files declare one name.
    ValueError
        ``night.models`` names a model that is not registered.
    """
    night = night or NightConfig()
    entries = builtin_entries() + extra_entries(night.extra_models, root or Path.cwd())
    seen: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in seen:
            raise ModelFileError(f"{entry.path}: model {entry.name!r} is already registered "
                                 f"by {seen[entry.name].path} ({seen[entry.name].class_name})")
        seen[entry.name] = entry
    unknown = [name for name in night.models if name not in seen]
    if unknown:
        raise ValueError(f"[night] models = {list(night.models)}: {unknown} not registered; "
                         f"registered: {list(seen)}")
    return Catalog(entries, night.models or tuple(seen))


def builtin_entries() -> tuple[Entry, ...]:
    """The models of this package's files, by name."""
    entries = [e for path in sorted(BUILTIN_DIR.glob("*.py"))
               for e in read_entries(path, builtin=True)]
    return tuple(sorted(entries, key=lambda e: e.name))


def extra_entries(specs: Sequence[str], root: Path) -> tuple[Entry, ...]:
    """The models of the user's files (``[night] extra_models``), in the order given."""
    entries: list[Entry] = []
    for path in _extra_files(specs, root):
        found = read_entries(path, builtin=False)
        if not found:
            raise ModelFileError(f"{path}: declares no model; decorate a subclass of "
                                 "overnight.models.base.RTModel with @register(\"<name>\")")
        entries += found
    return tuple(entries)


def _extra_files(specs: Sequence[str], root: Path) -> Iterable[Path]:
    for spec in specs:
        path = Path(spec) if Path(spec).is_absolute() else root / spec
        if path.is_dir():
            yield from sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.suffix == ".py" and path.is_file():
            yield path
        else:
            raise ModelFileError(f"{path}: no such model file or folder ([night] "
                                 f"extra_models = {spec!r}, relative to {root})")


def read_entries(path: Path, builtin: bool = False) -> list[Entry]:
    """The models ``path`` declares, read from its source (top-level classes only)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc})") from None
    except SyntaxError as exc:
        raise ModelFileError(f"{path}:{exc.lineno}: not valid Python ({exc.msg})") from None
    return [Entry(_declaration(path, decorator), node.name, path, builtin)
            for node in tree.body if isinstance(node, ast.ClassDef)
            for decorator in node.decorator_list if _names_register(decorator)]


def _names_register(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return ((isinstance(target, ast.Name) and target.id == DECORATOR)
            or (isinstance(target, ast.Attribute) and target.attr == DECORATOR))


def _declaration(path: Path, decorator: ast.expr) -> Declaration:
    where = f"{path}:{decorator.lineno}"
    if not isinstance(decorator, ast.Call):
        raise ModelFileError(f"{where}: @{DECORATOR} needs the model's name: "
                             f"@{DECORATOR}(\"<name>\", inputs=(\"eeg\",))")
    try:
        args = [ast.literal_eval(a) for a in decorator.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords}
    except ValueError:
        raise ModelFileError(f"{where}: @{DECORATOR}(...) takes literals only (strings, "
                             "tuples, True/False): the catalog reads them without running "
                             "the file") from None
    try:
        return Declaration(*args, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: @{DECORATOR}: {exc}") from None


def make_lists(catalog: Catalog) -> str:
    """The words the Makefile reads: ``<list>=<name>,<name>`` for each list."""
    night = catalog.night_entries()
    lists = {
        "models": catalog.names,
        "night": catalog.night,
        "features": [e.name for e in catalog.entries if e.declaration.reads_features],
        "single-process": [e.name for e in catalog.entries if not e.declaration.torchrun],
        # folders a container must mount to read the night's own model files
        "mounts": sorted({str(e.path.resolve().parent) for e in night if not e.builtin}),
    }
    return " ".join(f"{key}={','.join(values)}" for key, values in lists.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config file ([night])")
    parser.add_argument("--make", action="store_true",
                        help="print the lists the Makefile reads, on one line")
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(load_config(args.config).night)
    except (OSError, ValueError, TypeError) as exc:
        print(f"overnight: {exc}", file=sys.stderr)
        return 1
    if args.make:
        print(make_lists(catalog))
        return 0
    for entry in catalog.entries:
        night = "night" if entry.name in catalog.night else "     "
        print(f"{night}  {entry.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
