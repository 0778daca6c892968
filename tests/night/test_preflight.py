"""The preflight's slice: a bounded, round-robin set of links to tonight's subjects."""

from __future__ import annotations

from pathlib import Path

import pytest

from overnight.hbn.bids import eeg_path
from overnight.night.preflight import make_slice, slice_roots


def _root(path: Path, subjects: list[str], empty: tuple[str, ...] = ()) -> Path:
    for subject in subjects:
        recording = eeg_path(path, subject, 1, "set")
        recording.parent.mkdir(parents=True)
        recording.write_bytes(b"")
    for subject in empty:  # a subject folder without a CCD recording
        (path / f"sub-{subject}" / "eeg").mkdir(parents=True)
    (path / "participants.tsv").write_text("participant_id\n")
    (path / "derivatives").mkdir()
    return path


def test_slice_takes_subjects_from_each_root_in_turn(tmp_path: Path) -> None:
    r1 = _root(tmp_path / "R1_L100", ["A", "B", "C"], empty=("AA",))
    r2 = _root(tmp_path / "R2_L100", ["D"])
    out = tmp_path / "night" / "preflight" / "bids"

    made = make_slice([r1, r2], out, max_subjects=3)

    assert made == {"subjects": ["A", "B", "D"], "n_recordings": 3}
    first, second = slice_roots([r1, r2], out)
    assert first.name == "1-R1_L100" and second.name == "2-R2_L100"
    assert sorted(p.name for p in first.iterdir()) == [
        "derivatives", "participants.tsv", "sub-A", "sub-B"]
    assert sorted(p.name for p in second.iterdir()) == [
        "derivatives", "participants.tsv", "sub-D"]
    assert (first / "sub-A").readlink() == r1 / "sub-A"  # absolute, not resolved


def test_a_new_slice_replaces_the_old(tmp_path: Path) -> None:
    root = _root(tmp_path / "data", ["A", "B", "C"])
    out = tmp_path / "slice"
    make_slice([root], out, max_subjects=3)
    make_slice([root], out, max_subjects=2)
    assert sorted(p.name for p in (out / "1-data").glob("sub-*")) == ["sub-A", "sub-B"]
    assert (root / "sub-C").is_dir()  # the data is never touched


@pytest.mark.parametrize(("roots", "max_subjects", "error", "match"), [
    (["data"], 1, ValueError, "max_subjects"),
    ([], 2, ValueError, "at least one"),
    (["missing"], 2, FileNotFoundError, "not a folder"),
    (["one"], 2, FileNotFoundError, "the preflight needs 2"),
    (["data", "nothing"], 2, FileNotFoundError, "no subject with a CCD recording"),
])
def test_slice_errors(tmp_path: Path, roots: list[str], max_subjects: int,
                      error: type[Exception], match: str) -> None:
    _root(tmp_path / "data", ["A", "B"])
    _root(tmp_path / "one", ["A"])
    _root(tmp_path / "nothing", [], empty=("A",))
    with pytest.raises(error, match=match):
        make_slice([tmp_path / r for r in roots], tmp_path / "out", max_subjects)


def test_slice_never_writes_inside_the_data(tmp_path: Path) -> None:
    root = _root(tmp_path / "data", ["A", "B"])
    with pytest.raises(ValueError, match="lies inside"):
        make_slice([root], root / "preflight", 2)
