"""The night folder: where every file of a night lives, and the stages in chain order.

This module is the one owner of those names; everything else asks it (the Makefile, the
user interface, spells the same paths for its targets). Standard library only: the host
side of a night (driver, runner, status) uses it, also when the jobs run in containers.

A night folder (``runs/<date>``, or ``work/demo``)::

    night.log  night.json          the driver's log and record
    logs/<stage>.log               one log per stage
    status/<stage>.json            one status record per stage
    windows.h5  split.json         stage windows
    features.h5                    stage features
    models/<name>/                 stage train-<name>
    search/summary.json progress.json   stage search (its study lives beside the nights)
    models/search/                 stage search: the study's best trial
    models/blend/                  stage compare: the blend of the night's models
    comparison.json                stage compare
    preflight/                     a night folder of its own: the preflight's slice
      bids/ submission/ reports/   (its input, a copy of the champion, its report)
      studies/                     (its search's study: one trial)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

# The chain, top to bottom: the order in which every listing (status, report) shows the
# stages. The models' stages (train-<name>, one per model the night trains: the registry,
# overnight.models.catalog, says which) sit in TRAIN_SLOT, by name.
TRAIN_PREFIX = "train-"
TRAIN_SLOT = TRAIN_PREFIX + "*"
STAGES: tuple[str, ...] = ("synth", "preflight", "disk", "device", "check-models", "windows",
                           "features", TRAIN_SLOT, "search", "compare", "report")
WINDOWS_STAGE = "windows"
FEATURES_STAGE = "features"
CHECK_MODELS_STAGE = "check-models"  # the preflight's first look at the night's models
# After the models, before compare: the hyperparameter search fills the hours left.
SEARCH_STAGE = "search"
DISK_STAGE = "disk"  # after the preflight: is there room for what the night will write
REPORT_STAGE = "report"  # always runs, also after a failure or past the night's limit

WINDOWS_FILE = "windows.h5"
SPLIT_FILE = "split.json"
FEATURES_FILE = "features.h5"
COMPARISON_FILE = "comparison.json"
# The search's studies outlive a night: they sit beside the night folders (RUNS/search),
# one folder per study (its journal, when local, and its trials' folders).
STUDIES_DIR = "search"


@dataclasses.dataclass(frozen=True)
class NightFolder:
    """The paths of one night folder."""

    root: Path

    @property
    def windows(self) -> Path:
        """The window cache (stage windows)."""
        return self.root / WINDOWS_FILE

    @property
    def split(self) -> Path:
        """The subject split (stage windows)."""
        return self.root / SPLIT_FILE

    @property
    def features(self) -> Path:
        """The feature cache (stage features)."""
        return self.root / FEATURES_FILE

    @property
    def models(self) -> Path:
        """One sub-folder per trained model."""
        return self.root / "models"

    def model(self, name: str) -> Path:
        """The folder of model ``name`` (stage train-<name>)."""
        return self.models / name

    @property
    def search(self) -> Path:
        """The search stage's records of this night (its study lives in ``STUDIES_DIR``)."""
        return self.root / SEARCH_STAGE

    @property
    def search_summary(self) -> Path:
        """The study as the search left it tonight: the report's input (stage search)."""
        return self.search / "summary.json"

    @property
    def search_progress(self) -> Path:
        """The study while the search runs: ``make status``'s input (stage search)."""
        return self.search / "progress.json"

    @property
    def comparison(self) -> Path:
        """The scores and the gate's decision (stage compare)."""
        return self.root / COMPARISON_FILE

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    def status(self, stage: str) -> Path:
        """The status record of one stage."""
        return self.status_dir / f"{stage}.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def log(self, stage: str) -> Path:
        """The log of one stage."""
        return self.logs_dir / f"{stage}.log"

    @property
    def night_log(self) -> Path:
        """Everything the driver printed, time-stamped."""
        return self.root / "night.log"

    @property
    def night_record(self) -> Path:
        """The driver's attempts and the night's outcome."""
        return self.root / "night.json"

    @property
    def preflight(self) -> NightFolder:
        """The preflight's own night folder."""
        return NightFolder(self.root / "preflight")

    @property
    def bids(self) -> Path:
        """The preflight's slice of the input data (links)."""
        return self.root / "bids"

    @property
    def submission(self) -> Path:
        """The preflight's copy of the champion's submission folder."""
        return self.root / "submission"

    @property
    def reports(self) -> Path:
        """Where the preflight renders its report."""
        return self.root / "reports"

    @property
    def studies(self) -> Path:
        """The preflight's search study, its own (a night's live in ``STUDIES_DIR``)."""
        return self.root / "studies"


def train_stage(model: str) -> str:
    """The stage (and make target) that trains ``model``."""
    return TRAIN_PREFIX + model


def model_stages(raw_window_models: tuple[str, ...], feature_models: tuple[str, ...]
                 ) -> tuple[str, ...]:
    """The stages up to the models, in the order the driver makes them (with ``make -k``,
    so that one failed model spares the others): the windows, the models that read the raw
    window alone, the features, the models that read them."""
    return (WINDOWS_STAGE, *map(train_stage, raw_window_models), FEATURES_STAGE,
            *map(train_stage, feature_models))


def preflight_stages(stages_to_models: tuple[str, ...]) -> tuple[str, ...]:
    """The jobs the preflight runs on its slice, in this order: the device and the models'
    code first, then the night's own stages."""
    return ("device", CHECK_MODELS_STAGE, *stages_to_models, SEARCH_STAGE, "compare",
            REPORT_STAGE)


def stage_rank(stage: str) -> tuple[int, str]:
    """Sort key: chain order (the models' stages by name in their slot), then unknown
    stages by name."""
    slot = TRAIN_SLOT if stage.startswith(TRAIN_PREFIX) else stage
    return (STAGES.index(slot) if slot in STAGES else len(STAGES), stage)
