"""The report of a steered run (--within / --remove, docs/steering.md): an estimated plane is said so, the montages
name their stratum, the PCA is per stratum; and "What the clusters follow" folds a column that is the same as
another into its row. Fake finished runs (no CNN), as in test_report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from explorer_fixtures import read_rows
from test_report import fake_run

from brainclust.io.atomic import atomic_write_csv, atomic_write_json
from brainclust.report.build import build_report


def steer(out: Path, *, within: str | None = "plane", remove: str | None = None, plane_source: str | None = "estimate",
          stratum_of=None) -> Path:
    """Make the fake run ``out`` one steered by the plane: each cluster one stratum (``stratum_of``: cluster id ->
    plane; by default 0, 1 -> axial, the others coronal), and the plane columns a run writes when it estimates
    the plane (``plane_source``; ``None``: not written, as when every header records the plane)."""
    stratum_of = stratum_of or {0: "axial", 1: "axial"}
    rows = read_rows(out)
    for r in rows:
        plane = stratum_of.get(int(r["cluster"]), "coronal")
        if plane_source is not None:
            r.update(plane=plane, plane_source=plane_source, plane_confidence="0.97")
        if within:
            r.update(stratum=plane)
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"].update(within=within, remove=remove)
    if within:
        manifest["pca"] = {"n_components": 8, "explained_variance": None, "fit_rows": None,
                           "solver": "per stratum (--within)"}
    atomic_write_json(out / "manifest.json", manifest)
    return out


def page_of(out: Path) -> str:
    return build_report(out, write_figures=False).path.read_text(encoding="utf-8")


def summary_row(page: str, row_id: str) -> str | None:
    m = re.search(rf'<tr id="{row_id}"><th>[^<]*</th><td>(.*?)</td></tr>', page, re.S)
    return re.sub(r"<[^>]+>", "", m.group(1)) if m else None


@pytest.mark.parametrize("option", ["within", "remove"])
def test_an_estimated_plane_is_said_in_the_summary(tmp_path, option):
    out = steer(fake_run(tmp_path, n_per=6), within="plane" if option == "within" else None,
                remove="plane" if option == "remove" else None)
    row = summary_row(page_of(out), "estimated-strata")
    assert row is not None and "The plane was estimated, not read from a header, for 18 of the 18 images" in row
    assert f"--{option} plane" in row and "plane_source" in row and "not an accuracy" in row
    assert ("each montage below names its cluster's stratum" in row) == (option == "within")


def test_the_line_needs_an_estimate_and_steering_by_the_plane(tmp_path):
    """Not when every header records the plane (``plane_source`` all ``header``, or not written), nor when the
    run steers by another column (--within site on images whose plane was estimated for --color-by plane)."""
    out = steer(fake_run(tmp_path, n_per=6))
    assert summary_row(page_of(out), "estimated-strata") is not None
    for i, settings in enumerate((dict(plane_source="header"), dict(plane_source=None), dict(within="site"))):
        out = steer(fake_run(tmp_path / str(i), n_per=6), **settings)
        page = page_of(out)
        assert summary_row(page, "estimated-strata") is None, settings
        assert "The plane was estimated" not in page


def test_partly_estimated_units_and_unreadable_images_are_counted(tmp_path):
    out = steer(fake_run(tmp_path, n_per=6))
    rows = read_rows(out)
    for r, source in zip(rows, ["mixed"] * 2 + ["unreadable"] + ["header"] * 5):
        r["plane_source"] = source
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    row = summary_row(page_of(out), "estimated-strata")
    assert "for 10 of the 18 images (and partly for 2 more); 1 could not be read" in row


def montage_headings(page: str) -> list[str]:
    return [re.sub(r":.*", "", h) for h in re.findall(r'<div class="montage"[^>]*>\s*<h3>(.*?)</h3>', page, re.S)]


def test_a_within_run_names_each_clusters_stratum_in_its_montage_heading(tmp_path):
    out = steer(fake_run(tmp_path, n_per=6, method="kmeans"), stratum_of={0: "axial", 1: "<b>sag</b>"})
    page = page_of(out)
    assert montage_headings(page) == ["Cluster 0 · stratum axial", "Cluster 1 · stratum &lt;b&gt;sag&lt;/b&gt;",
                                      "Cluster 2 · stratum coronal"]
    assert "Each heading names the cluster's stratum (its value of plane" in page


def test_a_within_level_runs_headings_say_the_stratum_is_the_first_pass_level(tmp_path):
    """A walk of the pages (2026-12-07): after `--within level_2 --k 2` the note said the heading's stratum was "its
    value of level_2", but assignments.csv's level_2 column is this run's own tree cut into 2 per stratum (4 values:
    "Cluster 2 · stratum 1" had level_2 = 2); the stratum is in the stratum column."""
    out = steer(fake_run(tmp_path, n_per=6, method="kmeans"), within="level_2", plane_source=None,
                stratum_of={0: "0", 1: "0", 2: "1"})
    page = page_of(out)
    assert montage_headings(page) == ["Cluster 0 · stratum 0", "Cluster 1 · stratum 0", "Cluster 2 · stratum 1"]
    assert ("(its value of level_2 in the first pass: the stratum column of assignments.csv, not its level_2 column, "
            "which cuts this run's own trees: a cluster lies in one stratum") in page


def test_without_within_the_headings_name_no_stratum(tmp_path):
    """Not even when the rows have a ``stratum`` column of their own (a metadata column of that name)."""
    out = steer(fake_run(tmp_path, n_per=6, method="kmeans"), within=None, plane_source=None)
    rows = read_rows(out)
    for r in rows:
        r["stratum"] = "A"
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    page = page_of(out)
    assert montage_headings(page) == ["Cluster 0", "Cluster 1", "Cluster 2"] and "· stratum" not in page


def test_a_within_runs_pca_is_per_stratum(tmp_path):
    out = steer(fake_run(tmp_path, n_per=6))
    pca_row = summary_row(page_of(out), "pca-row")
    assert pca_row.startswith("8 components per stratum: each stratum has its own PCA and its own clustering; the map")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["steer"] = {"within": {"strata": {"axial": 12, "coronal": 6}}}  # 6 rows: at most 6 components
    atomic_write_json(out / "manifest.json", manifest)
    assert "(fewer in 1 of the 2 strata, which have fewer images)" in summary_row(page_of(out), "pca-row")
    # recorded by the fit: what each stratum's PCA kept (32-d histogram features under --pca 50: 32)
    manifest["pca"]["n_components"] = 50
    manifest["steer"]["within"]["pca"] = {"axial": 32, "coronal": 6}
    atomic_write_json(out / "manifest.json", manifest)
    assert summary_row(page_of(out), "pca-row").startswith("32 components per stratum: each stratum has its own "
                                                           "PCA (fewer in 1 of the 2 strata) and its own")
    out = fake_run(tmp_path / "plain", n_per=6)
    assert summary_row(page_of(out), "pca-row") == "8 components, 90.0% of the variance; seed 0"


def test_the_page_folds_label_into_folder_and_leaves_associations_csv_as_it_is(tmp_path):
    out = fake_run(tmp_path, n_per=6)
    text = ("level,rank,column,kind,statistic,score,p_value,n,n_values,same_as,coarser_of,permutations,perm_rows\n"
            "cluster,1,folder,categorical,AMI,0.27,0.005,18,3,,,199,18\n"
            "cluster,2,label,categorical,AMI,0.27,0.005,18,3,folder,,199,18\n")
    (out / "associations.csv").write_text(text, encoding="utf-8")
    page = page_of(out)
    table = re.search(r'<table id="associations-table">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r"<tr><td>([^<]*)</td>", table) == ["folder (= label)"]
    assert (out / "associations.csv").read_text(encoding="utf-8") == text


def test_a_dollar_in_a_stratum_or_label_is_text_not_tex(tmp_path):
    """A stratum '$a_$' in the montage figure's row titles and in the confusion figure's labels: matplotlib read
    it as TeX and the report died at saving (the review of 2026-12-06); the figures are written."""
    out = steer(fake_run(tmp_path, n_per=6, method="kmeans"), stratum_of={0: "$a_$", 1: "$x^{"})
    rows = read_rows(out)
    for r in rows:
        r["label"] = r["stratum"]
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    report = build_report(out, write_figures=True)
    assert "$a_$" in report.path.read_text(encoding="utf-8")
    assert (out / "figures" / "montages.png").is_file()


def with_within_scores(out: Path, scores: dict) -> Path:
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["within"] = {"k": {"axial": 2, "coronal": 1}, "strata": {"axial": 12, "coronal": 6}, "scores": scores}
    atomic_write_json(out / "metrics.json", metrics)
    return out


def test_a_within_runs_scores_inside_the_strata_are_in_the_scores(tmp_path):
    """The terminal printed 'within the strata: NMI 0.613, ARI 0.000 (...)'; the page showed only the global
    scores, which a run at k cannot be compared with (the walk of 2026-12-07)."""
    out = with_within_scores(steer(fake_run(tmp_path, n_per=6)), {
        "per_stratum": {"axial": {"n": 12, "nmi": 0.7, "ari": 0.5}}, "mean_nmi": 0.7, "mean_ari": 0.5,
        "not_scored": {"coronal": "6 labelled images of 1 label"}})
    page = page_of(out)
    nmi = re.search(r'<tr id="score-within-nmi"><th>NMI within the strata</th><td class="val">(.*?)</td>'
                    r'<td rowspan="2">(.*?)</td>', page, re.S)
    ari = re.search(r'<tr id="score-within-ari"><th>ARI within the strata</th><td class="val">(.*?)</td></tr>', page)
    assert (nmi.group(1), ari.group(1)) == ("0.700", "0.500")
    assert "over 1 scored stratum of 2; 1 not scored" in nmi.group(2) and "metrics.json within.scores" in nmi.group(2)
    assert "the 3 clusters of all strata together" in nmi.group(2)
    assert re.search(r'id="chip-within"[^>]*>Within the strata: NMI <b>0.700</b>, ARI <b>0.500</b>', page)
    with_within_scores(out, {"per_stratum": {}, "not_scored": {"axial": "x", "coronal": "y"}})
    assert "No stratum could be scored: in each of the 2 strata" in page_of(out)


@pytest.mark.parametrize("scores", [None, "x", {"mean_nmi": "0.7", "mean_ari": 0.5, "per_stratum": {}}, {}])
def test_no_within_scores_no_row(tmp_path, scores):
    """A run without --within, without labels, or an older or damaged metrics.json: no row, no error."""
    out = fake_run(tmp_path, n_per=6)
    if scores is not None:
        with_within_scores(out, scores)
    page = page_of(out)
    assert 'id="score-within' not in page and "within the strata" not in page.lower()


def test_a_tree_level_that_follows_nothing_says_so(tmp_path):
    """'level 2: subject (AMI 0.00) (p = 1)' named a column at every level of a --within run."""
    out = steer(fake_run(tmp_path, n_per=6))
    head = "level,rank,column,kind,statistic,score,p_value,n,n_values,same_as,coarser_of,permutations,perm_rows\n"
    (out / "associations.csv").write_text(head + "level_2,1,subject,categorical,AMI,0,1,18,3,,,199,18\n"
                                          "level_3,1,suffix,categorical,AMI,0.3,0.005,18,3,,,199,18\n",
                                          encoding="utf-8")
    items = re.findall(r"<li>(.*?)</li>", re.search(r'<ul id="tree-follows">(.*?)</ul>', page_of(out), re.S).group(1))
    assert items == ["level 2: nothing clearly", "level 3: suffix (AMI 0.30)"]


def test_unscored_strata_of_sparse_labels_are_not_said_to_share_one_label():
    """A stratum is not scored when its labelled images hold fewer than two labels: with sparse labels that is
    mostly one labelled image or none, which the page called "sharing one label"."""
    from brainclust.report.runtext import within_scores

    sparse = {"within": {"scores": {"per_stratum": {}, "not_scored": {
        "A": "1 labelled image of 1 label", "B": "0 labelled images of 0 labels"}}}}
    text = within_scores(sparse, 4)["meaning"]
    assert "fewer than two labels" in text and "share one label" not in text
    partial = {"within": {"scores": {"per_stratum": {"A": {"n": 4, "nmi": 0.5, "ari": 0.2}}, "mean_nmi": 0.5,
                                     "mean_ari": 0.2, "not_scored": {"B": "0 labelled images of 0 labels"}}}}
    text = within_scores(partial, 4)["meaning"]
    assert "1 not scored, their labelled images holding fewer than two labels" in text


def with_k_auto(out: Path, clustering_k="auto") -> Path:
    """Make the steered fake run one of ``--k auto``: each stratum chose its own k (``steer.within.k``)."""
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"]["k"] = "auto"
    manifest["clustering"].update(k=clustering_k, k_requested="auto")
    manifest["steer"] = {"within": {"column": "plane", "k": {"axial": 2, "coronal": 1},
                                    "strata": {"axial": 12, "coronal": 6}}}
    atomic_write_json(out / "manifest.json", manifest)
    return out


@pytest.mark.parametrize("clustering_k", ["auto", 0])
def test_a_within_k_auto_run_shows_each_strata_k_not_k_0(tmp_path, clustering_k):
    """'35 clusters (hierarchical, k = 0 per stratum)' and 'hierarchical, k = 0: 35 clusters found' (the walk of
    2026-12-07): with --k auto each stratum chose its own k, which the header and the summary now name. A run
    folder written before (manifest clustering.k 0) reads so too."""
    page = page_of(with_k_auto(steer(fake_run(tmp_path, n_per=6)), clustering_k))
    assert "3 clusters (hierarchical, k auto per stratum (axial: 2, coronal: 1))" in page
    assert "hierarchical, k auto per stratum (axial: 2, coronal: 1): 3 clusters found" in page
    assert "k = 0 per stratum" not in page and "k = 0:" not in page and "k = auto" not in page
    assert "3 clusters (hierarchical, k = 3 per stratum)" in page_of(steer(fake_run(tmp_path / "fixed", n_per=6)))
    assert "3 clusters (hierarchical, k = 3)" in page_of(fake_run(tmp_path / "plain", n_per=6))
    from brainclust.report.runtext import k_text  # many strata: the first 12 named, the others counted

    many = {"settings": {"within": "subject", "k": "auto"},
            "steer": {"within": {"k": {f"s{i:02d}": 2 for i in range(14)}}}}
    assert k_text(many, 28) == ("k auto per stratum (" + ", ".join(f"s{i:02d}: 2" for i in range(12))
                                + ", … 2 more in manifest.json steer.within.k)")


def selection(chosen: int, ks=(2, 3, 4)) -> dict:
    """A k_selection record as KSelector.as_dict writes it (two of its indices)."""
    return {"ks": list(ks), "chosen_k": chosen, "indices": {
        "silhouette": {"curve": [0.2, 0.4, 0.3][:len(ks)], "best": "max", "vote": chosen},
        "gap": {"curve": [0.1, None, 0.3][:len(ks)], "best": "1-SE rule", "vote": None}}}


def test_a_within_k_auto_runs_evidence_for_each_k_is_in_the_report(tmp_path):
    """A --k auto run has a 'Number of clusters' section with the curves; a --within --k auto run had none, while
    the terminal said to look at the curves in 'the report' (the walk of 2026-12-07): each stratum's k and votes
    now in a table, the curves one row per stratum; a stratum without a vote (too small) and a damaged record
    are rows without votes, never an error."""
    out = with_k_auto(steer(fake_run(tmp_path, n_per=6)))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["within"] = {"k": {"axial": 2, "coronal": 1}, "strata": {"axial": 12, "coronal": 6},
                         "k_selection": {"axial": selection(2)}}
    atomic_write_json(out / "metrics.json", metrics)
    page = page_of(out)
    assert '<h3 id="k-selection-within">Number of clusters per stratum (--k auto)</h3>' in page
    assert "metrics.json (within.k_selection) and below, one row per stratum" in page
    assert "A stratum without votes had too few images" in page
    table = re.search(r'<table id="within-k-table">(.*?)</table>', page, re.S).group(1)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    assert cells == [["stratum", "images", "k", "gap", "silhouette"], ["axial", "12", "2", "none", "2"],
                     ["coronal", "6", "1", "", ""]]
    assert re.search(r'alt="k selection curves per stratum" src="data:image/png;base64,', page)
    metrics["within"]["k_selection"]["coronal"] = {"ks": [2, 3], "chosen_k": 2, "indices": {"gap": {"curve": [1]}}}
    atomic_write_json(out / "metrics.json", metrics)
    assert "<td>coronal</td><td class=\"num\">6</td><td class=\"num\">1</td><td class=\"num\"></td>" in page_of(out)
    from brainclust.report.kstrata import within_k_table  # fewer distinct images than the vote's k: both said

    fewer = within_k_table({"within": {"k": {"a": 3}, "k_selection": {"a": selection(4)}}})
    assert fewer["rows"][0]["k"] == "3 (vote: 4)"
    plain = page_of(steer(fake_run(tmp_path / "fixed", n_per=6)))  # --within at a given k: no such section
    assert "k-selection-within" not in plain and "within-k-table" not in plain
