"""The feature trees as tensors (their fitting: tests/training/test_trees.py)."""

import torch

from overnight.models.registry import find_model

CASE = {"n_trees": 3, "n_nodes": 5, "max_depth": 2}


def test_a_window_walks_each_tree_to_a_leaf():
    # one tree: the root splits feature 0 at 0.5; left leaf 1.0, right leaf 2.0
    model = find_model("gbm").build(n_trees=1, n_nodes=3, max_depth=1)
    model.set_standardization({"node_feature": torch.tensor([0, 0, 0]),
                               "node_threshold": torch.tensor([0.5, 0.0, 0.0]),
                               "node_left": torch.tensor([1, 1, 2]),
                               "node_right": torch.tensor([2, 1, 2]),
                               "node_value": torch.tensor([0.0, 1.0, 2.0]),
                               "base_rt": torch.tensor(0.25)})
    features = torch.tensor([[0.2], [0.9]]).expand(-1, 4)
    torch.testing.assert_close(model.tree_rt(features), torch.tensor([[1.25], [2.25]]))
