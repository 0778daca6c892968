"""The CCD trial logic (overnight.hbn.events): known answers on hand-written events."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from overnight.hbn.events import parse_trials
from tests.helpers import event_row


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
        # trial 5: cut by end_experiment, its press comes after -> dropped
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


def test_parse_trials_trial_runs_to_the_end_of_the_events() -> None:
    rows = [event_row(1.0, "contrastTrial_start"), event_row(2.0, "left_target"),
            event_row(3.0, "right_buttonPress", "sad_face")]
    (trial,) = parse_trials(rows)
    assert (trial.index, trial.rt_s, trial.hand, trial.correct) == (0, 1.0, "right", False)


def test_parse_trials_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match=r"rows\[1\] onset='soon'"):
        parse_trials([event_row(1.0, "contrastTrial_start"), {"onset": "soon", "value": "x"}])
    with pytest.raises(ValueError, match="'onset' and 'value'"):
        parse_trials([{"onset": "1.0"}])
    with pytest.raises(TypeError, match="rows"):
        parse_trials("onset\tvalue")  # type: ignore[arg-type]
