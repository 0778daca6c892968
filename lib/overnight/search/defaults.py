"""Defaults that learn: the latest study's best values as a TOML diff against a config
(``make search-defaults``). A person reads it and may adopt it; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState

from overnight.config import Config
from overnight.search import space
from overnight.search.study import JOURNAL_FILE, StudyPlace, night_study_name
from overnight.search.worker import best_trial


def find_studies(studies_dir: Path, url: str | None) -> list[StudyPlace]:
    """Every study in ``url`` (PostgreSQL), else every study folder with a journal."""
    if url:
        names = optuna.get_all_study_names(storage=url)
        return [StudyPlace(n, studies_dir / n, url) for n in names]
    return [StudyPlace(p.parent.name, p.parent, None)
            for p in sorted(studies_dir.glob(f"*/{JOURNAL_FILE}"))]


def choose_study(studies_dir: Path, url: str | None, config: Config,
                 windows: Path | None = None, split: Path | None = None
                 ) -> tuple[optuna.Study, StudyPlace]:
    """The study of ``windows`` and ``split`` (a night's data) and ``config``'s search space
    when given, else the one whose last trial finished last.

    Raises
    ------
    FileNotFoundError
        No study there (or none for that data).
    """
    places = find_studies(studies_dir, url)
    where = "SEARCH_STORAGE" if url else str(studies_dir)
    if windows is not None and split is not None:
        name, _ = night_study_name(windows, split, config)
        places = [p for p in places if p.name == name]
        if not places:
            raise FileNotFoundError(f"no study {name} (the data of {windows}) in {where}: "
                                    "make search runs one")
    if not places:
        raise FileNotFoundError(f"no study in {where}: make search (or a night on a GPU "
                                "host) runs one")
    studies = [(_load(p), p) for p in places]
    return max(studies, key=lambda sp: _last_activity(sp[0]))


def best_as_toml(study: optuna.Study, place: StudyPlace, config: Config,
                 config_name: str, models_dir: Path | None = None) -> str:
    """The study's best values as the ``[train]`` lines to put in ``config_name``, each
    with the value it has now.

    Raises
    ------
    ValueError
        The study has no complete trial yet.
    """
    best = best_trial(study)
    if best is None:
        raise ValueError(f"study {place.name} has no complete trial yet")
    n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    lines = [f"# make search-defaults: study {place.name} ({place.storage_text()}), "
             f"{n_done} complete trials",
             f"# best: trial {best.number}, tune NRMSE {best.value:.4f}"]
    family = best.params.get(space.FAMILY)
    night = models_dir / str(family) / "model.json" if models_dir and family else None
    if night is not None and night.is_file():
        meta = json.loads(night.read_text())
        if meta.get("best_tune_nrmse") is not None:
            lines.append(f"# the night's {family} with {config_name}'s settings: tune NRMSE "
                         f"{meta['best_tune_nrmse']:.4f} ({night})")
    lines.append(f"# to adopt the best values, put these lines in {config_name}; nothing "
                 "was changed")
    return "\n".join([*lines, *space.toml_diff(best.params, config.train)]) + "\n"


def _load(place: StudyPlace) -> optuna.Study:
    storage = place.url or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(place.journal)))
    return optuna.load_study(study_name=place.name, storage=storage)


def _last_activity(study: optuna.Study) -> float:
    moments = [t.datetime_complete or t.datetime_start
               for t in study.get_trials(deepcopy=False)]
    return max((m.timestamp() for m in moments if m is not None), default=0.0)
