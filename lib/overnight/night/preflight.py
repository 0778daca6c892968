"""The preflight's input: a small slice of tonight's BIDS root, made of symlinks.

``make preflight`` runs every job of the chain on this slice (one epoch, a throwaway
folder) before the long stages start, so a broken job fails in a minute instead of in the
middle of the night. The slice holds the first ``n_subjects`` subjects that have a CCD
recording, linked (not copied) from the real root, with its top-level files and
``derivatives/``. Links are absolute and unresolved, so they also work inside a container
that mounts the data at the same path.

Standard library only: the host makes the slice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from overnight.checks import absolute
from overnight.config import EEG_FORMATS
from overnight.hbn.bids import RECORDING_GLOB, SUBJECT_RECORDING_GLOB


def make_slice(bids_root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               n_subjects: int) -> dict[str, Any]:
    """Link the first ``n_subjects`` subjects with a CCD recording into ``out_dir``.

    Parameters
    ----------
    bids_root : str or path-like
        Tonight's BIDS root (read only).
    out_dir : str or path-like
        The slice to write; replaced when it exists.
    n_subjects : int
        Subjects in the slice, at least 2 (the split needs a training and a validation
        subject).

    Returns
    -------
    dict
        ``subjects`` (their ids), ``n_recordings`` and ``out`` (the slice's path).

    Raises
    ------
    TypeError
        ``n_subjects`` is not an int, or a path is not a str or path-like.
    ValueError
        ``n_subjects`` is below 2, or ``out_dir`` is ``bids_root`` or inside it.
    FileNotFoundError
        ``bids_root`` is not a folder, or holds fewer than ``n_subjects`` subjects with a
        CCD recording.
    """
    root = absolute(bids_root, "bids_root")
    out = absolute(out_dir, "out_dir")
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int):
        raise TypeError(f"n_subjects must be an int, got {type(n_subjects).__name__}")
    if n_subjects < 2:
        raise ValueError(f"n_subjects={n_subjects}: expected at least 2 (a training and a "
                         "validation subject)")
    if out == root or root in out.parents:
        raise ValueError(f"out_dir={str(out)!r} lies inside bids_root={str(root)!r}: the "
                         "input data is never written")
    if not root.is_dir():
        raise FileNotFoundError(f"bids_root={str(root)!r}: not a folder")
    subjects = _subjects_with_recordings(root)
    if len(subjects) < n_subjects:
        raise FileNotFoundError(f"bids_root={str(root)!r}: {len(subjects)} subject(s) with a "
                                f"CCD recording ({RECORDING_GLOB}); the preflight needs "
                                f"{n_subjects}")
    chosen = subjects[:n_subjects]
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for entry in sorted(root.iterdir()):
        if entry.is_file() or entry.name == "derivatives" or entry.name in chosen:
            (out / entry.name).symlink_to(entry)
    n_recordings = sum(len(_recordings(root / name)) for name in chosen)
    return {"subjects": [name.removeprefix("sub-") for name in chosen],
            "n_recordings": n_recordings, "out": str(out)}


def _subjects_with_recordings(root: Path) -> list[str]:
    return [p.name for p in sorted(root.glob("sub-*")) if p.is_dir() and _recordings(p)]


def _recordings(subject_dir: Path) -> list[Path]:
    return [p for p in subject_dir.glob(SUBJECT_RECORDING_GLOB)
            if p.suffix.lstrip(".") in EEG_FORMATS]
