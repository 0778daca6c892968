"""The window cache: HBN CCD recordings cut into Challenge 1 windows in one HDF5 file.

``find_recordings`` lists the runs of a BIDS root, ``parse_trials`` applies the official
trial logic to an events.tsv, ``build_window_cache`` reads, checks and resamples every
recording and writes one window per trial (stimulus + 0.5 s to + 2.5 s, 129 channels,
volts), ``make_split``/``write_split`` hold out whole subjects, and ``load_windows`` reads
a subject subset back. Trial logic and window offsets follow ../shared/REFERENCE.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from overnight import cli
from overnight.atomic import atomic_path, write_json
from overnight.bids import EEG_FORMATS, TASK, events_path, read_events
from overnight.channels import CH_NAMES, N_CHANS
from overnight.config import WindowsConfig
from overnight.provenance import code_version
from overnight.validation import as_path

log = logging.getLogger(__name__)

_EEG_FILE = re.compile(rf"sub-(?P<subject>[^_/]+)_task-{TASK}_run-(?P<run>\d+)_eeg\."
                       rf"(?P<fmt>{'|'.join(EEG_FORMATS)})")
_TRIAL_START = "contrastTrial_start"
_END = "end_experiment"
_TARGETS = {"left_target": "left", "right_target": "right"}
_PRESSES = {"left_buttonPress": "left", "right_buttonPress": "right"}
_CORRECT_FEEDBACK = "smiley_face"
_MISSING = ("n/a", "")
# Band-pass high edge when resampling, as a share of the lower rate: 0.45 * rate keeps the
# edge and its transition band below that rate's Nyquist (0.5 * rate).
_MAX_H_FREQ_SHARE = 0.45
_STRINGS = h5py.string_dtype(encoding="utf-8")


# ---------------------------------------------------------------------------- recordings

@dataclass(frozen=True)
class Recording:
    """One CCD run in a BIDS root."""

    subject: str  # without the ``sub-`` prefix
    run: int
    eeg_path: Path
    events_path: Path

    @property
    def fmt(self) -> str:
        """File format: ``"set"`` or ``"bdf"``."""
        return self.eeg_path.suffix.lstrip(".")


def find_recordings(bids_root: str | os.PathLike[str]) -> list[Recording]:
    """Every CCD recording under ``bids_root``, sorted by subject then run.

    Where one run exists as both ``.set`` and ``.bdf``, the ``.set`` is used (logged once).

    Parameters
    ----------
    bids_root : str or PathLike
        The BIDS root holding ``sub-<id>/eeg/`` folders.

    Returns
    -------
    list of Recording
        With the ``_events.tsv`` path beside each file (it may not exist).

    Raises
    ------
    FileNotFoundError
        ``bids_root`` is not a directory, or holds no CCD recording.
    """
    root = as_path(bids_root, "bids_root")
    if not root.is_dir():
        raise FileNotFoundError(f"bids_root={str(root)!r}: not a directory")
    by_run: dict[tuple[str, int], Path] = {}
    n_both = 0
    for path in sorted(root.glob(f"sub-*/eeg/sub-*_task-{TASK}_run-*_eeg.*")):
        match = _EEG_FILE.fullmatch(path.name)
        if match is None or path.parent.parent.name != f"sub-{match['subject']}":
            continue
        key = (match["subject"], int(match["run"]))
        if key in by_run:
            n_both += 1
            if match["fmt"] != "set":
                continue
        by_run[key] = path
    if not by_run:
        raise FileNotFoundError(
            f"bids_root={str(root)!r}: no sub-*/eeg/sub-*_task-{TASK}_run-*_eeg.set|bdf files")
    if n_both:
        log.info("%d run(s) exist as both .set and .bdf; using the .set", n_both)
    return [Recording(subject, run, path, events_path(path))
            for (subject, run), path in sorted(by_run.items())]


# ---------------------------------------------------------------------------- trials

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
        return self.feedback == _CORRECT_FEEDBACK


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
        Rows as returned by ``overnight.bids.read_events`` (``onset``, ``value`` and
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
        if onset in _MISSING:
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
        if event.value == _TRIAL_START:
            if current is not None:
                yield current
            current = []
        elif event.value == _END:
            if current is not None:
                yield current
            current = None
        elif current is not None:
            current.append(event)
    if current is not None:
        yield current


def _trial(index: int, events: list[_Event]) -> Trial | str:
    """The trial, or the reason it is dropped."""
    stim_at = next((i for i, e in enumerate(events) if e.value in _TARGETS), None)
    if stim_at is None:
        return "no stimulus"
    stim = events[stim_at]
    press = next((e for e in events[stim_at + 1:] if e.value in _PRESSES), None)
    if press is None:
        return "no response"
    return Trial(index=index, stim_onset_s=stim.onset_s, response_onset_s=press.onset_s,
                 target=_TARGETS[stim.value], hand=_PRESSES[press.value],
                 feedback=press.feedback)


# ---------------------------------------------------------------------------- one recording

class _Skip(Exception):
    """A recording that cannot be used, for a reason worth reporting as is."""


def _window_n_times(cfg: WindowsConfig) -> int:
    """Samples per window at the cache rate (200 for 0.5..2.5 s at 100 Hz)."""
    return _to_samples(cfg.window_stop_s - cfg.window_start_s, cfg.sfreq_hz)


def _to_samples(time_s: float, sfreq_hz: float) -> int:
    # The one place where seconds become samples.
    return round(time_s * sfreq_hz)


def _read_eeg(path: Path, cfg: WindowsConfig) -> tuple[np.ndarray, float]:
    """Volts (129, n_samples) in canonical channel order at the cache rate, and the input rate."""
    import mne

    reader = mne.io.read_raw_eeglab if path.suffix == ".set" else mne.io.read_raw_bdf
    raw = reader(path, preload=True, verbose="error")
    # A BDF can carry a trigger channel ("Status"); it is not EEG.
    stim = [name for name, kind in zip(raw.ch_names, raw.get_channel_types(), strict=True)
            if kind == "stim"]
    names = [name for name in raw.ch_names if name not in stim]
    if sorted(names) != sorted(CH_NAMES):
        raise _Skip(_channel_problem(names))
    raw.pick(list(CH_NAMES))
    input_sfreq_hz = float(raw.info["sfreq"])
    if input_sfreq_hz != cfg.sfreq_hz:
        h_freq_hz = min(cfg.h_freq_hz, _MAX_H_FREQ_SHARE * min(input_sfreq_hz, cfg.sfreq_hz))
        if h_freq_hz <= cfg.l_freq_hz:
            raise _Skip(f"input rate {input_sfreq_hz:g} Hz leaves no band above "
                        f"l_freq_hz={cfg.l_freq_hz:g}")
        raw.filter(cfg.l_freq_hz, h_freq_hz, phase="zero", verbose="error")
        # Polyphase keeps sample timing exact; MNE's FFT method shifted an impulse by up to
        # 0.4 sample at 100 Hz, depending on where it lies in the recording.
        raw.resample(cfg.sfreq_hz, method="polyphase", verbose="error")
    return raw.get_data(), input_sfreq_hz


def _channel_problem(names: list[str]) -> str:
    expected = f"expected {N_CHANS} ({CH_NAMES[0]}..{CH_NAMES[-2]}, {CH_NAMES[-1]})"
    if len(names) != N_CHANS:
        return f"{len(names)} channels, {expected}"
    missing = sorted(set(CH_NAMES) - set(names))
    unexpected = sorted(set(names) - set(CH_NAMES))
    return f"channel names differ: missing {missing[:5]}, unexpected {unexpected[:5]}; {expected}"


@dataclass(frozen=True)
class _RecordingWindows:
    eeg: np.ndarray  # (n, 129, n_times) float32 volts
    trials: list[Trial]
    input_sfreq_hz: float
    dropped: Counter[str]


def _cut_windows(rec: Recording, cfg: WindowsConfig) -> _RecordingWindows:
    """One window per valid trial of one recording; raises for an unusable recording."""
    if not rec.events_path.is_file():
        raise _Skip(f"no events file {rec.events_path.name}")
    dropped: Counter[str] = Counter()
    trials = parse_trials(read_events(rec.events_path), dropped)
    if not trials:
        raise _Skip(f"no valid trial in the events ({_counts_text(dropped)})")
    data_v, input_sfreq_hz = _read_eeg(rec.eeg_path, cfg)
    n_times = _window_n_times(cfg)
    windows, kept = [], []
    for trial in trials:
        start = _to_samples(trial.stim_onset_s + cfg.window_start_s, cfg.sfreq_hz)
        if start < 0:
            dropped["window before start of recording"] += 1
        elif start + n_times > data_v.shape[1]:
            dropped["window past end of recording"] += 1
        else:
            windows.append(data_v[:, start:start + n_times])
            kept.append(trial)
    if not kept:
        raise _Skip(f"no valid trial ({_counts_text(dropped)})")
    return _RecordingWindows(np.stack(windows).astype(np.float32), kept, input_sfreq_hz,
                             dropped)


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "no trials"


# ---------------------------------------------------------------------------- the cache

# name -> (dtype, value of one trial); the eeg dataset is created apart (3-D, chunked).
_COLUMNS: dict[str, Any] = {
    "rt": np.float32, "subject": _STRINGS, "run": np.int16, "trial": np.int32,
    "stim_onset_s": np.float64, "response_onset_s": np.float64, "hand": _STRINGS,
    "correct": np.bool_, "recording": np.int32,
}


def build_window_cache(bids_root: str | os.PathLike[str], out_path: str | os.PathLike[str],
                       cfg: WindowsConfig, progress: bool = True) -> dict[str, Any]:
    """Cut every CCD recording of a BIDS root into Challenge 1 windows, in one HDF5 file.

    The file is written atomically (a crash leaves the old cache or none) and grows one
    recording at a time. A recording that cannot be used is skipped, logged and listed
    in the ``skipped`` attribute; the build never stops on one bad file.

    Parameters
    ----------
    bids_root : str or PathLike
        The BIDS root.
    out_path : str or PathLike
        The ``.h5`` file to write.
    cfg : WindowsConfig
        Cache rate, window offsets and the band-pass used when resampling.
    progress : bool, default True
        Show a progress bar over recordings.

    Returns
    -------
    dict
        ``n_windows``, ``n_subjects``, ``n_recordings``, ``n_skipped``, ``seconds``,
        ``skipped`` (list of {path, reason}) and ``dropped_trials`` (counts by reason).

    Raises
    ------
    FileNotFoundError
        ``bids_root`` holds no CCD recording.
    RuntimeError
        No recording yielded a window (nothing is written).
    """
    t0 = time.perf_counter()
    _check_windows_config(cfg)
    root = as_path(bids_root, "bids_root").resolve()
    out = as_path(out_path, "out_path")
    recordings = find_recordings(root)
    items: Iterable[Recording] = recordings
    if progress:
        items = cli.progress(recordings, total=len(recordings), desc="windows", unit="rec")
    sources: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    dropped: Counter[str] = Counter()
    n_times = _window_n_times(cfg)
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        _create_datasets(h5, n_times)
        for rec in items:
            rel_path = rec.eeg_path.relative_to(root).as_posix()
            try:
                cut = _cut_windows(rec, cfg)
            except _Skip as err:
                skipped.append(_skip(rel_path, str(err)))
                continue
            except Exception as err:  # one bad file must not stop the nightly run
                skipped.append(_skip(rel_path, f"{type(err).__name__}: {err}"))
                continue
            _append(h5, rec, cut, recording_index=len(sources))
            dropped.update(cut.dropped)
            sources.append({"path": rel_path, "subject": rec.subject, "run": rec.run,
                            "n_windows": len(cut.trials),
                            "input_sfreq_hz": cut.input_sfreq_hz, "format": rec.fmt})
        if not sources:
            reasons = [f"{s['path']}: {s['reason']}" for s in skipped[:5]]
            raise RuntimeError(f"bids_root={str(root)!r}: none of {len(skipped)} recording(s) "
                               f"yielded a window; first reasons: {reasons}")
        _write_attrs(h5, cfg, root, sources, skipped, dropped)
        n_windows = int(h5["rt"].shape[0])
    return {"n_windows": n_windows, "n_subjects": len({s["subject"] for s in sources}),
            "n_recordings": len(sources), "n_skipped": len(skipped),
            "seconds": round(time.perf_counter() - t0, 3), "skipped": skipped,
            "dropped_trials": dict(sorted(dropped.items()))}


def write_cache_from_chunks(out_path: str | os.PathLike[str],
                            chunks: Iterable[Mapping[str, np.ndarray]], cfg: WindowsConfig,
                            source: str) -> int:
    """Write windows made elsewhere (e.g. simulated) into a cache of the same layout.

    Each chunk maps every cache column (``eeg``, ``rt``, ``subject``, ``run``, ``trial``,
    ``stim_onset_s``, ``response_onset_s``, ``hand``, ``correct``, ``recording``) to an
    array of the chunk's length. Chunks are appended one at a time, so memory holds one
    chunk; the file is written atomically. Returns the number of windows.
    """
    n_times = _window_n_times(cfg)
    out = as_path(out_path, "out_path")
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        _create_datasets(h5, n_times)
        for chunk in chunks:
            missing = sorted({"eeg", *_COLUMNS} - set(chunk))
            if missing:
                raise ValueError(f"chunk lacks the column(s) {missing}")
            if chunk["eeg"].shape[1:] != (N_CHANS, n_times):
                raise ValueError(f"chunk eeg has shape {chunk['eeg'].shape}; expected "
                                 f"(n, {N_CHANS}, {n_times})")
            _append_columns(h5, chunk)
        _write_attrs(h5, cfg, Path(source), [], [], Counter())
        return int(h5["rt"].shape[0])


def _skip(rel_path: str, reason: str) -> dict[str, str]:
    log.warning("skipping %s: %s", rel_path, reason)
    return {"path": rel_path, "reason": reason}


def _create_datasets(h5: h5py.File, n_times: int) -> None:
    # Chunked by window: readers take one window or a run of windows, never a channel.
    h5.create_dataset("eeg", shape=(0, N_CHANS, n_times), maxshape=(None, N_CHANS, n_times),
                      dtype=np.float32, chunks=(1, N_CHANS, n_times))
    for name, dtype in _COLUMNS.items():
        h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))


def _append(h5: h5py.File, rec: Recording, cut: _RecordingWindows, recording_index: int) -> None:
    trials = cut.trials
    columns = {
        "rt": [t.rt_s for t in trials],
        "subject": [rec.subject] * len(trials),
        "run": [rec.run] * len(trials),
        "trial": [t.index for t in trials],
        "stim_onset_s": [t.stim_onset_s for t in trials],
        "response_onset_s": [t.response_onset_s for t in trials],
        "hand": [t.hand for t in trials],
        "correct": [t.correct for t in trials],
        "recording": [recording_index] * len(trials),
    }
    _append_columns(h5, {"eeg": cut.eeg, **columns})


def _append_columns(h5: h5py.File, columns: Mapping[str, Any]) -> None:
    start = h5["eeg"].shape[0]
    stop = start + len(columns["eeg"])
    for name, values in columns.items():
        h5[name].resize(stop, axis=0)
        h5[name][start:stop] = values


def _write_attrs(h5: h5py.File, cfg: WindowsConfig, root: Path, sources: list[dict[str, Any]],
                 skipped: list[dict[str, str]], dropped: Counter[str]) -> None:
    h5.attrs.update({
        "sfreq_hz": cfg.sfreq_hz,
        "window_start_s": cfg.window_start_s,
        "window_stop_s": cfg.window_stop_s,
        "n_times": _window_n_times(cfg),
        "ch_names": list(CH_NAMES),
        "bids_root": str(root),
        "sources": json.dumps(sources),
        "skipped": json.dumps(skipped),
        "dropped_trials": json.dumps(dict(sorted(dropped.items()))),
        "config": json.dumps(dataclasses.asdict(cfg)),
        "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


# ---------------------------------------------------------------------------- split

def make_split(subjects: Sequence[str], val_fraction: float, seed: int) -> dict[str, Any]:
    """A subject-disjoint train/validation split, reproducible from ``seed``.

    Unique subjects are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the
    first ``max(1, round(val_fraction * n))`` go to validation (at most ``n - 1``, so
    training is never empty).

    Parameters
    ----------
    subjects : sequence of str
        Subject ids, repeats allowed (e.g. one per window).
    val_fraction : float
        Share of subjects held out, in (0, 1).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    dict
        ``{"train": sorted ids, "val": sorted ids, "val_fraction", "seed"}``.

    Raises
    ------
    TypeError
        ``subjects`` is not a sequence of str, or ``seed`` is not an int.
    ValueError
        ``val_fraction`` outside (0, 1), or fewer than 2 distinct subjects.
    """
    if isinstance(subjects, str) or not all(isinstance(s, str) for s in subjects):
        raise TypeError(f"subjects: expected a sequence of str, got {subjects!r:.80}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed={seed!r}: expected an int")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: expected a share in (0, 1)")
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise ValueError(f"subjects: {len(unique)} distinct subject(s) {unique}; "
                         "a subject-disjoint split needs at least 2")
    n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    order = np.random.default_rng(int(seed)).permutation(len(unique))
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return {"train": train, "val": val, "val_fraction": float(val_fraction), "seed": int(seed)}


def cache_identity(cache_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a split was made from, without hashing the whole cache.

    Returns
    -------
    dict
        ``n_windows``, ``n_subjects`` and ``subjects_sha256`` (of the sorted unique ids,
        one per line).
    """
    with h5py.File(_existing(cache_path, "cache_path"), "r") as h5:
        subjects = sorted(set(h5["subject"].asstr()[()]))
        n_windows = int(h5["rt"].shape[0])
    digest = hashlib.sha256("\n".join(subjects).encode("utf-8")).hexdigest()
    return {"n_windows": n_windows, "n_subjects": len(subjects), "subjects_sha256": digest}


def write_split(cache_path: str | os.PathLike[str], split_path: str | os.PathLike[str],
                cfg: WindowsConfig) -> dict[str, Any]:
    """Split the cache's subjects (``cfg.val_fraction``, ``cfg.split_seed``) into a JSON file.

    The file (written atomically) also holds ``cache``: the cache's identity
    (``cache_identity``), so a later stage can tell the split belongs to its cache.

    Returns
    -------
    dict
        The split as written.
    """
    _check_windows_config(cfg)
    cache = _existing(cache_path, "cache_path")
    with h5py.File(cache, "r") as h5:
        subjects = list(h5["subject"].asstr()[()])
    split = make_split(subjects, cfg.val_fraction, cfg.split_seed)
    split["cache"] = cache_identity(cache)
    write_json(as_path(split_path, "split_path"), split)
    return split


def read_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split written by ``write_split`` and check it.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``train`` or ``val`` is missing, empty or not a list of str, or they share subjects.
    """
    split_file = _existing(path, "path")
    split = json.loads(split_file.read_text(encoding="utf-8"))
    for side in ("train", "val"):
        ids = split.get(side) if isinstance(split, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(s, str) for s in ids):
            raise ValueError(f"{split_file}: {side!r} must be a non-empty list of subject ids, "
                             f"got {ids!r:.80}")
    shared = sorted(set(split["train"]) & set(split["val"]))
    if shared:
        raise ValueError(f"{split_file}: subjects in both train and val: {shared[:10]}")
    return split


# ---------------------------------------------------------------------------- loading

@dataclass(frozen=True, eq=False)
class WindowSet:
    """Windows read from the cache, in cache order."""

    eeg: np.ndarray  # (n, 129, n_times) float32, volts
    rt: np.ndarray  # (n,) float32, seconds from the stimulus
    subject: np.ndarray  # (n,) str
    run: np.ndarray  # (n,) int16
    trial: np.ndarray  # (n,) int32, trial index within the run
    index: np.ndarray  # (n,) int64, row in the cache, ascending
    sfreq_hz: float
    window_start_s: float  # window start after the stimulus

    def __len__(self) -> int:
        return int(self.rt.shape[0])


def load_windows(cache_path: str | os.PathLike[str],
                 subjects: Collection[str] | None = None) -> WindowSet:
    """Read the windows of some subjects (all by default) from the cache.

    Parameters
    ----------
    cache_path : str or PathLike
        A cache written by ``build_window_cache``.
    subjects : collection of str, optional
        Subject ids to read; ``None`` reads every window.

    Returns
    -------
    WindowSet

    Raises
    ------
    TypeError
        ``subjects`` is a single string or holds non-strings.
    ValueError
        A requested subject is not in the cache.
    """
    if subjects is not None and (isinstance(subjects, str)
                                 or not all(isinstance(s, str) for s in subjects)):
        raise TypeError(f"subjects: expected a collection of str ids, got {subjects!r:.80}")
    with h5py.File(_existing(cache_path, "cache_path"), "r") as h5:
        all_subjects = np.asarray(h5["subject"].asstr()[()], dtype=str)
        if subjects is None:
            mask = np.ones(all_subjects.shape, dtype=bool)
        else:
            unknown = sorted(set(subjects) - set(all_subjects))
            if unknown:
                raise ValueError(f"subjects: {unknown[:10]} not in the cache {cache_path}")
            mask = np.isin(all_subjects, list(subjects))
        index = np.flatnonzero(mask)
        return WindowSet(eeg=read_rows(h5["eeg"], index), rt=h5["rt"][()][mask],
                         subject=all_subjects[mask], run=h5["run"][()][mask],
                         trial=h5["trial"][()][mask], index=index,
                         sfreq_hz=float(h5.attrs["sfreq_hz"]),
                         window_start_s=float(h5.attrs["window_start_s"]))


def read_rows(dataset: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (ascending) of a dataset, one read per contiguous run."""
    out = np.empty((len(index), *dataset.shape[1:]), dtype=dataset.dtype)
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    for pos in np.split(np.arange(len(index)), breaks):
        if len(pos):
            first, last = int(index[pos[0]]), int(index[pos[-1]])
            dataset.read_direct(out, np.s_[first:last + 1], np.s_[pos[0]:pos[-1] + 1])
    return out


def cache_summary(cache_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the report shows about a cache: sizes, skips, drops, RT, window spec, provenance."""
    with h5py.File(_existing(cache_path, "cache_path"), "r") as h5:
        attrs = h5.attrs
        rt_s = h5["rt"][()].astype(np.float64)
        sources = json.loads(attrs["sources"])
        return {
            "n_windows": int(rt_s.shape[0]),
            "n_subjects": len({s["subject"] for s in sources}),
            "n_recordings": len(sources),
            "skipped": json.loads(attrs["skipped"]),
            "dropped_trials": json.loads(attrs["dropped_trials"]),
            "rt_mean_s": float(rt_s.mean()),
            "rt_std_s": float(rt_s.std()),
            "sfreq_hz": float(attrs["sfreq_hz"]),
            "window_start_s": float(attrs["window_start_s"]),
            "window_stop_s": float(attrs["window_stop_s"]),
            "n_times": int(attrs["n_times"]),
            "bids_root": str(attrs["bids_root"]),
            "created": str(attrs["created"]),
            "code_version": str(attrs["code_version"]),
        }


# ---------------------------------------------------------------------------- validation

def _existing(value: Any, name: str) -> Path:
    path = as_path(value, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}={str(path)!r}: no such file")
    return path


def _check_windows_config(cfg: Any) -> None:
    if not isinstance(cfg, WindowsConfig):
        raise TypeError(f"cfg: expected a WindowsConfig, got {type(cfg).__name__}")
    if not cfg.sfreq_hz > 0:
        raise ValueError(f"cfg.sfreq_hz={cfg.sfreq_hz!r}: expected a rate > 0 Hz")
    if _window_n_times(cfg) < 1:
        raise ValueError(f"cfg.window_start_s={cfg.window_start_s!r}, "
                         f"window_stop_s={cfg.window_stop_s!r}: expected stop after start by "
                         f"at least one sample at {cfg.sfreq_hz:g} Hz")
    if not 0 < cfg.l_freq_hz < cfg.h_freq_hz:
        raise ValueError(f"cfg.l_freq_hz={cfg.l_freq_hz!r}, h_freq_hz={cfg.h_freq_hz!r}: "
                         "expected 0 < l_freq_hz < h_freq_hz")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"cfg.val_fraction={cfg.val_fraction!r}: expected a share in (0, 1)")
