"""The response-time models, one per file, and the registry built from those files.

- ``declaration``: ``@register("name", inputs=..., fit=..., searched=...)``, what a model is;
- ``base``: ``RTModel``, the base class (input and output guards, scaling, the loss);
- ``backbones``, ``feature_branch``, ``ensemble``: the parts several models share;
- ``baseline``, ``hybrid``, ``press``, ``press_hybrid``, ``timing``, ``gbm``,
  ``eegnex``: the built-in models, one per file;
- ``catalog``: every declaration, read from the source without torch (the host side);
- ``registry``: the model classes themselves, imported from the same files.

A model of your own is one more file that subclasses ``RTModel`` and carries ``@register``,
named by ``[night] extra_models`` (docs/models.md). This package file imports nothing, so the
host side can read the catalog without torch.
"""
