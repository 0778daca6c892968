"""Every registered model, through the contract of ``RTModel``; and everything that lists
models (the Makefile, the driver's stages, the search's families, the bench) reads the
registry.

Each model has a test file of its own, ``tests/models/test_<its file>.py``, with ``CASE``:
the arguments these tests build it with. A model without one fails here.
"""

import importlib
import subprocess
from pathlib import Path

import pytest
import torch

from overnight.config import NightConfig, TrainConfig, load_config
from overnight.features.spec import FEATURE_NAMES
from overnight.hbn.channels import CH_NAMES, REFERENCE_CHANNEL
from overnight.layout import model_stages
from overnight.models.base import NORMALIZATIONS, Batch, ConstantPredictor
from overnight.models.catalog import load_catalog
from overnight.models.registry import builtin_names, find_model, registry
from overnight.search import space
from overnight.training.data import input_mask
from tests.helpers import model_names
from tests.models.helpers import case, fitted

REPO = Path(__file__).resolve().parents[2]


def test_every_registered_model_has_a_test_file_with_its_case():
    for name in builtin_names():
        assert isinstance(case(name), dict), name


def test_the_registry_imports_what_the_catalog_reads():
    catalog = load_catalog()
    models = registry(catalog)
    assert [m.name for m in models] == list(catalog.names) == sorted(catalog.names)
    for model in models:
        assert model.cls.declaration == model.entry.declaration
        assert model.cls.__name__ == model.entry.class_name
        assert model.source.parent.name == "models"  # one file per model, in the package


@pytest.mark.parametrize("name", model_names())
def test_forward_shape_and_eval_determinism(name):
    torch.manual_seed(0)
    model = find_model(name).build(**case(name)).eval()
    x = torch.randn(5, 129, 200) * 1e-4
    with torch.inference_mode():
        first, second = model(x), model(x)
    assert first.shape == (5, 1)
    assert torch.equal(first, second)
    assert torch.isfinite(first).all()


@pytest.mark.parametrize("name", model_names())
def test_the_feature_response_is_the_forward_pass(name):
    """What a permutation importance computes once per window and reads with many
    versions of the features gives what ``forward`` gives, for a model and an ensemble."""
    torch.manual_seed(0)
    x = torch.randn(6, 129, 200) * 1e-5
    features = torch.randn(6, len(FEATURE_NAMES))
    for model in (fitted(name, "train"), find_model(name).build(ensemble=2, **case(name))):
        with torch.inference_mode():
            respond = model.eval().feature_response(x)
            for version in (features, features.flip(0), None):
                torch.testing.assert_close(respond(version), model(x, version))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("name", [n for n in model_names()
                                  if "eeg" in find_model(n.values[0]).declaration.inputs])
def test_a_dropped_reference_is_not_read(name, normalization):
    """With ``train.drop_reference`` the network does not read Cz; the other channels it
    does."""
    model = fitted(name, normalization)
    reference = CH_NAMES.index(REFERENCE_CHANNEL)
    model.set_standardization({"input_mask": input_mask(CH_NAMES, drop_reference=True)})
    x = torch.randn(3, 129, 200) * 1e-5
    noisy = x.clone()
    noisy[:, reference] = torch.randn(3, 200) * 1e-4
    other = x.clone()
    other[:, reference - 1] = torch.randn(3, 200) * 1e-4
    features = torch.randn(3, len(FEATURE_NAMES))  # fixed: the features read every channel
    with torch.inference_mode():
        torch.testing.assert_close(model(noisy, features), model(x, features))
        assert not torch.equal(model(other, features), model(x, features))


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("name", model_names())
def test_any_input_gives_a_finite_rt_in_the_training_range(name, normalization):
    model = fitted(name, normalization)
    x = torch.randn(4, 129, 200) * 1e-5
    nan_channel = x.clone()
    nan_channel[:, 54] = float("nan")
    inf_sample = x.clone()
    inf_sample[0, 3, 7] = float("inf")
    with torch.inference_mode():
        for probe in (x, x * 1e6, x * 1e12, nan_channel, inf_sample, torch.zeros_like(x),
                      torch.full_like(x, float("nan"))):
            rt = model(probe)
            assert torch.isfinite(rt).all() and (rt >= 0.4).all() and (rt <= 2.8).all()
        # one bad channel does not spoil the other windows of the batch
        mixed = x.clone()
        mixed[0] = float("nan")
        torch.testing.assert_close(model(mixed)[1:], model(x)[1:])


@pytest.mark.parametrize("name", [n for n in model_names()
                                  if n.values[0] != "gbm"])  # trees: no gradients
def test_the_loss_is_a_scalar_whose_gradient_reaches_the_weights(name):
    model = fitted(name, "train").train()
    batch = Batch(torch.randn(4, 129, 200) * 1e-5, None, torch.randn(4))
    loss = model.loss(batch)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_default_loss_is_the_squared_error_of_the_standardised_prediction():
    model = fitted("baseline", "train")
    batch = Batch(torch.randn(3, 129, 200) * 1e-5, None, torch.tensor([0.5, -1.0, 2.0]))
    expected = ((model.standardized_output(batch.eeg).squeeze(1) - batch.target) ** 2).mean()
    torch.testing.assert_close(model.loss(batch), expected)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="baseline"):
        find_model("transformer")


def test_normalizations_match_the_config():
    for normalization in NORMALIZATIONS:
        assert TrainConfig(normalization=normalization).normalization == normalization
    with pytest.raises(ValueError, match="normalization"):
        TrainConfig(normalization="robust")
    with pytest.raises(ValueError, match="normalization"):
        find_model("baseline").build(normalization="robust")


WINDOW_SPEC = {"n_chans": 129, "n_times": 200, "sfreq_hz": 100.0, "window_start_s": 0.5}


@pytest.mark.parametrize(("name", "own"), [("baseline", "train"), ("hybrid", "train"),
                                           ("press", "window"), ("press-hybrid", "window"),
                                           ("timing", "window")])
def test_auto_scaling_is_each_models_own_and_written_out(name, own):
    """``normalization = "auto"`` trains each model with its constructor's default, and
    says so in the arguments the checkpoint keeps; a setting of its own overrides it."""
    from overnight.training.loop import model_arguments

    cls = find_model(name).cls
    assert model_arguments(cls, TrainConfig(), WINDOW_SPEC)["normalization"] == own
    assert model_arguments(cls, TrainConfig(normalization="gain"),
                           WINDOW_SPEC)["normalization"] == "gain"


def test_constant_predictor_answers_one_number_per_window():
    out = ConstantPredictor(0.25)(torch.zeros(3, 129, 200))
    assert out.shape == (3, 1) and torch.equal(out, torch.full((3, 1), 0.25))


# --- Everything that lists models asks the registry -------------------------------------

def _make(*arguments: str) -> str:
    proc = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *arguments],
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


def test_the_makefile_has_a_target_for_every_registered_model(tiny_data, tmp_path):
    catalog = load_catalog()
    dry = _make("-n", "models", f"WORK={tmp_path}", f"DATA={tiny_data.bids_root}")
    trained = [line.split(" train-")[1].split()[0] for line in dry.splitlines()
               if "jobs/run_stage.py" in line and " train-" in line]
    assert sorted(trained) == sorted(catalog.night)
    for entry in catalog.entries:  # features when it reads them, torchrun when it may
        dry = _make("-n", f"train-{entry.name}", f"WORK={tmp_path}", "NPROC=2",
                    f"DATA={tiny_data.bids_root}")
        line = next(line for line in dry.splitlines() if f"--model {entry.name} " in line)
        assert ("torch.distributed.run" in line) == entry.declaration.torchrun
        assert ("--features" in dry.split(f"--model {entry.name} ")[1].split("\n:")[0]) \
            == entry.declaration.reads_features
    assert f"Models: {' '.join(catalog.names)}" in _make("help")


def test_the_driver_makes_every_model_of_the_night_after_what_it_reads():
    catalog = load_catalog(NightConfig(models=("hybrid", "baseline", "gbm")))
    assert catalog.model_stages() == model_stages(("baseline",), ("hybrid", "gbm"))
    assert catalog.preflight_stages()[:2] == ("device", "check-models")
    everything = load_catalog().model_stages()
    assert {s.removeprefix("train-") for s in everything if s.startswith("train-")} \
        == set(builtin_names())


def test_the_search_families_are_the_searched_models():
    config = load_config(None)
    searched = [m.name for m in registry(load_catalog()) if m.declaration.searched]
    assert list(space.families(config)) == searched
    assert space.search_space(space.families(config))[0].choices == tuple(searched)


def test_the_bench_compares_every_registered_model():
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    try:
        models_bench = importlib.import_module("models")
    finally:
        sys.path.remove(str(REPO / "bench"))
    variants = models_bench.default_variants()
    assert {model for model, _ in variants.values()} == set(builtin_names())
    assert all(variants[name] == (name, ()) for name in builtin_names())
