"""The CCD trial logic (overnight.hbn.events): known answers on the verbatim R1 rows of
REFERENCE.md and on hand-written events, and the same trials as eegdash's own
build_trial_table (the challenge's code) on every file of a synthetic release."""

from __future__ import annotations

import random
import types
from collections import Counter
from pathlib import Path

import pytest

from overnight.hbn.bids import read_events
from overnight.hbn.events import LAST_TRIAL, NO_RESPONSE, NO_STIMULUS, parse_trials
from tests.hbn_r1 import load_eegdash_windows
from tests.helpers import event_row

# R1, sub-NDARAC904DMU_task-contrastChangeDetection_run-1_events.tsv, verbatim (REFERENCE);
# the rows REFERENCE elides between 69.684 and 202.688 are left out.
R1_ROWS = """onset\tduration\tsample\tvalue\tevent_code\tfeedback
0\tn/a\t0\tbreak cnt\tbreak cnt\tn/a
33.4\tn/a\t16700\tcontrastChangeB1_start\t94\tn/a
39.484\tn/a\t19742\tcontrastTrial_start\t5\tn/a
42.284\tn/a\t21142\tright_target\t9\tn/a
44.414\tn/a\t22207\tright_buttonPress\t13\tsmiley_face
44.684\tn/a\t22342\tcontrastTrial_start\t5\tn/a
65.084\tn/a\t32542\tcontrastTrial_start\t5\tn/a
67.884\tn/a\t33942\tleft_target\t8\tn/a
69.684\tn/a\t34842\tleft_buttonPress\t12\tsmiley_face
202.688\tn/a\t101344\tcontrastTrial_start\t5\tn/a
205.388\tn/a\t102694\tright_buttonPress\t13\tnon_target
209.08\tn/a\t104540\tbreak cnt\tbreak cnt\tn/a
234.102\tn/a\t117051\t9999\t9999\tn/a
"""


def _r1(tmp_path: Path, text: str = R1_ROWS) -> list[dict[str, str]]:
    path = tmp_path / "sub-NDARAC904DMU_task-contrastChangeDetection_run-1_events.tsv"
    path.write_text(text, encoding="utf-8")
    return read_events(path)


def _with_row(text: str, after: str, row: str) -> str:
    """``text`` with ``row`` inserted after the line that starts with ``after``."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(after)) + 1
    return "".join([*lines[:at], row.replace(" ", "\t") + "\n", *lines[at:]])


def _summary(trials: list) -> list[tuple[int, float, float]]:
    return [(t.index, t.stim_onset_s, round(t.rt_s, 6)) for t in trials]


# ---------------------------------------------------------------------------- R1, verbatim

def test_r1_rows_give_the_official_trials(tmp_path: Path) -> None:
    dropped: Counter[str] = Counter()
    trials = parse_trials(_r1(tmp_path), dropped)
    # trial 1 (44.684) has no target; trial 3 (202.688) is the file's last: both dropped
    assert _summary(trials) == [(0, 42.284, 2.13), (2, 67.884, 1.8)]
    assert [(t.target, t.hand, t.correct) for t in trials] == [("right", "right", True),
                                                                ("left", "left", True)]
    assert dropped == {NO_STIMULUS: 1, LAST_TRIAL: 1}


def test_the_last_trial_is_dropped_even_with_a_target_and_a_press(tmp_path: Path) -> None:
    text = _with_row(R1_ROWS, "202.688", "204.5 n/a 102250 left_target 8 n/a")
    dropped: Counter[str] = Counter()
    assert len(parse_trials(_r1(tmp_path, text), dropped)) == 2
    assert dropped[LAST_TRIAL] == 1
    # kept only on request (not the official logic): its response is the press at 205.388
    kept = parse_trials(_r1(tmp_path, text), keep_last_trial=True)
    assert _summary(kept)[-1] == (3, 204.5, 0.888)


def test_a_non_target_press_before_the_target_is_ignored(tmp_path: Path) -> None:
    text = _with_row(R1_ROWS, "65.084", "66.01 n/a 33005 right_buttonPress 13 non_target")
    trials = parse_trials(_r1(tmp_path, text))
    assert _summary(trials) == [(0, 42.284, 2.13), (2, 67.884, 1.8)]


def test_a_trial_without_a_press_is_dropped(tmp_path: Path) -> None:
    text = R1_ROWS.replace("69.684\tn/a\t34842\tleft_buttonPress\t12\tsmiley_face\n", "")
    dropped: Counter[str] = Counter()
    assert _summary(parse_trials(_r1(tmp_path, text), dropped)) == [(0, 42.284, 2.13)]
    assert dropped == {NO_STIMULUS: 1, NO_RESPONSE: 1, LAST_TRIAL: 1}


def test_a_file_without_the_feedback_column(tmp_path: Path) -> None:
    text = "\n".join(line.rsplit("\t", 1)[0] for line in R1_ROWS.splitlines()) + "\n"
    trials = parse_trials(_r1(tmp_path, text))
    assert _summary(trials) == [(0, 42.284, 2.13), (2, 67.884, 1.8)]
    assert {t.feedback for t in trials} == {"n/a"} and not any(t.correct for t in trials)


def test_event_codes_are_text_and_never_read(tmp_path: Path) -> None:
    rows = _r1(tmp_path)
    assert rows[0]["event_code"] == "break cnt" and rows[-1]["event_code"] == "9999"
    scrambled = [{**row, "event_code": "IBEG"} for row in rows]
    assert parse_trials(scrambled) == parse_trials(rows)


# ---------------------------------------------------------------------------- hand-written


def _session_rows() -> list[dict[str, str]]:
    """One run covering every rule; comments give the expected outcome per trial."""
    return [
        event_row(0.0, "contrastChangeB1_start"),  # block start, outside any trial
        event_row(0.5, "right_buttonPress", "sad_face"),  # before the first trial: ignored
        # trial 0: normal
        event_row(1.0, "contrastTrial_start"),
        event_row(2.0, "left_target", "non_target"),
        event_row(3.25, "left_buttonPress", "smiley_face"),
        # trial 1: double press, the first counts
        event_row(4.0, "contrastTrial_start"),
        event_row(5.0, "right_target"),
        event_row(5.8, "left_buttonPress", "sad_face"),
        event_row(6.1, "right_buttonPress", "smiley_face"),
        # trial 2: no response -> dropped
        event_row(7.0, "contrastTrial_start"),
        event_row(8.0, "left_target"),
        # trial 3: press before the stimulus ignored; response is the first press after it
        event_row(10.0, "contrastTrial_start"),
        event_row(10.5, "left_buttonPress", "sad_face"),
        event_row(11.0, "right_target"),
        event_row(11.3, "right_buttonPress", "smiley_face"),  # RT 0.3 s: no RT filter
        # trial 4: no stimulus -> dropped
        event_row(13.0, "contrastTrial_start"),
        event_row(13.5, "left_buttonPress", "sad_face"),
        event_row(15.0, "contrastChangeB2_start"),  # block start inside a trial: ignored
        event_row(None, "right_target"),  # no onset: ignored
        # trial 5, the last: closed by end_experiment, its press comes after -> dropped
        event_row(16.0, "contrastTrial_start"),
        event_row(17.0, "right_target"),
        event_row(18.0, "end_experiment"),
        event_row(18.5, "right_buttonPress", "smiley_face"),
    ]


def test_parse_trials_applies_the_official_logic() -> None:
    dropped: Counter[str] = Counter()
    trials = parse_trials(_session_rows(), dropped)

    assert [t.index for t in trials] == [0, 1, 3]
    assert [t.stim_onset_s for t in trials] == [2.0, 5.0, 11.0]
    assert [t.response_onset_s for t in trials] == [3.25, 5.8, 11.3]
    assert [t.rt_s for t in trials] == pytest.approx([1.25, 0.8, 0.3])
    assert [t.target for t in trials] == ["left", "right", "right"]
    assert [t.hand for t in trials] == ["left", "left", "right"]
    assert [t.feedback for t in trials] == ["smiley_face", "sad_face", "smiley_face"]
    assert [t.correct for t in trials] == [True, False, True]
    assert dropped == {"no response": 2, "no stimulus": 1}


def test_parse_trials_sorts_rows_by_onset() -> None:
    rows = _session_rows()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != rows
    assert parse_trials(shuffled) == parse_trials(rows)


def test_end_experiment_closes_the_last_trial() -> None:
    rows = [event_row(1.0, "contrastTrial_start"), event_row(2.0, "left_target"),
            event_row(3.0, "right_buttonPress", "sad_face")]
    assert parse_trials(rows) == []  # nothing closes it
    (trial,) = parse_trials([*rows, event_row(4.0, "end_experiment")])
    assert (trial.index, trial.rt_s, trial.hand, trial.correct) == (0, 1.0, "right", False)
    (kept,) = parse_trials(rows, keep_last_trial=True)
    assert kept == trial
    # a press at the very onset of the stimulus is its response (stimulus <= onset)
    (instant,) = parse_trials([*rows[:2], event_row(2.0, "left_buttonPress"),
                               event_row(4.0, "end_experiment")])
    assert instant.rt_s == 0.0


def test_parse_trials_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match=r"rows\[1\] onset='soon'"):
        parse_trials([event_row(1.0, "contrastTrial_start"), {"onset": "soon", "value": "x"}])
    with pytest.raises(ValueError, match="'onset' and 'value'"):
        parse_trials([{"onset": "1.0"}])
    with pytest.raises(TypeError, match="rows"):
        parse_trials("onset\tvalue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        parse_trials([event_row(1.0, "contrastTrial_start"), {"onset": "inf", "value": "x"}])


# ---------------------------------------------------------------------------- eegdash

@pytest.fixture(scope="module")
def eegdash_windows() -> types.ModuleType:
    """eegdash's ``hbn/windows.py``, the module with ``build_trial_table``."""
    return load_eegdash_windows()


def test_eegdash_agrees_on_the_r1_rows(eegdash_windows, tmp_path: Path) -> None:
    import pandas as pd

    _r1(tmp_path)
    (path,) = tmp_path.glob("*_events.tsv")
    table = eegdash_windows.build_trial_table(pd.read_csv(path, sep="\t"))
    official = table.dropna(subset=["stimulus_onset", "response_onset"])
    assert official["stimulus_onset"].tolist() == [42.284, 67.884]
    assert official["rt_from_stimulus"].round(6).tolist() == [2.13, 1.8]


def test_every_synthetic_file_gives_eegdash_s_trials(eegdash_windows, tiny_data) -> None:
    """On a whole synthetic release in the real format: the same trials, file by file."""
    import pandas as pd

    files = sorted(tiny_data.bids_root.glob("sub-*/eeg/*_events.tsv"))
    assert len(files) >= 6
    for path in files:
        table = eegdash_windows.build_trial_table(pd.read_csv(path, sep="\t"))
        official = table.dropna(subset=["stimulus_onset", "response_onset"])
        ours = parse_trials(read_events(path))
        assert [t.stim_onset_s for t in ours] == official["stimulus_onset"].tolist(), path
        assert [t.response_onset_s for t in ours] == official["response_onset"].tolist()
        assert [t.rt_s for t in ours] == official["rt_from_stimulus"].tolist()


def test_the_window_cache_holds_exactly_eegdash_s_trials(eegdash_windows, tiny_data) -> None:
    """Stage windows on that release: one window per official trial, same onsets, same RTs."""
    import numpy as np
    import pandas as pd

    from overnight.windows.cache import open_cache

    with open_cache(tiny_data.windows) as cache:
        subject, run = cache.subjects(), cache.column("run")
        stim, rt = cache.column("stim_onset_s"), cache.column("rt")
    expected = 0
    for path in sorted(tiny_data.bids_root.glob("sub-*/eeg/*_events.tsv")):
        table = eegdash_windows.build_trial_table(pd.read_csv(path, sep="\t"))
        official = table.dropna(subset=["stimulus_onset", "response_onset"])
        label, run_number = path.name.split("_")[0][4:], int(path.name.split("run-")[1][0])
        rows = (subject == label) & (run == run_number)
        assert stim[rows].tolist() == official["stimulus_onset"].tolist(), path
        np.testing.assert_allclose(rt[rows], official["rt_from_stimulus"], atol=1e-6)
        expected += len(official)
    assert len(subject) == expected
