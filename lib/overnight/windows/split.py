"""The subject-disjoint split: made once per cache, so every model and the champion are
scored on the same validation windows.

Three disjoint sets of whole subjects: ``train`` (what the models fit), ``tune`` (what
training judges itself on: early stopping, the best epoch, any choice made while training)
and ``val`` (read once per model, by compare, for the scores the gate and the report use).
Selecting on the validation subjects would flatter every model, and most the one that
fluctuates most."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from overnight.atomic import write_json
from overnight.checks import as_path, existing_file
from overnight.config import WindowsConfig
from overnight.windows.cache import cache_identity, open_cache

SIDES = ("train", "tune", "val")  # fit, select, score: disjoint sets of whole subjects
# The tune and validation sides take more subjects while they hold fewer windows than this:
# their NRMSE needs at least two.
MIN_SIDE_WINDOWS = 2


def make_split(subjects: Sequence[str], cfg: WindowsConfig,
               releases: Sequence[str] | None = None) -> dict[str, Any]:
    """A subject-disjoint train/tune/validation split.

    With ``cfg.val_releases``, the subjects of those releases are the validation side (as
    the challenge held out R5). Otherwise unique subjects are sorted, shuffled with
    ``numpy.random.default_rng(split_seed)`` and the first
    ``max(1, round(val_fraction * n))`` go to validation (at most ``n - 2``). The tune set
    is drawn the same way from the subjects left, ``max(1, round(tune_fraction * m))`` of
    them (at most ``m - 1``), with its own generator seeded by ``(split_seed, 1)``: the
    validation side does not depend on ``tune_fraction``. A drawn side that holds fewer
    than ``MIN_SIDE_WINDOWS`` windows takes the next subjects of its draw too.

    Parameters
    ----------
    subjects : sequence of str
        Subject ids, one per window: a subject's repeats are its windows.
    cfg : WindowsConfig
        ``val_releases``, ``val_fraction`` and ``split_seed``.
    releases : sequence of str, optional
        The release of each entry of ``subjects`` (needed with ``val_releases``).

    Returns
    -------
    dict
        ``{"train": sorted ids, "tune": sorted ids, "val": sorted ids, "val_fraction",
        "tune_fraction", "seed", "val_releases"}``.

    Raises
    ------
    TypeError
        ``subjects`` or ``releases`` is not a sequence of str.
    ValueError
        Fewer than 3 distinct subjects, or the held-out releases leave fewer than 2
        subjects to train and tune on.
    """
    for name, values in (("subjects", subjects), ("releases", releases or [])):
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise TypeError(f"{name}: expected a sequence of str, got {values!r:.80}")
    unique = sorted(set(subjects))
    if len(unique) < 3:
        raise ValueError(f"subjects: {len(unique)} distinct subject(s) {unique}; a "
                         "subject-disjoint split needs at least 3 (train, tune, validation)")
    windows = Counter(subjects)
    if cfg.val_releases:
        val = _release_subjects(subjects, releases, cfg.val_releases)
        rest = sorted(set(unique) - set(val))
        if len(rest) < 2:
            raise ValueError(f"val_releases={list(cfg.val_releases)} leaves {len(rest)} "
                             "subject(s) outside validation: nothing is left to train on "
                             "(training needs at least 2, one to fit and one to tune)")
    else:
        val, rest = _draw(unique, windows, cfg.val_fraction, len(unique) - 2,
                          np.random.default_rng(cfg.split_seed))
    tune, train = _draw(rest, windows, cfg.tune_fraction, len(rest) - 1,
                        np.random.default_rng([cfg.split_seed, 1]))
    return {"train": train, "tune": tune, "val": val, "val_fraction": cfg.val_fraction,
            "tune_fraction": cfg.tune_fraction, "seed": cfg.split_seed,
            "val_releases": list(cfg.val_releases)}


def _draw(unique: list[str], windows: Counter[str], fraction: float, at_most: int,
          rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``max(1, round(fraction * n))`` of the sorted ids ``unique`` drawn with ``rng``, more
    while they hold fewer than ``MIN_SIDE_WINDOWS`` windows (an NRMSE needs a spread), at
    most ``at_most``; and the rest. Both sorted."""
    order = [unique[i] for i in rng.permutation(len(unique))]
    n_drawn = min(at_most, max(1, round(fraction * len(unique))))
    while (n_drawn < at_most
           and sum(windows[s] for s in order[:n_drawn]) < MIN_SIDE_WINDOWS):
        n_drawn += 1
    return sorted(order[:n_drawn]), sorted(order[n_drawn:])


def _release_subjects(subjects: Sequence[str], releases: Sequence[str] | None,
                      held_out: Sequence[str]) -> list[str]:
    if releases is None or len(releases) != len(subjects):
        raise ValueError("val_releases needs the release of every subject")
    val = sorted({s for s, r in zip(subjects, releases, strict=True) if r in held_out})
    if not val:
        found = sorted(set(releases))
        raise ValueError(f"val_releases={list(held_out)}: no subject of those releases; the "
                         f"data holds {found}")
    return val


def describe(split: dict[str, Any]) -> str:
    """``"19 train / 5 tune / 6 val subjects"``, for logs."""
    return " / ".join(f"{len(split[side])} {side}" for side in SIDES) + " subjects"


def write_split(cache_path: str | os.PathLike[str], split_path: str | os.PathLike[str],
                cfg: WindowsConfig) -> dict[str, Any]:
    """Split the cache's subjects into a JSON file, written atomically.

    The file also holds ``cache``: the cache's identity (``cache_identity``), so a later
    stage can tell the split belongs to its cache.

    Returns
    -------
    dict
        The split as written.
    """
    with open_cache(cache_path) as cache:
        subjects, releases = cache.subjects().tolist(), cache.column("release").tolist()
    split = make_split(subjects, cfg, releases)
    split["cache"] = cache_identity(cache_path)
    write_json(as_path(split_path, "split_path"), split)
    return split


def read_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split written by ``write_split`` and check it.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``train``, ``tune`` or ``val`` is missing, empty or not a list of str, or two of
        them share subjects.
    """
    split_file = existing_file(path, "path")
    split = json.loads(split_file.read_text(encoding="utf-8"))
    if isinstance(split, dict) and "train" in split and "tune" not in split:
        raise ValueError(f"{split_file}: a split without a tune set (made before training "
                         "stopped selecting on the validation subjects); remove it and "
                         "run make windows, which makes the cache and its split again")
    for side in SIDES:
        ids = split.get(side) if isinstance(split, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(s, str) for s in ids):
            raise ValueError(f"{split_file}: {side!r} must be a non-empty list of subject ids, "
                             f"got {ids!r:.80}")
    for i, first in enumerate(SIDES):
        for second in SIDES[i + 1:]:
            shared = sorted(set(split[first]) & set(split[second]))
            if shared:
                raise ValueError(f"{split_file}: subjects in both {first} and {second}: "
                                 f"{shared[:10]}")
    return split
