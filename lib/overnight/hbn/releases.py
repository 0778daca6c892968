"""The public HBN-EEG releases and where they are kept (REFERENCE, "Getting the releases").

One owner for the names: which releases exist, the bucket, region and prefix of each
source, and the folder a release is kept in, which is eegdash 0.9.1's own layout
(``EEG2025r<n>[mini]`` for the challenge's copies, the dataset id for OpenNeuro's), so an
eegdash cache serves as ``DATA`` and ours serves eegdash. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# R12 was the challenge's hidden test set; R1..R11 are public.
RELEASES = tuple(f"R{n}" for n in range(1, 12))
# The 500 Hz EEGLAB originals on OpenNeuro (eegdash's RELEASE_TO_OPENNEURO_DATASET_MAP;
# ds005513 is not an HBN release).
OPENNEURO_DATASETS = {
    "R1": "ds005505", "R2": "ds005506", "R3": "ds005507", "R4": "ds005508",
    "R5": "ds005509", "R6": "ds005510", "R7": "ds005511", "R8": "ds005512",
    "R9": "ds005514", "R10": "ds005515", "R11": "ds005516",
}
# challenge: the 100 Hz BDF copies the challenge shipped (filtered 0.5-50 Hz);
# openneuro: the 500 Hz EEGLAB originals.
SOURCES = ("challenge", "openneuro")
_CHALLENGE_BUCKET, _CHALLENGE_REGION = "nmdatasets", "us-east-2"
_OPENNEURO_BUCKET, _OPENNEURO_REGION = "openneuro.org", "us-east-1"
_EEGDASH_FOLDER = "EEG2025r"  # eegdash 0.5+: <cache>/EEG2025r5, <cache>/EEG2025r5mini
# The release in a root's folder name: R1_L100(_bdf), R5_mini_L100, eegdash's
# EEG2025r5(mini), or an OpenNeuro dataset id (ds005509, eegdash 0.3-0.4's ds005509-bdf).
_RELEASE_IN_NAME = re.compile(rf"(?:(?<![A-Za-z0-9])R|{_EEGDASH_FOLDER})(\d{{1,2}})(?![0-9])")
_DATASET_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(ds\d{6})(?![0-9])")


@dataclass(frozen=True)
class ReleaseLocation:
    """Where one release is in its bucket, and the folder it is kept in locally."""

    release: str  # "R1".."R11"
    source: str  # one of SOURCES
    mini: bool  # the challenge's 20-subject copy
    bucket: str
    region: str  # the bucket's AWS region
    prefix: str  # every key of the release starts with it; ends with "/"
    folder: str  # the local folder's name, below the data folder

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``, for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def name(self) -> str:
        """``R5``, ``R5 mini`` or ``R5 (ds005509)``, for messages."""
        if self.source == "openneuro":
            return f"{self.release} ({OPENNEURO_DATASETS[self.release]})"
        return f"{self.release} mini" if self.mini else self.release


def locate_release(release: str, source: str = "challenge", mini: bool = False
                   ) -> ReleaseLocation:
    """The bucket, prefix and local folder of one release.

    Parameters
    ----------
    release : str
        ``"R1"`` .. ``"R11"``.
    source : str, default "challenge"
        ``"challenge"`` (100 Hz BDF, ``s3://nmdatasets/NeurIPS25/R<n>[_mini]_L100_bdf/``,
        kept in ``EEG2025r<n>[mini]``) or ``"openneuro"`` (the 500 Hz EEGLAB originals,
        ``s3://openneuro.org/ds0055xx/``, kept in ``ds0055xx``).
    mini : bool, default False
        The 20-subject copy (challenge only).

    Returns
    -------
    ReleaseLocation

    Raises
    ------
    TypeError
        ``release`` or ``source`` is not a str, or ``mini`` is not a bool.
    ValueError
        An unknown release or source, or ``mini`` with OpenNeuro (which has no mini copies).
    """
    for name, value, kind in (("release", release, str), ("source", source, str),
                              ("mini", mini, bool)):
        if not isinstance(value, kind):
            raise TypeError(f"{name}={value!r}: expected a {kind.__name__}")
    if release not in RELEASES:
        raise ValueError(f"release={release!r}: expected one of {', '.join(RELEASES)} "
                         "(R12 was the challenge's hidden test set)")
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: expected one of {', '.join(SOURCES)}")
    if source == "openneuro":
        if mini:
            raise ValueError("mini=True with source='openneuro': the mini releases exist "
                             "only in the challenge's copies (source='challenge')")
        dataset = OPENNEURO_DATASETS[release]
        return ReleaseLocation(release, source, mini, _OPENNEURO_BUCKET, _OPENNEURO_REGION,
                               f"{dataset}/", dataset)
    copy = f"{release}_mini_L100_bdf" if mini else f"{release}_L100_bdf"
    return ReleaseLocation(release, source, mini, _CHALLENGE_BUCKET, _CHALLENGE_REGION,
                           f"NeurIPS25/{copy}/",
                           f"{_EEGDASH_FOLDER}{release[1:]}{'mini' if mini else ''}")


def release_in_name(name: str) -> str:
    """The release a BIDS root's folder name names (``R5_L100_bdf``, ``EEG2025r5mini``,
    ``ds005509``, ``ds005509-bdf``: ``"R5"``), or ``""`` when it names none."""
    named = _RELEASE_IN_NAME.search(name)
    if named:
        return f"R{int(named.group(1))}"
    dataset = _DATASET_IN_NAME.search(name)
    by_dataset = {d: r for r, d in OPENNEURO_DATASETS.items()}
    return by_dataset.get(dataset.group(1), "") if dataset else ""
