"""--k auto: the majority vote of silhouette, Calinski-Harabasz, Davies-Bouldin and the gap statistic."""

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from brainclust.cli import main
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import ParameterError
from brainclust.cluster.kselect import INDICES, KSelector, vote


@pytest.mark.parametrize("true_k", [3, 5])
@pytest.mark.parametrize("method", ["hierarchical", "kmeans"])
@pytest.mark.parametrize("seed", [0, 1])
def test_finds_the_true_k_of_well_separated_blobs(true_k, method, seed):
    X, _ = make_blobs(n_samples=30 * true_k, centers=true_k, n_features=8, cluster_std=1.0, center_box=(-10, 10),
                      random_state=seed)
    sel = KSelector(method=method, random_state=seed, k_max=10, n_references=5).fit(X)
    assert sel.k_ == true_k
    assert sel.ks_ == list(range(2, 11))
    assert all(len(sel.curves_[name]) == len(sel.ks_) for name in INDICES)


def test_gmm_and_spectral_also_find_k_on_blobs():
    X, _ = make_blobs(n_samples=90, centers=3, n_features=6, cluster_std=0.8, random_state=3)
    for method in ("gmm", "spectral"):
        assert KSelector(method=method, random_state=0, k_max=6, n_references=3).fit(X).k_ == 3


def test_majority_then_silhouette_breaks_ties():
    ks = [2, 3, 4, 5]
    sil = [0.1, 0.3, 0.2, 0.25]
    assert vote(ks, {"a": 4, "b": 4, "c": 4, "d": 3}, sil) == 4            # majority wins over silhouette
    assert vote(ks, {"a": 2, "b": 2, "c": 5, "d": 5}, sil) == 5            # 2-2 tie: higher silhouette (0.25 > 0.1)
    assert vote(ks, {"a": 2, "b": 3, "c": 4, "d": 5}, sil) == 3            # all differ: best silhouette
    assert vote(ks, {"a": 2, "b": 4, "c": None, "d": None}, [0.5, 0.1, 0.5, 0.1]) == 2  # equal silhouettes: smallest k


def test_record_is_json_ready_and_consistent():
    X, _ = make_blobs(n_samples=12, centers=3, n_features=4, random_state=0)
    sel = KSelector(random_state=0, n_references=3).fit(X)
    rec = json.loads(json.dumps(sel.as_dict()))
    assert rec["ks"] == list(range(2, 12))                                  # k_max capped at n - 1
    assert rec["chosen_k"] == sel.k_
    assert sum(rec["vote_counts"].values()) == 4
    assert rec["vote_counts"][str(sel.k_)] == max(rec["vote_counts"].values())
    assert {name: v["vote"] for name, v in rec["indices"].items()} == sel.votes_
    # every vote is the best point of its curve (gap: the one-standard-error rule)
    sil = rec["indices"]["silhouette"]["curve"]
    assert rec["indices"]["silhouette"]["vote"] == rec["ks"][int(np.argmax(sil))]
    db = rec["indices"]["davies_bouldin"]["curve"]
    assert rec["indices"]["davies_bouldin"]["vote"] == rec["ks"][int(np.argmin(db))]


def test_hierarchical_partitions_come_from_one_tree():
    X, _ = make_blobs(n_samples=40, centers=4, n_features=5, random_state=2)
    sel = KSelector(random_state=0, k_max=6, n_references=2).fit(X)
    # cuts of one tree are nested: every cluster at k+1 lies inside one cluster at k
    for k in sel.ks_[:-1]:
        coarse, fine = sel.labels_[k], sel.labels_[k + 1]
        assert all(len(set(coarse[fine == c])) == 1 for c in np.unique(fine))


def test_rejects_dbscan_and_too_few_points():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ParameterError, match="dbscan"):
        KSelector(method="dbscan").fit(X)
    with pytest.raises(ParameterError, match="at least 3 images"):
        KSelector().fit(X[:2])
    with pytest.raises(ParameterError, match="k_min"):
        KSelector(k_min=1).fit(X)


def test_three_rows_leave_one_k_and_say_so(caplog):
    """Three rows (three subjects of a unit run) allow k = 2 only: the vote had nothing to choose, said once."""
    X = np.random.default_rng(0).normal(size=(10, 3))
    with caplog.at_level("WARNING", logger="brainclust"):
        assert KSelector(random_state=0, n_references=2).fit(X[:3]).k_ == 2
        KSelector(random_state=0, n_references=2, k_max=2).fit(X)  # one k asked for: nothing to say
    said = [r.getMessage() for r in caplog.records if "nothing was chosen" in r.getMessage()]
    assert said == ["--k auto: only k = 2 is possible with 3 rows: nothing was chosen"]


@pytest.mark.slow
def test_cli_k_auto_finds_the_three_planes_of_the_demo_set(tmp_path, capsys):
    # the demo's default size (40 images per plane); at 15 per plane the vote is 2 (see README "Choosing k")
    data = make_demo_dataset(tmp_path / "data", n_per_class=40)
    rc = main(["-q", "run", str(data), "--out", str(tmp_path / "out"), "--k", "auto", "--labels-from-folders",
               "--backbone", "efficientnet_lite0", "--no-report", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    sel = m["k_selection"]
    assert set(sel["indices"]) == set(INDICES)
    assert sel["ks"] == list(range(2, 16))
    assert all(len(v["curve"]) == 14 for v in sel["indices"].values())
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["clustering"]["k"] == sel["chosen_k"] and man["clustering"]["k_requested"] == "auto"
    assert f"k = {sel['chosen_k']}" in capsys.readouterr().out
    assert m["n_clusters"] == sel["chosen_k"] == 3
    # the saved model predicts with the chosen k (features come from the cache)
    assert main(["-q", "predict", str(tmp_path / "out"), str(data), "--out", str(tmp_path / "pred"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    pred = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    assert pred["n_clusters"] == 3


def test_k_auto_with_self_supervision_is_refused():
    from brainclust.pipeline import RunConfig

    with pytest.raises(ParameterError, match="'auto' cannot be combined"):
        RunConfig(k="auto", ssl=("contrastive",)).validate()


def test_cli_rejects_a_bad_k(capsys):
    with pytest.raises(SystemExit):
        main(["run", "x", "--out", "y", "--k", "many"])
    assert "positive integer or 'auto'" in capsys.readouterr().err


def test_a_choice_at_the_largest_k_tried_is_warned(caplog):
    """Eight separated blobs searched over 2..5: the indices keep improving up to the edge of the range."""
    import logging

    X, _ = make_blobs(n_samples=160, centers=8, n_features=8, cluster_std=0.5, center_box=(-20, 20), random_state=0)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        sel = KSelector(method="kmeans", random_state=0, k_max=5, n_references=3).fit(X)
    assert sel.k_ == 5 and "k = 5 is the largest k tried (2..5)" in caplog.text
    caplog.clear()
    X, _ = make_blobs(n_samples=90, centers=3, n_features=8, cluster_std=1.0, center_box=(-10, 10), random_state=0)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        assert KSelector(method="kmeans", random_state=0, k_max=6, n_references=3).fit(X).k_ == 3
    assert "largest k tried" not in caplog.text


def test_spectral_tries_only_the_k_it_can_fit():
    """Spectral needs k + 2 rows: --k auto tried k up to rows - 1 and stopped the run on any set (or --within
    stratum) of fewer than 17 images (a probe's find); it now tries k up to rows - 2."""
    X = np.random.default_rng(0).normal(size=(10, 3))
    sel = KSelector(method="spectral", random_state=0, n_references=2).fit(X)
    assert sel.ks_ == list(range(2, 9)) and 2 <= sel.k_ <= 8
    with pytest.raises(ParameterError, match=r"spectral needs at least k \+ 2 = 4 images to try k = 2, got 3"):
        KSelector(method="spectral").fit(X[:3])
