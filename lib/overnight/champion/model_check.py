"""Could this model ship? The preflight's first look at each of the night's models.

Before a night spends hours training, every model it will train is built at the night's
window geometry and put through what training and the scorer will ask of it: the output
guards (one finite RT per window, inside the training range, whatever the input: noise in
volts or microvolts, a NaN or a flat channel, zeros), the loss (a finite scalar whose
gradient reaches the weights), its code embeddable into ``submission.py`` and, for a model
of the user's own, the submission itself: imported in a fresh Python process without the
project, answering as it does here. Each fault is one line that names the file and what is wrong.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight.champion.embedding import EmbeddingError, embedded_modules
from overnight.champion.submission import (
    build_submission,
    check_in_fresh_process,
    probe_windows,
)
from overnight.config import Config
from overnight.evaluation import predict
from overnight.hbn.channels import N_CHANS
from overnight.models.base import Batch
from overnight.models.catalog import Entry, ModelFileError
from overnight.models.registry import RegisteredModel, registered
from overnight.provenance import code_version
from overnight.training import checkpoint
from overnight.training.loop import model_arguments

# Buffers as a trained model has them: RTs around 1.6 s, EEG at 10 uV.
_STANDARDIZATION = {"target_mean": 1.6, "target_std": 0.4, "rt_min": 0.5, "rt_max": 2.4,
                    "input_std": 1e-5}
_WINDOWS = 8


def check_models(entries: list[Entry], config: Config, fresh_process: bool = True
                 ) -> tuple[list[str], list[str]]:
    """Check each model; return (what passed, one line per fault)."""
    passed, faults = [], []
    for entry in entries:
        try:
            model = registered(entry)
            note = check_model(model, config, fresh_process and not entry.builtin)
        except (ModelFileError, EmbeddingError) as exc:
            faults.append(str(exc))
        else:
            passed.append(f"{entry.name}: {note}")
    return passed, faults


def check_model(model: RegisteredModel, config: Config, fresh_process: bool) -> str:
    """What ``model`` passed (or why it was not built here); ``ModelFileError`` names its
    first fault."""
    reason = model.cls.unavailable()
    if reason is not None:
        return f"not built here ({reason}); its training records that"
    where = f"{model.source}: {model.entry.class_name}"
    net = _build(model, config, where)
    windows = torch.from_numpy(np.random.default_rng(0).normal(
        0.0, 1e-5, (_WINDOWS, N_CHANS, config.windows.n_times)).astype(np.float32))
    _check_guards(net, windows, where)
    checked = ["guards"]
    if model.declaration.fit == "gradients":
        _check_loss(net, windows, where)
        checked.append("loss")
    extra = model.cls.extra_requirement
    embedded_modules([model.source], [extra] if extra else [])  # names the file that fails
    if fresh_process:
        _check_submission(model, net, windows, config, where)
        checked.append("submission in a fresh process")
    return f"{model.entry.class_name} builds; {', '.join(checked)} ok"


def _arguments(model: RegisteredModel, config: Config) -> dict[str, Any]:
    """What training would build the model with, at the night's window geometry."""
    spec = {"n_chans": N_CHANS, "n_times": config.windows.n_times,
            "sfreq_hz": config.windows.sfreq_hz,
            "window_start_s": config.windows.window_start_s}
    return model_arguments(model.cls, config.train, spec)


def _build(model: RegisteredModel, config: Config, where: str) -> torch.nn.Module:
    args = _arguments(model, config)
    torch.manual_seed(0)
    try:
        net = model.build(**args)
        net.set_standardization({name: torch.full_like(getattr(net, name), value)
                                 for name, value in _STANDARDIZATION.items()
                                 if isinstance(getattr(net, name, None), torch.Tensor)})
    except Exception as exc:
        raise ModelFileError(f"{where}({', '.join(f'{k}={v!r}' for k, v in args.items())}) "
                             f"fails: {type(exc).__name__}: {exc}") from exc
    return net


def _check_guards(net: torch.nn.Module, windows: torch.Tensor, where: str) -> None:
    """One finite RT per window inside rt_min..rt_max, for every probe."""
    low, high = _STANDARDIZATION["rt_min"], _STANDARDIZATION["rt_max"]
    probes = {"EEG in volts": windows.numpy(),
              **probe_windows(windows.numpy())}
    net.eval()
    for name, probe in probes.items():
        try:
            with torch.inference_mode():
                out = net(torch.from_numpy(probe))
        except Exception as exc:
            raise ModelFileError(f"{where}: forward on {name} fails: "
                                 f"{type(exc).__name__}: {exc}") from exc
        n = len(probe)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, 1):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelFileError(f"{where}: forward returned {shape} for {n} windows "
                                 f"({name}); expected a tensor of shape ({n}, 1)")
        if not (torch.isfinite(out).all() and (out >= low).all() and (out <= high).all()):
            raise ModelFileError(
                f"{where}: on {name} it answers {out.min().item():.3g}..{out.max().item():.3g}"
                f" s, not finite RTs in {low}..{high} s (the training range): keep "
                "RTModel.forward's guards (override standardized_output, not forward)")


def _check_loss(net: torch.nn.Module, windows: torch.Tensor, where: str) -> None:
    """A finite scalar whose gradient reaches the weights."""
    net.train()
    batch = Batch(windows, None, torch.randn(len(windows)))
    try:
        loss = net.loss(batch)
        loss.backward()
    except Exception as exc:
        raise ModelFileError(f"{where}: loss(batch) fails: {type(exc).__name__}: {exc}") \
            from exc
    if loss.dim() != 0 or not torch.isfinite(loss):
        raise ModelFileError(f"{where}: loss(batch) gave {loss.detach()}, expected a finite "
                             "scalar")
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()):
        raise ModelFileError(f"{where}: loss(batch) sends no gradient to the weights")


def _check_submission(model: RegisteredModel, net: torch.nn.Module, windows: torch.Tensor,
                      config: Config, where: str) -> None:
    """Ship the untrained model as a submission and run it as the scorer would."""
    net.eval()
    with tempfile.TemporaryDirectory(prefix="overnight-model-check-") as tmp:
        model_dir, submission_dir = Path(tmp) / "model", Path(tmp) / "submission"
        model_dir.mkdir()
        checkpoint.save_weights(net, model_dir / checkpoint.WEIGHTS_FILE)
        meta = _meta(model, config, model_dir)
        (model_dir / "model.json").write_text(json.dumps(meta))
        build_submission(model_dir, submission_dir)
        try:
            check_in_fresh_process(submission_dir, windows.numpy(),
                                   predict(net, windows), config.windows.sfreq_hz)
        except RuntimeError as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise ModelFileError(f"{where}: its submission fails: {lines[-1]}") from exc


def _meta(model: RegisteredModel, config: Config, model_dir: Path) -> dict[str, Any]:
    return {"model": model.name, "inputs": list(model.declaration.inputs),
            "model_args": _arguments(model, config),
            "best_tune_nrmse": float("nan"), "best_epoch": 0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "code_version": code_version(),
            "source": checkpoint.keep_source(model, model_dir)}
