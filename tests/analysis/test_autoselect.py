"""The label-free --auto proposal (brainclust.analysis.autoselect) on planted candidates."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from brainclust.analysis.autoselect import DEFAULT, RULE, choose, decide, rank_factors, suggestion_for
from brainclust.errors import ParameterError


def blobs(seed, k=3, n=150, std=0.5):
    X, y = make_blobs(n_samples=n, centers=k, n_features=12, cluster_std=std, center_box=(-8, 8), random_state=seed)
    return X + 15, y


def test_a_candidate_that_wins_on_every_criterion_is_chosen():
    Xs, y = blobs(0)
    noise = np.random.default_rng(1).normal(size=(len(y), 12)) + 15
    dec = decide({DEFAULT: noise, "pixels": Xs}, 3, seed=0)
    assert dec.chosen == "pixels"
    assert adjusted_rand_score(y, dec.labels) > 0.95
    rows = {r["backbone"]: r for r in dec.rows}
    assert rows["pixels"]["chosen"] and not rows[DEFAULT]["chosen"]
    for c in ("xsil", "stability", "strength"):
        assert rows["pixels"][c] > rows[DEFAULT][c]
    rec = dec.as_dict()
    assert rec["chosen"] == {"backbone": "pixels", "reduce": "pca"} and rec["rule"] == RULE


def test_the_default_is_kept_without_a_clear_win():
    X, y = blobs(0)
    jitter = X + np.random.default_rng(2).normal(size=X.shape) * 0.05  # the same structure: no clear gain
    dec = decide({DEFAULT: X, "hog": jitter}, 3, seed=0)
    assert dec.chosen == DEFAULT


def test_choose_by_hand():
    base = {"backbone": DEFAULT, "stability": 0.8, "xsil": 0.20, "agreement": 0.5, "strength": 0.7}
    near = {"backbone": "a", "stability": 0.9, "xsil": 0.215, "agreement": 0.6, "strength": 0.9}  # xsil +0.015 only
    lower = {"backbone": "b", "stability": 0.95, "xsil": 0.30, "agreement": 0.6, "strength": 0.69}  # strength lower
    good = {"backbone": "c", "stability": 0.85, "xsil": 0.23, "agreement": 0.5, "strength": 0.75}
    assert choose([base, near, lower]) == DEFAULT
    assert choose([base, near, lower, good]) == "c"
    assert [r["chosen"] for r in (base, near, lower, good)] == [False, False, False, True]


def test_factors_are_ranked_and_a_dominant_one_is_suggested_not_applied():
    X, y = blobs(3)
    rng = np.random.default_rng(0)
    planes = np.asarray(["axial", "coronal", "sagittal"], dtype=object)[y]
    dec = decide({DEFAULT: X}, 3, seed=0, factors={"random": rng.integers(0, 3, len(y)), "plane": planes})
    assert [f["column"] for f in dec.factors] == ["plane", "random"]
    assert dec.factors[0]["ami"] > 0.9 and abs(dec.factors[1]["ami"]) < 0.1
    assert "--remove plane" in dec.suggestion and "--within plane" in dec.suggestion
    assert adjusted_rand_score(y, dec.labels) > 0.95  # the clusters themselves are not steered
    assert suggestion_for([{"column": "x", "ami": 0.3, "n_values": 2}]) is None
    assert rank_factors(dec.labels, {"constant": ["a"] * len(y)}) == []


def test_k_auto_uses_the_vote_and_records_prediction_strength_beside_it():
    X, _ = blobs(4, k=4, n=200)
    dec = decide({DEFAULT: X}, "auto", seed=0)
    assert dec.k == 4 == dec.k_selection["chosen_k"] == dec.k_selection["vote"]["chosen_k"]
    ps = dec.k_selection["prediction_strength"]
    assert ps["selector"] == "prediction_strength" and ps["chosen_k"] == 4 and ps["passed"]
    with pytest.raises(ParameterError, match="--k"):
        decide({DEFAULT: X}, 1, seed=0)
    with pytest.raises(ParameterError, match="default backbone"):
        decide({"pixels": X}, 3, seed=0)
