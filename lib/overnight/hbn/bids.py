"""The HBN contrast-change-detection BIDS layout, as the real releases have it (REFERENCE).

``sub-<id>/eeg/sub-<id>_task-contrastChangeDetection_run-<k>_eeg.<set|bdf>`` with sibling
``_events.tsv`` (``onset duration sample value event_code feedback`` in the 500 Hz
originals; the 100 Hz releases drop ``sample``; some files have no ``feedback``),
``_eeg.json`` and ``_channels.tsv``, and ``participants.tsv`` at the root. Standard
library at import (the host's preflight finds recordings with it); writing a recording
needs numpy and MNE.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overnight.config import EEG_FORMATS
from overnight.hbn.channels import CH_NAMES, MONTAGE_NAME, REFERENCE_CHANNEL

TASK = "contrastChangeDetection"
# Every CCD recording below a subject's folder, and below a BIDS root (any suffix: callers
# keep EEG_FORMATS).
SUBJECT_RECORDING_GLOB = f"eeg/sub-*_task-{TASK}_run-*_eeg.*"
RECORDING_GLOB = f"sub-*/{SUBJECT_RECORDING_GLOB}"
EVENT_COLUMNS = ("onset", "duration", "sample", "value", "event_code", "feedback")
SAMPLE_COLUMN_SFREQ_HZ = 500.0  # the originals carry ``sample`` = onset x 500
PARTICIPANT_COLUMNS = (
    "participant_id", "release_number", "sex", "age", "ehq_total", "commercial_use",
    "full_pheno", "p_factor", "attention", "internalizing", "externalizing",
    # then one availability column per task: available, unavailable or caution
    "RestingState", "DespicableMe", "FunwithFractals", "ThePresent", "DiaryOfAWimpyKid",
    "contrastChangeDetection_1", "contrastChangeDetection_2", "contrastChangeDetection_3",
    "surroundSupp_1", "surroundSupp_2", "seqLearning6target", "seqLearning8target",
    "symbolSearch",
)
PARTICIPANTS_FILE = "participants.tsv"


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


def write_events(path: Path, rows: Iterable[Mapping[str, Any]], sfreq_hz: float,
                 feedback: bool = True) -> None:
    """Write an events.tsv as the real releases do: ``sample`` (onset x 500) only at the
    originals' 500 Hz, ``duration`` always ``n/a``, and no ``feedback`` column when
    ``feedback`` is False; other missing cells become ``n/a``."""
    columns = [c for c in EVENT_COLUMNS
               if (c != "sample" or sfreq_hz == SAMPLE_COLUMN_SFREQ_HZ)
               and (c != "feedback" or feedback)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            onset = float(row["onset"])
            cells = {**row, "onset": _seconds(onset), "duration": None,
                     "sample": round(onset * SAMPLE_COLUMN_SFREQ_HZ)}
            writer.writerow([_cell(cells.get(col)) for col in columns])


def write_sidecars(eeg_file: Path, sfreq_hz: float, duration_s: float) -> None:
    """The ``_eeg.json`` and ``_channels.tsv`` beside a recording, with the real fields."""
    stem = eeg_file.name[: eeg_file.name.rindex("_eeg.")]
    eeg_json = {"TaskName": TASK, "SamplingFrequency": sfreq_hz,
                "EEGChannelCount": len(CH_NAMES), "EEGReference": REFERENCE_CHANNEL,
                "PowerLineFrequency": 60, "RecordingDuration": duration_s,
                "RecordingType": "continuous", "SoftwareFilters": "n/a"}
    eeg_file.with_name(f"{stem}_eeg.json").write_text(json.dumps(eeg_json, indent=2) + "\n",
                                                      encoding="utf-8")
    with open(eeg_file.with_name(f"{stem}_channels.tsv"), "w", newline="",
              encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(("name", "type", "units"))
        writer.writerows((name, "EEG", "uV") for name in CH_NAMES)  # MNE hands you volts


def read_participants(bids_root: Path) -> dict[str, dict[str, str]]:
    """``participants.tsv`` by subject id (without ``sub-``); empty when there is none or it
    cannot be read (it only adds facts, such as the release, to the recordings)."""
    path = bids_root / PARTICIPANTS_FILE
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {row["participant_id"].removeprefix("sub-"): row
                    for row in csv.DictReader(fh, delimiter="\t")
                    if row.get("participant_id")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}


def read_events(path: Path) -> list[dict[str, str]]:
    """Rows of an events.tsv as dicts of strings (``n/a`` kept as is).

    A byte that is not UTF-8 (a stray Latin-1 letter in a free-text cell) becomes U+FFFD
    rather than failing the file: the columns the trial logic reads are ASCII.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
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


def _seconds(onset_s: float) -> str:
    """``39.484``, ``0``: milliseconds at most, no trailing zeros (as the real files)."""
    return f"{onset_s:.3f}".rstrip("0").rstrip(".")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
