"""The registry: the model classes, imported from the files the catalog lists.

``find_model(name)`` is how every job gets a model (training, scoring, the submission, the
search). A built-in model is imported from this package; a model of the user's own from its
file, as its own module, and checked against the catalog's reading of the same file: the
class exists, subclasses ``RTModel`` and carries the declaration the catalog read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from overnight.config import NightConfig
from overnight.models.base import RTModel
from overnight.models.catalog import BUILTIN_DIR, Catalog, Entry, ModelFileError, load_catalog
from overnight.models.declaration import Declaration
from overnight.models.ensemble import build_model_of

_PACKAGE = __name__.rpartition(".")[0]
_EXTRA_PREFIX = "overnight_extra_model"  # the module names of the user's model files


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """A model of the registry: its class with the catalog's entry for it."""

    entry: Entry
    cls: type[RTModel]

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def declaration(self) -> Declaration:
        return self.entry.declaration

    @property
    def source(self) -> Path:
        """The file that defines it."""
        return self.entry.path

    def build(self, ensemble: int = 1, **model_args: Any) -> nn.Module:
        """The model with ``model_args``; ``ensemble`` > 1: that many, averaged."""
        return build_model_of(self.cls, ensemble, **model_args)


def find_model(name: str, extra_models: Sequence[str] = (), root: Path | None = None
               ) -> RegisteredModel:
    """The registered model ``name``: a built-in one, or one of the files (or folders)
    ``extra_models`` names, relative to ``root`` (the checkout; default: the working
    directory).

    Raises
    ------
    ValueError
        No model has that name (the message lists the registered ones).
    ModelFileError
        Its file cannot be read or imported, or does not define what it declares.
    """
    catalog = load_catalog(NightConfig(extra_models=tuple(extra_models)), root)
    return registered(catalog.entry(name))


def registry(catalog: Catalog) -> list[RegisteredModel]:
    """Every model of ``catalog``, imported."""
    return [registered(entry) for entry in catalog.entries]


def builtin_names() -> tuple[str, ...]:
    """The built-in models' names."""
    return load_catalog().names


def registered(entry: Entry) -> RegisteredModel:
    """The class ``entry`` names, imported from its file and checked against it."""
    module = _import(entry)
    cls = getattr(module, entry.class_name, None)
    where = f"{entry.path}: {entry.class_name}"
    if not (isinstance(cls, type) and issubclass(cls, RTModel)):
        raise ModelFileError(f"{where} is not a subclass of overnight.models.base.RTModel")
    if cls.__dict__.get("declaration") != entry.declaration:
        raise ModelFileError(f"{where}: its @register(...) declaration is not the one its "
                             "source shows (decorate the class itself, with literals)")
    if cls.standardized_output is RTModel.standardized_output:
        raise ModelFileError(f"{where} does not implement standardized_output(x, features), "
                             "the prediction in training stds (B, 1)")
    return RegisteredModel(entry, cls)


def _import(entry: Entry) -> ModuleType:
    """The module of ``entry``'s file: this package's own, or the user's file as a module
    of its own (named by its path, imported once)."""
    if entry.builtin and entry.path.parent == BUILTIN_DIR:
        return importlib.import_module(f"{_PACKAGE}.{entry.path.stem}")
    return _import_file(entry.path.resolve())


@functools.cache
def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"{_EXTRA_PREFIX}_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelFileError(f"{path}: fails to import ({type(exc).__name__}: {exc})") from exc
    return module
