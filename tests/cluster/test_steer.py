"""--within and --remove (brainclust.cluster.steer) on planted data: a dominant nuisance hides the structure."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.methods import Clusterer
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.steer import (MISSING, FactorRemover, StratifiedClusterer, as_strata, check_categories,
                                     level_columns)
from brainclust.errors import ParameterError


def planted(seed=0, n_per=40, d=60, nuisance=8.0, signal=2.0, noise=0.4):
    """Images = nuisance (3 'planes', strong) + structure (2 groups, weaker, the same in every plane) + noise.

    The two factors are crossed: every (plane, group) cell holds ``n_per`` images. Features are
    positive-ish offsets from a common mean, as pooled CNN features are.
    """
    rng = np.random.default_rng(seed)
    planes = rng.normal(size=(3, d)) * nuisance / np.sqrt(d)
    groups = rng.normal(size=(2, d)) * signal / np.sqrt(d)
    base = np.full(d, 3.0)
    X, p, g = [], [], []
    for i in range(3):
        for j in range(2):
            X.append(base + planes[i] + groups[j] + rng.normal(size=(n_per, d)) * noise / np.sqrt(d))
            p += [f"plane{i}"] * n_per
            g += [j] * n_per
    return np.vstack(X), np.asarray(p, dtype=object), np.asarray(g)


def cluster(X, k, seed=0):
    return Clusterer(n_clusters=k, random_state=seed).fit(PCAReducer(20, random_state=seed).fit_transform(X)).labels_


def test_the_nuisance_dominates_a_plain_clustering():
    X, planes, groups = planted()
    lab = cluster(X, 3)
    assert adjusted_rand_score(planes, lab) > 0.9
    assert adjusted_rand_score(groups, cluster(X, 2)) < 0.2


@pytest.mark.parametrize("rule", ["center", "project"])
def test_removing_the_nuisance_recovers_the_structure(rule):
    X, planes, groups = planted()
    R = FactorRemover(rule).fit_transform(X, planes)
    assert adjusted_rand_score(groups, cluster(R, 2)) > 0.9
    assert adjusted_rand_score(planes, cluster(R, 3)) < 0.1


def test_center_gives_every_stratum_the_same_mean_and_keeps_within_stratum_differences():
    X, planes, _ = planted()
    m = FactorRemover("center").fit(X, planes)
    R = m.transform(X, planes)
    means = np.stack([R[planes == v].mean(0) for v in m.strata_])
    np.testing.assert_allclose(means, np.repeat(m.grand_mean_[None], 3, axis=0), atol=1e-12)
    a, b = np.flatnonzero(planes == "plane0")[:2]
    np.testing.assert_allclose(R[a] - R[b], X[a] - X[b], atol=1e-12)  # the features, not their unit rows


def test_a_column_that_says_nothing_leaves_the_features_almost_as_they_are():
    """Centring is on the features themselves: two strata drawn at random move each row by the small difference
    of their means. On unit rows (until 2026-12-07) the rescaling alone moved the clusters of a walk's set
    (NMI 0.461 -> 0.340 for a column of alternating values)."""
    X, _, _ = planted()
    X = X * np.random.default_rng(1).uniform(0.5, 2.0, (len(X), 1))  # rows of unequal length, as CNN features
    half = np.where(np.arange(len(X)) % 2, "a", "b")
    R = FactorRemover("center").fit(X, half).transform(X, half)  # ("project" takes out a whole direction)
    moved = np.linalg.norm(R - X, axis=1) / np.linalg.norm(X, axis=1)
    assert np.median(moved) < 0.1
    old = FactorRemover("center").fit(X, half)
    old.space_ = "unit"  # a model saved before: its means were of unit rows, and so are the rows it moves
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    old.means_, old.grand_mean_ = np.stack([U[half == v].mean(0) for v in old.strata_]), U.mean(0)
    assert np.allclose(np.linalg.norm(old.transform(X, half), axis=1), 1, atol=0.2)


def test_project_removes_exactly_the_stratum_mean_directions():
    X, planes, _ = planted()
    m = FactorRemover("project").fit(X, planes)
    assert m.directions_.shape[0] == 2  # 3 strata span 2 directions
    np.testing.assert_allclose(m.directions_ @ m.directions_.T, np.eye(2), atol=1e-10)
    R = m.transform(X)
    np.testing.assert_allclose((R - m.grand_mean_) @ m.directions_.T, 0.0, atol=1e-10)


def test_remover_predicts_the_stratum_of_new_images():
    X, planes, groups = planted(seed=0)
    Xn, planes_n, _ = planted(seed=0, n_per=5)  # same planes and groups (same seed), new noise
    m = FactorRemover("center").fit(X, planes)
    assert (m.predict_strata(Xn) == planes_n).all()
    np.testing.assert_allclose(m.transform(Xn), m.transform(Xn, planes_n))


def test_within_gives_unique_global_ids_and_finds_the_groups_in_every_stratum():
    X, planes, groups = planted()
    w = StratifiedClusterer(n_clusters=2, pca=20, random_state=0).fit(X, planes)
    assert w.n_clusters_ == 6 and sorted(set(w.labels_.tolist())) == list(range(6))
    assert w.cluster_stratum_ == ["plane0", "plane0", "plane1", "plane1", "plane2", "plane2"]
    for v in w.strata_:
        rows = planes == v
        assert set(w.labels_[rows].tolist()) == {w.offsets_[v], w.offsets_[v] + 1}  # ids never shared across strata
        assert adjusted_rand_score(groups[rows], w.local_labels_[rows]) > 0.9
    assert (w.stratum_ == planes).all()


def test_within_predict_on_new_images_known_or_predicted_strata():
    X, planes, groups = planted(seed=0)
    Xn, planes_n, groups_n = planted(seed=0, n_per=6)
    w = StratifiedClusterer(n_clusters=2, pca=20, random_state=0).fit(X, planes)
    known, guessed = w.predict(Xn, planes_n), w.predict(Xn)
    assert (known == guessed).all()
    for v in w.strata_:  # each new image lands in its own stratum's clusters, in the right group
        rows = planes_n == v
        assert set(known[rows].tolist()) <= {w.offsets_[v], w.offsets_[v] + 1}
        assert adjusted_rand_score(groups_n[rows], known[rows]) > 0.9
    own = w.predict(X, planes)
    assert adjusted_rand_score(own, w.labels_) > 0.9
    with pytest.raises(ParameterError, match="stratum 'plane9' was not in the fitted images"):
        w.predict(Xn[:1], ["plane9"])


def test_within_k_per_stratum_mapping_and_auto(caplog):
    X, planes, _ = planted()
    w = StratifiedClusterer(n_clusters={"plane0": 1, "plane1": 2, "plane2": 3}, pca=20).fit(X, planes)
    assert w.k_ == {"plane0": 1, "plane1": 2, "plane2": 3} and w.n_clusters_ == 6
    with caplog.at_level("INFO", logger="brainclust"):
        a = StratifiedClusterer(n_clusters="auto", pca=20).fit(X, planes)
    assert a.k_ == {"plane0": 2, "plane1": 2, "plane2": 2}
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--k auto")]
    assert [m.split(":")[0] for m in said] == [f"--k auto (hierarchical, stratum plane{i})" for i in range(3)]
    assert set(a.k_selection_) == {"plane0", "plane1", "plane2"}
    with pytest.raises(ParameterError, match="no k given for stratum 'plane1'"):
        StratifiedClusterer(n_clusters={"plane0": 2}).fit(X, planes)


def test_within_k_auto_compares_k_in_small_strata_as_a_run_does():
    """--within COL --k auto on strata of 4-7 rows (five volumes per site in a unit run) made every stratum one
    cluster, said nowhere: the vote ran from 8 rows only, while a run without --within compares k = 2..n-1 from 3."""
    rng = np.random.default_rng(0)
    X, s = [], []
    for v in range(5):  # 5 strata of 5 rows, each two clear groups (2 + 3)
        base = rng.normal(size=32)
        X += [base + (6 if j < 2 else -6) * np.eye(32)[v] + 0.1 * rng.normal(size=32) for j in range(5)]
        s += [f"site{v}"] * 5
    w = StratifiedClusterer(n_clusters="auto", pca=None, random_state=0).fit(np.array(X), np.array(s, dtype=object))
    assert w.k_ == {f"site{v}": 2 for v in range(5)} and w.n_clusters_ == 10
    assert all(sel["ks"] == [2, 3, 4] for sel in w.k_selection_.values())


def test_within_k_auto_at_the_largest_k_points_to_within_k_selection(caplog):
    """A stratum's k at the edge of the range warned 'look at their curves (metrics.json k_selection, the report)':
    a --within run has no k_selection there, its curves are in within.k_selection (the walk of 2026-12-07)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16)) * 10  # 20 separated blobs in each stratum: more than k = 2..15
    X = centres[np.arange(160) % 20] + 0.05 * rng.normal(size=(160, 16))
    strata = np.array(["s0"] * 80 + ["s1"] * 80, dtype=object)
    with caplog.at_level("WARNING", logger="brainclust"):
        StratifiedClusterer(n_clusters="auto", pca=None, random_state=0).fit(X, strata)
    said = [r.getMessage() for r in caplog.records if "largest k tried" in r.getMessage()]
    assert said and all("(metrics.json within.k_selection, the report)" in m for m in said)


def test_columns_from_metadata_and_tree_levels():
    X, planes, _ = planted()
    cl = Clusterer(n_clusters=3, random_state=0).fit(PCAReducer(20, random_state=0).fit_transform(X))
    table = {"sequence": ["T1"] * (len(X) - 2) + ["", None], **level_columns(cl.levels_)}
    assert sorted(table) == sorted(["sequence"] + [f"level_{i}" for i in range(1, 11)])
    seq = as_strata(table["sequence"])
    assert seq[-1] == MISSING and seq[-2] == MISSING and seq[0] == "T1"
    lvl = as_strata(table["level_3"])
    assert adjusted_rand_score(planes, lvl) > 0.9  # the first pass's top level is the nuisance
    assert list(as_strata([1.0, 2, "x", float("nan")])) == ["1", "2", "x", MISSING]


def test_fit_needs_strata_of_the_right_length():
    X, planes, _ = planted()
    with pytest.raises(ParameterError, match="--within: 3 strata for 240 images"):
        StratifiedClusterer().fit(X, planes[:3])
    with pytest.raises(ParameterError, match="--remove: fit needs the strata"):
        FactorRemover().fit(X)
    with pytest.raises(ParameterError, match="--remove rule"):
        FactorRemover("subtract").fit(X, planes)


def test_within_levels_are_global_and_nested_per_stratum():
    X, planes, groups = planted()
    w = StratifiedClusterer(n_clusters=2, pca=20, random_state=0).fit(X, planes)
    assert w.levels_.shape == (len(X), 10)
    assert len(set(w.levels_[:, 0].tolist())) == 3  # level 1: one cluster per stratum
    np.testing.assert_array_equal(w.levels_[:, 1], w.labels_)  # level 2 = the 2-cluster cut of every stratum
    for L in range(1, 10):  # each level refines the one above, never across strata
        for c in set(w.levels_[:, L].tolist()):
            assert len(set(w.levels_[w.levels_[:, L] == c, L - 1].tolist())) == 1
            assert len(set(planes[w.levels_[:, L] == c].tolist())) == 1


def test_within_refuses_a_measurement_and_warns_once_for_small_strata(caplog):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 6))
    with pytest.raises(ParameterError, match="choose a column of categories"):
        StratifiedClusterer("hierarchical", 2, None, 0).fit(X, [f"{v:.3f}" for v in X[:, 0]])  # 24 values
    strata = ["a"] * 20 + ["b", "c", "d", "d"]  # three strata below 4 images
    with caplog.at_level("WARNING", logger="brainclust"):
        m = StratifiedClusterer("hierarchical", 5, None, 0).fit(X, strata)
    small = [r for r in caplog.records if "fewer than 4 images" in r.getMessage()]
    assert len(small) == 1 and "b, c, d" in small[0].getMessage()
    assert m.k_ == {"a": 5, "b": 1, "c": 1, "d": 1}


def test_within_names_the_strata_where_k_makes_every_image_its_own_cluster(caplog):
    X = np.random.default_rng(2).normal(size=(20, 6))
    strata = ["a"] * 4 + ["b"] * 4 + ["c"] * 12  # k = 4: a and b become one image per cluster, c does not
    with caplog.at_level("WARNING", logger="brainclust"):
        m = StratifiedClusterer("hierarchical", 4, None, 0).fit(X, strata)
    said = [r.getMessage() for r in caplog.records if "its own cluster" in r.getMessage()]
    assert said == ["--within: --k is at least the number of (distinct) images of 2 strata, so each of "
                    "their images is its own cluster: a, b"]
    assert m.k_ == {"a": 4, "b": 4, "c": 4}


def test_a_stratum_of_copies_is_one_cluster_and_copies_are_never_split(caplog):
    """Five copies of one image in a stratum ended the whole run ("all 5 images have identical features"; a probe's
    find); now that stratum is one cluster, and a stratum of 3 distinct vectors gets at most 3 clusters."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(12, 6)), np.repeat(rng.normal(size=(1, 6)), 5, 0),
                   np.repeat(rng.normal(size=(3, 6)), 4, 0)])
    strata = ["a"] * 12 + ["d"] * 5 + ["t"] * 12
    with caplog.at_level("WARNING", logger="brainclust"):
        m = StratifiedClusterer("hierarchical", 4, None, 0).fit(X, strata)
    assert m.k_ == {"a": 4, "d": 1, "t": 3}
    same = [r.getMessage() for r in caplog.records if "the same features" in r.getMessage()]
    assert same == ["--within: in 1 stratum every image has the same features (copies, or blank images), "
                    "each one cluster: d"]
    t = m.labels_[17:]
    assert [len(set(t[i:i + 4])) for i in (0, 4, 8)] == [1, 1, 1] and len(set(t)) == 3  # copies stay together
    np.testing.assert_array_equal(m.predict(X, strata), m.labels_)


def test_within_says_once_that_the_pca_is_capped_in_small_strata(caplog):
    X = np.random.default_rng(1).normal(size=(40, 30))
    strata = ["a"] * 12 + ["b"] * 8 + ["c"] * 20
    with caplog.at_level("WARNING", logger="brainclust"):
        m = StratifiedClusterer("hierarchical", 2, 15, 0).fit(X, strata)
    said = [r.getMessage() for r in caplog.records if "--pca" in r.getMessage()]
    assert said == ["--within: --pca 15 is more than the images of 2 strata (8 to 12 images) allow; "
                    "using 8 to 12 in 2 strata"]
    assert {v: m.models_[v][0].n_components_ for v in "abc"} == {"a": 12, "b": 8, "c": 15}


def _pca_lines(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if "--pca" in r.getMessage()]


def test_within_names_the_features_when_they_limit_the_pca_not_the_images(caplog):
    """--backbone histogram gives 32 features: the strata of 60 images are limited by the features, and the
    default --pca 50 (not the user's choice) is capped quietly (a debug line), a given one with a warning."""
    X = np.random.default_rng(2).normal(size=(120, 32))
    strata = ["a"] * 60 + ["b"] * 60
    with caplog.at_level("DEBUG", logger="brainclust"):
        m = StratifiedClusterer("hierarchical", 2, 50, 0).fit(X, strata)
    assert _pca_lines(caplog) == [("DEBUG", "--within: --pca 50 is more than the 32 features allow; using 32 in "
                                            "2 strata")]
    assert {v: m.models_[v][0].n_components_ for v in "ab"} == {"a": 32, "b": 32}
    caplog.clear()
    with caplog.at_level("DEBUG", logger="brainclust"):
        StratifiedClusterer("hierarchical", 2, 50, 0, warn_cap=True).fit(X, strata)
        StratifiedClusterer("hierarchical", 2, 40, 0).fit(X[:70], strata[:70])  # a: 60 rows, b: 10 rows
    assert _pca_lines(caplog) == [
        ("WARNING", "--within: --pca 50 is more than the 32 features allow; using 32 in 2 strata"),
        ("WARNING", "--within: --pca 40 is more than the 32 features (1 stratum) and the images of 1 stratum "
                    "(10 images) allow; using 10 to 32 in 2 strata")]


@pytest.mark.parametrize("column, proposed", [("site", "(a plane, a sequence, level_N)"),
                                              ("level_3", "(a site, a plane, a sequence)"),
                                              ("scanner", "(a site, a plane, a sequence, level_N)")])
def test_a_refused_column_is_not_proposed_again(column, proposed):
    """A walk: '--within site' on 5 FLAIR volumes of 5 sites was told to choose a column such as 'a site'."""
    with pytest.raises(ParameterError) as err:
        check_categories(["a", "b", "c", "d", "e"], "--within", column)
    assert f"choose a column of categories with fewer values {proposed}, not a measurement" in str(err.value)
