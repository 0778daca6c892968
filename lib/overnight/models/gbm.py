"""Gradient-boosted trees on the window's features, as tensors torch walks."""

from __future__ import annotations

import torch

from overnight.features.spec import WindowFeatures
from overnight.models.base import RTModel, register


@register("gbm", inputs=("features",), fit="trees")
class FeatureTrees(RTModel):
    """Gradient-boosted regression trees on the window's features (the challenge's
    fourth-placed entry stacked such trees): fitted by scikit-learn and turned into tensors
    by hummingbird-ml (``overnight.training.trees``), evaluated here with tensor operations
    alone, so the submission needs nothing but torch.

    The trees are flat tensors over all nodes: a window starts at each tree's root and, once
    per level, goes to the left child when its feature is at most the node's threshold, else
    to the right; a leaf is its own child, so ``max_depth`` steps reach every leaf. The RT is
    the sum of the leaves' values and the base prediction.
    """

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

    def own_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.neutralize(x))

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            features = self.features(x)  # (B, F), the twin of the Numba features
        return (self.tree_rt(features) - self.target_mean) / self.target_std
