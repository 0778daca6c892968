"""The preflight's input: a small slice of tonight's BIDS roots, made of symlinks.

The preflight runs every job of the chain on this slice (one epoch, a throwaway folder)
before the long stages start, so a broken job fails in a minute instead of in the middle
of the night. The slice links up to ``max_subjects`` subjects that have a CCD recording,
taken in turn from each root (so every release is in it), each root's slice with its
top-level files and ``derivatives/``. The preflight's window stage then reads them in order
until enough subjects give windows: a few unusable recordings at the head of a release do
not fail the preflight. Links are absolute and unresolved, so they also work inside a
container that mounts the data at the same path.

Standard library only: the host makes the slice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overnight.checks import absolute, check_int
from overnight.config import EEG_FORMATS
from overnight.hbn.bids import RECORDING_GLOB, SUBJECT_RECORDING_GLOB


def make_slice(bids_roots: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
               max_subjects: int) -> dict[str, Any]:
    """Link up to ``max_subjects`` subjects with a CCD recording into ``out_dir``.

    Parameters
    ----------
    bids_roots : sequence of str or path-like
        Tonight's BIDS roots (read only).
    out_dir : str or path-like
        The slice to write, one root per input root (``slice_roots``); replaced when it
        exists.
    max_subjects : int
        Subjects to link, at least 2 (the split needs a training and a validation subject)
        and at least one per root.

    Returns
    -------
    dict
        ``subjects`` (their ids) and ``n_recordings``.

    Raises
    ------
    TypeError
        ``max_subjects`` is not an int, or a path is not a str or path-like.
    ValueError
        ``max_subjects`` is below 2, no root is given, or ``out_dir`` lies inside a root.
    FileNotFoundError
        A root is not a folder or holds no subject with a CCD recording, or the roots hold
        fewer than 2.
    """
    roots = [absolute(root, "bids_roots") for root in bids_roots]
    out = absolute(out_dir, "out_dir")
    check_int("max_subjects", max_subjects, minimum=2)
    if not roots:
        raise ValueError("bids_roots: expected at least one BIDS root")
    for root in roots:
        if out == root or root in out.parents:
            raise ValueError(f"out_dir={str(out)!r} lies inside bids_root={str(root)!r}: the "
                             "input data is never written")
        if not root.is_dir():
            raise FileNotFoundError(f"bids_root={str(root)!r}: not a folder")
    per_root = [_subjects_with_recordings(root) for root in roots]
    for root, names in zip(roots, per_root, strict=True):
        if not names:
            raise FileNotFoundError(f"bids_root={str(root)!r}: no subject with a CCD "
                                    f"recording ({RECORDING_GLOB})")
    chosen = _in_turn(per_root, max(max_subjects, len(roots)))
    if sum(map(len, chosen)) < 2:
        raise FileNotFoundError(f"bids_roots={[str(r) for r in roots]}: one subject with a "
                                f"CCD recording ({RECORDING_GLOB}); the preflight needs 2")
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    for root, names, root_slice in zip(roots, chosen, slice_roots(roots, out), strict=True):
        _link(root, names, root_slice)
    n_recordings = sum(len(_recordings(root / name))
                       for root, names in zip(roots, chosen, strict=True) for name in names)
    return {"subjects": [name.removeprefix("sub-") for names in chosen for name in names],
            "n_recordings": n_recordings}


def count_subjects(bids_roots: Sequence[str | os.PathLike[str]]) -> int:
    """Subjects with a CCD recording in all the roots (what the night's windows will read)."""
    return sum(len(_subjects_with_recordings(absolute(root, "bids_roots")))
               for root in bids_roots)


def slice_roots(bids_roots: Sequence[str | os.PathLike[str]],
                out_dir: str | os.PathLike[str]) -> list[Path]:
    """The slice's BIDS roots, one per input root, in order: ``<out_dir>/<i>-<name>``."""
    return [Path(out_dir) / f"{i}-{Path(root).name}" for i, root in enumerate(bids_roots, 1)]


def _in_turn(per_root: list[list[str]], limit: int) -> list[list[str]]:
    """Up to ``limit`` names, one from each list in turn, kept per list and in order."""
    taken: list[list[str]] = [[] for _ in per_root]
    for rank in range(max(map(len, per_root), default=0)):
        for names, kept in zip(per_root, taken, strict=True):
            if rank < len(names) and sum(map(len, taken)) < limit:
                kept.append(names[rank])
    return taken


def _link(root: Path, names: list[str], out: Path) -> None:
    """One root's slice: its top-level files, ``derivatives/`` and the chosen subjects."""
    out.mkdir(parents=True)
    for entry in sorted(root.iterdir()):
        if entry.is_file() or entry.name == "derivatives" or entry.name in names:
            (out / entry.name).symlink_to(entry)


def _subjects_with_recordings(root: Path) -> list[str]:
    return [p.name for p in sorted(root.glob("sub-*")) if p.is_dir() and _recordings(p)]


def _recordings(subject_dir: Path) -> list[Path]:
    return [p for p in subject_dir.glob(SUBJECT_RECORDING_GLOB)
            if p.suffix.lstrip(".") in EEG_FORMATS]
