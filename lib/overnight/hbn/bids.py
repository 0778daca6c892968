"""The HBN contrast-change-detection BIDS layout: file names, events and writers.

``sub-<id>/eeg/sub-<id>_task-contrastChangeDetection_run-<k>_eeg.<set|bdf>`` with a
sibling ``..._events.tsv`` (columns ``onset duration value event_code feedback``).
Standard library at import (the host's preflight finds recordings with it); writing a
recording needs numpy and MNE.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overnight.config import EEG_FORMATS
from overnight.hbn.channels import CH_NAMES, MONTAGE_NAME

TASK = "contrastChangeDetection"
# Every CCD recording below a subject's folder, and below a BIDS root (any suffix: callers
# keep EEG_FORMATS).
SUBJECT_RECORDING_GLOB = f"eeg/sub-*_task-{TASK}_run-*_eeg.*"
RECORDING_GLOB = f"sub-*/{SUBJECT_RECORDING_GLOB}"
EVENT_COLUMNS = ("onset", "duration", "value", "event_code", "feedback")


def eeg_path(root: Path, subject: str, run: int, fmt: str) -> Path:
    """Path of one CCD recording in a BIDS root."""
    if fmt not in EEG_FORMATS:
        raise ValueError(f"fmt={fmt!r}: expected one of {EEG_FORMATS}")
    stem = f"sub-{subject}_task-{TASK}_run-{run}"
    return Path(root) / f"sub-{subject}" / "eeg" / f"{stem}_eeg.{fmt}"


def events_path(eeg_file: Path) -> Path:
    """The ``_events.tsv`` beside a recording."""
    name = eeg_file.name
    stem = name[: name.rindex("_eeg.")]
    return eeg_file.with_name(f"{stem}_events.tsv")


def write_events(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write an events.tsv; missing cells become ``n/a`` as in HBN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row.get(col)) for col in EVENT_COLUMNS])


def read_events(path: Path) -> list[dict[str, str]]:
    """Rows of an events.tsv as dicts of strings (``n/a`` kept as is)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def write_recording(path: Path, data_v: Any, sfreq_hz: float,
                    ch_names: tuple[str, ...] = CH_NAMES) -> None:
    """Write one recording (channels x samples, volts) as EEGLAB ``.set`` or ``.bdf``.

    Goes through MNE's exporters, so the files are what MNE and EEGLAB read back.
    """
    import mne
    import numpy as np

    fmt = path.suffix.lstrip(".")
    if fmt not in EEG_FORMATS:
        raise ValueError(f"{path}: expected a .set or .bdf file name")
    if data_v.shape[0] != len(ch_names):
        raise ValueError(f"data has {data_v.shape[0]} channels but {len(ch_names)} names")
    info = mne.create_info(list(ch_names), sfreq_hz, ch_types="eeg")
    raw = mne.io.RawArray(np.asarray(data_v, dtype=np.float64), info, verbose="error")
    if tuple(ch_names) == CH_NAMES:
        raw.set_montage(mne.channels.make_standard_montage(MONTAGE_NAME), verbose="error")
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="eeglab" if fmt == "set" else "bdf",
                          overwrite=True, verbose="error")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
