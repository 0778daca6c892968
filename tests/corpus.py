"""A corpus of malformed CCD recordings, each with what the window stage must make of it.

``write_corpus(root)`` writes one subject per case into a BIDS root, in the real event
format (REFERENCE): broken files, broken events, bad signal, odd layouts. Each case says
what the window stage must do with it: skip the recording with a reason matching
``skip``, or keep it with only clean windows (``clean``), or not see it at all (``absent``,
a subject folder without a recording). Subject ids start with ``BAD``, so the corpus sorts
before the ``NDAR...`` subjects of a real release and fills the head of a preflight slice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overnight.hbn.bids import eeg_path, events_path, write_events, write_recording
from overnight.hbn.channels import CH_NAMES, N_CHANS, index_of
from overnight.hbn.events import BLOCK_STARTS, BREAK, EVENT_CODES, FILE_END, TRIAL_START

SFREQ_HZ = 100.0
N_TRIALS = 6  # the official logic keeps 5: the last trial of a file is dropped
TRIAL_PERIOD_S = 5.0
FIRST_TRIAL_S = 3.0
NOISE_V = 1e-5  # background EEG, 10 uV
HOSTILE_ID = 'BAD28"><img src=x onerror=alert(1)>'


@dataclass(frozen=True)
class Case:
    """One malformed recording and what the window stage must make of it."""

    subject: str
    write: Callable[[Path, str], None]
    skip: str | None = None  # regex the skip reason matches; None: the recording is kept
    absent: bool = False  # no recording at all: the stage must not even see it
    dropped: str | None = None  # a trial-drop reason that must be counted when kept


def duration_s(n_trials: int = N_TRIALS) -> float:
    """Length of a corpus recording: its last trial's window fits, then 3 s."""
    return FIRST_TRIAL_S + TRIAL_PERIOD_S * n_trials + 3.0


def event_rows(n_trials: int = N_TRIALS, shift_s: float = 0.0,
               press_delay_s: float | None = None) -> list[dict[str, object]]:
    """Real-format rows: ``break cnt``, a block start, trials, ``break cnt``, ``9999``.

    ``press_delay_s`` puts every press that long after its trial's stimulus (the default
    is an RT of 0.6 to 1.1 s); ``shift_s`` moves every onset.
    """
    block = next(iter(BLOCK_STARTS))
    rows = [_row(0.5, BREAK), _row(FIRST_TRIAL_S - 1.0, block)]
    for k in range(n_trials):
        start_s = FIRST_TRIAL_S + TRIAL_PERIOD_S * k
        target = "left_target" if k % 2 else "right_target"
        press = "left_buttonPress" if k % 2 else "right_buttonPress"
        delay_s = 0.6 + 0.1 * k if press_delay_s is None else press_delay_s
        rows += [_row(start_s, TRIAL_START), _row(start_s + 1.0, target),
                 _row(start_s + 1.0 + delay_s, press, "smiley_face")]
    end_s = FIRST_TRIAL_S + TRIAL_PERIOD_S * n_trials
    rows += [_row(end_s, BREAK), _row(end_s + 1.0, FILE_END)]
    return [{**row, "onset": float(row["onset"]) + shift_s} for row in rows]


def _row(onset_s: float, value: str, feedback: str | None = None) -> dict[str, object]:
    return {"onset": onset_s, "value": value, "event_code": EVENT_CODES[value],
            "feedback": feedback}


def clean_signal(subject: str, sfreq_hz: float = SFREQ_HZ,
                 n_trials: int = N_TRIALS) -> np.ndarray:
    """Background EEG in volts (129, n), with the flat Cz reference, seeded by the id."""
    rng = np.random.default_rng(list(subject.encode()))
    data_v = rng.normal(0.0, NOISE_V, (N_CHANS, round(duration_s(n_trials) * sfreq_hz)))
    data_v[index_of("Cz")] = 0.0
    return data_v


def write_good(root: Path, subject: str, fmt: str = "set", sfreq_hz: float = SFREQ_HZ,
               data_v: np.ndarray | None = None, names: tuple[str, ...] = CH_NAMES,
               rows: list[dict[str, object]] | None = None) -> Path:
    """One recording with its events; the defaults make a usable one."""
    path = eeg_path(root, subject, 1, fmt)
    write_recording(path, clean_signal(subject, sfreq_hz) if data_v is None else data_v,
                    sfreq_hz, names)
    write_events(events_path(path), event_rows() if rows is None else rows, sfreq_hz)
    return path


# --- broken files ------------------------------------------------------------------------

def _truncated(fmt: str) -> Callable[[Path, str], None]:
    def write(root: Path, subject: str) -> None:
        path = write_good(root, subject, fmt)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return write


def _random_bytes(fmt: str) -> Callable[[Path, str], None]:
    def write(root: Path, subject: str) -> None:
        path = write_good(root, subject, fmt)
        path.write_bytes(np.random.default_rng(7).bytes(200_000))
    return write


def _empty_file(root: Path, subject: str) -> None:
    write_good(root, subject).write_bytes(b"")


# --- broken events -----------------------------------------------------------------------

def _events_text(text: bytes | None) -> Callable[[Path, str], None]:
    """The events file replaced by ``text`` (None: removed)."""
    def write(root: Path, subject: str) -> None:
        events = events_path(write_good(root, subject))
        if text is None:
            events.unlink()
        else:
            events.write_bytes(text)
    return write


def _without_value_column(root: Path, subject: str) -> None:
    events = events_path(write_good(root, subject))
    lines = [line.split("\t") for line in events.read_text().splitlines()]
    drop = lines[0].index("value")
    events.write_text("".join("\t".join(c for i, c in enumerate(cells) if i != drop) + "\n"
                              for cells in lines))


def _non_utf8(root: Path, subject: str) -> None:
    events = events_path(write_good(root, subject))
    # A Latin-1 byte in a free-text cell, as an export from a Windows tool leaves it.
    events.write_bytes(events.read_bytes().replace(b"smiley_face", b"smiley_face\xe9", 1))


def _rows(make_rows: Callable[[], list[dict[str, object]]]) -> Callable[[Path, str], None]:
    def write(root: Path, subject: str) -> None:
        write_good(root, subject, rows=make_rows())
    return write


def _duplicated_rows() -> list[dict[str, object]]:
    return [row for row in event_rows() for _ in range(2)]


def _without_feedback_column(root: Path, subject: str) -> None:
    path = write_good(root, subject)
    write_events(events_path(path), event_rows(), SFREQ_HZ, feedback=False)


# --- bad signal --------------------------------------------------------------------------

def _signal(change: Callable[[np.ndarray], np.ndarray], sfreq_hz: float = SFREQ_HZ
            ) -> Callable[[Path, str], None]:
    def write(root: Path, subject: str) -> None:
        write_good(root, subject, sfreq_hz=sfreq_hz,
                   data_v=change(clean_signal(subject, sfreq_hz)))
    return write


def _nan_in_second_trial(data_v: np.ndarray) -> np.ndarray:
    """NaN on one channel inside the window of trial 1 (stimulus at 9 s: 9.5..11.5 s)."""
    sfreq_hz = data_v.shape[1] / duration_s()
    data_v[5, round(10.0 * sfreq_hz):round(10.2 * sfreq_hz)] = np.nan
    return data_v


def _inf_in_second_trial(data_v: np.ndarray) -> np.ndarray:
    data_v[7, 1050] = np.inf  # 10.5 s at 100 Hz
    return data_v


def _dead_and_noisy_channels(data_v: np.ndarray) -> np.ndarray:
    data_v[[index_of("E1"), index_of("E2"), index_of("E3")]] = 0.0
    data_v[index_of("E4")] *= 50.0
    return data_v


def _six_channels(root: Path, subject: str) -> None:
    write_good(root, subject, data_v=clean_signal(subject)[:6], names=CH_NAMES[:6])


def _foreign_names(root: Path, subject: str) -> None:
    # BDF: a .set with foreign names fails earlier, in MNE's montage check
    write_good(root, subject, fmt="bdf", names=tuple(f"EEG{i:03d}" for i in range(N_CHANS)))


def _bdf_recording(root: Path, subject: str) -> None:
    write_good(root, subject, fmt="bdf")


def _no_recording(root: Path, subject: str) -> None:
    path = write_good(root, subject)
    path.unlink()  # the events file stays: a subject folder with no recording


CASES: tuple[Case, ...] = (
    Case("BAD01truncatedset", _truncated("set"), skip=r"."),
    Case("BAD02randomset", _random_bytes("set"), skip=r"."),
    Case("BAD03emptyset", _empty_file, skip=r"."),
    # MNE reads a truncated BDF up to its last whole record
    Case("BAD04truncatedbdf", _truncated("bdf"), dropped="past end"),
    Case("BAD05randombdf", _random_bytes("bdf"), skip=r"."),
    Case("BAD06noevents", _events_text(None), skip=r"no events file"),
    Case("BAD07emptyevents", _events_text(b""), skip=r"no valid trial"),
    Case("BAD08headeronly", _events_text(b"onset\tduration\tvalue\tevent_code\tfeedback\n"),
         skip=r"no valid trial"),
    Case("BAD09binaryevents", _events_text(np.random.default_rng(3).bytes(4000)),
         skip=r"."),
    Case("BAD10novalue", _without_value_column, skip=r"value"),
    Case("BAD11nonutf8", _non_utf8),
    Case("BAD12nanintrial", _signal(_nan_in_second_trial), dropped="NaN/Inf"),
    Case("BAD13infintrial", _signal(_inf_in_second_trial), dropped="NaN/Inf"),
    Case("BAD14allflat", _signal(np.zeros_like), skip=r"channels flat"),
    Case("BAD15sixchannels", _six_channels, skip=r"^6 channels"),
    Case("BAD16foreignnames", _foreign_names, skip=r"channel names differ"),
    Case("BAD17at250hz", _signal(lambda x: x, sfreq_hz=250.0)),
    Case("BAD18pastend", _rows(lambda: event_rows(shift_s=duration_s())),
         skip=r"past end"),
    Case("BAD19negativeonsets", _rows(lambda: event_rows(shift_s=-12.0)),
         dropped="before start"),
    Case("BAD20duplicatedrows", _rows(_duplicated_rows)),
    Case("BAD21lateresponses", _rows(lambda: event_rows(press_delay_s=TRIAL_PERIOD_S - 0.5)),
         skip=r"no response"),
    Case("BAD22norecording", _no_recording, absent=True),
    Case("BAD23microvolts", _signal(lambda x: x * 1e6), skip=r"microvolts\?"),
    Case("BAD24nanat500hz", _signal(_nan_in_second_trial, sfreq_hz=500.0),
         skip=r"NaN/Inf samples at 500 Hz"),
    Case("BAD25deadchannels", _signal(_dead_and_noisy_channels)),
    Case("BAD26nofeedback", _without_feedback_column),
    Case("BAD27bdf", _bdf_recording),
    Case(HOSTILE_ID, write_good),
)


def write_corpus(root: Path) -> tuple[Case, ...]:
    """Write every case into ``root`` (a BIDS root, created when missing)."""
    root.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        case.write(root, case.subject)
    return CASES
