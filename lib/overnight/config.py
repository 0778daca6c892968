"""Settings for every job: frozen dataclasses with defaults in code.

A TOML file holds only what differs from the defaults, one table per section
(``[train]``, ``[windows]``, ...); ``--set section.key=value`` overrides it on the
command line. Unknown sections or keys and values of the wrong type are errors, and
the resolved config is saved with every output (``Config.to_dict``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class SynthConfig:
    """The synthetic HBN CCD dataset (``make synth``)."""

    n_subjects: int = 30  # subjects in the BIDS tree
    runs_per_subject: int = 3  # CCD runs per subject, 1..3 as in HBN
    trials_per_run: int = 30  # contrastTrial_start events per run
    sfreq_hz: float = 100.0  # recording rate: 100 (challenge L100 releases) or 500 (raw)
    fmt: str = "set"  # file format: "set" (EEGLAB) or "bdf"
    unexplained_rt_share: float = 0.25  # share of RT variance not encoded in the EEG, 0..1
    seed: int = 0  # everything is deterministic from this seed


@dataclass(frozen=True)
class WindowsConfig:
    """Cutting recordings into Challenge 1 windows."""

    sfreq_hz: float = 100.0  # rate of the cache; other inputs are filtered and resampled
    window_start_s: float = 0.5  # window start after the stimulus, seconds (REFERENCE)
    window_stop_s: float = 2.5  # window end after the stimulus, seconds (REFERENCE)
    l_freq_hz: float = 0.5  # band-pass low edge applied when resampling, Hz
    h_freq_hz: float = 50.0  # band-pass high edge when resampling, Hz (kept below Nyquist)
    val_fraction: float = 0.2  # share of subjects held out for validation, 0..1
    split_seed: int = 0  # seed of the subject-disjoint split


@dataclass(frozen=True)
class FeaturesConfig:
    """The Numba feature pass."""

    slab_windows: int = 2048  # windows read, computed and written per slab


@dataclass(frozen=True)
class TrainConfig:
    """Training one model (``--model baseline|hybrid``)."""

    batch_size: int = 64  # windows per step
    lr: float = 1e-3  # peak AdamW learning rate at lr_reference_batch windows per step
    lr_reference_batch: int = 64  # the LR scales with sqrt(batch_size / lr_reference_batch)
    weight_decay: float = 1e-4  # AdamW weight decay
    dropout: float = 0.3  # dropout probability in the backbone and the head
    n_filters: int = 32  # channels of the temporal convolutions
    grad_clip: float = 1.0  # max global gradient norm
    max_epochs: int = 40  # upper bound on epochs
    warmup_epochs: int = 1  # linear warm-up before the cosine decay, epochs
    patience: int = 8  # early stopping: epochs without a better validation NRMSE
    min_delta: float = 1e-4  # improvement in validation NRMSE that resets patience
    seed: int = 0  # model init and batch order
    device: str = "auto"  # "auto" (GPU when available), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 autocast on GPUs that support it), "fp32", "bf16"
    eval_batch_size: int = 1024  # windows per forward pass when evaluating
    host_cache_gb: float = 2.0  # CPU training keeps up to this many GB of windows in memory;
    # more is streamed from HDF5 in slabs. On a GPU the windows are loaded onto the device
    # when they fit in 60 % of its free memory, else streamed the same way.
    slab_windows: int = 2048  # windows per contiguous HDF5 read when loading or streaming


@dataclass(frozen=True)
class CompareConfig:
    """The champion gate."""

    margin: float = 0.01  # relative NRMSE improvement a challenger needs, 0.01 = 1 %


@dataclass(frozen=True)
class Config:
    """Every job's settings; each job reads its own section."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved config, to store beside an output."""
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the TOML file at ``path``, then ``section.key=value`` overrides.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unknown section or key, or a malformed override.
    TypeError
        A value of the wrong type.
    """
    tables: dict[str, dict[str, Any]] = {}
    if path is not None:
        with open(path, "rb") as fh:
            tables = tomllib.load(fh)
    for item in overrides or []:
        section, key, value = _parse_override(item)
        tables.setdefault(section, {})[key] = value
    return _build(tables, source=str(path) if path else "defaults")


def _parse_override(item: str) -> tuple[str, str, Any]:
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ValueError(f"override {item!r}: expected section.key=value, e.g. train.max_epochs=5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: train.device=cpu
    return section, key, value


def _build(tables: dict[str, Any], source: str) -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {unknown}; allowed: {sorted(sections)}")
    built = {}
    for name, table in tables.items():
        section_type = sections[name].default_factory  # type: ignore[misc]
        built[name] = _build_section(section_type, table, f"{source} [{name}]")
    return Config(**built)


def _build_section(section_type: Any, table: dict[str, Any], where: str) -> Any:
    if not isinstance(table, dict):
        raise TypeError(f"{where}: expected a table of settings, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    values = {}
    for key, value in table.items():
        expected = type(getattr(section_type(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise TypeError(f"{where} {key} = {value!r}: expected {expected.__name__}")
        values[key] = value
    return section_type(**values)
