"""The champion's files against its record: the install as one step a kill cannot split,
a tampered submission that the night neither trusts nor replaces, and make verify."""

import contextlib
import os
import shutil

import pytest

from overnight import atomic
from overnight.champion import record as champion_record
from overnight.champion.compare import compare_and_promote
from overnight.champion.record import (
    CHAMPION_FILE,
    JOURNAL_FILE,
    PENDING_DIR,
    finish_interrupted_install,
    install,
    read_champion,
    verify_files,
    verify_submission,
)
from overnight.config import CompareConfig
from overnight.evaluation import load_trained_model, predict
from overnight.report.context import build_report_context
from overnight.report.render import render_report
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` sees it, as none would see a kill."""


class KillSwitch:
    """Wraps file-system calls: the ``at``-th call after ``arm(at)`` raises ``Killed``."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.calls = 0

    def arm(self, at: int | None) -> None:
        self.at, self.calls = at, 0

    @contextlib.contextmanager
    def off(self):
        at, self.at = self.at, None
        yield
        self.at = at

    def wrap(self, real):
        def step(*args, **kwargs):
            if self.at is not None:
                self.calls += 1
                if self.calls == self.at:
                    raise Killed
            return real(*args, **kwargs)
        return step


@pytest.fixture(scope="module")
def val(tiny_night):
    return load_windows(tiny_night.windows, read_split(tiny_night.split)["val"])


@pytest.fixture(scope="module")
def champion_dir(tiny_night, val, tmp_path_factory):
    """A submission folder whose champion is the tiny baseline."""
    folder = tmp_path_factory.mktemp("champion") / "submission"
    model, _ = load_trained_model(tiny_night.models / "baseline")
    install(tiny_night.models / "baseline", folder, val.eeg, predict(model, val.eeg),
            val.sfreq_hz, {"model": "baseline", "nrmse": 0.9,
                           "source": str(tiny_night.models / "baseline")})
    return folder


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_kill_between_any_two_steps_of_the_install_leaves_one_whole_champion(
        tiny_night, val, champion_dir, tmp_path, monkeypatch):
    # every step of the swap is a rename or a removal: a kill before the k-th of them,
    # for every k until the install finishes
    checked = {"where": "not run", "ms_per_window": {"cpu_1_thread": 1.0,
                                                     "cpu_default_threads": 1.0}}
    monkeypatch.setattr(champion_record, "check_in_fresh_process", lambda *args: checked)
    old = _files(champion_dir)
    switch = KillSwitch()
    monkeypatch.setattr(os, "replace", switch.wrap(os.replace))
    monkeypatch.setattr(os, "unlink", switch.wrap(os.unlink))
    finished, kill_at = False, 0
    while not finished:
        kill_at += 1
        folder = tmp_path / f"kill-{kill_at}" / "submission"
        with switch.off():
            shutil.copytree(champion_dir, folder)
        switch.arm(kill_at)
        try:
            install(tiny_night.models / "hybrid", folder, val.eeg, val.rt, val.sfreq_hz,
                    {"model": "hybrid", "nrmse": 0.8})
            finished = True
        except Killed:
            committed = (folder / JOURNAL_FILE).exists()
        switch.arm(None)
        if not finished:
            finish_interrupted_install(folder)  # what the next night does first
        champion = read_champion(folder)
        assert verify_files(folder, champion) is None, f"kill before step {kill_at}"
        assert not (folder / JOURNAL_FILE).exists() and not (folder / PENDING_DIR).exists()
        if finished or committed:
            assert champion["model"] == "hybrid"
        else:
            assert champion["model"] == "baseline" and _files(folder) == old
    assert kill_at > 8  # the swap has that many steps: each was a kill point


def test_a_tampered_champion_is_neither_compared_nor_replaced(tiny_night, champion_dir,
                                                              tmp_path):
    folder = tmp_path / "submission"
    shutil.copytree(champion_dir, folder)
    weights = next(folder.glob("weights_*.pt"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"0" * 16)  # a bad restore
    before = _files(folder)
    night = tmp_path / "night"
    shutil.copytree(tiny_night.models, night / "models")

    result = compare_and_promote(night / "models", tiny_night.windows, tiny_night.split, folder,
                                 night / "comparison.json",
                                 CompareConfig(margin=0.0, max_ms_per_window=0.0))

    assert not result["decision"]["promoted"]
    assert result["decision"]["held_back"] == "integrity"
    problem = result["champion_integrity"]
    assert problem["problem"] == f"{weights.name} does not match its sha256 in {CHAMPION_FILE}"
    assert f"make rollback ROLLBACK_MODEL={tiny_night.models / 'baseline'}" in problem["fix"]
    champion_row = next(r for r in result["rows"] if r["kind"] == "champion")
    assert champion_row["nrmse"] is None and "does not match" in champion_row["error"]
    assert all(r["nrmse"] is not None for r in result["rows"] if r["kind"] == "model")
    assert _files(folder) == before  # nothing replaced, nothing mended behind the user's back

    html = render_report(build_report_context(night, None, {}), tmp_path / "reports",
                         "2026-11-27").read_text()
    banner = html[html.index("<header"):html.index("</header>")]
    assert 'class="banner failed"' in banner
    assert "do not match champion.json" in banner and "make rollback" in banner

    problem_text = verify_submission(folder)
    assert weights.name in problem_text and "make rollback" in problem_text


def test_verify_passes_a_whole_champion_and_finishes_an_interrupted_install(
        tiny_night, champion_dir, tmp_path):
    folder = tmp_path / "submission"
    shutil.copytree(champion_dir, folder)
    assert verify_submission(folder, tiny_night.windows, tiny_night.split) is None
    # a kill left a staged install before its commit point: discarded, champion unchanged
    (folder / PENDING_DIR).mkdir()
    atomic.write_text(folder / PENDING_DIR / "submission.py", "half of a new champion")
    before = _files(folder)
    assert verify_submission(folder) is None
    assert _files(folder) == before and not (folder / PENDING_DIR).exists()
    assert verify_submission(tmp_path / "nothing-here").startswith("no champion.json")
