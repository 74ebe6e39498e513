"""The flag vocabulary and thresholds: one declaration, validated."""

from __future__ import annotations

import pytest

from brainclust.checks.flags import FLAGS, Thresholds, join_flags, parse_flags, split_flags
from brainclust.errors import ParameterError


def test_the_vocabulary_is_fixed():
    assert FLAGS == ("duplicate", "near_duplicate", "not_mri", "blank", "noise", "tiny", "non_image_dicom", "outlier")


@pytest.mark.parametrize("kwargs, word", [({"min_side": 0}, "min_side"),
                                          ({"blank_mode_fraction": 1.5}, "blank_mode_fraction"),
                                          ({"near_similarity": 0.0}, "near_similarity"),
                                          ({"outlier_k": 2.5}, "outlier_k"),
                                          ({"colourfulness": float("nan")}, "colourfulness"),
                                          ({"exact_max": True}, "exact_max")])
def test_bad_thresholds_are_refused_with_their_name(kwargs, word):
    with pytest.raises(ParameterError, match=word):
        Thresholds(**kwargs)


def test_thresholds_parse_from_text_over_the_defaults():
    t = Thresholds.from_text("min_side=16, near_similarity=0.97")
    assert t.min_side == 16 and t.near_similarity == 0.97 and t.blank_mode_fraction == Thresholds().blank_mode_fraction
    with pytest.raises(ParameterError, match="nope"):
        Thresholds.from_text("nope=1")
    with pytest.raises(ParameterError, match="min_side must be a number"):
        Thresholds.from_text("min_side=abc")


def test_exclude_flags_parse_and_refuse_unknown_names():
    assert parse_flags("duplicate, not_mri,blank") == {"duplicate", "not_mri", "blank"}
    assert parse_flags(None) == frozenset() and parse_flags("none") == frozenset()
    with pytest.raises(ParameterError, match="--exclude: unknown flag 'dupes'"):
        parse_flags("dupes")


def test_flags_cell_is_in_vocabulary_order_and_round_trips():
    cell = join_flags({"outlier", "duplicate", "not_mri"})
    assert cell == "duplicate;not_mri;outlier"
    assert split_flags(cell) == {"outlier", "duplicate", "not_mri"}
    assert join_flags(set()) == "" and split_flags("") == frozenset()
