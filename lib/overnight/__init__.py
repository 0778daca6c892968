"""overnight: an unattended nightly training pipeline for EEG response-time models.

One module per concern: ``synth`` (synthetic HBN data), ``data`` (window cache),
``features`` (Numba features), ``models``, ``training``, ``evaluation``,
``promotion`` (champion gate and submission), ``report``. Nothing runs at import.
"""

__version__ = "0.1.0"
