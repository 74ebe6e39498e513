"""--auto: label-free choice on precomputed candidate features (no real backbone needed)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from brainclust.analysis.autoconfig import choose, select


def planted(seed=0, n_per=40, dim=30):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, dim)) * 5 + 10
    return np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centres]), np.repeat(np.arange(3), n_per)


def noise(n=120, dim=30, seed=1):
    return np.random.default_rng(seed).normal(size=(n, dim)) + 10


def test_auto_leaves_a_noise_default_for_the_planted_structure():
    X, y = planted()
    res = select({"efficientnet_lite0": noise(), "good": X}, k=3, seed=0, labels_true=y.astype(str),
                 reductions=("pca",), pca=10)
    assert res.chosen == ("good", "pca")
    chosen = [r for r in res.rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["nmi"] > 0.9  # reported only


def test_auto_keeps_the_default_when_it_holds_the_structure():
    X, y = planted()
    res = select({"efficientnet_lite0": X, "noise": noise()}, k=3, seed=0, reductions=("pca",), pca=10)
    assert res.chosen == ("efficientnet_lite0", "pca")
    assert all("nmi" not in r for r in res.rows)  # no labels given, none used


def test_labels_never_change_the_choice():
    X, y = planted()
    feats = {"efficientnet_lite0": noise(), "good": X, "other": noise(seed=3)}
    a = select(feats, k=3, seed=0, reductions=("pca",), pca=10)
    b = select(feats, k=3, seed=0, labels_true=np.zeros(120).astype(str), reductions=("pca",), pca=10)
    assert a.chosen == b.chosen


@pytest.mark.slow
def test_auto_is_deterministic_under_a_seed_with_umap():
    pytest.importorskip("umap")
    X, _ = planted()
    feats = {"efficientnet_lite0": X, "noise": noise()}
    a = select(feats, k=3, seed=7, pca=10)
    b = select(feats, k=3, seed=7, pca=10)
    key = lambda rows: [(r["backbone"], r["reduce"], r["stability"], r["xsil"], r["agreement"]) for r in rows]  # noqa
    assert key(a.rows) == key(b.rows) and a.chosen == b.chosen
    assert {r["reduce"] for r in a.rows} == {"pca", "pca+umap"}


def test_choose_needs_every_margin():
    base = {"backbone": "efficientnet_lite0", "reduce": "pca", "stability": 0.7, "xsil": 0.10, "agreement": 0.5}
    almost = {"backbone": "x", "reduce": "pca", "stability": 0.9, "xsil": 0.11, "agreement": 0.6}  # xsil +0.01
    assert choose([base, almost]) == ("efficientnet_lite0", "pca")
    strong = {**almost, "backbone": "y", "xsil": 0.13}
    assert choose([dict(base), dict(almost), strong]) == ("y", "pca")


def test_choose_marks_each_candidates_margins_and_the_outcome_says_them():
    """--auto's decision was shown as 'chose ...' alone: the margins each candidate passed or fell short of go to
    auto.csv, and one sentence gives the outcome with the deciding gains."""
    from brainclust.model.criteria import outcome

    base = {"backbone": "efficientnet_lite0", "reduce": "pca", "stability": 0.7, "xsil": 0.10, "agreement": 0.5}
    almost = {"backbone": "x", "reduce": "pca", "stability": 0.9, "xsil": 0.11, "agreement": 0.4}
    unstable = {"backbone": "z", "reduce": "pca", "stability": 0.6, "xsil": 0.20, "agreement": 0.6}
    rows = [base, almost, unstable]
    pick = choose(rows)
    assert pick == ("efficientnet_lite0", "pca")
    assert [r["margins"] for r in rows] == ["default", "short on xsil/agreement", "short on stability"]
    kept = outcome(rows, pick)
    assert kept.startswith("kept the default efficientnet_lite0, --reduce pca: none of the 2 other candidates "
                           "passed every margin over it (stability >= +0.00 against the default backbone")
    # the nearest: short of one margin only (z), though x's gains sum higher
    assert kept.endswith("the nearest, z, --reduce pca: stability -0.100 (short of +0.00), xsil +0.100, "
                         "agreement +0.100")
    strong = {**almost, "backbone": "y", "xsil": 0.13, "agreement": 0.6}
    rows = [dict(base), dict(almost), strong]
    pick = choose(rows)
    assert pick == ("y", "pca") and rows[2]["margins"] == "passed"
    assert outcome(rows, pick).startswith("chose y, --reduce pca over the default efficientnet_lite0, --reduce pca: "
                                          "stability +0.200, xsil +0.030, agreement +0.100; 1 of 2 candidates "
                                          "passed every margin")
    res = select({"efficientnet_lite0": planted()[0], "noise": noise()}, k=3, seed=0, reductions=("pca",), pca=10)
    assert res.as_dict()["outcome"] == outcome(res.rows, res.chosen)  # recorded in manifest.json auto.outcome


def test_cli_flags_and_run_accepts_auto(tmp_path):
    from brainclust.cli import build_parser
    from brainclust.errors import InputError
    from brainclust.pipeline import run

    a = build_parser().parse_args(["run", "d", "--out", "o", "--reduce", "umap", "--outliers", "auto", "--auto",
                                   "--ssl-gate"])
    assert (a.reduce, a.outliers, a.auto, a.ssl_gate) == ("umap", "auto", True, True)
    d = build_parser().parse_args(["run", "d", "--out", "o"])
    assert (d.reduce, d.outliers, d.auto, d.ssl_gate) == ("pca", "off", False, False)  # off by default
    with pytest.raises(InputError, match="no readable image"):  # --auto is an ordinary run: it got to the scan
        run(tmp_path, None, auto=True)


@pytest.mark.slow
def test_run_auto_writes_auto_csv_and_manifest(tmp_path):
    pytest.importorskip("umap")
    import json

    from brainclust.analysis.autoconfig import run_auto
    from brainclust.data.demo import make_demo_dataset
    from brainclust.pipeline import RunConfig

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=8, random_state=0)
    cfg = RunConfig(backbone="auto", cache_dir=str(tmp_path / "cache"), k=3, pca=10, progress=False,
                    labels_from_folders=True)
    result, res = run_auto(data, tmp_path / "out", cfg, backbones=("pixels", "hog"))
    rows = (tmp_path / "out" / "auto.csv").read_text().splitlines()
    assert rows[0].startswith("backbone,reduce,stability,xsil,agreement,chosen,nmi") and len(rows) == 5
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["settings"]["auto"] is True and man["auto"]["chosen"]["backbone"] == res.chosen[0]
    assert man["backbone"]["name"] == res.chosen[0] and man["settings"]["reduce"] == res.chosen[1]
    assert man["backbone"]["requested"] == "auto"  # was the chosen backbone's name: --auto chose it
    assert rows[0].endswith(",margins") and man["auto"]["outcome"] == res.outcome
    from brainclust.clisummary import auto_line
    from brainclust.report.build import build_report

    first, criteria_line = auto_line(result).split("\n")
    assert first == f"--auto: {res.outcome}" and "margin" in first
    assert all(f"{r['backbone']}{'' if r['reduce'] == 'pca' else ' ' + r['reduce']} {r['stability']:.2f}/"
               f"{r['xsil']:.3f}/{r['agreement']:.2f}" in criteria_line for r in res.rows)
    html = build_report(tmp_path / "out", write_figures=False).path.read_text(encoding="utf-8")
    assert re.search(r'<nav>.*<a href="#auto">--auto</a>.*</nav>', html, re.S)
    assert f"Outcome: {res.outcome}." in html.replace("&gt;", ">").replace("&#39;", "'")
    assert f'{res.chosen[0]} (chosen by <a href="#auto">--auto</a>)' in html
    # the feature cache counts every extraction: two portfolio backbones and the chosen one's, 24 images each
    assert man["cache"]["hits"] + man["cache"]["misses"] == 3 * 24 and man["cache"]["misses"] >= 2 * 24
    assert set(man["cache"]) >= {"hits", "misses"}


def test_pca_space_of_wide_features_equals_the_reducer_up_to_signs():
    from brainclust.analysis.autoconfig import pca_space
    from brainclust.cluster.reduce import PCAReducer

    X = np.random.default_rng(0).normal(size=(40, 300))
    fast, ref = pca_space(X, 10, 0), PCAReducer(10, random_state=0).fit_transform(X)
    np.testing.assert_allclose(np.abs(fast), np.abs(ref), atol=1e-8)
    narrow = X[:, :60]  # not wide: the reducer itself
    np.testing.assert_array_equal(pca_space(narrow, 10, 0), PCAReducer(10, random_state=0).fit_transform(narrow))


def test_consensus_is_average_linkage_on_the_co_association_and_outvotes_a_noise_member():
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform
    from sklearn.metrics import adjusted_rand_score

    from brainclust.analysis.autoconfig import consensus
    from brainclust.cluster.methods import cut_levels

    _, y = planted()
    rng = np.random.default_rng(0)
    flip = lambda p, frac: np.where(rng.random(len(p)) < frac, rng.integers(0, 3, len(p)), p)  # noqa: E731
    members = [flip(y, 0.1), flip(y, 0.15), flip(y, 0.1), rng.integers(0, 3, len(y))]  # 3 noisy copies + noise
    fitted = consensus(members, 3, 0)
    assert adjusted_rand_score(y, fitted.labels_) > 0.9
    assert max(adjusted_rand_score(y, m) for m in members) < adjusted_rand_score(y, fitted.labels_)
    co = np.mean([np.equal.outer(m, m) for m in members], axis=0)  # the co-association matrix
    D = 1.0 - co
    np.fill_diagonal(D, 0.0)
    by_hand = cut_levels(linkage(squareform(D, checks=False), "average"), [3])[3]
    assert adjusted_rand_score(by_hand, fitted.labels_) == 1.0
    assert fitted.levels_.shape == (len(y), 10)


def test_select_with_consensus_adds_the_chosen_consensus_row_and_is_deterministic():
    X, y = planted()
    feats = {"efficientnet_lite0": noise(), "a": X, "b": X + np.random.default_rng(4).normal(0, 1, X.shape)}
    res = select(feats, k=3, seed=0, labels_true=y.astype(str), reductions=("pca",), pca=10, with_consensus=True)
    again = select(feats, k=3, seed=0, reductions=("pca",), pca=10, with_consensus=True)
    last = res.rows[-1]
    assert res.chosen == ("consensus", "pca") and last["chosen"] and not any(r["chosen"] for r in res.rows[:-1])
    assert last["nmi"] > 0.9 and 0 <= last["stability"] <= 1 and last["agreement"] > 0
    np.testing.assert_array_equal(res.consensus.labels_, again.consensus.labels_)
    assert "nmi" not in again.rows[-1]


@pytest.mark.slow
def test_run_consensus_writes_its_row_and_predict_refuses(tmp_path, caplog):
    import json
    import logging

    from brainclust.analysis.autoconfig import run_auto
    from brainclust.data.demo import make_demo_dataset
    from brainclust.errors import ParameterError
    from brainclust.pipeline import RunConfig, predict, run

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=8, random_state=0)
    cfg = RunConfig(cache_dir=str(tmp_path / "cache"), k=3, pca=10, progress=False, labels_from_folders=True,
                    consensus=True)
    with caplog.at_level(logging.INFO, logger="brainclust"):
        result, res = run_auto(data, tmp_path / "out", cfg, backbones=("efficientnet_lite0", "pixels", "hog"))
    rows = (tmp_path / "out" / "auto.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[-1].startswith("consensus,pca,") and ",True," in rows[-1]
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["settings"]["consensus"] is True and man["clustering"]["consensus_of"] == [
        "efficientnet_lite0", "pixels", "hog"]
    assert np.array_equal(result.labels, res.consensus.labels_)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["nmi"] == pytest.approx(res.rows[-1]["nmi"])
    with pytest.raises(ParameterError, match="--consensus run"):
        predict(tmp_path / "out", data)
    from brainclust.report.rebuild import rebuild_report

    rebuild_report(tmp_path / "out")  # its manifest has no factor record: the report failed on it
    html = (tmp_path / "out" / "report.html").read_text()
    assert "--consensus: label-free choice" in html
    # the summary named efficientnet_lite0 alone: it names every member and how they were combined
    row = re.search(r'<tr id="backbone-row">(.*?)</tr>', html, re.S).group(1)
    assert ("the consensus of 3 backbones&#39; partitions (efficientnet_lite0, pixels, hog; each PCA, then "
            "hierarchical into k = 3), combined by average linkage on 1 - their co-association") in row
    assert "the features, the PCA map and the silhouette: efficientnet_lite0" in row
    assert re.search(r'<nav>.*<a href="#auto">--consensus</a>.*</nav>', html, re.S)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--consensus:")]
    assert said == [f"--consensus: the clusters are {res.outcome}; efficientnet_lite0 gives the features, the PCA "
                    "map and the silhouette"] and "efficientnet_lite0, pixels, hog" in res.outcome
    from brainclust.model.auto import ConsensusModel

    again = run(data, None, cfg, model=ConsensusModel(cfg, ("efficientnet_lite0", "pixels", "hog")))
    assert np.array_equal(again.labels, result.labels)  # run() fits the meta-estimator like any model
    with pytest.raises(ParameterError, match="--method hierarchical"):
        run_auto(data, None, RunConfig(consensus=True, method="kmeans", k=3))


@pytest.mark.slow
@pytest.mark.parametrize("consensus", [False, True])
def test_above_auto_max_the_portfolio_is_scored_on_a_sample_and_every_image_is_clustered(tmp_path, monkeypatch,
                                                                                        consensus):
    import json

    from brainclust.data.demo import make_demo_dataset
    from brainclust.model import criteria
    from brainclust.model.auto import build_model
    from brainclust.pipeline import RunConfig, run

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=8, random_state=0)
    monkeypatch.setattr(criteria, "AUTO_MAX", 15)  # 24 images: the criteria see 15 of them
    cfg = RunConfig(cache_dir=str(tmp_path / "c"), progress=False, k=3, pca=5, auto=not consensus,
                    consensus=consensus, labels_from_folders=True)
    backbones = ("efficientnet_lite0", "pixels", "hog") if consensus else ("pixels", "hog")
    res = run(data, tmp_path / "out", cfg, model=build_model(cfg, backbones))
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["auto"]["sample_size"] == 15 and man["n_images"] == 24
    assert len(res.labels) == 24 and set(res.labels.tolist()) <= {0, 1, 2} and len(set(res.labels.tolist())) >= 2
    sample = {r.path for r in res.model.sample_}
    assert len(sample) == 15
    if consensus:  # the sample keeps the consensus it was given; the other images are assigned by predict
        fitted = res.model.result_.consensus.labels_
        rows = [i for i, r in enumerate(res.records) if r.path in sample]
        assert np.array_equal(res.labels[rows], fitted) and res.levels.shape == (24, 10)
    again = run(data, None, cfg, model=build_model(cfg, backbones))
    assert np.array_equal(again.labels, res.labels)  # the sample is seeded


def test_criteria_guard_their_inputs_and_count_only_labelled_images():
    from brainclust.analysis.autoconfig import labelled_nmi, pca_space
    from brainclust.errors import InputError, ParameterError

    with pytest.raises(InputError):
        pca_space(np.ones((6, 3000)), 5, 0)
    bad = np.random.default_rng(0).normal(size=(6, 3000))
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="finite"):
        pca_space(bad, 5, 0)
    y = np.array(["a", "a", "b", "b", "", ""])
    assert labelled_nmi(y, [0, 0, 1, 1, 0, 1]) == pytest.approx(1.0)  # the unlabelled rows are not a class
    X, _ = planted()
    with pytest.raises(ParameterError, match="'pca'"):
        select({"a": X}, k=3, seed=0, reductions=("pca+umap",), with_consensus=True)


def test_cli_refuses_auto_with_consensus(tmp_path):
    from brainclust.cli import main

    assert main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--auto", "--consensus"]) == 2


def test_without_umap_the_umap_candidates_are_left_out_with_one_warning(monkeypatch, caplog):
    import logging

    from brainclust.errors import ParameterError
    from brainclust.model import criteria

    assert criteria.installed_reductions(("pca", "pca+umap")) == ("pca", "pca+umap")   # umap is a dev extra

    def no_umap(value):
        if value != "pca":
            raise ParameterError(f"--reduce {value}: needs the optional package umap-learn")
        return value

    monkeypatch.setattr(criteria, "check_reduce", no_umap)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        assert criteria.installed_reductions() == ("pca",)
    assert [r.getMessage() for r in caplog.records] == [
        "--auto: umap-learn is not installed, so the pca+umap candidates are left out "
        "(pip install 'brainclust[umap]' to include them)"]


def test_auto_asks_for_the_installed_reductions_only(monkeypatch):
    from brainclust.model import auto, criteria
    from brainclust.model.config import RunConfig

    feats = {"efficientnet_lite0": np.random.default_rng(0).normal(size=(30, 8))}
    asked = {}

    def fake_select(features, k, seed, **kwargs):
        asked.update(kwargs)
        raise RuntimeError("stop")

    model = auto.AutoSelect(RunConfig(k=2))
    monkeypatch.setattr(model, "_features", lambda records: (feats, list(records)))
    monkeypatch.setattr(model, "_k", lambda f: 2)
    monkeypatch.setattr(criteria, "installed_reductions", lambda reductions=criteria.AUTO_REDUCTIONS: ("pca",))
    monkeypatch.setattr(criteria, "select", fake_select)
    with pytest.raises(RuntimeError, match="stop"):
        model._select(list(range(30)), None, consensus=False)
    assert asked["reductions"] == ("pca",) and asked["with_consensus"] is False


@pytest.mark.slow
def test_a_fused_candidate_says_its_block_scales_once(tmp_path, caplog):
    """The portfolio's fit of a fusion is an evaluation: only the chosen model's own fit logs its block scales
    (the line was printed twice when the fusion was chosen)."""
    import logging

    from brainclust.analysis.autoconfig import run_auto
    from brainclust.data.demo import make_demo_dataset
    from brainclust.pipeline import RunConfig

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=8, random_state=0)
    cfg = RunConfig(backbone="auto", cache_dir=str(tmp_path / "cache"), k=3, pca=10, progress=False)
    with caplog.at_level(logging.INFO, logger="brainclust"):
        _, res = run_auto(data, tmp_path / "out", cfg, backbones=("pixels+hog", "hog"))
    said = caplog.text.count("block scales")
    assert said == (1 if res.chosen[0] == "pixels+hog" else 0), (res.chosen, said)
