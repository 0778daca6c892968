"""The releases, their buckets and folders: eegdash 0.9.1's names (REFERENCE, "Getting the
releases")."""

from __future__ import annotations

import pytest

from overnight.hbn.releases import (
    OPENNEURO_DATASETS,
    RELEASES,
    SOURCES,
    locate_release,
    release_in_name,
)


def test_the_challenge_copies_and_the_originals_are_where_eegdash_finds_them() -> None:
    r5 = locate_release("R5")
    assert (r5.bucket, r5.region, r5.prefix, r5.folder) == (
        "nmdatasets", "us-east-2", "NeurIPS25/R5_L100_bdf/", "EEG2025r5")
    assert r5.url == "s3://nmdatasets/NeurIPS25/R5_L100_bdf/" and r5.name == "R5"
    mini = locate_release("R11", mini=True)
    assert (mini.prefix, mini.folder, mini.name) == (
        "NeurIPS25/R11_mini_L100_bdf/", "EEG2025r11mini", "R11 mini")
    original = locate_release("R9", source="openneuro")
    assert (original.bucket, original.prefix, original.folder, original.name) == (
        "openneuro.org", "ds005514/", "ds005514", "R9 (ds005514)")
    assert RELEASES == ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11")
    assert [OPENNEURO_DATASETS[r] for r in RELEASES] == [
        "ds005505", "ds005506", "ds005507", "ds005508", "ds005509", "ds005510", "ds005511",
        "ds005512", "ds005514", "ds005515", "ds005516"]  # ds005513 is not HBN


@pytest.mark.parametrize(("source", "mini"), [(SOURCES[0], False), (SOURCES[0], True),
                                              (SOURCES[1], False)])  # no OpenNeuro minis
def test_every_folder_names_its_release_for_the_window_stage(source: str, mini: bool) -> None:
    for release in RELEASES:
        assert release_in_name(locate_release(release, source, mini).folder) == release


@pytest.mark.parametrize(("args", "error", "match"), [
    (("R12",), ValueError, r"release='R12': expected one of R1, R2, .*R11 \(R12 was the "
                           "challenge's hidden test set\\)"),
    (("r5",), ValueError, "release='r5': expected one of R1"),
    (("R5", "nemar"), ValueError, "source='nemar': expected one of challenge, openneuro"),
    (("R5", "openneuro", True), ValueError, "the mini releases exist only in the "
                                            "challenge's copies"),
    ((5,), TypeError, "release=5: expected a str"),
    (("R5", "challenge", 1), TypeError, "mini=1: expected a bool"),
])
def test_a_bad_release_names_what_is_allowed(args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        locate_release(*args)
