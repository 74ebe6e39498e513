"""--within / --remove wired into the model: steps, refusals, save/load, predict, and whole runs (slow)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from brainclust.errors import InputError, ParameterError
from brainclust.model.composite import Batch
from brainclust.model.config import RunConfig
from brainclust.model.steercolumns import available_columns, check_column, check_label_column, check_run_columns
from brainclust.model.steering import RemoveStep, WithinStep, with_columns
from brainclust.io.scan import ImageRecord


def records(n: int, site_of) -> list:
    return [ImageRecord(path=f"img{i:03d}.png", abspath=f"/nowhere/img{i:03d}.png", name=f"img{i:03d}.png",
                        type="png", size=1, width=8, height=8, sha256=f"{i:064x}", meta={"site": site_of(i)})
            for i in range(n)]


def two_sites(n=60, d=20, seed=0):
    """Two sites far apart (the nuisance), and inside each two groups (the structure)."""
    rng = np.random.default_rng(seed)
    site = np.arange(n) % 2
    group = (np.arange(n) // 2) % 2
    X = rng.normal(0, 0.05, (n, d)) + 1.0
    X[:, 0] += 3.0 * site
    X[:, 1] += 0.8 * group
    return X, site, group


def test_within_metadata_column_fits_each_stratum_and_round_trips(tmp_path):
    X, site, group = two_sites()
    recs = records(len(X), lambda i: "AB"[site[i]])
    step = WithinStep(column="site", method="hierarchical", k=2, pca=5, random_state=0)
    out = step.fit_batch(Batch(recs, X))
    assert step.source_ == "metadata"
    assert step.n_clusters_ == 4
    strata = np.asarray([r.meta["stratum"] for r in out.records])
    assert list(strata) == ["AB"[s] for s in site]
    # every global cluster lies in one stratum, and inside a stratum the groups are found
    for c in np.unique(step.labels_):
        assert len(set(strata[step.labels_ == c])) == 1
    for s in (0, 1):
        rows = site == s
        local = np.asarray([r.meta["cluster_in_stratum"] for r in out.records])[rows]
        assert abs(np.corrcoef(local, group[rows])[0, 1]) > 0.99
    step.save_step(tmp_path)
    loaded = WithinStep.load_step(tmp_path, step.save_step(tmp_path))
    got, labels, levels = loaded.predict_batch(Batch(recs, X))
    np.testing.assert_array_equal(labels, step.model_.predict(X, strata))
    assert levels is not None and levels.shape == (len(X), 10)
    assert [r.meta["stratum"] for r in got.records] == list(strata)


def test_within_unseen_value_gets_the_nearest_stratum():
    X, site, _ = two_sites()
    step = WithinStep(column="site", k=2, pca=5)
    step.fit_batch(Batch(records(len(X), lambda i: "AB"[site[i]]), X))
    new = records(4, lambda i: "Z")  # a site the fit never saw: the nearest stratum mean decides
    _, labels, _ = step.predict_batch(Batch(new, X[:4]))
    assert [step.model_.cluster_stratum_[c] for c in labels] == ["AB"[s] for s in site[:4]]


def test_stratum_scores_score_the_clusters_inside_each_stratum():
    from brainclust.model.steerrecord import stratum_scores

    strata = np.array(["A"] * 4 + ["B"] * 4)
    clusters = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # global ids: two per stratum
    labels = ["x", "x", "y", "y", "x", "y", "x", ""]  # A recovered exactly, B not at all (one row unlabelled)
    got = stratum_scores(strata, clusters, labels)
    assert got["per_stratum"]["A"] == {"n": 4, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    assert got["per_stratum"]["B"]["n"] == 3 and got["per_stratum"]["B"]["nmi"] < 0.5
    assert got["mean_nmi"] == pytest.approx((4 * 1.0 + 3 * got["per_stratum"]["B"]["nmi"]) / 7)
    assert stratum_scores(strata, clusters, [""] * 8) == {"per_stratum": {}, "not_scored": {
        "A": "0 labelled images of 0 labels", "B": "0 labelled images of 0 labels"}}
    one_class = stratum_scores(strata, clusters, ["x"] * 4 + ["x", "y", "x", "y"])  # A holds one label: not scored
    assert set(one_class["per_stratum"]) == {"B"} and one_class["mean_nmi"] == one_class["per_stratum"]["B"]["nmi"]
    assert one_class["not_scored"] == {"A": "4 labelled images of 1 label"}


def test_the_strata_alone_are_scored_beside_the_clusters_inside_them():
    """A walk (2026-12-07): `--labels sequence --within suffix` on the BraTS volumes printed NMI 0.679, and 0.000
    inside the strata (as without --within): two of the three suffixes hold one sequence, so the strata alone score
    high; the terminal, metrics.json and the report now give that score beside the others."""
    from types import SimpleNamespace

    from brainclust.clisummary import run_summary
    from brainclust.model.steerrecord import stratum_scores
    from brainclust.report.runtext import within_scores

    strata = np.array(["FLAIR"] * 4 + ["T1w"] * 4 + ["T2w"] * 4)
    clusters = np.array([0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5])  # inside T1w: nothing recovered
    labels = ["FLAIR"] * 4 + ["T1w", "T1w", "ce-T1w", "ce-T1w"] + ["T2w"] * 4
    got = stratum_scores(strata, clusters, labels)
    assert got["strata"] == {"nmi": pytest.approx(float(normalized_mutual_info_score(labels, strata))),
                             "ari": pytest.approx(float(adjusted_rand_score(labels, strata)))}
    assert got["strata"]["nmi"] > 0.8 and got["mean_nmi"] == pytest.approx(0.0)
    res = SimpleNamespace(metrics={"n_images": 12, "n_clusters": 6, "silhouette": 0.1, "within": {"scores": got}},
                          manifest={}, skipped=[], checks=None, associations=None, out_dir=None,
                          config=SimpleNamespace(within="suffix", unit="slice"))
    assert f"the strata alone score NMI {got['strata']['nmi']:.3f}, ARI {got['strata']['ari']:.3f};" in run_summary(res)
    assert f"The strata alone, as clusters, score NMI {got['strata']['nmi']:.3f}" in within_scores(
        {"within": {"scores": got}}, 6)["meaning"]


def test_empty_values_at_predict_join_the_fits_missing_stratum_else_the_nearest(caplog):
    X, site, _ = two_sites()
    fit_with_missing = WithinStep(column="site", k=2, pca=5)
    fit_with_missing.fit_batch(Batch(records(len(X), lambda i: "A" if site[i] == 0 else ""), X))
    caplog.clear()
    _, labels, _ = fit_with_missing.predict_batch(Batch(records(4, lambda i: ""), X[:4]))
    assert {fit_with_missing.model_.cluster_stratum_[c] for c in labels} == {"(missing)"}
    assert "not seen in the fit" not in caplog.text
    fit_without = WithinStep(column="site", k=2, pca=5)
    fit_without.fit_batch(Batch(records(len(X), lambda i: "AB"[site[i]]), X))
    fit_without.predict_batch(Batch(records(4, lambda i: "" if i < 3 else "Z"), X[:4]))
    assert "4 new rows with a value not seen in the fit (3 empty)" in caplog.text


def test_new_images_without_the_metadata_column_are_refused_not_guessed():
    """predict without the --metadata table the fit's column came from: one line, never a silent nearest guess."""
    X, site, _ = two_sites()
    for step in (WithinStep(column="site", k=2, pca=5), RemoveStep(column="site", n_components=5)):
        step.fit_batch(Batch(records(len(X), lambda i: "AB"[site[i]]), X))
        bare = [replace(r, meta={}) for r in records(4, lambda i: "A")]
        with pytest.raises(InputError, match=r"'site'.*pass it again: --metadata FILE, or metadata=FILE in "
                                             r"brainclust.predict"):
            step.predict_batch(Batch(bare, X[:4])) if isinstance(step, WithinStep) else step.transform_batch(
                Batch(bare, X[:4]))


def test_remove_center_takes_the_site_out_and_round_trips(tmp_path):
    X, site, group = two_sites()
    recs = records(len(X), lambda i: "AB"[site[i]])
    step = RemoveStep(column="site", rule="center", n_components=5)
    out = step.fit_batch(Batch(recs, X))
    R = out.X
    gap_before = abs(X[site == 0, 0].mean() - X[site == 1, 0].mean())
    gap_after = abs(R[site == 0].mean(0) - R[site == 1].mean(0)).max()
    assert gap_before > 2 and gap_after < 1e-9
    loaded = RemoveStep.load_step(tmp_path, step.save_step(tmp_path))
    np.testing.assert_allclose(loaded.transform_batch(Batch(recs, X)).X, R, atol=1e-12)
    assert loaded.info()["strata"] == {"A": 30, "B": 30}


def test_level_column_comes_from_a_first_pass():
    X, site, _ = two_sites()
    recs = records(len(X), lambda i: "AB"[site[i]])
    step = WithinStep(column="level_2", k=2, pca=5)
    step.fit_batch(Batch(recs, X))
    assert step.source_ == "levels"
    # level 2 of the default tree is the dominant split: the two sites
    strata = step.model_.stratum_
    assert len(set(strata)) == 2
    assert all(len(set(site[strata == v])) == 1 for v in set(strata))


def test_remove_by_a_first_pass_level_writes_each_rows_removed_stratum(tmp_path):
    """--remove level_N wrote no column with the stratum it removed (--within writes its `stratum`): each row's
    first-pass cluster goes to `removed_stratum`, at fit and at predict; a metadata column is in the rows already."""
    from brainclust.io.outputs import RESERVED, output_name
    from brainclust.model.steering import first_pass_levels

    X, site, _ = two_sites()
    recs = records(len(X), lambda i: "AB"[site[i]])
    step = RemoveStep(column="level_2", n_components=5, n_clusters=2)
    got = [r.meta["removed_stratum"] for r in step.fit_batch(Batch(recs, X)).records]
    assert got == [str(v) for v in first_pass_levels(X, 5, 2, 0)["level_2"]]
    assert len(set(got)) == 2 and all(len(set(site[np.asarray(got) == v])) == 1 for v in set(got))  # the sites
    loaded = RemoveStep.load_step(tmp_path, step.save_step(tmp_path))
    assert [r.meta["removed_stratum"] for r in loaded.transform_batch(Batch(recs, X)).records] == got
    assert output_name("removed_stratum") == "removed_stratum" and "removed_stratum" in RESERVED  # written as is
    by_site = RemoveStep(column="site", n_components=5).fit_batch(Batch(recs, X))
    assert "removed_stratum" not in by_site.records[0].meta  # `site` says it


def test_a_projection_of_an_estimated_plane_predicts_without_estimating_the_plane(monkeypatch, tmp_path):
    """--remove plane --remove-rule project needs no stratum at predict, yet predict estimated every new image's
    plane (14.8 of a 23.8 s predict of 60 images on a fresh cache, and a warning) for columns it did not use;
    the centring still needs them."""
    import brainclust.features.plane as plane_mod

    calls = []

    def fake(recs, random_state, where):
        calls.append(len(recs))
        return [["axial", "coronal"][i % 2] for i in range(len(recs))], ["estimate"] * len(recs), np.full(len(recs),
                                                                                                        0.9)

    monkeypatch.setattr(plane_mod, "estimate_planes", fake)
    X, _, _ = two_sites()
    recs = records(len(X), lambda i: "A")  # no plane in the rows: estimated
    for rule, at_predict in (("project", 0), ("center", 1)):
        calls.clear()
        step = RemoveStep(column="plane", rule=rule, cache_dir=str(tmp_path))
        fitted = step.fit_batch(Batch(recs, X))
        assert step.source_ == "plane" and calls == [len(X)]
        new = step.transform_batch(Batch(recs, X))
        assert calls == [len(X)] * (1 + at_predict) and ("plane" in new.records[0].meta) == bool(at_predict)
        np.testing.assert_allclose(new.X, fitted.X, atol=1e-12)


def test_predict_by_a_within_model_records_the_new_images_per_stratum_and_their_scores(caplog):
    """predict with a --within model said nothing per stratum: metrics.json `within` gets the model's k, the new
    images per stratum and, with labels, the scores inside each stratum, as a run's."""
    from brainclust.model.steerrecord import predicted_within, stratum_scores

    X, site, group = two_sites()
    step = WithinStep(column="site", k=2, pca=5)
    step.fit_batch(Batch(records(len(X), lambda i: "AB"[site[i]]), X))
    got, labels, _ = step.predict_batch(Batch(records(10, lambda i: "A" if i < 7 else "B"), X[:10]))
    with caplog.at_level("INFO", logger="brainclust"):
        assert predicted_within(step, got.records, labels) == {"k": {"A": 2, "B": 2}, "strata": {"A": 7, "B": 3}}
    assert "--within site: new images per stratum A: 7, B: 3" in caplog.text
    y = ["gh"[g] for g in group[:10]]
    assert predicted_within(step, got.records, labels, y)["scores"] == stratum_scores(["A"] * 7 + ["B"] * 3, labels, y)
    assert predicted_within(RemoveStep(), got.records, labels) is None  # not a --within model


def test_missing_column_is_one_line_listing_the_columns():
    recs = records(4, lambda i: "A")
    assert {"site", "plane", "level_1", "level_10"} <= set(available_columns(recs))
    with pytest.raises(ParameterError, match=r"--within: no column 'nosuch' in this run; available: .*site"):
        check_column("--within", "nosuch", recs)
    check_column("--remove", "level_3", recs)
    with pytest.raises(ParameterError, match="no column 'level_11' .*; the tree's levels are level_1 to level_10$"):
        check_column("--within", "level_11", recs)


@pytest.mark.parametrize("flag, min_rows", [("within", 4), ("remove", 2)])
def test_an_identifier_column_is_refused_from_its_values_before_extraction(flag, min_rows):
    recs = records(12, lambda i: f"uid{i}")
    with pytest.raises(ParameterError, match=rf"--{flag} site: 12 values for 12 rows with a value \(fewer than "
                                             rf"{min_rows} rows per value"):
        check_run_columns(recs, **{flag: "site"})
    check_run_columns(records(12, lambda i: "AB"[i % 2]), **{flag: "site"})  # categories pass
    check_run_columns(recs, **{flag: "level_2"})  # a level's values come from the features


def test_with_columns_keeps_the_rows_when_nothing_is_added():
    recs = records(3, lambda i: "A")
    assert with_columns(recs, {}) is recs
    assert [r.meta["x"] for r in with_columns(recs, {"x": [1, 2, 3]})] == [1, 2, 3]


@pytest.mark.parametrize("settings, message", [
    (dict(within="site", auto=True), "--within: not supported with --auto"),
    (dict(remove="site", consensus=True), "--remove: not supported with --consensus"),
    (dict(within="site", method="dbscan"), "--within: needs a method with a k"),
    (dict(remove="site", ssl=("rotation",), k=3), "--remove: not supported with --self-supervised"),
    (dict(within="site", ssl=("temi",), k=3), "--within: not supported with --self-supervised"),
    (dict(remove_rule="project"), "--remove-rule: would be ignored"),
    (dict(within="site", exclude=("duplicate",)), "--within: not supported with --exclude"),
    (dict(within="site", reduce="umap"), "--within: each stratum has its own PCA"),
    (dict(within=" "), "--within: expected a column name"),
    # labels only score: a run-made column is refused by its name here (a metadata one by its values, below)
    (dict(within="plane", labels="plane"), r"--within: 'plane' is the column the clusters are scored against"),
    (dict(within="plane", remove="plane"), "--remove plane: the --within column too; .*use --within alone"),
])
def test_refusals_are_one_line(settings, message):
    with pytest.raises(ParameterError, match=message) as err:
        RunConfig(**settings).validate()
    assert "\n" not in str(err.value)


def test_consensus_refusal_names_consensus_only():
    with pytest.raises(ParameterError) as err:
        RunConfig(within="site", consensus=True).validate()
    assert "--consensus" in str(err.value) and "--auto" not in str(err.value)


def test_steering_by_another_column_than_the_labels_is_accepted():
    RunConfig(within="site", labels="sequence").validate()
    RunConfig(within="plane", remove="site", labels_from_folders=True).validate()
    RunConfig(within="folder", labels_from_folders=True).validate()  # by the values: split folders are no labels


def labelled(values: list[tuple[str, str, str]]) -> list:
    """Records with metadata folder, class_folder, site (a Training/glioma/... tree across two sites)."""
    return [r.__class__(**{**r.__dict__, "meta": {"folder": f, "class_folder": c, "site": s}})
            for r, (f, c, s) in zip(records(len(values), lambda i: ""), values)]


def test_a_metadata_column_that_holds_the_labels_is_refused_by_its_values():
    """--labels-from-folders under split folders scores the class folders: steering by class_folder is the leak
    (the review's 32 noise images scored NMI 1.0), steering by folder (the split) is not."""
    recs = labelled([(split, cls, "AB"[i // 2 % 2]) for i, (split, cls) in
                     enumerate([("Training", "glioma"), ("Training", "pituitary"), ("Testing", "glioma"),
                                ("Testing", "pituitary")] * 3)])
    for flag in ("within", "remove"):
        with pytest.raises(ParameterError, match=rf"--{flag} class_folder: .*\(--labels-from-folders\)"):
            check_run_columns(recs, labels="folder", **{flag: "class_folder"})
        check_run_columns(recs, labels="folder", **{flag: "folder"})
        check_run_columns(recs, labels="folder", **{flag: "site"})


def test_within_a_column_that_determines_the_labels_is_refused_remove_only_the_labels_own_classes(caplog):
    """Subjects each of one diagnosis: --within subject makes every stratum pure in the labels (refused);
    --remove subject is a nuisance taken out, not the labels' classes (accepted), but it takes the diagnosis out
    with it: a warning (a walk's --remove site, each site of one group, scored NMI 0.000 without a word)."""
    recs = [r.__class__(**{**r.__dict__, "meta": {"subject": f"s{i % 4}", "diagnosis": "AB"[i % 4 // 2],
                                                  "site": "PQ"[i % 2]}})
            for i, r in enumerate(records(16, lambda i: ""))]
    with pytest.raises(ParameterError, match="--within subject: each stratum's labelled images share one label"):
        check_run_columns(recs, labels="diagnosis", within="subject")
    with caplog.at_level("WARNING", logger="brainclust"):
        check_run_columns(recs, labels="diagnosis", remove="site")  # both diagnoses at each site: no warning
        assert caplog.text == ""
        check_run_columns(recs, labels="diagnosis", remove="subject")
    assert "--remove subject: each stratum's labelled images share one label (--labels diagnosis)" in caplog.text


def sparse_subjects(labelled_of) -> list:
    """40 images of 10 subjects (4 each), each subject of one diagnosis (A: s0-s4, B: s5-s9); only the images
    ``labelled_of(i)`` carry it, the others have an empty value (sparse labels)."""
    return [r.__class__(**{**r.__dict__, "meta": {"subject": f"s{i % 10}",
                                                  "diagnosis": "AB"[i % 10 // 5] if labelled_of(i) else ""}})
            for i, r in enumerate(records(40, lambda i: ""))]


def test_sparse_labels_a_stratum_with_one_labelled_image_is_no_evidence_of_one_label(caplog):
    """Most images unlabelled: a subject with a single labelled image holds one label by coincidence; only the
    strata with 2+ labelled images tell (none here: neither a refusal nor a warning)."""
    one_each = sparse_subjects(lambda i: i < 10)  # one labelled image per subject
    with caplog.at_level("WARNING", logger="brainclust"):
        check_run_columns(one_each, labels="diagnosis", within="subject")
        check_run_columns(one_each, labels="diagnosis", remove="subject")
    assert "share one label" not in caplog.text
    # s0 and s5 have 2 labelled images each, one label each: the evidence; s1-s4 and s6-s9 hold the labels too,
    # so the subjects are not the label classes (--remove warns, it is not refused)
    two_in_some = sparse_subjects(lambda i: i < 10 or i in (10, 15))
    with pytest.raises(ParameterError, match="--within subject: each stratum's labelled images share one label"):
        check_run_columns(two_in_some, labels="diagnosis", within="subject")
    with caplog.at_level("WARNING", logger="brainclust"):
        check_run_columns(two_in_some, labels="diagnosis", remove="subject")
    assert "--remove subject: each stratum's labelled images share one label (--labels diagnosis)" in caplog.text
    caplog.clear()
    mixed = sparse_subjects(lambda i: i < 10 or i in (10, 20))  # s0 holds both diagnoses (image 20: B)
    mixed[20].meta["diagnosis"] = "B"
    with caplog.at_level("WARNING", logger="brainclust"):
        check_run_columns(mixed, labels="diagnosis", within="subject")
        check_run_columns(mixed, labels="diagnosis", remove="subject")
    assert "share one label" not in caplog.text


def test_within_a_run_made_column_with_sparse_labels_does_not_warn_of_one_label(caplog):
    """After the fit (plane, level_N): strata with fewer than 2 labelled images score nothing, but they are not
    evidence that each holds one label (the fully labelled case still warns)."""
    from brainclust.model.steerrecord import record_steering

    X, site, _ = two_sites(n=40)
    recs = records(len(X), lambda i: "AB"[site[i]])
    step = WithinStep(column="site", k=2, pca=5, random_state=0)
    step.fit_batch(Batch(recs, X))
    model = type("Fitted", (), {"steps_": [("clusterer", step)], "clusterer_": step, "labels_": step.labels_})()
    for y, warned in ((["AB"[s] for s in site], True), (["x", "y"] + [""] * (len(X) - 2), False)):
        caplog.clear()
        metrics: dict = {}
        with caplog.at_level("WARNING", logger="brainclust"):
            record_steering(RunConfig(within="site"), model, recs, metrics, {}, "group", np.asarray(y, object))
        assert metrics["within"]["scores"]["per_stratum"] == {}
        assert ("--within site: each stratum's labelled images share one label" in caplog.text) is warned


def test_steps_of_within_and_remove():
    from brainclust.model.config import build_steps

    names = [n for n, _ in build_steps(RunConfig(within="plane", remove="site", remove_rule="project"))]
    assert names == ["extractor", "checks", "remove", "clusterer"]
    names = [n for n, _ in build_steps(RunConfig(remove="site"))]
    assert names == ["extractor", "checks", "remove", "reducer", "clusterer"]


# -- whole runs ------------------------------------------------------------------------------------------
def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_site_folder(tmp_path_factory):
    """Synthetic PNGs in two sites (a --metadata table) with two groups each."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sites") / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["path,site,group"]
    for i in range(24):
        a = rng.integers(0, 40, (24, 24)).astype(np.uint8) + (150 if i % 2 else 0)
        a[:, : 6 if (i // 2) % 2 else 18] += 60
        Image.fromarray(a).save(root / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{'AB'[i % 2]},{'gh'[(i // 2) % 2]}")
    table = root.parent / "sites.csv"
    table.write_text("\n".join(rows) + "\n")
    return root, table


@pytest.mark.slow
def test_within_a_first_pass_level_that_is_the_labels_warns_and_scores_no_stratum(two_site_folder, tmp_path, capsys):
    """level_2 of a first pass splits the two groups apart; scored against them, each stratum holds one label:
    known only after the fit, so a warning (a metadata column is refused before, by its values)."""
    from brainclust.cli import main

    root, table = two_site_folder
    out = tmp_path / "o"
    assert main(["run", str(root), "--out", str(out), "--within", "level_2", "--labels", "group", "--backbone",
                 "pixels@16", "--workers", "0", "--no-report", "--metadata", str(table), "--k", "2"]) == 0
    assert "--within level_2: each stratum's labelled images share one label" in capsys.readouterr().err
    scores = json.loads((out / "metrics.json").read_text())["within"]["scores"]
    assert scores["per_stratum"] == {} and len(scores["not_scored"]) == 2


@pytest.mark.slow
def test_run_within_and_remove_then_predict(two_site_folder, tmp_path, capsys):
    from brainclust.cli import main

    root, table = two_site_folder
    fast = ["--backbone", "pixels@16", "--workers", "0", "--no-report", "--metadata", str(table), "--k", "2"]
    out = tmp_path / "within"
    assert main(["run", str(root), "--out", str(out), "--within", "site", "--remove", "level_2", "--labels", "group",
                 *fast]) == 0
    said = capsys.readouterr()
    log = said.err  # the dims before the step do not show its reduction: the line names it
    assert re.search(r"within the strata: NMI \d\.\d{3}, ARI -?\d\.\d{3} \(mean over 2 scored strata", said.out)
    assert "hierarchical within each stratum (each its own PCA to at most 50 dims) -> 4 clusters" in log
    rows = read_rows(out / "assignments.csv")
    assert {"stratum", "cluster_in_stratum", "level_3", "removed_stratum"} <= set(rows[0])
    assert all(r["stratum"] == r["site"] for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steer"]["within"]["strata"] == {"A": 12, "B": 12}
    assert manifest["steer"]["within"]["pca"] == {"A": 12, "B": 12}  # --pca 50 on 12 images each: 12 kept
    assert manifest["steer"]["remove"]["source"] == "levels"
    within = json.loads((out / "metrics.json").read_text())["within"]
    assert within["k"] == {"A": 2, "B": 2} and set(within["scores"]["per_stratum"]) == {"A", "B"}
    assert all(p["n"] == 12 for p in within["scores"]["per_stratum"].values())
    ranked = {r["column"] for r in read_rows(out / "associations.csv")}  # site holds the clusters by construction
    assert "site" not in ranked and "intensity_mean" in ranked
    from brainclust.report.build import build_report

    html = build_report(out, write_figures=False).path.read_text(encoding="utf-8")
    assert "level_2 factored out (center); within each site" in html and "model/within.npz" in html
    assert "Not drawn: a --within site run builds one tree per stratum" in html and "k = 2 per stratum" in html
    assert "12 components per stratum: each stratum has its own PCA" in html  # what each kept, not one PCA of 50
    assert re.findall(r"<h3>Cluster (\d) · stratum (\w):", html) == [("0", "A"), ("1", "A"), ("2", "B"), ("3", "B")]
    pred = tmp_path / "pred"
    assert main(["predict", str(out), str(root), "--out", str(pred), "--metadata", str(table)]) == 0
    prows = read_rows(pred / "assignments.csv")
    assert [r["stratum"] for r in prows] == [r["stratum"] for r in rows]
    assert {r["removed_stratum"] for r in prows} <= {r["removed_stratum"] for r in rows}  # the nearest stratum
    assert json.loads((pred / "metrics.json").read_text())["within"] == {"k": {"A": 2, "B": 2},
                                                                         "strata": {"A": 12, "B": 12}}
    # the fit's own images, predicted: the run's silhouette, taken in the same map PCA (was: on the features)
    fitted, predicted = (json.loads((d / "metrics.json").read_text())["silhouette"] for d in (out, pred))
    assert predicted == pytest.approx(fitted, abs=1e-6)
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "-q"]) == 0  # the stratum beside each file
    exported = {r["path"]: r for r in read_rows(tmp_path / "exp" / "export.csv")}
    assert {p: r["stratum"] for p, r in exported.items()} == {r["path"]: r["stratum"] for r in rows}


@pytest.mark.slow
def test_run_within_k_auto_records_k_auto_and_each_strata_k(two_site_folder, tmp_path, capsys):
    """--within COLUMN --k auto recorded manifest clustering.k 0 (DBSCAN's 'no k') and the report said
    'k = 0 per stratum' (the walk of 2026-12-07): k is 'auto', as asked; each stratum's in steer.within.k, and
    the terminal and the report give each stratum's k and where its evidence is."""
    from brainclust.cli import main
    from brainclust.report.build import build_report

    root, table = two_site_folder
    out = tmp_path / "o"
    assert main(["run", str(root), "--out", str(out), "--within", "site", "--k", "auto", "--backbone", "pixels@16",
                 "--workers", "0", "--no-report", "--metadata", str(table), "--labels", "group"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    per = manifest["steer"]["within"]["k"]
    assert manifest["clustering"]["k"] == "auto" and manifest["clustering"]["k_requested"] == "auto"
    assert manifest["clustering"]["n_clusters_found"] == sum(per.values()) and set(per) == {"A", "B"}
    html = build_report(out, write_figures=False).path.read_text(encoding="utf-8")
    named = f"k auto per stratum (A: {per['A']}, B: {per['B']})"
    assert f"(hierarchical, {named})" in html and f"hierarchical, {named}: " in html and "k = 0" not in html
    # the evidence: the terminal's line as a run without --within has, and the report's section
    assert (f"--k auto within each site (A: k = {per['A']}, B: k = {per['B']}; votes and curves in metrics.json "
            "within.k_selection)") in capsys.readouterr().out  # --no-report: the report is not named
    assert 'id="within-k-table"' in html and 'alt="k selection curves per stratum"' in html
    pred = tmp_path / "pred"  # the model loads and predicts as a run at a given k
    assert main(["predict", str(out), str(root), "--out", str(pred), "--metadata", str(table)]) == 0
    assert [r["cluster"] for r in read_rows(pred / "assignments.csv")] == [r["cluster"] for r in
                                                                         read_rows(out / "assignments.csv")]


@pytest.mark.slow
def test_a_within_model_saved_without_its_map_predicts_and_scores_on_the_features(two_site_folder, tmp_path):
    """Models saved before 2026-12-07 have no within_map_pca.npz: they load, save again and predict, new rows'
    silhouette then taken on the features (as those models did). A stray map file beside such a model (not in
    its step's list of files) is not read."""
    from brainclust.cli import main
    from brainclust.model.composite import BrainClusterModel

    root, table = two_site_folder
    out = tmp_path / "within"
    assert main(["run", str(root), "--out", str(out), "--within", "site", "--backbone", "pixels@16", "--workers",
                 "0", "--no-report", "--metadata", str(table), "--k", "2", "-q"]) == 0
    assert BrainClusterModel.load(out).clusterer_.score_space(np.ones((2, 256))).shape == (2, 24)  # 24 images
    config = out / "model" / "config.json"
    info = json.loads(config.read_text())
    info["sha256"].pop("within_map_pca.npz")
    step = next(s for s in info["steps"] if s["name"] == "clusterer")
    step["files"].remove("within_map_pca.npz")
    config.write_text(json.dumps(info))
    model = BrainClusterModel.load(out)
    assert model.clusterer_.map_ is None and model.clusterer_.score_space(np.ones((2, 256))) is None
    model.save(tmp_path / "again")
    assert not (tmp_path / "again" / "model" / "within_map_pca.npz").exists()
    pred = tmp_path / "pred"
    assert main(["predict", str(out), str(root), "--out", str(pred), "--metadata", str(table), "-q"]) == 0
    assert isinstance(json.loads((pred / "metrics.json").read_text())["silhouette"], float)


@pytest.mark.slow
def test_a_column_with_one_value_runs_as_without_within_or_remove(two_site_folder, tmp_path):
    """The log says "one stratum, as without --remove": the clusters and the silhouette must be those of the run
    without it (a new user's probe: --remove level_1 moved 59 of 180 clusters through the unit-length scaling,
    --within level_1 kept the clusters but reported another silhouette, taken on the raw features)."""
    from brainclust.cli import main

    root, table = two_site_folder
    fast = ["--backbone", "pixels@16", "--workers", "0", "--no-report", "-q", "--k", "3", "--cache-dir",
            str(tmp_path / "cache")]
    for pca in (["--pca", "50"], ["--pca", "0"]):  # --pca 0: each clusters the features themselves
        outs = {}
        for name, extra in (("plain", []), ("remove", ["--remove", "level_1"]), ("within", ["--within", "level_1"])):
            outs[name] = tmp_path / f"{name}{pca[1]}"
            assert main(["run", str(root), "--out", str(outs[name]), *extra, *pca, *fast]) == 0
        plain = [r["cluster"] for r in read_rows(outs["plain"] / "assignments.csv")]
        sil = json.loads((outs["plain"] / "metrics.json").read_text())["silhouette"]
        for name in ("remove", "within"):
            assert [r["cluster"] for r in read_rows(outs[name] / "assignments.csv")] == plain, (name, pca)
            got = json.loads((outs[name] / "metrics.json").read_text())["silhouette"]
            assert got == pytest.approx(sil, abs=1e-6), (name, pca)


def test_a_one_stratum_remove_model_saved_before_the_passthrough_keeps_rescaling(tmp_path):
    """Models saved before 2026-12-06 fitted their PCA on unit-length rows: loaded, they must go on rescaling."""
    from brainclust.io.atomic import atomic_write_npz, read_npz
    from brainclust.model.steering import REMOVE_FILE

    X, _, _ = two_sites()
    recs = records(len(X), lambda i: "A")
    step = RemoveStep(column="site")
    out = step.fit_batch(Batch(recs, X))
    np.testing.assert_array_equal(out.X, X)  # one stratum: unchanged
    entry = step.save_step(tmp_path)
    np.testing.assert_array_equal(RemoveStep.load_step(tmp_path, entry).transform_batch(Batch(recs, X)).X, X)
    old = {k: v for k, v in read_npz(tmp_path / REMOVE_FILE, "remove model").items()
           if k not in ("passthrough", "space")}  # neither was saved then
    atomic_write_npz(tmp_path / REMOVE_FILE, **old)
    again = RemoveStep.load_step(tmp_path, entry).transform_batch(Batch(recs, X)).X
    np.testing.assert_allclose(again, X / np.linalg.norm(X, axis=1, keepdims=True), rtol=1e-6)

@pytest.mark.slow
def test_run_refuses_a_missing_column_before_extraction(two_site_folder, tmp_path, capsys):
    from brainclust.cli import main

    root, _ = two_site_folder
    rc = main(["run", str(root), "--out", str(tmp_path / "o"), "--within", "nosuchcolumn", "--backbone",
               "pixels@16", "--workers", "0", "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert "--within: no column 'nosuchcolumn'" in err[-1] and "level_2" in err[-1]
    assert not (tmp_path / "o" / "assignments.csv").exists()


@pytest.mark.parametrize("option, column, message", [
    ("--labels", "nosuch", "--labels: no row has a value in column 'nosuch'"),
    ("--labels", "plane", "--labels: no row has a value in column 'plane'"),
    ("--color-by", "nosuch", "--color-by: no column 'nosuch'")])
def test_a_missing_label_or_colour_column_is_refused_before_extraction(two_site_folder, tmp_path, capsys,
                                                                        monkeypatch, option, column, message):
    from brainclust.cli import main
    from brainclust.features.extractor import FeatureExtractor

    root, _ = two_site_folder
    monkeypatch.setattr(FeatureExtractor, "fit_extract", lambda *a, **k: pytest.fail("features were extracted"))
    rc = main(["run", str(root), "--out", str(tmp_path / "o"), option, column, "--backbone", "pixels@16",
               "--workers", "0", "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1] and "intensity_mean" in err[-1]


def test_colour_columns_may_be_what_the_run_writes():
    recs = records(4, lambda i: "A")
    for column in (None, "cluster", "level_3", "flags", "label", "plane", "plane_confidence", "site", "meta_site"):
        check_run_columns(recs, color_by=column)
    with pytest.raises(ParameterError, match="--color-by: no column 'nosuch'.*site"):
        check_run_columns(recs, color_by="nosuch")


def test_a_colour_column_with_a_typo_gets_the_name_it_is_close_to():
    """run --color-by sitee listed the columns but named none, where 'brainclust report --color-by' says
    'did you mean site?'."""
    recs = records(4, lambda i: "A")
    with pytest.raises(ParameterError, match=r"^--color-by: no column 'sitee' in this run \(did you mean site\?\); "
                                             "it has cluster, label, level_N, flags and the metadata columns "):
        check_run_columns(recs, color_by="sitee")
    with pytest.raises(ParameterError, match=r"^--color-by: no column 'clustr' in this run \(did you mean cluster\?\)"):
        check_run_columns(recs, color_by="clustr")
    with pytest.raises(ParameterError, match=r"^--color-by: no column 'xyzzy' in this run; it has "):
        check_run_columns(recs, color_by="xyzzy")


def test_a_steering_or_label_column_with_a_typo_gets_the_name_it_is_close_to():
    """--within sitee, --remove sitee and --labels sitee were refused listing the columns but naming none, where
    --color-by says 'did you mean site?'; a column no row fills is not offered as its own correction."""
    recs = records(4, lambda i: "A")
    for flag in ("--within", "--remove"):
        with pytest.raises(ParameterError, match=rf"^{flag}: no column 'sitee' in this run \(did you mean site\?\); "
                                                 "available: site, plane, level_1, "):
            check_run_columns(recs, **{flag[2:]: "sitee"})
    with pytest.raises(InputError, match=r"^--labels: no row has a value in column 'sitee' \(did you mean site\?\); "
                                         "metadata columns: site$"):
        check_run_columns(recs, labels="sitee")
    recs[0].meta["grade"] = ""
    with pytest.raises(InputError, match=r"^--labels: no row has a value in column 'grade'; metadata columns: grade"):
        check_run_columns(recs, labels="grade")


def test_label_columns_the_run_makes_are_checked_after_it():
    recs = records(4, lambda i: "A")
    for column in (None, "folder", "level_3", "stratum", "site"):
        check_label_column(column, recs)
    with pytest.raises(InputError, match="--labels: no row has a value in column 'nosuch'"):
        check_label_column("nosuch", recs)


def test_labels_plane_waits_only_where_a_header_may_give_the_plane():
    """An estimated plane never scores: 2-D files without a header are refused before the extraction; a volume's
    slice has its plane at the scan; a DICOM file's plane is read with its pixels, so it waits."""
    recs = records(4, lambda i: "A")
    with pytest.raises(InputError, match="column 'plane' .*estimates for 2-D images never scores"):
        check_label_column("plane", recs)
    check_label_column("plane", [*recs, replace(recs[0], path="s.dcm", type="dicom")])
    check_label_column("plane", [*recs, replace(recs[0], path="v.nii#axial=3", meta={"plane": "axial"})])


def test_factor_record_ranks_columns_and_never_uses_the_label_column():
    from brainclust.model.steerrecord import factor_record

    X, site, group = two_sites()
    recs = [r.__class__(**{**r.__dict__, "meta": {"site": "AB"[site[i]], "folder": str(group[i])}})
            for i, r in enumerate(records(len(X), lambda i: "A"))]
    rec = factor_record(recs, site, with_plane=False, exclude=("folder",))
    assert [f["column"] for f in rec["factors"]] == ["site"]
    assert rec["factors"][0]["ami"] == pytest.approx(1.0)
    assert "--remove site" in rec["suggestion"] and "--within site" in rec["suggestion"]
    weak = factor_record(recs, group, with_plane=False, exclude=("folder",))
    assert weak["suggestion"] is None and weak["factors"][0]["ami"] < 0.5


@pytest.mark.parametrize("value", [lambda i: f"s{i}", lambda i: f"s{i}" if i < 14 else ""])  # mostly missing too
def test_remove_refuses_a_measurement_or_an_identifier(value):
    """Centring strata of one or two rows puts their images on one point (the probe's `--remove aspect`: 138
    images made identical, silhouette 0.58 instead of 0.26); refused as --within refuses it."""
    X, _, _ = two_sites()
    recs = records(len(X), value)
    with pytest.raises(ParameterError, match=r"--remove site: \d+ values for \d+ rows with a value \(fewer than 2 "
                                             r"rows per value on average\): choose a column of"):
        RemoveStep(column="site", rule="center", n_components=5).fit_batch(Batch(recs, X))


def test_remove_takes_a_subject_of_three_slices_and_names_values_of_one_image(caplog):
    """Three slices per subject is a factor worth removing (refused at the --within floor of 4 for a while);
    values of a single image are said, as centring puts those images at the origin."""
    X, _, _ = two_sites()
    with caplog.at_level("WARNING", logger="brainclust"):
        RemoveStep(column="site", rule="center", n_components=5).fit_batch(
            Batch(records(len(X), lambda i: f"s{i // 3}"), X))
    assert "with a single image" not in caplog.text
    with caplog.at_level("WARNING", logger="brainclust"):
        RemoveStep(column="site", rule="center", n_components=5).fit_batch(
            Batch(records(len(X), lambda i: "odd" if i == 0 else f"s{i // 3}"), X))
    assert "--remove site: 1 value with a single image" in caplog.text and "odd" in caplog.text


def test_run_made_columns_and_metadata_of_the_same_name_both_survive():
    from brainclust.io.metadata import column_name
    from brainclust.io.outputs import assignment_rows

    recs = [r.__class__(**{**r.__dict__, "meta": {"stratum": "theirs", "site": "A"}})
            for r in records(3, lambda i: "A")]
    out = with_columns(recs, {"stratum": ["x", "y", "x"], "cluster_in_stratum": [0, 0, 1]})
    rows = assignment_rows(out, np.array([0, 1, 0]), None)
    assert [(r["stratum"], r["meta_stratum"], r["cluster_in_stratum"]) for r in rows] == [
        ("x", "theirs", "0"), ("y", "theirs", "0"), ("x", "theirs", "1")]
    assert column_name("stratum") == "meta_stratum"  # a --metadata table's column never replaces the run's


def test_plane_columns_give_each_unit_its_slices_shared_plane():
    from types import SimpleNamespace

    from brainclust.model.steering import plane_columns

    def sl(plane):
        return SimpleNamespace(meta={"plane": plane})

    units = [SimpleNamespace(members=(sl("axial"), sl("axial"))),
             SimpleNamespace(members=(sl("axial"), sl("coronal"))),
             sl("sagittal"), SimpleNamespace(members=(sl("coronal"),) * 3)]
    cols = plane_columns(units)
    assert cols["plane"] == ["axial", "mixed", "sagittal", "coronal"]
    assert cols["plane_source"] == ["header"] * 4 and cols["plane_confidence"] == [1.0] * 4


def test_predict_estimates_the_plane_of_2d_images_for_a_model_fitted_on_header_planes(monkeypatch, tmp_path, caplog):
    """A --within plane model fitted on NIfTI slices (every plane from the header: source 'header') still
    estimates the plane of new 2-D images, as steering.md says; another column missing is one line."""
    from types import SimpleNamespace

    import brainclust.features.plane as plane_mod
    from brainclust.model.steering import predict_strata

    def fake(recs, random_state, where):
        return ["coronal"] * len(recs), ["estimate"] * len(recs), np.full(len(recs), 0.9)

    monkeypatch.setattr(plane_mod, "estimate_planes", fake)
    recs = [SimpleNamespace(meta={"site": "A"}) for _ in range(3)]
    with caplog.at_level("WARNING", logger="brainclust"):
        strata, cols = predict_strata("header", "plane", recs, cache_dir=tmp_path)
    assert list(strata) == ["coronal"] * 3 and cols["plane_source"] == ["estimate"] * 3
    assert "plane_confidence is not an accuracy" in caplog.text  # an estimate is never passed off as sure
    strata, cols = predict_strata("header", "plane", [SimpleNamespace(meta={"plane": "axial"})])
    assert list(strata) == ["axial"] and cols == {}  # read where the new images have it
    strata, cols = predict_strata("header", "plane", [SimpleNamespace(meta={"plane": "axial"}), recs[0]])
    assert list(strata) == ["axial", "coronal"] and cols["plane_source"] == ["header", "estimate"]  # a mix
    with pytest.raises(InputError, match="'site2': the model's --within/--remove column is in none"):
        predict_strata("metadata", "site2", recs)


def test_labels_from_folders_warns_when_the_folders_are_splits_or_absent(caplog):
    from brainclust.model.steercolumns import check_label_column

    def recs(folders, below=None):
        return [replace(r, meta={"folder": f, **({"class_folder": b} if b else {})})
                for r, f, b in zip(records(len(folders), str), folders, below or [None] * len(folders))]
    with caplog.at_level("INFO", logger="brainclust"):
        check_label_column("folder", recs(["Training", "Testing", "Training"]))
        check_label_column("folder", recs(["", ""]))
        check_label_column("folder", recs(["glioma", "notumor"]))  # classes: nothing to say
        check_label_column("folder", recs(["Training", "Testing"], ["glioma", "notumor"]))  # classes below: info
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 2 and "folders (Testing, Training) are splits with no class folder below" in said[0]
    assert "no image is in a sub-folder" in said[1]
    info = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert info == ["--labels-from-folders: the labels are the folders below 2 split folders Testing, "
                    "Training (glioma, notumor)"]


@pytest.mark.slow
def test_a_projection_of_a_table_column_predicts_without_the_table(two_site_folder, tmp_path):
    """--remove-rule project needs no stratum at predict time (docs/steering.md), yet predict refused new images
    without the table (a probe's find); it predicts the same clusters with and without it."""
    from brainclust.cli import main

    root, table = two_site_folder
    out = tmp_path / "proj"
    assert main(["run", str(root), "--out", str(out), "--remove", "site", "--remove-rule", "project", "--backbone",
                 "pixels@16", "--workers", "0", "--no-report", "--metadata", str(table), "--k", "2"]) == 0
    assert main(["predict", str(out), str(root), "--out", str(tmp_path / "p1"), "-q"]) == 0
    assert main(["predict", str(out), str(root), "--out", str(tmp_path / "p2"), "--metadata", str(table), "-q"]) == 0
    fitted = [r["cluster"] for r in read_rows(out / "assignments.csv")]
    assert [r["cluster"] for r in read_rows(tmp_path / "p1" / "assignments.csv")] == fitted
    assert [r["cluster"] for r in read_rows(tmp_path / "p2" / "assignments.csv")] == fitted


@pytest.mark.slow
def test_the_reports_silhouette_of_a_within_run_is_the_metrics_one_with_and_without_pca(two_site_folder, tmp_path):
    """The report's silhouette plot takes within.npz's X_fit: at --pca 0 that was a 50-component map while
    metrics.json took the features (a review's case: 0.00126 against 0.00207); it is the features now."""
    from brainclust.cli import main
    from brainclust.report.geometry import silhouette_per_image
    from brainclust.report.run import load_outputs

    root, table = two_site_folder
    for pca in ("50", "0"):
        out = tmp_path / f"within{pca}"
        assert main(["run", str(root), "--out", str(out), "--within", "level_1", "--pca", pca, "--k", "2",
                     "--backbone", "pixels@16", "--workers", "0", "--no-report", "-q",
                     "--cache-dir", str(tmp_path / "cache")]) == 0
        run = load_outputs(out)
        sil = silhouette_per_image(run.X, run.clusters)
        metrics = json.loads((out / "metrics.json").read_text())["silhouette"]
        assert float(np.nanmean(sil)) == pytest.approx(metrics, abs=1e-6), pca


def test_a_plane_read_from_a_table_is_never_estimated_at_predict():
    """A fit whose `plane` came from a --metadata table (source metadata) predicts with the table's plane: without
    it, one line asks for the table again (it was estimated silently: the MNI-trained estimate split a walk's 900
    slices otherwise and moved 12 % of the fit's own images to another cluster)."""
    X, _, _ = two_sites()
    planes = lambda i: ["axial", "coronal"][i % 2]  # noqa: E731
    fitted = [replace(r, meta={"plane": planes(i)}) for i, r in enumerate(records(len(X), lambda i: "A"))]
    bare = [replace(r, meta={}) for r in fitted]
    for step in (WithinStep(column="plane", k=2, pca=4), RemoveStep(column="plane")):
        step.fit_batch(Batch(fitted, X))
        assert step.source_ == "metadata"
        with pytest.raises(InputError, match="pass it again: --metadata FILE"):
            (step.predict_batch if isinstance(step, WithinStep) else step.transform_batch)(Batch(bare, X))
    out = WithinStep(column="plane", k=2, pca=4)
    out.fit_batch(Batch(fitted, X))
    rows, labels, _ = out.predict_batch(Batch(fitted, X))
    np.testing.assert_array_equal(labels, out.labels_)  # the fit's own rows, the fit's strata: the fit's clusters
    header = WithinStep(column="plane", k=2, pca=4)  # NIfTI slices: their planes are their headers'
    header.fit_batch(Batch([replace(r, type="nifti") for r in fitted], X))
    assert header.source_ == "header"


@pytest.mark.slow
def test_an_empty_metadata_column_is_said_to_be_empty_not_missing(two_site_folder, tmp_path, capsys):
    """A --metadata column with no value in any row is in none of the rows' metadata: it was refused as "no
    column 'empty' in this run", with a list of columns that left it out, though the user's table has it."""
    from brainclust.cli import main

    root, table = two_site_folder
    lines = table.read_text().splitlines()
    empty = tmp_path / "sites_empty.csv"
    empty.write_text("\n".join([lines[0] + ",empty"] + [ln + "," for ln in lines[1:]]) + "\n")
    for option in ("--within", "--remove"):
        rc = main(["run", str(root), "--out", str(tmp_path / "o"), "--metadata", str(empty), option, "empty",
                   "--backbone", "pixels@16", "--workers", "0", "--no-report"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].endswith(f"{option}: column 'empty' of the --metadata table has no value in any "
                                            "row of this run (empty, or no row matches)"), err
    with pytest.raises(ParameterError, match="no column 'nosuch' in this run"):
        check_column("--within", "nosuch", records(3, str), ["site", "empty"])
