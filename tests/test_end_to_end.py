"""The whole chain through the Makefile, as `make demo` runs it, on a tiny dataset whose
first subjects are the corpus of malformed recordings (tests/corpus.py), with a model of the
user's own (examples/wide.py) beside the built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overnight import atomic
from overnight.config import NightConfig
from overnight.models.catalog import load_catalog
from tests.corpus import CASES, write_corpus

REPO = Path(__file__).resolve().parents[1]
USER_MODEL = "examples/wide.py"  # relative to the checkout, as a user writes it
CATALOG = load_catalog(NightConfig(extra_models=(USER_MODEL,)), REPO)
MODELS = CATALOG.night
# The stages with a record in the night's own folder (the preflight's jobs, device and
# check-models among them, keep theirs in its folder).
STAGES = ("synth", "disk", *CATALOG.model_stages(), "search", "compare", "report")

TINY_CONFIG = """
[synth]
n_subjects = 6
runs_per_subject = 1
trials_per_run = 24
[windows]
val_fraction = 0.34
[train]
ensemble = 1
max_epochs = 2
patience = 2
n_filters = 8
batch_size = 32
device = "cpu"
[search]
on_cpu = true
budget_min = 5
max_trials = 2
[night]
extra_models = ["examples/wide.py"]
[compare]
max_ms_per_window = 0  # the chain is under test, not the speed of a busy machine
"""


def _make(tmp: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    stamp = tmp / "setup-done"
    stamp.touch()
    variables = {
        "VENV": sys.prefix, "SETUP_STAMP": str(stamp), "SYNTH_DATA": str(tmp / "bids"),
        "WORK": str(tmp / "work"), "CONFIG": str(tmp / "tiny.toml"),
        "SUBMISSION": str(tmp / "submission"), "REPORTS": str(tmp / "reports"),
        "DATE": "2026-01-02", "LOCK": str(tmp / "night.lock"),
        "SEARCH_DIR": str(tmp / "studies"),
    }
    command = ["make", "-C", str(REPO), *targets, *[f"{k}={v}" for k, v in variables.items()]]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "tiny.toml").write_text(TINY_CONFIG)
    proc = _make(tmp, "synth")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    write_corpus(tmp / "bids")  # sorts before the synthetic NDAR... subjects
    proc = _make(tmp, "overnight")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp


def test_chain_leaves_report_submission_and_champion(night):
    report = (night / "reports" / "latest.html").read_text()
    assert report == (night / "reports" / "2026-01-02.html").read_text()
    for name in (*MODELS, "mean predictor"):
        assert f'<td class="name">{name}' in report
    for case in CASES:  # every skipped recording is listed, with its reason
        assert case.skip is None or f"sub-{case.subject}/eeg/" in report, case.subject
    assert "no events file" in report and "microvolts?" in report
    assert "<img src=x" not in report  # a hostile subject id is escaped wherever it shows
    champion = json.loads((night / "submission" / "champion.json").read_text())
    assert champion["model"] in (*MODELS, "search")
    for name, digest in champion["files"].items():
        assert atomic.sha256_file(night / "submission" / name) == digest
    for stage in STAGES:
        status = json.loads((night / "work" / "status" / f"{stage}.json").read_text())
        assert status["status"] == "ok" and status["exit_code"] == 0, status
        assert (night / "work" / status["log"]).stat().st_size > 0


def test_the_search_ran_and_its_best_trial_went_through_the_gate(night):
    summary = json.loads((night / "work" / "search" / "summary.json").read_text())
    assert summary["off"] is None and summary["counts"]["complete"] >= 1
    assert summary["study"] in {p.name for p in (night / "studies").iterdir()}
    comparison = json.loads((night / "work" / "comparison.json").read_text())
    (row,) = [r for r in comparison["rows"] if r["name"] == "search"]
    assert row["model"] == summary["best"]["params"]["model"] and row["nrmse"] is not None
    assert row["tune_nrmse"] == summary["best"]["tune_nrmse"]
    report = (night / "reports" / "latest.html").read_text()
    assert '<td class="name">search' in report and "<h2>Hyperparameter search</h2>" in report
    # the preflight searched one trial, in a study of its own
    pre = json.loads((night / "work" / "preflight" / "search" / "summary.json").read_text())
    studies = night / "work" / "preflight" / "studies"
    assert pre["storage"].startswith(f"journal {studies}{os.sep}")


def test_rerun_reuses_finished_stages(night):
    before = {s: json.loads((night / "work" / "status" / f"{s}.json").read_text())["start"]
              for s in STAGES}
    proc = _make(night, "synth", "overnight")
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = {s: json.loads((night / "work" / "status" / f"{s}.json").read_text())["start"]
             for s in STAGES}
    # the disk check runs on every attempt (space changes); the report is always rendered
    assert {s for s in STAGES if before[s] != after[s]} <= {"disk", "report"}


def test_a_model_of_your_own_trains_compares_and_ships(night):
    assert "wide" in MODELS
    models = night / "work" / "models"
    meta = json.loads((models / "wide" / "model.json").read_text())
    assert meta["source"] == "model_source.py"  # the code that trained, beside its weights
    assert (models / "wide" / "model_source.py").read_text() == (REPO / USER_MODEL).read_text()
    comparison = json.loads((night / "work" / "comparison.json").read_text())
    (row,) = [r for r in comparison["rows"] if r["name"] == "wide"]
    assert row["nrmse"] is not None and row["inputs"] == ["eeg"]
    summary = json.loads((night / "work" / "search" / "summary.json").read_text())
    family = next(p for p in summary["space"] if p["name"] == "model")
    assert "wide" in family["range"]  # it declares searched=True: a family of the search
    check = (night / "work" / "preflight" / "logs" / "check-models.log").read_text()
    assert "wide: WideNet builds; guards, loss, submission in a fresh process ok" in check
    # shipped: rolled back to (the install runs the fresh-process check), its code embedded
    proc = _make(night, "rollback", f"ROLLBACK_MODEL={models / 'wide'}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    champion = json.loads((night / "submission" / "champion.json").read_text())
    assert champion["model"] == "wide"
    source = (night / "submission" / "submission.py").read_text()
    assert "class WideNet(RTModel):" in source and "MODEL_CLASS = WideNet" in source


def test_rollback_makes_the_baseline_champion(night):
    proc = _make(night, "rollback")
    assert proc.returncode == 0, proc.stdout[-3000:]
    champion = json.loads((night / "submission" / "champion.json").read_text())
    assert champion["model"] == "baseline"
    assert "rollback" in champion["reason"]
