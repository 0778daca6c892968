"""The subject-disjoint train/validation split: made once per cache, so
every model and the champion are scored on the same validation windows."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from overnight.atomic import write_json
from overnight.checks import as_path, existing_file
from overnight.config import WindowsConfig
from overnight.windows.cache import cache_identity, open_cache


def make_split(subjects: Sequence[str], cfg: WindowsConfig) -> dict[str, Any]:
    """A subject-disjoint train/validation split, reproducible from ``cfg.split_seed``.

    Unique subjects are sorted, shuffled with ``numpy.random.default_rng(split_seed)`` and
    the first ``max(1, round(val_fraction * n))`` go to validation (at most ``n - 1``, so
    training is never empty).

    Parameters
    ----------
    subjects : sequence of str
        Subject ids, repeats allowed (e.g. one per window).
    cfg : WindowsConfig
        ``val_fraction`` and ``split_seed``.

    Returns
    -------
    dict
        ``{"train": sorted ids, "val": sorted ids, "val_fraction", "seed"}``.

    Raises
    ------
    TypeError
        ``subjects`` is not a sequence of str.
    ValueError
        Fewer than 2 distinct subjects.
    """
    if isinstance(subjects, str) or not all(isinstance(s, str) for s in subjects):
        raise TypeError(f"subjects: expected a sequence of str, got {subjects!r:.80}")
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise ValueError(f"subjects: {len(unique)} distinct subject(s) {unique}; "
                         "a subject-disjoint split needs at least 2")
    n_val = min(len(unique) - 1, max(1, round(cfg.val_fraction * len(unique))))
    order = np.random.default_rng(cfg.split_seed).permutation(len(unique))
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return {"train": train, "val": val, "val_fraction": cfg.val_fraction,
            "seed": cfg.split_seed}


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
        subjects = cache.subjects().tolist()
    split = make_split(subjects, cfg)
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
        ``train`` or ``val`` is missing, empty or not a list of str, or they share subjects.
    """
    split_file = existing_file(path, "path")
    split = json.loads(split_file.read_text(encoding="utf-8"))
    for side in ("train", "val"):
        ids = split.get(side) if isinstance(split, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(s, str) for s in ids):
            raise ValueError(f"{split_file}: {side!r} must be a non-empty list of subject ids, "
                             f"got {ids!r:.80}")
    shared = sorted(set(split["train"]) & set(split["val"]))
    if shared:
        raise ValueError(f"{split_file}: subjects in both train and val: {shared[:10]}")
    return split
