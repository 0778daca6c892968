"""The CCD events vocabulary and the official Challenge 1 trial logic (REFERENCE.md).

``parse_trials`` turns the rows of one ``events.tsv`` into the trials that have a stimulus
and a response. Standard library only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

TRIAL_START = "contrastTrial_start"
END_EXPERIMENT = "end_experiment"
TARGETS = {"left_target": "left", "right_target": "right"}
PRESSES = {"left_buttonPress": "left", "right_buttonPress": "right"}
CORRECT_FEEDBACK = "smiley_face"
MISSING = ("n/a", "")
# Event codes. 8/9 (targets) and 12/13 (presses) follow a public HBN CCD loader; 5, 94 and
# 9999 are the remaining codes seen in HBN CCD runs, assigned here by assumption.
BLOCK_START_CODE = 94  # contrastChangeB<n>_start
EVENT_CODES: dict[str, int] = {
    TRIAL_START: 5,
    "left_target": 8,
    "right_target": 9,
    "left_buttonPress": 12,
    "right_buttonPress": 13,
    END_EXPERIMENT: 9999,
}


@dataclass(frozen=True)
class Trial:
    """One CCD trial with a stimulus and a response (official Challenge 1 logic)."""

    index: int  # 0-based index of its contrastTrial_start within the run
    stim_onset_s: float  # the first left_target/right_target of the trial
    response_onset_s: float  # the first button press after the stimulus
    target: str  # side of the contrast change: "left" or "right"
    hand: str  # responding hand: "left" or "right"
    feedback: str  # raw feedback cell of the press ("smiley_face", "sad_face", "n/a", ...)

    @property
    def rt_s(self) -> float:
        """Response time from the stimulus, seconds (the Challenge 1 target)."""
        return self.response_onset_s - self.stim_onset_s

    @property
    def correct(self) -> bool:
        """Whether the press earned a smiley face."""
        return self.feedback == CORRECT_FEEDBACK


@dataclass(frozen=True)
class _Event:
    onset_s: float
    value: str
    feedback: str


def parse_trials(rows: Sequence[Mapping[str, str]],
                 dropped: Counter[str] | None = None) -> list[Trial]:
    """Trials with a stimulus and a response, from the rows of one events.tsv.

    Rows are sorted by onset (stably); a trial runs from one ``contrastTrial_start`` to the
    next, to ``end_experiment`` or to the last event. Its stimulus is its first target, its
    response the first press after that stimulus; later presses are ignored. Events outside
    any trial and rows without an onset are ignored. No RT filter is applied.

    Parameters
    ----------
    rows : sequence of mapping
        Rows as returned by ``overnight.hbn.bids.read_events`` (``onset``, ``value`` and
        optionally ``feedback`` as strings; ``n/a`` is missing).
    dropped : Counter, optional
        Trials that are dropped are counted here by reason (``"no stimulus"``,
        ``"no response"``).

    Returns
    -------
    list of Trial
        In trial order.

    Raises
    ------
    TypeError
        ``rows`` is not a sequence of mappings.
    ValueError
        A row lacks ``onset`` or ``value``, or an onset is not a number.
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows: expected a list of dicts, got {type(rows).__name__}")
    events = sorted(_events(rows), key=lambda event: event.onset_s)
    trials = []
    for index, trial_events in enumerate(_trial_spans(events)):
        trial_or_reason = _trial(index, trial_events)
        if isinstance(trial_or_reason, Trial):
            trials.append(trial_or_reason)
        elif dropped is not None:
            dropped[trial_or_reason] += 1
    return trials


def _events(rows: Sequence[Mapping[str, str]]) -> Iterator[_Event]:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "onset" not in row or "value" not in row:
            raise ValueError(f"rows[{i}]={row!r}: expected a dict with 'onset' and 'value'")
        onset = (row["onset"] or "").strip()
        if onset in MISSING:
            continue
        try:
            onset_s = float(onset)
        except ValueError:
            raise ValueError(f"rows[{i}] onset={onset!r}: expected seconds or 'n/a'") from None
        yield _Event(onset_s, row["value"], row.get("feedback") or "n/a")


def _trial_spans(events: list[_Event]) -> Iterator[list[_Event]]:
    """The events inside each trial, one list per ``contrastTrial_start``."""
    current: list[_Event] | None = None
    for event in events:
        if event.value == TRIAL_START:
            if current is not None:
                yield current
            current = []
        elif event.value == END_EXPERIMENT:
            if current is not None:
                yield current
            current = None
        elif current is not None:
            current.append(event)
    if current is not None:
        yield current


def _trial(index: int, events: list[_Event]) -> Trial | str:
    """The trial, or the reason it is dropped."""
    stim_at = next((i for i, e in enumerate(events) if e.value in TARGETS), None)
    if stim_at is None:
        return "no stimulus"
    stim = events[stim_at]
    press = next((e for e in events[stim_at + 1:] if e.value in PRESSES), None)
    if press is None:
        return "no response"
    return Trial(index=index, stim_onset_s=stim.onset_s, response_onset_s=press.onset_s,
                 target=TARGETS[stim.value], hand=PRESSES[press.value],
                 feedback=press.feedback)
