"""The champion gate: which model, if any, replaces the champion tonight, and why."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from overnight.config import CompareConfig

HELD_BACK_BY_MARGIN = "margin"
HELD_BACK_BY_BOOTSTRAP = "bootstrap"
HELD_BACK_BY_INTEGRITY = "integrity"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the gate decided, and why, in one sentence; ``held_back`` says which rule kept
    the best model out (``"margin"`` or ``"bootstrap"``), None when nothing did."""

    promoted: bool
    model: str | None
    reason: str
    held_back: str | None = None


def decide(scores: dict[str, float | None], champion_nrmse: float | None, cfg: CompareConfig,
           champion_problem: str | None = None,
           paired_wins: Mapping[str, float] | None = None,
           too_slow: Mapping[str, float] | None = None) -> Decision:
    """Promote the best finite model only if it beats the champion by ``cfg.margin``
    (relative) and, in the paired subject bootstrap, in at least ``cfg.min_paired_wins``
    of the resamples (``paired_wins``: model -> that share).

    With no champion (``champion_nrmse`` None, or not finite because its files are
    broken: ``champion_problem`` says why), the best finite model becomes champion.
    A model in ``too_slow`` (name -> ms per window in the scorer's loop, over
    ``cfg.max_ms_per_window``) is never promoted, and the reason says so.
    """
    slow = dict(too_slow or {})
    decision = _decide({name: s for name, s in scores.items() if name not in slow},
                       champion_nrmse, cfg, champion_problem, paired_wins)
    if not slow:
        return decision
    named = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(slow.items()))
    return dataclasses.replace(
        decision, reason=f"{decision.reason} (not eligible, slower one window at a time than "
                         f"[compare] max_ms_per_window = {cfg.max_ms_per_window:g} ms: "
                         f"{named})")


def _decide(scores: dict[str, float | None], champion_nrmse: float | None, cfg: CompareConfig,
            champion_problem: str | None, paired_wins: Mapping[str, float] | None
            ) -> Decision:
    margin = cfg.margin
    finite = {name: s for name, s in scores.items() if s is not None and math.isfinite(s)}
    if not finite:
        failed = ", ".join(sorted(scores)) or "none trained"
        return Decision(False, None, f"no model produced a finite validation NRMSE ({failed}); "
                                     "the champion stays")
    best = min(finite, key=finite.__getitem__)
    score = finite[best]
    if champion_nrmse is None or not math.isfinite(champion_nrmse):
        why = champion_problem or "no champion yet"
        return Decision(True, best, f"{why}: {best} becomes champion with NRMSE {score:.4f}")
    needed = champion_nrmse * (1.0 - margin)
    gain = 1.0 - score / champion_nrmse
    if score >= needed:
        return Decision(False, None, f"best model {best} NRMSE {score:.4f} does not beat the "
                                     f"champion's {champion_nrmse:.4f} by the {margin:.1%} "
                                     f"margin (needs < {needed:.4f}); the champion stays",
                        HELD_BACK_BY_MARGIN)
    wins = (paired_wins or {}).get(best)
    if wins is None or not wins >= cfg.min_paired_wins:
        share = ("no paired resample" if wins is None
                 else f"only {wins:.0%} of the paired resamples")
        return Decision(False, None, f"{best} NRMSE {score:.4f} beats the champion's "
                                     f"{champion_nrmse:.4f} by {gain:.1%}, but wins in {share} "
                                     f"of validation subjects (needs "
                                     f"{cfg.min_paired_wins:.0%}): it may be noise; the "
                                     "champion stays", HELD_BACK_BY_BOOTSTRAP)
    return Decision(True, best, f"{best} NRMSE {score:.4f} beats the champion's "
                                f"{champion_nrmse:.4f} by {gain:.1%} (margin {margin:.1%}) and "
                                f"in {wins:.0%} of the paired resamples of validation subjects")


def hold_for_integrity(problem: str) -> Decision:
    """No promotion over a champion whose files no longer match its record: replacing it
    would hide the damage, and comparing against it would compare against unknown files."""
    return Decision(False, None, f"the champion's files do not match its record ({problem}): "
                                 "nothing is compared against it or promoted over it until "
                                 "it is mended", HELD_BACK_BY_INTEGRITY)
