"""The preflight's check of the night's models: a model file of your own that will not
train or ship is refused in one line that names the file and the fault."""

import subprocess
import sys
from pathlib import Path

import pytest

from overnight.champion.model_check import check_models
from overnight.config import load_config
from overnight.models.catalog import load_catalog

REPO = Path(__file__).resolve().parents[2]
HEADER = ("import torch\nfrom torch import nn\n\n"
          "from overnight.models.base import RTModel, register\n")
GOOD_BODY = '''
@register("tiny", inputs=("eeg",))
class Tiny(RTModel):
    def __init__(self, n_chans=129, normalization="train"):
        super().__init__(n_chans, normalization)
        self.head = nn.Linear(n_chans, 1)

    def standardized_output(self, x, features=None):
        return self.head(self.scale_input(x).mean(dim=-1))
'''
# name -> (the file's text, what the one line must say)
BROKEN = {
    "fails to import": (HEADER + "import not_a_module\n" + GOOD_BODY,
                        "fails to import (ModuleNotFoundError: No module named 'not_a_module')"),
    "not a model": (HEADER + GOOD_BODY.replace("class Tiny(RTModel)", "class Tiny(nn.Module)"),
                    "Tiny is not a subclass of overnight.models.base.RTModel"),
    "no prediction": (HEADER + '@register("tiny")\nclass Tiny(RTModel):\n    pass\n',
                      "Tiny does not implement standardized_output(x, features)"),
    "wrong shape": (HEADER + GOOD_BODY.replace(".mean(dim=-1))", ".mean(dim=-1)).squeeze(1)"),
                    "forward returned (8,) for 8 windows (EEG in volts); expected a tensor of "
                    "shape (8, 1)"),
    "guards removed": (HEADER + GOOD_BODY + "\n    def forward(self, x, features=None):\n"
                                            "        return self.standardized_output(x)\n",
                       "not finite RTs in 0.5..2.4 s (the training range): keep "
                       "RTModel.forward's guards"),
    "no gradient": (HEADER + GOOD_BODY.replace(".mean(dim=-1))", ".mean(dim=-1)).detach()"),
                    "loss(batch) fails: RuntimeError: element 0 of tensors does not require "
                    "grad"),
    "scorer lacks the library": ("import numpy\n" + HEADER + GOOD_BODY,
                                 "imports numpy, which the scorer does not have"),
    "clashes with the project": (HEADER + GOOD_BODY + "\n\ndef build_backbone():\n    pass\n"
                                 "\n\nfrom overnight.models.backbones import ConvBackbone\n",
                                 "defines 'build_backbone' at module level, as "),
}


def _check(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    path = tmp_path / "mine.py"
    path.write_text(text)
    config = load_config(None, [f"night.extra_models=['{path}']", "night.models=['tiny']"])
    return check_models(list(load_catalog(config.night).night_entries()), config)


@pytest.mark.parametrize("fault", BROKEN)
def test_a_broken_model_file_is_one_line_naming_the_file(tmp_path, fault):
    text, expected = BROKEN[fault]
    passed, faults = _check(tmp_path, text)
    assert passed == [] and len(faults) == 1
    (line,) = faults
    assert line.startswith(str(tmp_path / "mine.py")) and expected in line, line
    assert "\n" not in line


def test_a_good_model_of_your_own_passes_and_ships_in_a_fresh_process(tmp_path):
    passed, faults = _check(tmp_path, HEADER + GOOD_BODY)
    assert faults == []
    assert passed == ["tiny: Tiny builds; guards, loss, submission in a fresh process ok"]


def test_the_built_in_models_pass(tmp_path):
    config = load_config(None)
    passed, faults = check_models(list(load_catalog().night_entries()), config)
    assert faults == [] and len(passed) == len(load_catalog().night)


def test_the_job_fails_with_the_fault_as_its_last_line(tmp_path):
    (tmp_path / "mine.py").write_text(BROKEN["wrong shape"][0])
    (tmp_path / "night.toml").write_text(
        f"[night]\nextra_models = ['{tmp_path / 'mine.py'}']\nmodels = ['baseline', 'tiny']\n")
    proc = subprocess.run([sys.executable, "jobs/check_models.py", "--config",
                           str(tmp_path / "night.toml")], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith(BROKEN["wrong shape"][1]) and "baseline: BaselineCNN builds" \
        in proc.stderr
