"""Response-time models: a compact CNN on raw windows, the press locator (RT as where the
button press lies in the window), each of them fused with the neuroscience features,
gradient-boosted trees on the features alone, and braindecode's EEGNeX as a peer.

This module is embedded verbatim into the generated ``submission.py`` (with the feature
spec), so it imports only ``torch`` and the feature spec (braindecode only when an EEGNeX is
built), and uses no
torch API newer than 2.2 (the scorer's version). Every model maps raw windows
(B, 129, 200) in volts to response times (B, 1) in seconds: the input, feature and
target standardisation fitted on the training split live in buffers, so the state
dict alone reproduces the predictions.
"""

from __future__ import annotations

import torch
from torch import nn

from overnight.features.spec import FEATURE_NAMES, WindowFeatures

# How a window is scaled before the network: "train" subtracts the training split's channel
# means and divides by its channel stds; "window" z-scores every channel of every window on
# its own, so the input's scale (volts, microvolts, a subject's gain) cannot move the output;
# "gain" removes each channel's mean over the window (an offset or a drift), divides by the
# training channel stds, then divides the whole window by one number, its RMS: the window's
# overall gain goes, the channels' relative amplitudes and the time course stay.
NORMALIZATIONS = ("train", "window", "gain")
# Scaled inputs are clipped to this many stds: one artefact or a wrongly scaled window
# cannot saturate the network.
INPUT_CLIP = 20.0
# Dilations of the press locator's temporal convolutions (kernel 5): each step sees 61
# steps, +-0.3 s at 100 Hz, enough to tell a press from the CPP ramp before it.
PRESS_DILATIONS = (1, 2, 4, 8)


class ConvBackbone(nn.Module):
    """Spatial filter bank, then three temporal conv blocks that halve time; flattened.

    Flattening (rather than global pooling) keeps *when* things happen in the window,
    which is what locates the button press and the CPP peak.
    """

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float,
                 n_embed: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv1d(n_chans, n_filters, kernel_size=1, bias=False),
            nn.BatchNorm1d(n_filters), nn.GELU(),
        ]
        n_out_times = n_times
        for _ in range(3):
            layers += [
                nn.Conv1d(n_filters, n_filters, kernel_size=7, padding=3, bias=False),
                nn.BatchNorm1d(n_filters), nn.GELU(), nn.AvgPool1d(2), nn.Dropout(dropout),
            ]
            n_out_times //= 2
        self.convs = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(n_filters * n_out_times, n_embed), nn.GELU(),
            nn.Dropout(dropout),
        )
        self.n_embed = n_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.convs(x))  # (B, C, T) -> (B, n_embed)


class EEGNetBackbone(nn.Module):
    """EEGNet's layout (Lawhern et al. 2018, J Neural Eng 15:056013), a network built to
    carry over to new subjects with few weights: temporal filters, then per filter a few
    spatial filters over the whole net (depthwise: ``depth`` x ``n_temporal`` x 129 weights
    in all), pooling, a separable temporal convolution, pooling; flattened, so that when
    things happen is kept, as in ``ConvBackbone``.
    """

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float,
                 sfreq_hz: float = 100.0, depth: int = 2) -> None:
        super().__init__()
        n_temporal = max(1, n_filters // depth)
        kernel = 2 * int(0.125 * sfreq_hz) + 1  # 0.25 s: down to 4 Hz
        self.convs = nn.Sequential(
            nn.Conv2d(1, n_temporal, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.BatchNorm2d(n_temporal),
            nn.Conv2d(n_temporal, n_temporal * depth, (n_chans, 1), groups=n_temporal,
                      bias=False),  # (B, F*D, 1, T)
            nn.BatchNorm2d(n_temporal * depth), nn.ELU(), nn.AvgPool2d((1, 4)),
            nn.Dropout(dropout),
            nn.Conv2d(n_temporal * depth, n_temporal * depth, (1, 15), padding=(0, 7),
                      groups=n_temporal * depth, bias=False),
            nn.Conv2d(n_temporal * depth, n_filters, 1, bias=False),
            nn.BatchNorm2d(n_filters), nn.ELU(), nn.AvgPool2d((1, 2)), nn.Dropout(dropout),
            nn.Flatten())
        self.n_embed = n_filters * (n_times // 4 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x.unsqueeze(1))  # (B, C, T) -> (B, n_embed)


# The raw-window networks a model can be built on (``backbone``).
BACKBONES = {"conv": ConvBackbone, "eegnet": EEGNetBackbone}


def build_backbone(name: str, n_chans: int, n_times: int, n_filters: int, dropout: float,
                   sfreq_hz: float) -> nn.Module:
    """A registered backbone by name (EEGNet's filters follow the rate)."""
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r}: expected one of {sorted(BACKBONES)}")
    if name == "eegnet":
        return EEGNetBackbone(n_chans, n_times, n_filters, dropout, sfreq_hz)
    return ConvBackbone(n_chans, n_times, n_filters, dropout)


class RTModel(nn.Module):
    """Base class: standardisation buffers and the seconds-in, seconds-out contract.

    Whatever the input, the output is finite and inside ``rt_min``..``rt_max`` (the
    training RTs' central range, fitted with the standardisation): a NaN or Inf sample becomes
    its channel's training mean (no signal), the scaled input is clipped, and the
    prediction is clamped.
    """

    # What the model reads: the raw window, the neuroscience features, or both (the
    # features of a submission are computed from the window by the model itself).
    inputs: tuple[str, ...] = ("eeg",)
    # A library the model needs beyond torch (the submission's docstring names it).
    extra_requirement: str | None = None

    def __init__(self, n_chans: int = 129, normalization: str = "train") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}: expected one of "
                             f"{NORMALIZATIONS}")
        self.normalization = normalization
        self.register_buffer("input_mean", torch.zeros(n_chans, 1))
        self.register_buffer("input_std", torch.ones(n_chans, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("rt_min", torch.zeros(()))
        self.register_buffer("rt_max", torch.full((), 10.0))

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this model cannot be built here (an optional library is missing), or None."""
        return None

    @classmethod
    def reads_features(cls) -> bool:
        """Whether training feeds it the precomputed features."""
        return "features" in cls.inputs

    def set_standardization(self, stats: dict[str, torch.Tensor]) -> None:
        """Copy standardisation statistics (fitted on the training split) into the buffers."""
        for name, value in stats.items():
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype).reshape(buffer.shape))

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction in target-standardised units (what the loss sees), (B, 1)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Response time in seconds, (B, 1), from windows (B, C, T) in volts."""
        x = self.neutralize(x)
        rt = self.standardized_output(x, features) * self.target_std + self.target_mean
        rt = torch.where(torch.isfinite(rt), rt, self.target_mean)
        return torch.minimum(torch.maximum(rt, self.rt_min), self.rt_max)

    def neutralize(self, x: torch.Tensor) -> torch.Tensor:
        """Non-finite samples replaced by their channel's training mean."""
        return torch.where(torch.isfinite(x), x, self.input_mean.to(x.dtype))

    def _scale_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalization == "window":
            centred = x - x.mean(dim=-1, keepdim=True)
            # A flat channel is all zeros once centred, and stays zero.
            scaled = centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-12)
        elif self.normalization == "gain":
            centred = (x - x.mean(dim=-1, keepdim=True)) / self.input_std
            rms = centred.square().mean(dim=(-2, -1), keepdim=True).sqrt()
            scaled = centred / rms.clamp_min(1e-12)  # (B, C, T) / (B, 1, 1)
        else:
            scaled = (x - self.input_mean) / self.input_std
        return scaled.clamp(-INPUT_CLIP, INPUT_CLIP)


class BaselineCNN(RTModel):
    """The CNN alone, on raw windows."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, normalization: str = "train", backbone: str = "conv",
                 sfreq_hz: float = 100.0) -> None:
        super().__init__(n_chans, normalization)
        self.backbone = build_backbone(backbone, n_chans, n_times, n_filters, dropout,
                                       sfreq_hz)
        self.head = nn.Linear(self.backbone.n_embed, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(self._scale_input(x)))


class FeatureBranch(nn.Module):
    """The neuroscience features of a window, standardised and through a small MLP.

    Training passes the precomputed (Numba) features; at inference the branch computes them
    itself from the raw window with the torch twin, so the submission needs nothing but the
    window.
    """

    def __init__(self, sfreq_hz: float, window_start_s: float, dropout: float,
                 n_hidden: int = 32) -> None:
        super().__init__()
        n_features = len(FEATURE_NAMES)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.features = WindowFeatures(sfreq_hz, window_start_s)
        self.mlp = nn.Sequential(
            nn.Linear(n_features, n_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden), nn.GELU(),
        )
        self.n_out = n_hidden

    def forward(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        if features is None:
            features = self.features(x)  # (B, F), the twin of the Numba features
        # Clamped so one extreme window cannot saturate the MLP.
        scaled = torch.nan_to_num((features - self.feature_mean) / self.feature_std,
                                  nan=0.0).clamp(-10.0, 10.0)
        return self.mlp(scaled)


class _WithFeatures(RTModel):
    """A model with a ``FeatureBranch``: its standardisation buffers are the branch's."""

    inputs = ("eeg", "features")
    branch: FeatureBranch

    @property
    def feature_mean(self) -> torch.Tensor:
        return self.branch.feature_mean

    @property
    def feature_std(self) -> torch.Tensor:
        return self.branch.feature_std


class HybridCNN(_WithFeatures):
    """The CNN backbone fused with the feature branch."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0,
                 window_start_s: float = 0.5, n_feature_hidden: int = 32,
                 normalization: str = "train", backbone: str = "conv") -> None:
        super().__init__(n_chans, normalization)
        self.branch = FeatureBranch(sfreq_hz, window_start_s, dropout, n_feature_hidden)
        self.backbone = build_backbone(backbone, n_chans, n_times, n_filters, dropout,
                                       sfreq_hz)
        self.head = nn.Linear(self.backbone.n_embed + self.branch.n_out, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        fused = torch.cat([self.backbone(self._scale_input(x)), self.branch(x, features)],
                          dim=1)
        return self.head(fused)


def dilated_temporal(n_chans: int, n_filters: int, dropout: float) -> nn.Sequential:
    """The press locator's network: a spatial 1x1 mix, then dilated temporal convolutions
    (``PRESS_DILATIONS``) that keep one output per time step."""
    layers: list[nn.Module] = [nn.Conv1d(n_chans, n_filters, kernel_size=1, bias=False),
                               nn.BatchNorm1d(n_filters), nn.GELU()]
    for dilation in PRESS_DILATIONS:
        layers += [nn.Conv1d(n_filters, n_filters, kernel_size=5, dilation=dilation,
                             padding=2 * dilation, bias=False),
                   nn.BatchNorm1d(n_filters), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class PressLocator(RTModel):
    """RT as locating the button press in time (the challenge's 3rd and 5th entries).

    A temporal network scores every time step of the window (dilated convolutions that
    keep the time axis); a softmax over time turns the scores into where the press lies,
    and the expected time under it, plus the window's start after the stimulus, is the RT.
    A press outside the window is reached only in the limit, which the clamp to the
    training RTs covers either way.
    """

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)
        self.temporal = dilated_temporal(n_chans, n_filters, dropout)
        self.score = nn.Conv1d(n_filters, 1, kernel_size=1)
        self.register_buffer("step_times_s",
                             window_start_s + torch.arange(n_times, dtype=torch.float32)
                             / sfreq_hz)

    def press_time_s(self, x: torch.Tensor) -> torch.Tensor:
        """The expected press time after the stimulus, (B, 1) seconds."""
        logits = self.score(self.temporal(self._scale_input(x))).squeeze(1)  # (B, T)
        weights = torch.softmax(logits.float(), dim=-1)
        return (weights * self.step_times_s).sum(dim=-1, keepdim=True)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return (self.press_time_s(x) - self.target_mean) / self.target_std


class TimingNet(RTModel):
    """The RT from *when* things happen in the window, not from how large they are.

    A temporal network (the press locator's dilated convolutions) writes ``n_heads``
    evidence traces over time; each trace is z-scored over the window, so its size and
    offset cannot move it, and read out as the expected time under a softmax (the press
    locator's read-out, the challenge's third and fifth entries' idea), with how peaked
    that softmax is. A linear head combines these times and peaks with the window's mean
    activity. It starts as the first trace's time alone.
    """

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 normalization: str = "train", n_heads: int = 4) -> None:
        super().__init__(n_chans, normalization)
        self.temporal = dilated_temporal(n_chans, n_filters, dropout)
        self.evidence = nn.Conv1d(n_filters, n_heads, kernel_size=1)
        # softmax sharpness on the z-scored traces, learned per head
        self.sharpness = nn.Parameter(torch.full((n_heads,), 3.0))
        self.register_buffer("step_times_s",
                             window_start_s + torch.arange(n_times, dtype=torch.float32)
                             / sfreq_hz)
        self.head = nn.Linear(2 * n_heads + n_filters, 1)
        with torch.no_grad():  # starts as the first head's time, in standardised units
            self.head.weight.zero_()
            self.head.weight[0, 0] = 1.0
            self.head.bias.zero_()

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        activity = self.temporal(self._scale_input(x))  # (B, F, T)
        traces = self.evidence(activity).float()  # (B, K, T)
        centred = traces - traces.mean(dim=-1, keepdim=True)
        z = centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-6)
        weights = torch.softmax(z * self.sharpness[:, None], dim=-1)
        times_s = (weights * self.step_times_s).sum(dim=-1)  # (B, K)
        times = (times_s - self.target_mean) / self.target_std
        peaks = weights.amax(dim=-1)  # (B, K): 1 / T when flat, 1 when certain
        return self.head(torch.cat([times, peaks, activity.float().mean(dim=-1)], dim=1))


class PressHybrid(_WithFeatures, PressLocator):
    """The press locator, corrected by the feature branch (the hybrid idea applied to it):
    the located press time plus a learned correction from the features."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 n_feature_hidden: int = 32, normalization: str = "train") -> None:
        super().__init__(n_chans, n_times, n_filters, dropout, sfreq_hz, window_start_s,
                         normalization)
        self.branch = FeatureBranch(sfreq_hz, window_start_s, dropout, n_feature_hidden)
        self.correction = nn.Linear(self.branch.n_out, 1)
        nn.init.zeros_(self.correction.weight)  # starts as the press locator alone
        nn.init.zeros_(self.correction.bias)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        located = super().standardized_output(x)
        return located + self.correction(self.branch(x, features))


class FeatureTrees(RTModel):
    """Gradient-boosted regression trees on the window's features (the challenge's
    fourth-placed entry stacked such trees): fitted by scikit-learn and turned into tensors
    by hummingbird-ml (``overnight.trees``), evaluated here with tensor operations alone, so
    the submission needs nothing but torch.

    The trees are flat tensors over all nodes: a window starts at each tree's root and, once
    per level, goes to the left child when its feature is at most the node's threshold, else
    to the right; a leaf is its own child, so ``max_depth`` steps reach every leaf. The RT is
    the sum of the leaves' values and the base prediction.
    """

    inputs = ("features",)

    def __init__(self, n_trees: int = 1, n_nodes: int = 1, max_depth: int = 1,
                 sfreq_hz: float = 100.0, window_start_s: float = 0.5, n_chans: int = 129,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)
        self.features = WindowFeatures(sfreq_hz, window_start_s)
        self.max_depth = max_depth
        total = n_trees * n_nodes
        self.register_buffer("roots", torch.arange(n_trees) * n_nodes)  # (n_trees,)
        self.register_buffer("node_feature", torch.zeros(total, dtype=torch.long))
        self.register_buffer("node_threshold", torch.zeros(total))
        # children as indices into every node, not into their tree
        self.register_buffer("node_left", torch.zeros(total, dtype=torch.long))
        self.register_buffer("node_right", torch.zeros(total, dtype=torch.long))
        self.register_buffer("node_value", torch.zeros(total))
        self.register_buffer("base_rt", torch.zeros(()))

    def leaf_values(self, features: torch.Tensor) -> torch.Tensor:
        """Each tree's answer, (B, n_trees) seconds, from features (B, F)."""
        values = torch.nan_to_num(features.float())
        node = self.roots.expand(values.shape[0], -1)  # (B, n_trees)
        for _ in range(self.max_depth):
            left = torch.gather(values, 1, self.node_feature[node]) <= self.node_threshold[node]
            node = torch.where(left, self.node_left[node], self.node_right[node])
        return self.node_value[node]

    def tree_rt(self, features: torch.Tensor) -> torch.Tensor:
        """The trees' RT in seconds, (B, 1), from features (B, F)."""
        return self.leaf_values(features).sum(dim=1, keepdim=True) + self.base_rt

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            features = self.features(x)  # (B, F), the twin of the Numba features
        return (self.tree_rt(features) - self.target_mean) / self.target_std


class ModelUnavailable(RuntimeError):
    """A model whose library cannot be imported here: the night records it as not run."""


class EEGNeXPeer(RTModel):
    """braindecode's EEGNeX, the challenge's reference model, as a peer row: its own
    architecture and defaults, inside the same safe input and output as every model.

    braindecode is optional (requirements-eegnex.txt): it imports torchaudio, which is built
    for one torch release only. The scorer's image has it.
    """

    extra_requirement = "braindecode"

    def __init__(self, n_chans: int = 129, n_times: int = 200, sfreq_hz: float = 100.0,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)
        eegnex = self.network_class()
        self.net = eegnex(n_chans=n_chans, n_outputs=1, n_times=n_times, sfreq=sfreq_hz)

    @staticmethod
    def network_class() -> type[nn.Module]:
        """braindecode's EEGNeX; ``ModelUnavailable`` says why it cannot be imported."""
        try:
            from braindecode.models import EEGNeX
        except Exception as exc:  # torchaudio's own import errors are OSErrors, not only
            raise ModelUnavailable(  # ImportErrors
                f"braindecode's EEGNeX cannot be imported ({type(exc).__name__}: {exc}); "
                "install requirements-eegnex.txt (make setup-eegnex) or use a container "
                "image") from exc
        return EEGNeX

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            cls.network_class()
        except ModelUnavailable as exc:
            return str(exc)
        return None

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self._scale_input(x))


class Ensemble(nn.Module):
    """The mean of several models of one kind (seeds of one training): one module, one
    weights file. Each member guards its own inputs and outputs, so the mean is safe too."""

    def __init__(self, members: list[RTModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([member(x, features) for member in self.members]).mean(dim=0)


class ConstantPredictor(nn.Module):
    """One number for every window, (B, 1): the answer for a challenge not trained for."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], 1).to(x.dtype)


MODELS: dict[str, type[RTModel]] = {"baseline": BaselineCNN, "hybrid": HybridCNN,
                                     "press": PressLocator, "press-hybrid": PressHybrid,
                                     "eegnex": EEGNeXPeer, "gbm": FeatureTrees,
                                     "timing": TimingNet}


def build_model(name: str, ensemble: int = 1, **model_args: float | str) -> nn.Module:
    """Instantiate a registered model by name; ``ensemble`` > 1: that many, averaged."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}: expected one of {sorted(MODELS)}")
    if ensemble > 1:
        return Ensemble([MODELS[name](**model_args) for _ in range(ensemble)])
    return MODELS[name](**model_args)
