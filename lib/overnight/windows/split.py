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


def make_split(subjects: Sequence[str], cfg: WindowsConfig,
               releases: Sequence[str] | None = None) -> dict[str, Any]:
    """A subject-disjoint train/validation split.

    With ``cfg.val_releases``, the subjects of those releases are the validation side (as
    the challenge held out R5). Otherwise unique subjects are sorted, shuffled with
    ``numpy.random.default_rng(split_seed)`` and the first
    ``max(1, round(val_fraction * n))`` go to validation (at most ``n - 1``, so training is
    never empty).

    Parameters
    ----------
    subjects : sequence of str
        Subject ids, repeats allowed (e.g. one per window).
    cfg : WindowsConfig
        ``val_releases``, ``val_fraction`` and ``split_seed``.
    releases : sequence of str, optional
        The release of each entry of ``subjects`` (needed with ``val_releases``).

    Returns
    -------
    dict
        ``{"train": sorted ids, "val": sorted ids, "val_fraction", "seed",
        "val_releases"}``.

    Raises
    ------
    TypeError
        ``subjects`` or ``releases`` is not a sequence of str.
    ValueError
        Fewer than 2 distinct subjects, or the held-out releases leave one side empty.
    """
    for name, values in (("subjects", subjects), ("releases", releases or [])):
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise TypeError(f"{name}: expected a sequence of str, got {values!r:.80}")
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise ValueError(f"subjects: {len(unique)} distinct subject(s) {unique}; "
                         "a subject-disjoint split needs at least 2")
    if cfg.val_releases:
        val = _release_subjects(subjects, releases, cfg.val_releases)
        train = sorted(set(unique) - set(val))
        if not train:
            raise ValueError(f"val_releases={list(cfg.val_releases)} holds every subject: "
                             "nothing is left to train on")
    else:
        n_val = min(len(unique) - 1, max(1, round(cfg.val_fraction * len(unique))))
        order = np.random.default_rng(cfg.split_seed).permutation(len(unique))
        val = sorted(unique[i] for i in order[:n_val])
        train = sorted(unique[i] for i in order[n_val:])
    return {"train": train, "val": val, "val_fraction": cfg.val_fraction,
            "seed": cfg.split_seed, "val_releases": list(cfg.val_releases)}


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
