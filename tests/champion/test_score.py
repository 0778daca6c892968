"""make score: a zip scored on a release as the challenge's scorer does, and the faults it
refuses with one line each; the promotion check's scorer-style parts."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from overnight.champion import scorer_env
from overnight.champion.compare import compare_and_promote
from overnight.champion.score import ScoreError, score_zip, summary_lines, unpack
from overnight.champion.submission import (
    SUBMISSION_FILE,
    ZIP_FILE,
    build_submission,
    check_in_fresh_process,
    check_python_syntax,
)
from overnight.config import CompareConfig, WindowsConfig
from overnight.evaluation import load_trained_model, predict
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

# RT = 1.5 s + 1e3 x the window's mean; OUTPUT shapes it; Challenge 2 answers 0.
_HANDMADE = """
import os
import torch

class _Mean(torch.nn.Module):
    def forward(self, x):
        out = 1.5 + 1e3 * x.mean(dim=(1, 2)).unsqueeze(1)
        return OUTPUT

class _Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 1)

class Submission:
    def __init__(self, SFREQ, DEVICE):
        self.device = DEVICE

    def get_model_challenge_1(self):
        LOAD
        return _Mean().eval()

    def get_model_challenge_2(self):
        return _Zero().eval()
"""


def _zip(tmp_path, output="out", load="pass", folder=""):
    path = tmp_path / ZIP_FILE
    source = _HANDMADE.replace("OUTPUT", output).replace("LOAD", load)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(folder + SUBMISSION_FILE, source)
    return path


def _score(tmp_path, tiny_data, zip_path):
    work = tmp_path / "work"
    work.mkdir()
    return score_zip(zip_path, [tiny_data.bids_root], WindowsConfig(), work)


def test_a_zip_is_scored_on_both_challenges(tiny_data, tmp_path):
    result = _score(tmp_path, tiny_data, _zip(tmp_path))
    c1, c2 = result["challenges"][1], result["challenges"][2]
    assert c1["n_windows"] == len(load_windows(tiny_data.windows))
    assert 0.5 < c1["nrmse"] < 5 and c2["nrmse"] > 0 and c2["n_windows"] > 0
    assert result["overall"] == round(0.3 * c1["nrmse"] + 0.7 * c2["nrmse"], 5)
    assert c1["ms_per_window"] > 0 and result["peak_memory_mb"] > 10
    text = "\n".join(summary_lines(result))
    assert "batch size 1" in text and "overall (0.3 x C1 + 0.7 x C2)" in text


@pytest.mark.parametrize(("zip_args", "line"), [
    ({"folder": "sub/"}, "holds a folder (sub/submission.py): the scorer wants a flat zip"),
    ({"load": "open(os.path.join(os.path.dirname(__file__), 'weights.pt'))"},
     "challenge 1: the submission cannot build its model: FileNotFoundError"),
    ({"output": "out[:, 0]"}, "challenge 1: one window in, the model answers shape (1,)"),
    ({"output": "out * float('nan')"}, "predictions are not finite; the scorer's NRMSE"),
], ids=["nested zip", "missing weights", "(B,) output", "NaN output"])
def test_each_fault_is_one_line(tiny_data, tmp_path, zip_args, line):
    with pytest.raises(ScoreError) as caught:
        _score(tmp_path, tiny_data, _zip(tmp_path, **zip_args))
    message = str(caught.value)
    assert line in message and "\n" not in message


def test_unpack_refuses_a_zip_without_submission_py(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.pt", b"")
    with pytest.raises(ScoreError, match=r"no submission\.py at its top level"):
        unpack(path, tmp_path / "out")


def test_a_python_3_11_construct_is_refused(tmp_path):
    path = tmp_path / SUBMISSION_FILE
    path.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")
    with pytest.raises(RuntimeError,
                       match=r"not Python 3.10 \(the scorer.s\): line \d+: Exception groups"):
        check_python_syntax(path)


def test_promotion_check_calls_the_model_one_window_at_a_time(tiny_night, tmp_path):
    model_dir = tiny_night.models / "hybrid"
    build_submission(model_dir, tmp_path / "sub")
    val = load_windows(tiny_night.windows, read_split(tiny_night.split)["val"])
    model, _ = load_trained_model(model_dir)
    report = check_in_fresh_process(tmp_path / "sub", val.eeg, predict(model, val.eeg),
                                    val.sfreq_hz)
    assert report["n_one_at_a_time"] == min(64, len(val))
    assert report["max_diff_s"]["one_at_a_time"] <= 1e-5
    speed = report["ms_per_window"]
    assert speed["cpu_1_thread"] > 0 and speed["cpu_default_threads"] > 0
    assert report["environment"]["python"].startswith("3.")
    json.dumps(report)  # goes into champion.json as it is


def test_the_batch_one_shape_fault_fails_the_promotion_check(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    source = _HANDMADE.replace("OUTPUT", "out if x.shape[0] > 1 else out[:, 0]")
    (sub / SUBMISSION_FILE).write_text(source.replace("LOAD", "pass"))
    windows = np.random.default_rng(0).normal(0, 1e-5, (4, 129, 200)).astype(np.float32)
    expected = 1.5 + 1e3 * windows.astype(np.float64).mean(axis=(1, 2))
    with pytest.raises(RuntimeError, match=r"expected an output of shape \(1, 1\)"):
        check_in_fresh_process(sub, windows, expected, 100.0)


@pytest.mark.slow
def test_a_promoted_submission_passes_the_scorer_run_under_python_3_10(tiny_night, tmp_path):
    # builds the scorer's environment when it is missing (make scorer-env: ~2 min, 5 GB)
    if scorer_env.scorer_python() is None:
        scorer_env.create()
    submission = tmp_path / "submission"
    comparison = compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split,
                                     submission, tmp_path / "comparison.json",
                                     CompareConfig(max_ms_per_window=0.0))
    assert comparison["decision"]["promoted"]
    champion = json.loads((submission / "champion.json").read_text())
    check = champion["scorer_check"]
    assert check["where"] == "the scorer's environment"
    assert check["environment"]["python"].startswith("3.10.")
    assert check["environment"]["torch"].startswith("2.2.2")
    assert check["max_diff_s"]["one_at_a_time"] <= 1e-5
    result = _score(tmp_path, tiny_night, submission / ZIP_FILE)
    assert result["python"].startswith("3.10.") and result["torch"].startswith("2.2.2")
    assert result["challenges"][1]["nrmse"] is not None
