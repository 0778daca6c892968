"""Stage features: per-window neuroscience features. ``spec`` defines them and computes them
in PyTorch (the submission runs it), ``kernels`` computes the same numbers with Numba, and
``cache`` owns the feature cache's schema and runs the stage."""
