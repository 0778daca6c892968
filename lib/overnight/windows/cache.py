"""The window cache's schema: the one module that writes and reads it.

Datasets, one row per window: ``eeg`` (N, 129, n_times) float32 volts, chunked by window,
the columns of ``COLUMNS`` and, when the cache keeps a margin, ``eeg_before`` and
``eeg_after`` (N, 129, margin): the signal on each side of the window, which training cuts
shifted crops from (``read_context``). Attributes: the rate, the window, the channel names, the
BIDS roots, the sources (with each recording's signal checks), the skipped recordings,
the duplicate subjects and the dropped trials, the config and the code version.
``open_cache`` reads it; ``create_cache`` and ``CacheWriter`` write it.

``join_caches`` joins caches built apart (one per release, on different machines if need
be) into one file whose ``eeg`` is an HDF5 virtual dataset over theirs: no second copy of
the windows. The per-window columns, a few bytes a window, are copied (the recording
indices renumbered). Readers see one cache; ``open_cache`` refuses a join whose part is
gone, which HDF5 would otherwise read as zeros.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from overnight.atomic import atomic_path
from overnight.checks import as_path, existing_file
from overnight.config import WindowsConfig
from overnight.hbn.channels import CH_NAMES, N_CHANS
from overnight.provenance import code_version

_STRINGS = h5py.string_dtype(encoding="utf-8")
EEG = "eeg"
MARGINS = ("eeg_before", "eeg_after")  # the signal on each side of a window
# Per-window columns beside ``eeg``: name -> dtype.
COLUMNS: dict[str, Any] = {
    "rt": np.float32, "subject": _STRINGS, "release": _STRINGS, "run": np.int16,
    "trial": np.int32,
    "stim_onset_s": np.float64, "response_onset_s": np.float64, "hand": _STRINGS,
    "correct": np.bool_, "recording": np.int32,
}
_REQUIRED_ATTRS = ("sfreq_hz", "window_start_s", "window_stop_s", "created")
# Attributes every part of a join must share: the windows mean the same thing.
_SAME_IN_PARTS = ("sfreq_hz", "window_start_s", "window_stop_s", "n_times", "margin_samples")


# ---------------------------------------------------------------------------- writing

class CacheWriter:
    """Appends windows to an open, new cache file."""

    def __init__(self, h5: h5py.File, cfg: WindowsConfig) -> None:
        self._h5, self._cfg = h5, cfg
        # Chunked by window: readers take one window or a run of windows, never a channel.
        h5.create_dataset(EEG, shape=(0, N_CHANS, cfg.n_times),
                          maxshape=(None, N_CHANS, cfg.n_times), dtype=np.float32,
                          chunks=(1, N_CHANS, cfg.n_times))
        self._widths = {EEG: cfg.n_times}
        if cfg.margin_samples:
            for name in MARGINS:
                h5.create_dataset(name, shape=(0, N_CHANS, cfg.margin_samples),
                                  maxshape=(None, N_CHANS, cfg.margin_samples),
                                  dtype=np.float32, chunks=(1, N_CHANS, cfg.margin_samples))
                self._widths[name] = cfg.margin_samples
        for name, dtype in COLUMNS.items():
            h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))

    @property
    def n_windows(self) -> int:
        return int(self._h5[EEG].shape[0])

    def append(self, columns: Mapping[str, Any]) -> None:
        """Append windows: ``columns`` maps ``eeg``, every name of ``COLUMNS`` and, when the
        cache keeps a margin, ``eeg_before`` and ``eeg_after`` to arrays of one length
        (margins given to a cache without one are ignored)."""
        missing = sorted({*self._widths, *COLUMNS} - set(columns))
        if missing:
            raise ValueError(f"windows lack the column(s) {missing}"
                             + (f" (the cache keeps a margin of {self._cfg.margin_s:g} s)"
                                if set(missing) & set(MARGINS) else ""))
        for name, width in self._widths.items():
            shape = np.shape(columns[name])[1:]
            if shape != (N_CHANS, width):
                raise ValueError(f"{name} windows have shape {shape}; expected "
                                 f"({N_CHANS}, {width})")
        start = self.n_windows
        stop = start + len(columns[EEG])
        for name in [*self._widths, *COLUMNS]:
            values = columns[name]
            self._h5[name].resize(stop, axis=0)
            self._h5[name][start:stop] = values

    def finish(self, bids_roots: list[Path], sources: list[dict[str, Any]],
               skipped: list[dict[str, str]], dropped: Counter[str],
               duplicates: list[dict[str, str]]) -> None:
        """Write the attributes that describe the whole cache."""
        self._h5.attrs.update({
            "sfreq_hz": self._cfg.sfreq_hz,
            "window_start_s": self._cfg.window_start_s,
            "window_stop_s": self._cfg.window_stop_s,
            "n_times": self._cfg.n_times,
            "margin_samples": self._cfg.margin_samples,
            "ch_names": list(CH_NAMES),
            "bids_roots": json.dumps([str(root) for root in bids_roots]),
            "sources": json.dumps(sources),
            "skipped": json.dumps(skipped),
            "duplicates": json.dumps(duplicates),
            "dropped_trials": json.dumps(dict(sorted(dropped.items()))),
            "config": json.dumps(dataclasses.asdict(self._cfg)),
            "code_version": code_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })


@contextlib.contextmanager
def create_cache(out_path: str | os.PathLike[str], cfg: WindowsConfig) -> Iterator[CacheWriter]:
    """A writer into a new cache, moved onto ``out_path`` when the block ends without an
    exception (a crash leaves the old cache or none)."""
    out = as_path(out_path, "out_path")
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        yield CacheWriter(h5, cfg)


def write_cache_from_chunks(out_path: str | os.PathLike[str],
                            chunks: Iterable[Mapping[str, np.ndarray]], cfg: WindowsConfig,
                            source: str) -> int:
    """Write windows made elsewhere (e.g. simulated) into a cache of the same layout.

    Each chunk maps ``eeg`` and every name of ``COLUMNS`` to an array of the chunk's length.
    Chunks are appended one at a time, so memory holds one chunk; the file is written
    atomically. Returns the number of windows.
    """
    with create_cache(out_path, cfg) as writer:
        for chunk in chunks:
            writer.append(chunk)
        writer.finish([Path(source)], [], [], Counter(), [])
        return writer.n_windows


def join_caches(parts: list[Path], out_path: str | os.PathLike[str]) -> int:
    """Join window caches into ``out_path`` (written atomically): ``eeg`` virtual over the
    parts' (absolute paths), the columns copied; return the number of windows.

    Raises
    ------
    ValueError
        Fewer than two parts, parts with different windows (rate, start, length), or a
        subject in two parts.
    """
    if len(parts) < 2:
        raise ValueError(f"parts={[str(p) for p in parts]}: a join needs at least two caches")
    parts = [existing_file(part, "part").resolve() for part in parts]
    infos = [_part_info(part) for part in parts]
    first = infos[0]
    for part, info in zip(parts[1:], infos[1:], strict=True):
        differ = [k for k in _SAME_IN_PARTS if info["attrs"][k] != first["attrs"][k]]
        if differ:
            raise ValueError(f"{part}: its windows differ from {parts[0]}'s in {differ}")
    seen: dict[str, Path] = {}
    for part, info in zip(parts, infos, strict=True):
        for subject in sorted(set(info["subject"])):
            if subject in seen:
                raise ValueError(f"subject {subject} is in {seen[subject]} and in {part}: "
                                 "build each release's cache from its own subjects")
            seen[subject] = part
    total = sum(info["n"] for info in infos)
    out = as_path(out_path, "out_path")
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        for name, shape in first["shapes"].items():
            layout = h5py.VirtualLayout(shape=(total, *shape[1:]), dtype=np.float32)
            start = 0
            for part, info in zip(parts, infos, strict=True):
                layout[start:start + info["n"]] = h5py.VirtualSource(
                    str(part), name, shape=info["shapes"][name])
                start += info["n"]
            h5.create_virtual_dataset(name, layout)
        offsets = np.cumsum([0] + [len(info["sources"]) for info in infos[:-1]])
        for name, dtype in COLUMNS.items():
            values = [info[name] + offset if name == "recording" else info[name]
                      for info, offset in zip(infos, offsets, strict=True)]
            h5.create_dataset(name, data=np.concatenate(values), dtype=dtype, chunks=True)
        h5.attrs.update({
            **{k: first["attrs"][k] for k in (*_SAME_IN_PARTS, "ch_names", "config")},
            **{k: json.dumps([x for info in infos for x in info[k]])
               for k in ("bids_roots", "sources", "skipped", "duplicates")},
            "dropped_trials": json.dumps(dict(sorted(sum(
                (Counter(info["dropped_trials"]) for info in infos), Counter()).items()))),
            "parts": json.dumps([{"path": str(p), "created": i["attrs"]["created"],
                                  "n_windows": i["n"]} for p, i in zip(parts, infos,
                                                                      strict=True)]),
            "code_version": code_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
    return total


def _part_info(part: Path) -> dict[str, Any]:
    with open_cache(part) as cache:
        h5 = cache._h5
        return {"n": cache.n_windows,
                "shapes": {name: h5[name].shape for name in (EEG, *MARGINS) if name in h5},
                "attrs": {**{k: h5.attrs[k] for k in (*_SAME_IN_PARTS, "ch_names", "config",
                                                      "created") if k != "margin_samples"},
                          "margin_samples": cache.margin_samples},
                **{name: cache.column(name) for name in COLUMNS},
                **{k: cache.attr_json(k) for k in ("bids_roots", "sources", "skipped",
                                                   "duplicates", "dropped_trials")}}


# ---------------------------------------------------------------------------- reading

class WindowCache:
    """An open window cache (read only)."""

    def __init__(self, h5: h5py.File, path: Path) -> None:
        self._h5, self.path = h5, path

    @property
    def eeg(self) -> h5py.Dataset:
        """The windows, (N, 129, n_times) float32 volts."""
        return self._h5[EEG]

    @property
    def n_windows(self) -> int:
        return int(self._h5[EEG].shape[0])

    @property
    def n_chans(self) -> int:
        return int(self._h5[EEG].shape[1])

    @property
    def ch_names(self) -> tuple[str, ...]:
        """The channels' names, in the windows' channel order."""
        return tuple(str(name) for name in self._h5.attrs["ch_names"])

    @property
    def n_times(self) -> int:
        return int(self._h5[EEG].shape[2])

    @property
    def window_bytes(self) -> int:
        """Bytes of one window in memory."""
        return self.n_chans * self.n_times * self._h5[EEG].dtype.itemsize

    @property
    def sfreq_hz(self) -> float:
        return float(self._h5.attrs["sfreq_hz"])

    @property
    def margin_samples(self) -> int:
        """Samples kept on each side of every window (0: none; caches made before margins
        were kept have none)."""
        return int(self._h5.attrs.get("margin_samples", 0))

    @property
    def window_start_s(self) -> float:
        return float(self._h5.attrs["window_start_s"])

    @property
    def created(self) -> str:
        return str(self._h5.attrs["created"])

    def subjects(self) -> np.ndarray:
        """(N,) subject ids, str."""
        return np.asarray(self._h5["subject"].asstr()[()], dtype=str)

    def rt(self) -> np.ndarray:
        """(N,) response times from the stimulus, float64 seconds."""
        return self._h5["rt"][()].astype(np.float64)

    def column(self, name: str) -> np.ndarray:
        """One per-window column of ``COLUMNS``, whole."""
        if name not in COLUMNS:
            raise ValueError(f"column={name!r}: expected one of {sorted(COLUMNS)}")
        dataset = self._h5[name]
        return dataset.asstr()[()] if dataset.dtype == _STRINGS else dataset[()]

    def read_eeg(self, rows: np.ndarray) -> np.ndarray:
        """Windows ``rows`` (ascending), one read per contiguous run."""
        return read_rows(self.eeg, rows)

    def read_context(self, rows: np.ndarray) -> np.ndarray:
        """Windows ``rows`` (ascending) with their margins, (n, 129, margin + n_times +
        margin): the window lies at ``margin_samples``."""
        if not self.margin_samples:
            return self.read_eeg(rows)
        before, after = (read_rows(self._h5[name], rows) for name in MARGINS)
        return np.concatenate([before, self.read_eeg(rows), after], axis=2)

    def attr_json(self, name: str) -> Any:
        """A JSON attribute (``bids_roots``, ``sources``, ``skipped``, ``duplicates``,
        ``dropped_trials``, ``config``)."""
        return json.loads(self._h5.attrs[name])

    def attr(self, name: str) -> str:
        """A text attribute (``created``, ``code_version``)."""
        return str(self._h5.attrs[name])


@contextlib.contextmanager
def open_cache(path: str | os.PathLike[str]) -> Iterator[WindowCache]:
    """Open a window cache for reading.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a window cache (no ``eeg`` of shape (N, 129, T), or an attribute is
        missing).
    """
    cache_path = existing_file(path, "cache_path")
    with h5py.File(cache_path, "r") as h5:
        if EEG not in h5 or h5[EEG].ndim != 3 or h5[EEG].shape[1] != N_CHANS:
            raise ValueError(f"{cache_path}: expected a window cache with dataset {EEG!r} of "
                             f"shape (N, {N_CHANS}, T)")
        missing = [key for key in _REQUIRED_ATTRS if key not in h5.attrs]
        if missing:
            raise ValueError(f"{cache_path}: missing attribute(s) {missing} of a window cache")
        if h5[EEG].is_virtual:
            _check_parts(cache_path, json.loads(h5.attrs["parts"]))
        yield WindowCache(h5, cache_path)


def _check_parts(cache_path: Path, parts: list[dict[str, Any]]) -> None:
    """A join's parts are there and as they were joined: HDF5 reads a missing part as zeros,
    and a part rebuilt since would no longer match the copied columns."""
    gone = [part["path"] for part in parts if not Path(part["path"]).is_file()]
    if gone:
        raise FileNotFoundError(f"{cache_path} joins caches that are gone: {gone}")
    for part in parts:
        with h5py.File(part["path"], "r") as h5:
            same = (str(h5.attrs.get("created")) == part["created"]
                    and h5[EEG].shape[0] == part["n_windows"])
        if not same:
            raise ValueError(f"{cache_path}: its part {part['path']} was rebuilt after the "
                             "join (another creation time or size); join the parts again "
                             "(make windows)")


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
        A window cache.
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
    with open_cache(cache_path) as cache:
        all_subjects = cache.subjects()
        if subjects is None:
            mask = np.ones(all_subjects.shape, dtype=bool)
        else:
            unknown = sorted(set(subjects) - set(all_subjects))
            if unknown:
                raise ValueError(f"subjects: {unknown[:10]} not in the cache {cache_path}")
            mask = np.isin(all_subjects, list(subjects))
        index = np.flatnonzero(mask)
        return WindowSet(eeg=cache.read_eeg(index), rt=cache.column("rt")[mask],
                         subject=all_subjects[mask], run=cache.column("run")[mask],
                         trial=cache.column("trial")[mask], index=index,
                         sfreq_hz=cache.sfreq_hz, window_start_s=cache.window_start_s)


def read_rows(dataset: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (ascending) of a dataset, one read per contiguous run."""
    out = np.empty((len(index), *dataset.shape[1:]), dtype=dataset.dtype)
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    for pos in np.split(np.arange(len(index)), breaks):
        if len(pos):
            first, last = int(index[pos[0]]), int(index[pos[-1]])
            dataset.read_direct(out, np.s_[first:last + 1], np.s_[pos[0]:pos[-1] + 1])
    return out


def cache_identity(cache_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a split was made from, without hashing the whole cache.

    Returns
    -------
    dict
        ``n_windows``, ``n_subjects`` and ``subjects_sha256`` (of the sorted unique ids,
        one per line).
    """
    with open_cache(cache_path) as cache:
        subjects = sorted(set(cache.subjects().tolist()))
        n_windows = cache.n_windows
    digest = hashlib.sha256("\n".join(subjects).encode("utf-8")).hexdigest()
    return {"n_windows": n_windows, "n_subjects": len(subjects), "subjects_sha256": digest}


def cache_summary(cache_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the report shows about a cache: sizes, skips, drops, RT, window spec, provenance."""
    with open_cache(cache_path) as cache:
        rt_s = cache.rt()
        sources = cache.attr_json("sources")
        releases = Counter(cache.column("release").tolist())
        return {
            "n_windows": int(rt_s.shape[0]),
            "n_subjects": len({s["subject"] for s in sources}),
            "n_recordings": len(sources),
            "windows_per_release": dict(sorted(releases.items())),
            "skipped": cache.attr_json("skipped"),
            "duplicates": cache.attr_json("duplicates"),
            "channel_checks": [
                {key: s[key] for key in ("path", "flat_channels", "noisy_channels",
                                         "reference_flat", "median_abs_v")}
                for s in sources if s.get("flat_channels") or s.get("noisy_channels")],
            "n_reference_flat": sum(bool(s.get("reference_flat")) for s in sources),
            "dropped_trials": cache.attr_json("dropped_trials"),
            "rt_mean_s": float(rt_s.mean()),
            "rt_std_s": float(rt_s.std()),
            "sfreq_hz": cache.sfreq_hz,
            "window_start_s": cache.window_start_s,
            "window_stop_s": float(cache.attr("window_stop_s")),
            "n_times": cache.n_times,
            "bids_roots": cache.attr_json("bids_roots"),
            "created": cache.created,
            "code_version": cache.attr("code_version"),
        }
