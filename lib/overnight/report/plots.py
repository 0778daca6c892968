"""The report's plots: matplotlib figures (no pyplot, no display) inlined as PNG data URIs.

Text that reaches a plot (model and subject names) is untrusted: ``label`` shortens it and
keeps it from being read as mathtext.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from overnight.night.runner import duration_text

_PLOT_WIDTH_IN = 8.0  # shown at 800 px wide; rendered at 1.5x for sharp text
_PLOT_DPI = 150
_MAX_TICK_LABELS = 40  # more subjects than this: bars without names
_MAX_LABEL_CHARS = 24  # untrusted names are cut to this in plots
_MAX_TICK_CHARS = 16  # and subject ids under the bars to this
_MAX_LEGEND_COLUMNS = 7  # entries per row of a legend under a figure
STATUS_COLORS = {"ok": "#1e8e3e", "failed": "#d93025", "timed out": "#d93025",
                 "running": "#f29900"}
OTHER_COLOR = "#80868b"


def float_array(values: Sequence[Any]) -> np.ndarray:
    """Floats with null (a failed value) as NaN."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _stage_end(stage: dict[str, Any]) -> datetime:
    """When a stage ended, or its start plus its duration when the end is unknown."""
    if stage["end"] is not None:
        return stage["end"]
    return stage["start"] + timedelta(seconds=stage["seconds"] or 0.0)


def plot_curves(histories: dict[str, list[dict]], colors: dict[str, str]) -> str:
    """Training loss and tune NRMSE per epoch, one line per model."""
    fig = _figure(3.0)
    ax_loss, ax_val = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = float_array([h.get("epoch") for h in history])
        val = float_array([h.get("tune_nrmse") for h in history])
        name_label = label(name)
        ax_loss.plot(epochs, float_array([h.get("train_loss") for h in history]),
                     color=colors[name], label=name_label, marker=".")
        ax_val.plot(epochs, val, color=colors[name], label=name_label, marker=".")
        if np.isfinite(val).any():
            best = int(np.nanargmin(val))
            ax_val.plot(epochs[best], val[best], "o", color=colors[name], markersize=9,
                        markerfacecolor="none")
    ax_val.axhline(1.0, color=OTHER_COLOR, linestyle="--", linewidth=1)
    ax_val.annotate("mean predictor", (1.0, 1.0), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8, color=OTHER_COLOR)
    ax_loss.set(title="training loss", xlabel="epoch")
    ax_val.set(title="tune NRMSE (circle: best epoch)", xlabel="epoch")
    for ax in (ax_loss, ax_val):
        _style(ax)
    _legend_below(fig, ax_val, len(histories))
    return _png_data_uri(fig)


def plot_scatter(y_true: np.ndarray, predictions: dict[str, np.ndarray],
                  nrmse: dict[str, float | None], colors: dict[str, str]) -> str:
    """Predicted against true RT per model, with the identity line."""
    n_cols = min(len(predictions), 3)
    n_rows = math.ceil(len(predictions) / n_cols)
    fig = _figure(3.0 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    finite = np.concatenate([y_true] + [p[np.isfinite(p)] for p in predictions.values()])
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    lims = (low - pad, high + pad)
    for ax, (name, pred) in zip(axes, predictions.items(), strict=False):
        ax.plot(lims, lims, color=OTHER_COLOR, linewidth=1, linestyle="--")
        ok = np.isfinite(pred) & np.isfinite(y_true)
        ax.scatter(y_true[ok], pred[ok], s=6, alpha=0.4, color=colors.get(name, OTHER_COLOR),
                   linewidths=0)
        score = nrmse.get(name)
        if name not in nrmse:
            ax.set_title(label(name), fontsize=10)
        elif score is None:
            ax.set_title(f"{label(name)}  NaN/failed", fontsize=10,
                         color=STATUS_COLORS["failed"])
        else:
            ax.set_title(f"{label(name)}  NRMSE {score:.3f}", fontsize=10)
        if not ok.any():
            ax.text(0.5, 0.5, "no finite predictions", transform=ax.transAxes, ha="center",
                    color=STATUS_COLORS["failed"])
        ax.set(xlim=lims, ylim=lims, xlabel="true RT (s)", ylabel="predicted RT (s)")
        ax.set_aspect("equal")
        _style(ax)
    for ax in axes[len(predictions):]:
        ax.set_visible(False)
    return _png_data_uri(fig)


def plot_subjects(table: list[dict[str, Any]], names: Sequence[str],
                   colors: dict[str, str]) -> str:
    """Grouped bars: RMSE per validation subject (worst first) and model."""
    fig = _figure(3.0)
    ax = fig.subplots()
    x = np.arange(len(table))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        heights = float_array([row["rmse"][name] for row in table])
        ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width,
               color=colors.get(name, OTHER_COLOR), label=label(name))
    if len(table) <= _MAX_TICK_LABELS:
        ax.set_xticks(x, [label(row["subject"], _MAX_TICK_CHARS) for row in table],
                      rotation=30, ha="right", rotation_mode="anchor", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(table)} validation subjects, worst first")
    ax.set_ylabel("RMSE (s)")
    _legend_above(ax, len(names))
    _style(ax)
    return _png_data_uri(fig)


def plot_timeline(stages: list[dict[str, Any]]) -> str:
    """Gantt chart of the stages: minutes since the first start, coloured by status."""
    dated = [s for s in stages if s["start"]]
    origin = min(s["start"] for s in dated)
    span_min = max((_stage_end(s) - origin).total_seconds() for s in dated) / 60 or 1.0
    fig = _figure(0.9 + 0.3 * len(dated))
    ax = fig.subplots()
    for y, stage in enumerate(dated):
        left = (stage["start"] - origin).total_seconds() / 60
        width = max((_stage_end(stage) - stage["start"]).total_seconds() / 60, span_min / 300)
        color = STATUS_COLORS.get(stage["status"], OTHER_COLOR)
        ax.barh(y, width, left=left, height=0.6, color=color,
                alpha=0.45 if stage["reused"] else 1.0, hatch="///" if stage["reused"] else None,
                edgecolor=color)
        text = duration_text(stage["seconds"]) + (" (reused)" if stage["reused"] else "")
        if stage["status"] != "ok":
            text += f" {stage['status']}"
        ax.text(left + width + span_min / 100, y, label(text), va="center", fontsize=8)
    ax.set_yticks(range(len(dated)), [label(s["stage"]) for s in dated], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, span_min * 1.2)
    ax.set_xlabel(f"minutes since {origin:%H:%M:%S}")
    _style(ax)
    return _png_data_uri(fig)


def plot_history(entries: list[dict[str, Any]]) -> str:
    """The champion's NRMSE night by night (oldest first), with its interval when known."""
    fig = _figure(2.2)
    ax = fig.subplots()
    x = np.arange(len(entries))
    nrmse = float_array([e["nrmse"] for e in entries])
    ax.plot(x, nrmse, marker="o", color=OTHER_COLOR, linewidth=1.2)
    for i, entry in enumerate(entries):
        if entry["interval"] is not None:
            ax.vlines(i, *entry["interval"], color=OTHER_COLOR, alpha=0.5, linewidth=3)
        ax.annotate(label(entry["model"]), (i, nrmse[i]), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)
    ax.set_xticks(x, [label(e["date"]) for e in entries], fontsize=8)
    ax.set_ylabel("champion NRMSE")
    _style(ax)
    return _png_data_uri(fig)


def plot_importance(rows: list[dict[str, Any]], models: Sequence[str],
                    colors: dict[str, str]) -> str:
    """Horizontal bars: each feature family's permutation importance per model (the rise of
    its NRMSE when the family is shuffled), with the interval as a whisker and a zero line."""
    fig = _figure(0.9 + 0.2 * len(rows) * max(len(models), 2))
    ax = fig.subplots()
    y = np.arange(len(rows))
    height = 0.8 / len(models)
    for i, model in enumerate(models):
        cells = [row["cells"].get(model) for row in rows]
        delta = float_array([c["delta"] if c else None for c in cells])
        bounds = np.array([c["interval"] if c and c["interval"] else (math.nan, math.nan)
                           for c in cells], dtype=np.float64)
        at = y + (i - (len(models) - 1) / 2) * height
        drawn = np.isfinite(delta)
        ax.barh(at[drawn], delta[drawn], height * 0.9, color=colors.get(model, OTHER_COLOR),
                label=label(model))
        whiskered = np.isfinite(bounds).all(axis=1)
        ax.hlines(at[whiskered], bounds[whiskered, 0], bounds[whiskered, 1], color="#202124",
                  linewidth=1)
        ax.plot(bounds[whiskered].ravel(), np.repeat(at[whiskered], 2), "|", color="#202124",
                markersize=5)
    ax.axvline(0.0, color=OTHER_COLOR, linewidth=1)
    ax.set_yticks(y, [label(row["family"]) for row in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("rise of validation NRMSE when the family is shuffled (whisker: interval)")
    _legend_above(ax, len(models))
    _style(ax)
    return _png_data_uri(fig)


def plot_rt_bins(bins: list[dict[str, Any]], names: Sequence[str],
                 colors: dict[str, str]) -> str:
    """RMSE and bias (mean of predicted - true) per bin of the true RT, one line per model."""
    fig = _figure(3.2)
    ax_rmse, ax_bias = fig.subplots(1, 2, sharex=True)
    x = np.arange(len(bins))
    for name in names:
        color = colors.get(name, OTHER_COLOR)
        for ax, key in ((ax_rmse, "rmse"), (ax_bias, "bias")):
            ax.plot(x, float_array([b[key][name] for b in bins]), marker="o", color=color,
                    label=label(name))
    ax_bias.axhline(0.0, color=OTHER_COLOR, linewidth=1)
    ticks = [f"{label(b['label'])}\n{b['n_windows']:,} win." for b in bins]
    for ax in (ax_rmse, ax_bias):
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlabel("true RT")
        _style(ax)
    ax_rmse.set(title="RMSE (s)", ylim=(0, None))
    ax_bias.set(title="bias (s): predicted - true")
    _legend_below(fig, ax_rmse, len(names))
    return _png_data_uri(fig)


def _figure(height_in: float) -> Figure:
    """A pyplot-free figure, so rendering needs no display and no global backend."""
    return Figure(figsize=(_PLOT_WIDTH_IN, height_in), layout="constrained")


def _legend_above(ax: Any, n_entries: int) -> None:
    """The legend in one row above the axes, at the right: clear of the bars."""
    ax.legend(fontsize=8, frameon=False, ncols=n_entries, loc="lower right",
              bbox_to_anchor=(1.0, 1.0))


def _legend_below(fig: Figure, ax: Any, n_entries: int) -> None:
    """The legend of ``ax`` under all of the figure's panels, clear of the lines (which
    cross every corner of these plots)."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
               ncols=min(n_entries, _MAX_LEGEND_COLUMNS), fontsize=8, frameon=False)


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, alpha=0.25, linewidth=0.6)


def _png_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_PLOT_DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def palette(names: Sequence[str]) -> dict[str, str]:
    """One colour per model, the same in every plot."""
    cycle = ("#1967d2", "#e8710a", "#188038", "#9334e6", "#c5221f", "#12b5cb", "#b06000",
             "#5f6368")
    unique = list(dict.fromkeys(names))
    return {name: cycle[i % len(cycle)] for i, name in enumerate(unique)}


def label(text: Any, max_chars: int = _MAX_LABEL_CHARS) -> str:
    """Untrusted text for a plot: shortened, and ``$`` escaped so it is never mathtext."""
    text = str(text)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text.replace("$", r"\$")




def plot_search(trials: list[dict[str, Any]], since: datetime | None) -> str:
    """The search's tune NRMSE per trial as trials finished: complete trials (filled: this
    night's), pruned ones at their last epoch's score, and the best so far as a step line."""
    fig = _figure(3.0)
    ax = fig.subplots()
    done = sorted((t for t in trials if t["complete"] is not None and t["value"] is not None),
                  key=lambda t: t["complete"])
    for state, marker, color in (("complete", "o", "#1967d2"), ("pruned", "x", OTHER_COLOR)):
        shown = [t for t in done if t["state"] == state]
        for tonight in (True, False):
            part = [t for t in shown if (since is not None and t["complete"] >= since)
                    == tonight]
            if part:
                ax.scatter([t["complete"] for t in part], [t["value"] for t in part],
                           marker=marker, s=22, color=color, linewidths=1.2,
                           facecolors=color if tonight or marker == "x" else "none",
                           label=f"{state}{', tonight' if tonight else ', earlier'}")
    complete = [t for t in done if t["state"] == "complete"]
    if complete:  # drawn on to the last trial, so a lone best still shows as a line
        best = list(np.minimum.accumulate([t["value"] for t in complete]))
        ax.step([t["complete"] for t in complete] + [done[-1]["complete"]],
                best + best[-1:], where="post", color="#e8710a", linewidth=1.5,
                label="best so far")
    ax.axhline(1.0, color=OTHER_COLOR, linestyle="--", linewidth=1)
    if since is not None:
        ax.axvline(since, color=OTHER_COLOR, linewidth=0.8, linestyle=":")
    ax.set_ylabel("tune NRMSE")
    ax.set_xlabel("when the trial finished")
    fig.autofmt_xdate()
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return _png_data_uri(fig)
