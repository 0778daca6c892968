"""Our trial logic on HBN R1's own CCD events files (tests/data/hbn-r1, OpenNeuro ds005505):
file by file, the trials eegdash's build_trial_table gives them (stored beside them, so no
eegdash is needed), and REFERENCE's totals; the eegdash test regenerates what is stored."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from overnight.hbn.bids import PARTICIPANT_COLUMNS
from overnight.hbn.channels import CH_NAMES
from tests import hbn_r1

# REFERENCE ("CCD events"): on R1 the official logic gives 7,316 windows from 8,536 trials
# (the trials a next start closes) with 1,156 without a press after the target and 64
# without a target; the 293 last trials of the files come on top of those 8,536.
REFERENCE_TOTALS = {"files": 293, "trial_starts": 8536 + 293, "kept": 7316, "last_trial": 293,
                    "no_stimulus": 64, "no_response": 1156}
EEGDASH_UNAVAILABLE = hbn_r1.eegdash_unavailable()


@pytest.fixture(scope="module")
def expected() -> tuple[dict, dict[str, hbn_r1.FileTrials]]:
    return hbn_r1.read_expected()


def test_the_folder_holds_r1_s_ccd_runs_with_their_sidecars() -> None:
    files = hbn_r1.events_files()
    assert len(files) == REFERENCE_TOTALS["files"]
    with open(hbn_r1.DATA_ROOT / "participants.tsv", newline="", encoding="utf-8") as fh:
        participants = {row["participant_id"]: row for row in csv.DictReader(fh, delimiter="\t")}
    assert tuple(next(iter(participants.values())))[:len(PARTICIPANT_COLUMNS)] == \
        PARTICIPANT_COLUMNS
    for path in files:
        stem = path.name.removesuffix("_events.tsv")
        assert participants[path.parts[-3]]["release_number"] == "R1", path.name
        sidecar = json.loads(path.with_name(f"{stem}_eeg.json").read_text(encoding="utf-8"))
        assert (sidecar["SamplingFrequency"], sidecar["EEGChannelCount"]) == (500, 129)
        channels = path.with_name(f"{stem}_channels.tsv").read_text(encoding="utf-8")
        assert [line.split("\t")[0] for line in channels.splitlines()[1:]] == list(CH_NAMES)


def test_our_parser_gives_the_stored_trials_of_every_file(expected) -> None:
    """read_events + parse_trials, as the window stage calls them, on all 293 files."""
    _, stored = expected
    ours = {hbn_r1.relative(path): hbn_r1.parse_file(path) for path in hbn_r1.events_files()}
    assert ours.keys() == stored.keys()
    for name, official in stored.items():
        # one file at a time, so a failure names the file and shows its first difference
        assert ours[name].trials == official.trials, name
        assert (ours[name].trial_starts, ours[name].dropped) == \
            (official.trial_starts, official.dropped), name


def test_the_stored_trials_hold_reference_s_totals(expected) -> None:
    summary, stored = expected
    assert hbn_r1.totals(stored) == summary["totals"] == REFERENCE_TOTALS
    # REFERENCE: RT mean 1.56 s, sd 0.40, range 0.01-2.40 s
    rts = [float(row[hbn_r1.TRIAL_COLUMNS.index("rt_from_stimulus")])
           for entry in stored.values() for row in entry.trials]
    assert round(statistics.fmean(rts), 2) == 1.56
    assert round(statistics.pstdev(rts), 2) == 0.40
    assert (round(min(rts), 2), round(max(rts), 2)) == (0.01, 2.40)


@pytest.mark.eegdash
@pytest.mark.skipif(EEGDASH_UNAVAILABLE is not None, reason=str(EEGDASH_UNAVAILABLE))
def test_eegdash_gives_the_stored_trials(expected) -> None:
    """eegdash's own build_trial_table on every file, against what is stored (~20 s)."""
    _, stored = expected
    official = hbn_r1.official_trials()
    assert official.keys() == stored.keys()
    for name, entry in stored.items():
        assert official[name] == entry, name
