"""The CCD events vocabulary and the official Challenge 1 trial logic (REFERENCE.md).

``parse_trials`` turns the rows of one ``events.tsv`` into the trials that have a stimulus
and a response, exactly as eegdash's ``build_trial_table`` (the challenge start kit's code)
does. Standard library only.
"""

from __future__ import annotations

import math
import reprlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

TRIAL_START = "contrastTrial_start"
# Closes the last trial when present; real files never have it (REFERENCE).
END_EXPERIMENT = "end_experiment"
TARGETS = {"left_target": "left", "right_target": "right"}
PRESSES = {"left_buttonPress": "left", "right_buttonPress": "right"}
CORRECT_FEEDBACK = "smiley_face"
NON_TARGET_FEEDBACK = "non_target"  # a press before any target, or one after the first
MISSING = ("n/a", "")
BREAK = "break cnt"  # opens and usually closes a file; its event_code is the same text
FILE_END = "9999"  # the last row of a file, value and event_code alike
# value -> event_code, as the real files write them (REFERENCE); event_code is text.
EVENT_CODES: dict[str, str] = {
    TRIAL_START: "5",
    "left_target": "8",
    "right_target": "9",
    "left_buttonPress": "12",
    "right_buttonPress": "13",
    BREAK: BREAK,
    FILE_END: FILE_END,
}
BLOCK_STARTS = {f"contrastChangeB{block}_start": str(93 + block) for block in (1, 2, 3)}
EVENT_CODES.update(BLOCK_STARTS)
# Where every plausible CCD response time lies, seconds: models clamp their predictions
# into it and the promotion check holds submissions to it, whatever they are fed.
PLAUSIBLE_RT_S = (0.2, 3.0)
# Why a trial is not a window.
NO_STIMULUS = "no stimulus"
NO_RESPONSE = "no response"
LAST_TRIAL = "last trial of the file (no next trial start)"


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


def parse_trials(rows: Sequence[Mapping[str, str]], dropped: Counter[str] | None = None,
                 keep_last_trial: bool = False) -> list[Trial]:
    """Trials with a stimulus and a response, from the rows of one events.tsv.

    The official logic (eegdash 0.9.1 ``build_trial_table``): rows are sorted by onset
    (stably); a trial runs from one ``contrastTrial_start`` up to the next one. The last
    trial has no next start and is dropped, unless the last ``end_experiment`` comes after
    it and closes it (real files never have one) or ``keep_last_trial`` runs it to the end.
    Its stimulus is the first target with ``start <= onset < end``, its response the first
    press with ``stimulus <= onset < end``; earlier presses are ignored. Trials without a
    stimulus or a response are dropped. Rows without an onset are ignored; the ``feedback``
    column may be missing. No RT filter is applied.

    Parameters
    ----------
    rows : sequence of mapping
        Rows as returned by ``overnight.hbn.bids.read_events`` (``onset``, ``value`` and
        optionally ``feedback`` as strings; ``n/a`` is missing).
    dropped : Counter, optional
        Trials that are dropped are counted here by reason (``NO_STIMULUS``,
        ``NO_RESPONSE``, ``LAST_TRIAL``).
    keep_last_trial : bool, default False
        Keep the last trial of a file that has no ``end_experiment`` (not the official
        logic).

    Returns
    -------
    list of Trial
        In trial order.

    Raises
    ------
    TypeError
        ``rows`` is not a sequence of mappings.
    ValueError
        A row lacks ``onset`` or ``value``, or an onset is not a finite number.
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows: expected a list of dicts, got {type(rows).__name__}")
    events = sorted(_events(rows), key=lambda event: event.onset_s)
    trials = []
    for index, (start_s, end_s) in enumerate(_trial_bounds(events, keep_last_trial)):
        trial_or_reason = _trial(index, start_s, end_s, events)
        if isinstance(trial_or_reason, Trial):
            trials.append(trial_or_reason)
        elif dropped is not None:
            dropped[trial_or_reason] += 1
    return trials


def _events(rows: Sequence[Mapping[str, str]]) -> Iterator[_Event]:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "onset" not in row or "value" not in row:
            # reprlib: the header of a binary file must not flood the skip reason
            found = reprlib.repr(list(row)) if isinstance(row, Mapping) else type(row).__name__
            raise ValueError(f"rows[{i}]: expected the columns 'onset' and 'value', found "
                             f"{found}")
        onset = (row["onset"] or "").strip()
        if onset in MISSING:
            continue
        try:
            onset_s = float(onset)
        except ValueError:
            raise ValueError(f"rows[{i}] onset={onset!r}: expected seconds or 'n/a'") from None
        if not math.isfinite(onset_s):
            raise ValueError(f"rows[{i}] onset={onset!r}: expected a finite number of seconds")
        yield _Event(onset_s, (row["value"] or "").strip(), row.get("feedback") or "n/a")


def _trial_bounds(events: list[_Event],
                  keep_last_trial: bool) -> Iterator[tuple[float, float | None]]:
    """(start, end) of every trial, end None for a last trial that nothing closes."""
    starts = [e.onset_s for e in events if e.value == TRIAL_START]
    ends = [e.onset_s for e in events if e.value == END_EXPERIMENT]
    for i, start_s in enumerate(starts):
        if i + 1 < len(starts):
            yield start_s, starts[i + 1]
        elif ends and ends[-1] > start_s:  # eegdash closes it at the last end_experiment
            yield start_s, ends[-1]
        elif keep_last_trial:
            yield start_s, math.inf
        else:
            yield start_s, None


def _trial(index: int, start_s: float, end_s: float | None,
           events: list[_Event]) -> Trial | str:
    """The trial, or the reason it is dropped."""
    if end_s is None:
        return LAST_TRIAL
    stim = next((e for e in events if e.value in TARGETS and start_s <= e.onset_s < end_s),
                None)
    if stim is None:
        return NO_STIMULUS
    press = next((e for e in events
                  if e.value in PRESSES and stim.onset_s <= e.onset_s < end_s), None)
    if press is None:
        return NO_RESPONSE
    return Trial(index=index, stim_onset_s=stim.onset_s, response_onset_s=press.onset_s,
                 target=TARGETS[stim.value], hand=PRESSES[press.value],
                 feedback=press.feedback)
