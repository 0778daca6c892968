"""The window stage over the corpus of malformed recordings (tests/corpus.py): it never dies,
skips each bad recording with its reason, and lets only clean windows into the cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from overnight.config import WindowsConfig
from overnight.hbn.bids import eeg_path
from overnight.windows.build import build_window_cache
from tests.corpus import CASES, Case, write_corpus

CFG = WindowsConfig(workers=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("corpus") / "bids"
    write_corpus(root)
    out = root.parent / "windows.h5"
    return root, out, build_window_cache(root, out, CFG, progress=False)


def _label(root: Path, case: Case) -> str:
    fmt = next(p.suffix[1:] for p in (root / f"sub-{case.subject}" / "eeg").iterdir()
               if p.suffix in (".set", ".bdf")) if not case.absent else "set"
    return f"{root.name}/sub-{case.subject}/eeg/{eeg_path(Path(), case.subject, 1, fmt).name}"


def test_the_corpus_has_twenty_cases_or_more() -> None:
    assert len(CASES) >= 20
    assert len({case.subject for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.subject[:20] for c in CASES])
def test_each_case_is_skipped_with_its_reason_or_kept(corpus: tuple[Path, Path, dict],
                                                     case: Case) -> None:
    root, out, summary = corpus
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    with h5py.File(out, "r") as h5:
        used = [s["path"] for s in json.loads(h5.attrs["sources"])]
    label = _label(root, case)
    if case.absent:
        assert label not in reasons and label not in used
    elif case.skip is not None:
        assert label not in used
        assert re.search(case.skip, reasons[label]), reasons[label]
    else:
        assert label in used, reasons.get(label)
    if case.dropped is not None:
        assert any(case.dropped in reason for reason in summary["dropped_trials"])


def test_only_clean_windows_reach_the_cache(corpus: tuple[Path, Path, dict]) -> None:
    _, out, summary = corpus
    with h5py.File(out, "r") as h5:
        eeg = h5["eeg"][()]
    assert len(eeg) == summary["n_windows"] > 0
    assert np.isfinite(eeg).all()
    assert (eeg.std(axis=2) > CFG.flat_channel_std_v).any(axis=1).all()


def test_single_bad_channels_are_counted_not_dropped(corpus: tuple[Path, Path, dict]) -> None:
    _, out, _ = corpus
    with h5py.File(out, "r") as h5:
        sources = {Path(s["path"]).parts[1]: s for s in json.loads(h5.attrs["sources"])}
    dead = sources["sub-BAD25deadchannels"]
    assert dead["flat_channels"] == ["E1", "E2", "E3"] and dead["reference_flat"]
    assert dead["noisy_channels"] == ["E4"]
    assert sources["sub-BAD11nonutf8"]["flat_channels"] == []


def test_the_output_does_not_depend_on_the_worker_count(corpus: tuple[Path, Path, dict]
                                                        ) -> None:
    root, parallel, _ = corpus
    serial = root.parent / "serial.h5"
    build_window_cache(root, serial, WindowsConfig(workers=1), progress=False)
    with h5py.File(parallel, "r") as a, h5py.File(serial, "r") as b:
        assert sorted(a) == sorted(b)
        for name in a:
            assert np.array_equal(a[name][()], b[name][()]), name
        differ = {key for key in a.attrs if not np.array_equal(a.attrs[key], b.attrs[key])}
    assert differ <= {"created", "config"}
