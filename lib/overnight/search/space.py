"""What the search searches: one table of parameters, each with its range and the reason.

Every entry of ``TRAIN_SPACE`` is a ``[train]`` setting (``overnight.config.TrainConfig``,
which checks each value as for any night); the ``model`` parameter picks the family trained,
among the night's models that declare ``searched=True`` (``families``). The ranges are those
that mattered on the benchmark data (docs/BENCHMARKS.md, "Models"); change them here, and
only here. A trial's settings are the night's ``[train]`` with the trial's values in place
of these, so everything not searched (epochs, patience, batch size, refit) is the night's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from overnight.config import Config, TrainConfig
from overnight.models.catalog import load_catalog

FAMILY = "model"  # the parameter that picks the model family (not a [train] setting)


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: ``choices``, or ``low``..``high`` (``log``: on a log scale)."""

    name: str
    why: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def range_text(self) -> str:
        """``conv | eegnet``, ``8..64 (log)``."""
        if self.choices:
            return " | ".join(str(c) for c in self.choices)
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.log else "")


def family_param(families: tuple[str, ...]) -> Param:
    """The ``model`` parameter: which of ``families`` a trial trains."""
    return Param(FAMILY, "the night's models that declare searched=True (the raw-window CNN, "
                         "the same with the feature branch and the timing network, the best "
                         "on the benchmarks; the press locators scored worse on every one, "
                         "and the trees have no [train] settings)", choices=families)


TRAIN_SPACE: tuple[Param, ...] = (
    Param("backbone", "the spatial filter bank, or EEGNet's layout (few weights; in the "
                      "benchmark worse on tune and 6x slower, but data with more subjects "
                      "may favour it)", choices=("conv", "eegnet")),
    Param("normalization", "training-split channel statistics, per-window gain removal or "
                           "per-window z-scores: which one won changed with the data",
          choices=("train", "gain", "window")),
    Param("n_filters", "width: 8 underfits the demo data, 64 fits the training subjects",
          low=8, high=64, log=True, integer=True),
    Param("dropout", "the main regulariser with few subjects", low=0.1, high=0.6),
    Param("lr", "AdamW's peak rate at 64 windows a step; past 3e-3 training diverges",
          low=1e-4, high=3e-3, log=True),
    Param("weight_decay", "AdamW's decay, over four decades", low=1e-5, high=1e-1, log=True),
    Param("crop_shift_s", "shifted crops move the press within the window; at most the "
                          "window cache's margin (windows.margin_s)", low=0.0, high=0.5),
    Param("scale_sd", "a gain per window: subjects differ in amplitude", low=0.0, high=0.5),
    Param("channel_scale_sd", "a gain per electrode: contact impedances differ",
          low=0.0, high=0.4),
    Param("sensor_rotation_deg", "the net as if rotated on the head: caps sit differently "
                                 "on every head, so the same source's map moves",
          low=0.0, high=30.0),
    Param("dense_weight", "the dense time target's weight beside the RT error, for the "
                          "families that locate the press (timing); the others ignore it: "
                          "it helped on some of our datasets and hurt on others",
          low=0.0, high=2.0),
    Param("ema_epochs", "weights averaged over about this many epochs; 0: the last ones",
          low=0.0, high=3.0),
    Param("mixup_alpha", "mixes windows and their RTs; 0: off", low=0.0, high=0.5),
    Param("ensemble", "seeds averaged into one model: better, and that many times slower",
          low=1, high=3, integer=True),
)
# Not searched: refit (its tune score is the selection's by construction, so the objective
# cannot see it: a trial refits when the night's [train] refit says so), epochs and
# patience (the pruner and early stopping decide), batch size (speed, not quality).
_TRAIN_BY_NAME = {p.name: p for p in TRAIN_SPACE}


def families(config: Config) -> tuple[str, ...]:
    """The search's families: the night's models that declare ``searched=True``.

    Raises
    ------
    ValueError
        None of the night's models is searched.
    """
    names = load_catalog(config.night).searched()
    if not names:
        raise ValueError(f"none of the night's models ([night] models = "
                         f"{list(config.night.models) or 'all'}) declares searched=True: "
                         "nothing to search; set [search] budget_min = 0 to turn it off")
    return names


def search_space(families: tuple[str, ...]) -> tuple[Param, ...]:
    """Every searched parameter: the family, then ``TRAIN_SPACE``."""
    return (family_param(families), *TRAIN_SPACE)


def space_signature(families: tuple[str, ...]) -> str:
    """Eight hex digits that change with the space: a study keeps one space (Optuna cannot
    change a categorical parameter's choices), so it is part of the study's name."""
    text = repr([(p.name, p.choices, p.low, p.high, p.log, p.integer)
                 for p in search_space(families)])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def suggest(trial: Any, margin_s: float, families: tuple[str, ...]) -> dict[str, Any]:
    """Draw one trial's values from ``search_space(families)`` through Optuna's
    ``trial.suggest_*``.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The trial; a retried trial returns the values it had.
    margin_s : float
        The window cache's margin (windows.margin_s): shifted crops stay within it, and a
        cache without one gets no shifted crops.
    families : tuple of str
        The models a trial may train (``families``).

    Returns
    -------
    dict
        Parameter name -> value, in the space's order.
    """
    values: dict[str, Any] = {}
    for p in search_space(families):
        if p.choices:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            continue
        high = min(p.high, margin_s) if p.name == "crop_shift_s" else p.high
        if high <= p.low:
            continue  # nothing to search: the night's value stands
        if p.integer:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, high, log=p.log)
    return values


def trial_base(config: Config) -> TrainConfig:
    """The ``[train]`` settings every trial starts from: the night's, its epochs capped by
    ``[search] max_epochs`` (patience too, so that it can still stop a trial early)."""
    if not config.search.max_epochs:
        return config.train
    epochs = min(config.train.max_epochs, config.search.max_epochs)
    return dataclasses.replace(config.train, max_epochs=epochs,
                               patience=min(config.train.patience, epochs))


def trial_settings(base: TrainConfig, values: Mapping[str, Any]) -> tuple[str, TrainConfig]:
    """The model family and the ``[train]`` settings of a trial: ``base`` with ``values``.

    Raises
    ------
    ValueError
        No family, a value that names no searched parameter, or one outside what
        ``[train]`` allows.
    """
    unknown = sorted(set(values) - {FAMILY, *_TRAIN_BY_NAME})
    if unknown or FAMILY not in values:
        raise ValueError(f"parameters {unknown} are not searched and {FAMILY!r} is "
                         f"{'there' if FAMILY in values else 'missing'}; expected "
                         f"{FAMILY!r} and some of {sorted(_TRAIN_BY_NAME)}")
    settings = {k: v for k, v in values.items() if k != FAMILY}
    return str(values[FAMILY]), dataclasses.replace(base, **settings)


def night_values(base: TrainConfig) -> dict[str, Any]:
    """The night's own value of every searched ``[train]`` setting (the family: none, the
    night trains every one)."""
    return {FAMILY: None, **{p.name: getattr(base, p.name) for p in TRAIN_SPACE}}


def space_table(families: tuple[str, ...]) -> list[dict[str, str]]:
    """The table for the report and the logs: name, range, reason."""
    return [{"name": p.name, "range": p.range_text(), "why": p.why}
            for p in search_space(families)]


def toml_diff(values: Mapping[str, Any], base: TrainConfig) -> list[str]:
    """The ``[train]`` lines that would make ``values`` the night's settings: only the
    settings that differ from ``base``, each with the night's value as a comment. The
    family is a comment: every night trains each one."""
    lines = [f"# {FAMILY} = {values[FAMILY]!r}: the family of the best trial (the night "
             "trains every family; the search row is this one)"] if FAMILY in values else []
    lines.append("[train]")
    changed = 0
    for p in TRAIN_SPACE:
        if p.name not in values:
            continue
        now = getattr(base, p.name)
        if _same(values[p.name], now):
            continue
        changed += 1
        lines.append(f"{p.name} = {_toml_value(values[p.name])}  # now {_toml_value(now)}")
    if not changed:
        lines.append("# every searched setting already has the best trial's value")
    return lines


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to the four significant digits the diff prints."""
    if isinstance(a, float) or isinstance(b, float):
        return _toml_value(float(a)) == _toml_value(float(b))
    return a == b


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        text = f"{value:.4g}"
        # a TOML float needs a dot or an exponent: 3 would be read as an integer
        return text if "." in text or "e" in text else text + ".0"
    return str(value)
