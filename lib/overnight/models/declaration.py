"""What a model is, declared on its class: ``@register("name", inputs=..., fit=...)``.

The declaration is the one owner of a model's name, of what it reads, of how it is fitted
and of whether the search trains it. Two readers take it from the same lines: the catalog
(``catalog.py``) parses the source, without importing torch, for the host side (the
Makefile, the night driver); the registry (``registry.py``) imports the file and finds the
class. So ``register``'s arguments must be literals (strings, tuples, booleans).

Standard library only; embedded in ``submission.py`` with the model code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

# What a model can read: the raw window and the window's precomputed neuroscience features
# (a model computes them itself at inference).
INPUTS = ("eeg", "features")
# How a model is fitted: by the training loop with gradients (also under torchrun), or as
# gradient-boosted trees by scikit-learn in one process (overnight.training.trees).
FITS = ("gradients", "trees")
# A name is a make target (train-<name>) and a folder (models/<name>).
NAME_RULE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
# The folder (models/blend) and row of the weighted blend of the night's models that
# compare fits (overnight.champion.blend).
BLEND_NAME = "blend"
# Names the comparison already gives other rows, and the search's best trial's folder.
RESERVED_NAMES = ("search", "champion", "mean-predictor", BLEND_NAME)

ModelClass = TypeVar("ModelClass")


@dataclasses.dataclass(frozen=True)
class Declaration:
    """A model's card, checked when it is made (``ValueError`` names what is allowed)."""

    name: str  # the model's name: make train-<name>, models/<name>/, the comparison's row
    inputs: tuple[str, ...] = ("eeg",)  # what it reads, of INPUTS
    fit: str = "gradients"  # how it is fitted, one of FITS
    searched: bool = False  # a family of the search (its [train] settings drawn per trial)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RULE.fullmatch(self.name):
            raise ValueError(f"name={self.name!r}: expected lower-case letters and digits, "
                             "words joined by '-' (a make target and a folder name)")
        if self.name in RESERVED_NAMES:
            raise ValueError(f"name={self.name!r}: reserved; the names {list(RESERVED_NAMES)} "
                             "belong to other rows of the comparison")
        inputs = tuple(self.inputs) if isinstance(self.inputs, (list, tuple)) else ()
        if not inputs or not set(inputs) <= set(INPUTS) or len(set(inputs)) < len(inputs):
            raise ValueError(f"inputs={self.inputs!r}: expected some of {list(INPUTS)}")
        object.__setattr__(self, "inputs", inputs)
        if self.fit not in FITS:
            raise ValueError(f"fit={self.fit!r}: expected one of {list(FITS)}")
        if self.fit == "trees" and not self.reads_features:
            raise ValueError(f"fit='trees' with inputs={inputs!r}: the trees are fitted on "
                             "the features, so inputs must include 'features'")
        if not isinstance(self.searched, bool):
            raise ValueError(f"searched={self.searched!r}: expected true or false")
        if self.searched and self.fit != "gradients":
            raise ValueError(f"searched=True: the search draws [train] settings, which only "
                             f"fit='gradients' reads (this model has fit={self.fit!r})")

    @property
    def reads_features(self) -> bool:
        """Whether training feeds it the feature cache."""
        return "features" in self.inputs

    @property
    def torchrun(self) -> bool:
        """Whether its training runs under torchrun (NPROC processes); trees fit in one."""
        return self.fit == "gradients"


def register(name: str, **card: Any) -> Callable[[ModelClass], ModelClass]:
    """Declare the decorated class a model named ``name`` (``Declaration``'s fields as
    keywords, literals only). The class is returned as it is, its declaration attached."""
    declaration = Declaration(name, **card)

    def attach(cls: ModelClass) -> ModelClass:
        cls.declaration = declaration  # type: ignore[attr-defined]
        return cls

    return attach
