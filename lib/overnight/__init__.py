"""overnight: an unattended nightly training pipeline for EEG response-time models.

The data flows down the chain, one sub-package per stage:

- ``hbn``: the HBN CCD data (montage, BIDS layout, events and trial logic, synthetic data);
- ``windows``: recordings -> the window cache and the subject split (stage windows);
- ``features``: the feature spec, its Numba kernels and the feature cache (stage features);
- ``models``, ``training``, ``evaluation``: the networks, how they train, how they score;
- ``champion``: the gate, the submission, the champion record, rollback (stage compare);
- ``report``: the morning report (stage report);
- ``night``: the host side (driver, stage runner, status, preflight, docker), stdlib only.

Shared by all: ``layout`` (the night folder and the stage list), ``config`` (every setting),
``units``, ``checks``, ``atomic``, ``provenance`` and ``cli``. Nothing runs at import.
"""

__version__ = "0.1.0"
