"""Building registered models as the model tests do."""

import importlib
import inspect

import torch

from overnight.models.registry import find_model


def case(name: str) -> dict:
    """The arguments the tests build ``name`` with: ``CASE`` of its own test file,
    ``tests/models/test_<its file>.py`` (a registered model without one fails the suite)."""
    module = find_model(name).source.stem
    return importlib.import_module(f"tests.models.test_{module}").CASE


def fitted(name: str, normalization: str) -> torch.nn.Module:
    """``name`` with its case, its buffers as a training would set them, in eval mode; with
    ``normalization`` where the model takes it as an argument (one with its own fixed
    recipe does not)."""
    torch.manual_seed(0)
    registered = find_model(name)
    scaling = ({"normalization": normalization}
               if "normalization" in inspect.signature(registered.cls).parameters else {})
    model = registered.build(**case(name), **scaling).eval()
    model.set_standardization({"target_mean": torch.tensor(1.5), "target_std": torch.tensor(0.4),
                               "rt_min": torch.tensor(0.4), "rt_max": torch.tensor(2.8),
                               "input_std": torch.full((129, 1), 1e-5)})
    return model
