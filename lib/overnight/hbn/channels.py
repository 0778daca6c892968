"""The HBN montage: 129 channels ``E1..E128`` plus ``Cz`` (E129, the recording reference).

10-20 equivalents follow ../shared/REFERENCE.md (HydroCel GSN 129).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the host side (the night driver) imports this module without numpy
    import numpy as np

N_CHANS = 129
CH_NAMES: tuple[str, ...] = (*(f"E{i}" for i in range(1, 129)), "Cz")
REFERENCE_CHANNEL = "Cz"  # the recording reference (EEGReference), often flat
MONTAGE_NAME = "GSN-HydroCel-129"

TEN_TWENTY: dict[str, str] = {
    "Fz": "E11", "FCz": "E6", "Cz": "Cz", "CPz": "E55", "Pz": "E62", "P3": "E52",
    "P4": "E92", "Oz": "E75", "O1": "E70", "O2": "E83", "C3": "E36", "C4": "E104",
    "CP1": "E37", "CP2": "E87",
}

# Frontal channels where blinks are largest (around Fp1/Fp2 on the HydroCel net).
FRONTAL_POLE: tuple[str, ...] = ("E22", "E9", "E14", "E21", "E15", "E18", "E10")


def index_of(name: str) -> int:
    """Index in ``CH_NAMES`` of a net name (``E55``) or a 10-20 name (``CPz``)."""
    net_name = TEN_TWENTY.get(name, name)
    try:
        return CH_NAMES.index(net_name)
    except ValueError:
        raise ValueError(
            f"unknown channel {name!r}: expected E1..E128, Cz or one of {sorted(TEN_TWENTY)}"
        ) from None


@functools.lru_cache(maxsize=1)
def positions_m() -> np.ndarray:
    """(N_CHANS, 3) electrode positions of the HydroCel 129 net (MNE's standard montage),
    metres, CH_NAMES order."""
    import mne
    import numpy as np

    ch_pos = mne.channels.make_standard_montage(MONTAGE_NAME).get_positions()["ch_pos"]
    return np.array([ch_pos[name] for name in CH_NAMES])
