"""Fitting the registered models, one concern per module, in the order a training uses them:

- ``fit``: ``train_model``, which fits any registered model as its declaration says
  (``gradients``: the loop; ``trees``: ``trees``), or records why it cannot run here;
- ``device``: where training runs, in which precision, how many windows fit there;
- ``data``: the split's sides served to the device, and the standardisation they give;
- ``augment``: what a training batch looks like to the model;
- ``loop``: the training loop, early stopping on the tune subjects, the refit;
- ``ensemble``: several seeds shipped as their mean;
- ``checkpoint``: the self-describing checkpoint, resume, the weights that ship;
- ``trees``: gradient-boosted trees, fitted by scikit-learn, shipped as torch tensors.

This package file imports nothing; ask the modules.
"""
