"""HBN R1's real CCD events (``tests/data/hbn-r1``) and the official trials they hold.

The folder holds R1's own events files and sidecars, byte for byte from
``OpenNeuroDatasets/ds005505`` (its README says which commit), and beside them what
eegdash's ``build_trial_table`` (the challenge's trial logic) makes of every file:

- ``expected_trials.tsv``: one row per kept trial (a trial with a stimulus and a
  response), in file then trial order;
- ``expected.json``: how they were made, the trial starts and drops of every file, and the
  totals.

Regenerate both (needs eegdash, which ``make setup`` installs) from the repository root::

    .venv/bin/python -m tests.hbn_r1

Our own parser never writes them: the default suite compares it with these files, and the
``eegdash`` test compares these files with eegdash, so the two meet only through the files.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import math
import sys
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overnight.hbn.bids import TASK, read_events
from overnight.hbn.events import (
    LAST_TRIAL,
    NO_RESPONSE,
    NO_STIMULUS,
    PRESSES,
    TARGETS,
    TRIAL_START,
    Trial,
    parse_trials,
)

DATA_ROOT = Path(__file__).resolve().parent / "data" / "hbn-r1"
EXPECTED_TRIALS = DATA_ROOT / "expected_trials.tsv"
EXPECTED_SUMMARY = DATA_ROOT / "expected.json"
EVENTS_GLOB = f"sub-*/eeg/sub-*_task-{TASK}_run-*_events.tsv"
SOURCE = {"repository": "https://github.com/OpenNeuroDatasets/ds005505",
          "commit": "6cbc18fcc39d87de0496e410d0a0815009772e0f",
          "dataset_doi": "doi:10.18112/openneuro.ds005505.v1.0.1"}
# One kept trial, every cell as text; floats as repr, which reads back to the same double.
TRIAL_COLUMNS = ("subject", "run", "trial", "stimulus_onset", "response_onset",
                 "rt_from_stimulus", "target", "hand", "correct")
# Why a trial is dropped, as expected.json names it, and as our parser counts it.
DROP_KEYS = {"last_trial": LAST_TRIAL, "no_stimulus": NO_STIMULUS, "no_response": NO_RESPONSE}
# What eegdash's ``correct`` says for a press's feedback: True for a smiley, False for a sad
# face, nothing for any other feedback (non_target, n/a).
SAD_FEEDBACK = "sad_face"

TrialRow = tuple[str, ...]


@dataclass(frozen=True)
class FileTrials:
    """The official trials of one events file."""

    trial_starts: int  # contrastTrial_start rows
    trials: list[TrialRow]  # the kept trials, in TRIAL_COLUMNS
    dropped: dict[str, int]  # by DROP_KEYS key, every key present


def events_files(root: Path = DATA_ROOT) -> list[Path]:
    """Every CCD events file under ``root``, sorted."""
    return sorted(root.glob(EVENTS_GLOB))


def relative(path: Path, root: Path = DATA_ROOT) -> str:
    """``sub-<id>/eeg/<name>``, the key of a file in expected.json."""
    return path.relative_to(root).as_posix()


def subject_run(path: Path) -> tuple[str, str]:
    """(subject without ``sub-``, run) of a BIDS file name."""
    subject = path.name.split("_")[0].removeprefix("sub-")
    return subject, path.name.split("_run-")[1].split("_")[0]


# ---------------------------------------------------------------------------- our parser

def parse_file(path: Path) -> FileTrials:
    """What our parser makes of one file, as the window stage calls it."""
    rows = read_events(path)
    dropped: Counter[str] = Counter()
    trials = parse_trials(rows, dropped)
    subject, run = subject_run(path)
    return FileTrials(
        trial_starts=sum(row["value"] == TRIAL_START for row in rows),
        trials=[_our_row(subject, run, trial) for trial in trials],
        dropped={key: dropped[reason] for key, reason in DROP_KEYS.items()})


def _our_row(subject: str, run: str, trial: Trial) -> TrialRow:
    # eegdash's tri-state from ours: Trial.correct, and a sad face told from other feedback
    correct = "True" if trial.correct else "False" if trial.feedback == SAD_FEEDBACK else "n/a"
    return (subject, run, str(trial.index), repr(trial.stim_onset_s),
            repr(trial.response_onset_s), repr(trial.rt_s), trial.target, trial.hand, correct)


# ---------------------------------------------------------------------------- stored

def read_expected() -> tuple[dict[str, Any], dict[str, FileTrials]]:
    """expected.json (without its files) and every file's stored trials, by relative path."""
    summary = json.loads(EXPECTED_SUMMARY.read_text(encoding="utf-8"))
    by_run: dict[tuple[str, str], list[TrialRow]] = {}
    with open(EXPECTED_TRIALS, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", lineterminator="\n")
        if tuple(next(reader)) != TRIAL_COLUMNS:
            raise ValueError(f"{EXPECTED_TRIALS}: expected the columns {TRIAL_COLUMNS}")
        for row in reader:
            by_run.setdefault((row[0], row[1]), []).append(tuple(row))
    files = {name: FileTrials(entry["trial_starts"],
                              by_run.pop(subject_run(Path(name)), []), entry["dropped"])
             for name, entry in summary.pop("files").items()}
    if by_run:
        raise ValueError(f"{EXPECTED_TRIALS}: trials of runs expected.json does not list: "
                         f"{sorted(by_run)[:3]}")
    return summary, files


def totals(files: dict[str, FileTrials]) -> dict[str, int]:
    """Files, trial starts, kept trials and drops by reason, over all files."""
    out = {"files": len(files), "trial_starts": sum(f.trial_starts for f in files.values()),
           "kept": sum(len(f.trials) for f in files.values())}
    out.update({key: sum(f.dropped[key] for f in files.values()) for key in DROP_KEYS})
    return out


# ---------------------------------------------------------------------------- eegdash

def eegdash_unavailable() -> str | None:
    """Why eegdash's trial logic cannot be loaded here, or None when it can."""
    for name in ("eegdash", "pandas", "mne_bids"):
        if importlib.util.find_spec(name) is None:  # finds the package, runs nothing
            return f"{name} is not installed: make setup installs requirements-eegdash.txt"
    return None


def load_eegdash_windows() -> types.ModuleType:
    """eegdash's ``hbn/windows.py``, the module with ``build_trial_table``.

    Importing the eegdash package pulls braindecode, which imports torchaudio (built for
    another torch). The module itself needs only pandas and mne-bids, plus one name from
    braindecode (``BaseConcatDataset``) that ``build_trial_table`` never uses: the file is
    loaded on its own, with that one import answered by an empty class.
    """
    spec = importlib.util.find_spec("eegdash")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("eegdash is not installed: make setup installs "
                                  "requirements-eegdash.txt")
    path = Path(spec.submodule_search_locations[0]) / "hbn" / "windows.py"
    name = "braindecode.datasets.base"
    absent = types.ModuleType(name)
    absent.BaseConcatDataset = type("BaseConcatDataset", (), {})  # type: ignore[attr-defined]
    saved = sys.modules.get(name)
    sys.modules[name] = absent
    try:
        module_spec = importlib.util.spec_from_file_location("eegdash_hbn_windows", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules[name]
        else:
            sys.modules[name] = saved
    return module


def official_file(path: Path, windows: types.ModuleType) -> FileTrials:
    """What eegdash's ``build_trial_table`` makes of one file, read as the start kit does."""
    import pandas as pd

    events = pd.read_csv(path, sep="\t")
    # eegdash sorts the same way; the target's side is looked up in that order
    ordered = events.sort_values("onset", kind="mergesort")
    starts = int(events["value"].eq(TRIAL_START).sum())
    table = windows.build_trial_table(events) if starts else pd.DataFrame()
    subject, run = subject_run(path)
    trials = []
    for index, row in enumerate(table.to_dict("records")):
        # eegdash keeps every trial but the last, in order: its position is the trial index
        if math.isnan(row["stimulus_onset"]) or math.isnan(row["response_onset"]):
            continue
        target = ordered.loc[ordered["onset"].eq(row["stimulus_onset"])
                             & ordered["value"].isin(list(TARGETS)), "value"].iloc[0]
        trials.append((subject, run, str(index), repr(row["stimulus_onset"]),
                       repr(row["response_onset"]), repr(row["rt_from_stimulus"]),
                       TARGETS[target], PRESSES[row["response_type"]],
                       "n/a" if pd.isna(row["correct"]) else str(row["correct"])))
    no_stimulus = int(table["stimulus_onset"].isna().sum()) if len(table) else 0
    return FileTrials(starts, trials, {
        "last_trial": starts - len(table), "no_stimulus": no_stimulus,
        "no_response": len(table) - no_stimulus - len(trials)})


def official_trials(root: Path = DATA_ROOT) -> dict[str, FileTrials]:
    """eegdash's trials of every events file under ``root``, by relative path."""
    windows = load_eegdash_windows()
    return {relative(path, root): official_file(path, windows) for path in events_files(root)}


def write_expected(files: dict[str, FileTrials]) -> None:
    """Store ``files`` as expected_trials.tsv and expected.json."""
    with open(EXPECTED_TRIALS, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(TRIAL_COLUMNS)
        for entry in files.values():
            writer.writerows(entry.trials)
    summary = {
        "generated_by": {"command": "python -m tests.hbn_r1",
                         "function": "eegdash.hbn.windows.build_trial_table",
                         "eegdash": importlib.metadata.version("eegdash"),
                         "pandas": importlib.metadata.version("pandas"),
                         "read_as": "pandas.read_csv(path, sep='\\t')"},
        "source": SOURCE,
        "totals": totals(files),
        "files": {name: {"trial_starts": entry.trial_starts, "dropped": entry.dropped}
                  for name, entry in files.items()},
    }
    EXPECTED_SUMMARY.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    files = official_trials()
    write_expected(files)
    print(f"{EXPECTED_TRIALS.name}, {EXPECTED_SUMMARY.name}: {totals(files)}")


if __name__ == "__main__":
    main()
