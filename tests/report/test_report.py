"""HTML report: sections, figures, agreement with assignments.csv, escaping, rebuild without extraction.

Most tests use a *fake finished run*: tiny images plus the outputs a run
writes (assignments.csv, metrics.json, manifest.json, model/cluster.npz),
built from random blobs, so no CNN runs. One test runs the real CLI.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import record_hashes
from explorer_fixtures import read_rows

from brainclust.cli import main
from brainclust.cluster.methods import Clusterer
from brainclust.errors import ModelFileError
from brainclust.cluster.scores import clustering_accuracy, score
from brainclust.io.atomic import atomic_write_csv, atomic_write_json
from brainclust.report.build import (
    build_report,
    confusion,
    load_outputs,
    purity_rows,
    stratified_sample,
    typical_atypical,
)

COLUMNS = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
LEVELS = [f"level_{L}" for L in range(1, 11)]
SCRIPT_PATH = "<script>alert(1)</script>.png"        # folder '<script>alert(1)<' + file 'script>.png'
IMG_NAME = "<img src=x onerror=alert(1)>.png"


def fake_run(tmp: Path, n_per: int = 10, k: int = 3, method: str = "hierarchical", labels: bool = True,
             extra_paths: tuple[str, ...] = (), seed: int = 0, clusters_override=None) -> Path:
    """Write a finished run's outputs for ``k`` well-separated blobs of tiny images; return its --out."""
    rng = np.random.default_rng(seed)
    data, out = tmp / "data", tmp / "out"
    paths, ytrue, X = [], [], []
    centres = rng.normal(size=(k, 8)) * 6
    for c in range(k):
        for i in range(n_per):
            paths.append(f"class{c}/img_{i:03d}.png")
            ytrue.append(f"class{c}")
            X.append(centres[c] + rng.normal(size=8))
    for j, p in enumerate(extra_paths):
        paths.append(p)
        ytrue.append(p.split("/")[0] if "/" in p else "")
        X.append(centres[j % k] + rng.normal(size=8))
    X = np.asarray(X)
    for idx, p in enumerate(paths):
        f = data / p
        f.parent.mkdir(parents=True, exist_ok=True)
        arr = (np.outer(np.linspace(0, 1, 24), np.linspace(0, 1, 20)) * (60 + 60 * (idx % 3))).astype(np.uint8)
        Image.fromarray(arr).save(f, format="PNG")
    cl = Clusterer(method=method, n_clusters=k, random_state=seed).fit(X)
    if clusters_override is not None:
        cl.labels_ = np.asarray(clusters_override, dtype=np.int64)
    cl.save(out / "model" / "cluster.npz")
    rows = []
    for i, p in enumerate(paths):
        row = {"path": p, "name": Path(p).name, "type": "png", "size": (data / p).stat().st_size, "width": 20,
               "height": 24, "label": ytrue[i] if labels else "", "cluster": int(cl.labels_[i])}
        if cl.levels_ is not None:
            row.update({c: int(cl.levels_[i, j]) for j, c in enumerate(LEVELS)})
        rows.append(row)
    atomic_write_csv(out / "assignments.csv", COLUMNS + (LEVELS if cl.levels_ is not None else []), rows)
    metrics = score(X, cl.labels_, ytrue if labels else None)
    atomic_write_json(out / "metrics.json", metrics)
    manifest = {"kind": "run", "input": str(data.resolve()), "versions": {"brainclust": "test"},
                "settings": {"method": method, "k": k, "seed": seed, "labels_from_folders": labels, "pca": 8,
                             "backbone": "efficientnet_lite0"},
                "backbone": {"name": "efficientnet_lite0", "dim": 1280, "input_size": 224,
                             "weights_path": "/w/lite0.pth", "weights_sha256": "ab" * 32, "precision": "fp32",
                             "device": "cpu"},
                "pca": {"n_components": 8, "explained_variance": 0.9},
                "clustering": {"method": method, "k": k, "n_clusters_found": cl.n_clusters_},
                "cache": {"hits": len(paths), "misses": 0}, "n_files_scanned": len(paths) + 1,
                "n_images": len(paths), "skipped": [{"path": "broken.png", "reason": "not a recognised image file"}],
                "timings_s": {"scan": 0.01, "extract": 1.5, "reduce": 0.02, "cluster": 0.01}}
    atomic_write_json(out / "manifest.json", manifest)
    record_hashes(out, data)
    return out


class _Tables(HTMLParser):
    """Collect the cell texts of the tables with an id."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._cur = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._cur = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._cur is not None:
            self._cur.append([])
        elif tag in ("td", "th") and self._cur is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._cur = None
        elif tag in ("td", "th") and self._cell is not None and self._cur is not None:
            self._cur[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: str) -> dict[str, list[list[str]]]:
    p = _Tables()
    p.feed(page)
    return p.tables


def read_assignments(out: Path) -> list[dict]:
    with open(out / "assignments.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A labelled hierarchical fake run with hostile names, and its report."""
    out = fake_run(tmp_path_factory.mktemp("rep"), extra_paths=(SCRIPT_PATH, f"class0/{IMG_NAME}"))
    info = build_report(out)
    return out, info, info.path.read_text(encoding="utf-8")


# -- tables ------------------------------------------------------------------------
def test_confusion_hand_computed_hungarian_order():
    y = ["a", "a", "a", "b", "b", "c"]
    c = [1, 1, 0, 0, 0, 2]
    conf = confusion(y, c)
    assert conf.row_names == ["a", "b", "c"] and conf.col_ids == [1, 0, 2]
    assert conf.counts.tolist() == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert conf.matched_accuracy == pytest.approx(5 / 6) == pytest.approx(clustering_accuracy(y, c))


def test_confusion_with_noise_extra_clusters_and_unlabelled():
    y = ["a", "a", "b", "b", "", "a"]
    c = [0, 2, 1, 1, 0, -1]
    conf = confusion(y, c)
    assert conf.col_names[-1] == "noise" and conf.n_unlabelled == 1
    assert conf.counts.sum() == 5                      # every labelled image once, noise included
    assert conf.counts[conf.row_names.index("a"), -1] == 1
    labelled = [i for i, v in enumerate(y) if v]
    assert conf.matched_accuracy == pytest.approx(
        clustering_accuracy([y[i] for i in labelled], [c[i] for i in labelled]))


def test_purity_rows_hand_computed():
    rows = purity_rows(["a", "a", "b", "b", "b", ""], [0, 0, 0, 1, 1, 1])
    assert rows[0] == {"cluster": "0", "size": 3, "n_labelled": 3, "majority": "a", "majority_count": 2,
                       "purity": pytest.approx(2 / 3), "breakdown": "a: 2, b: 1"}
    assert rows[1]["size"] == 3 and rows[1]["n_labelled"] == 2 and rows[1]["purity"] == 1.0


def test_typical_atypical_orders_by_distance_to_centre():
    angles = np.array([0.0, 0.1, -0.1, 0.5, -0.6, 3.0, 3.05])
    X = np.column_stack([np.cos(angles), np.sin(angles)])
    clusters = np.array([0, 0, 0, 0, 0, 1, 1])
    picks = typical_atypical(X, clusters, 2)
    typ, aty = picks[0]
    assert typ[0] in (0, 1, 2) and aty[0] == 4 and set(typ).isdisjoint(aty)
    assert sorted(picks[1][0] + picks[1][1]) == [5, 6]          # a small cluster shows each image once


def test_stratified_sample_keeps_every_cluster():
    clusters = np.array([0] * 9000 + [1] * 995 + [2] * 5)
    s = stratified_sample(clusters, 2000, random_state=0)
    assert len(s) <= 2003 and len(set(s.tolist())) == len(s)
    assert set(clusters[s].tolist()) == {0, 1, 2}
    assert np.array_equal(s, stratified_sample(clusters, 2000, random_state=0))


# -- the report --------------------------------------------------------------------
def test_sections_montages_and_figures(built):
    out, info, page = built
    for sec in ("summary", "scores", "map", "dendrogram", "montages", "silhouette", "confusion", "purity"):
        assert f'<section id="{sec}">' in page
    k = len(set(int(r["cluster"]) for r in read_assignments(out)))
    assert len(re.findall(r'<div class="montage" id="cluster-\d+"', page)) == k
    for name in ("tsne_clusters", "tsne_labels", "dendrogram", "montages", "silhouette", "confusion"):
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and (out / "figures" / f"{name}.svg").is_file()
        with Image.open(png) as im:
            assert round(im.info["dpi"][0]) == 300
    assert "not a recognised image file" in page and "broken.png" in page       # skipped files listed
    for word in ("Silhouette", "ARI", "NMI", "FMI", "ACC", "efficientnet_lite0", "ab" * 32):
        assert word in page


def test_self_contained_no_external_urls(built):
    _, _, page = built
    assert not re.search(r'(src|href)\s*=\s*"(?!data:|#)', page)
    assert "http://" not in page and "https://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "Content-Security-Policy" in page


def test_confusion_matrix_agrees_with_assignments(built):
    out, _, page = built
    rows = read_assignments(out)
    table = tables_of(page)["confusion-table"]
    header = table[0][1:-1]
    expected = Counter((r["label"], r["cluster"]) for r in rows if r["label"])
    seen = 0
    for line in table[1:]:
        label = html.unescape(line[0])
        for col, cell in zip(header, line[1:-1]):
            cid = "-1" if col == "noise" else col
            assert int(cell) == expected[(label, cid)], (label, col)
            seen += int(cell)
        assert int(line[-1]) == sum(v for (lab, _), v in expected.items() if lab == label)
    assert seen == sum(1 for r in rows if r["label"])
    metrics = json.loads((out / "metrics.json").read_text())
    diag = sum(int(table[i + 1][i + 1]) for i in range(min(len(table) - 1, len(header))))
    assert diag / seen == pytest.approx(metrics["acc"])


def test_purity_table_agrees_with_assignments(built):
    out, _, page = built
    rows = read_assignments(out)
    table = tables_of(page)["purity-table"]
    for line in table[1:]:
        members = [r for r in rows if r["cluster"] == line[0]]
        assert int(line[1]) == len(members)
        top = Counter(r["label"] for r in members if r["label"]).most_common(1)[0]
        assert float(line[3].rstrip("%")) == pytest.approx(100 * top[1] / len([m for m in members if m["label"]]),
                                                            abs=0.06)


def test_hostile_file_names_are_escaped(built):
    _, _, page = built
    assert "<script>alert" not in page and "<img src=x" not in page
    assert html.escape(SCRIPT_PATH, quote=False) in page
    assert html.escape(IMG_NAME, quote=False) in page
    assert page.count("<script") == 2                 # the JSON data block and the page's own script
    data = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S).group(1)
    assert SCRIPT_PATH in json.loads(data)["names"]   # intact once parsed, but never raw in the HTML


def test_silhouette_plot_mean_matches_metrics(built):
    from brainclust.report.build import silhouette_per_image

    out, _, _ = built
    run = load_outputs(out)
    sil = silhouette_per_image(run.X, run.clusters)
    assert np.nanmean(sil) == pytest.approx(run.metrics["silhouette"], abs=1e-9)


def test_manifest_records_no_extraction(built):
    out, info, _ = built
    rep = json.loads((out / "manifest.json").read_text())["report"]
    assert rep["features_extracted"] == 0 and rep["file"] == "report.html"
    assert rep["size_bytes"] == info.path.stat().st_size
    assert "model/cluster.npz" in rep["sources"]


def test_kmeans_without_labels_explains_missing_dendrogram(tmp_path):
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", labels=False)
    page = build_report(out, write_figures=False).path.read_text()
    assert "Not applicable: the clustering method is &#39;kmeans&#39;" in page
    assert 'id="confusion"' not in page and "dendrogram.png" not in page
    assert not (out / "figures").exists()
    assert len(re.findall(r'<div class="montage" id="cluster-\d+"', page)) == 2


def test_noise_gets_its_own_montage(tmp_path):
    override = [0] * 8 + [1] * 7 + [-1]
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=override)
    page = build_report(out, write_figures=False).path.read_text()
    assert 'id="cluster-noise"' in page
    assert tables_of(page)["confusion-table"][0][-2] == "noise"


def test_montages_show_the_largest_clusters_above_the_cap(tmp_path, monkeypatch):
    import brainclust.report.build as build_module

    override = [0] * 2 + [1] * 5 + [2] * 3 + [3] * 4 + [-1] * 2       # sizes 2, 5, 3, 4 and noise
    out = fake_run(tmp_path, n_per=4, k=4, method="kmeans", clusters_override=override)
    monkeypatch.setattr(build_module, "MONTAGE_CLUSTERS", 2)
    page = build_report(out).path.read_text()
    shown = re.findall(r'<div class="montage" id="cluster-(\w+)"', page)
    assert shown == ["1", "3", "noise"]                                    # the two largest, by id, then noise
    assert "Only the 2 largest of the 4 clusters are shown" in page
    with Image.open(out / "figures" / "montages.png") as im:               # three rows drawn, not five
        three = im.size[1]
    monkeypatch.setattr(build_module, "MONTAGE_CLUSTERS", 40)
    page = build_report(out).path.read_text()
    assert "largest of the" not in page and len(re.findall(r'<div class="montage" id=', page)) == 5
    with Image.open(out / "figures" / "montages.png") as im:
        assert im.size[1] > three


def test_typical_atypical_only_the_clusters_asked():
    X = np.random.default_rng(0).normal(size=(30, 4))
    clusters = np.repeat([2, 0, 1], 10)
    every = typical_atypical(X, clusters, 3)
    some = typical_atypical(X, clusters, 3, only=[1, 2])
    assert set(every) == {0, 1, 2} and set(some) == {1, 2} and some[2] == every[2]
    assert set(every[0][0] + every[0][1]) <= set(range(10, 20))


def test_the_label_source_and_the_metadata_files_are_the_runs(tmp_path):
    out = fake_run(tmp_path, n_per=4, k=2)
    assert "Labels (the first sub-folder of each image, or the one below a split folder" in build_report(
        out, write_figures=False).path.read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "labels": "sequence", "scan": {"metadata_files": 2}}))
    page = build_report(out, write_figures=False).path.read_text()
    assert "Labels (the column 'sequence')" in page
    assert f"from {manifest['n_files_scanned']} files (2 of them metadata, 1 skipped)" in page


def test_missing_images_become_placeholders(tmp_path):
    out = fake_run(tmp_path, n_per=6, k=2)
    import shutil

    shutil.rmtree(tmp_path / "data")
    info = build_report(out, write_figures=False)
    assert info.n_missing_images == 12 and info.path.is_file()
    assert "could not be read" in info.path.read_text()


def test_outputs_that_disagree_are_rejected(tmp_path):
    out = fake_run(tmp_path, n_per=5, k=2)
    rows = read_assignments(out)[:-1]
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    with pytest.raises(ModelFileError, match="different runs"):
        build_report(out)
    with pytest.raises(ModelFileError, match="not a finished brainclust run"):
        build_report(tmp_path / "nowhere")


def test_report_on_a_check_folder_says_what_it_is(tmp_path):
    """It said "holds 'checks.html', which is not a brainclust output" (a probe's find)."""
    from brainclust.report.rebuild import check_rebuildable

    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "checks.html").write_text("<html></html>")
    with pytest.raises(ModelFileError, match="is the folder of a 'brainclust check'"):
        check_rebuildable(tmp_path)


@pytest.mark.slow
def test_report_command_extracts_nothing_and_imports_no_torch(tmp_path):
    out = fake_run(tmp_path, n_per=6, k=2)
    code = ("import sys; from brainclust.cli import main; rc = main(['report', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "0 features extracted" in res.stderr and "report.html" in res.stdout
    rep = json.loads((out / "manifest.json").read_text())["report"]
    assert rep["built_by"] == "brainclust report" and rep["features_extracted"] == 0


def test_report_is_deterministic(tmp_path):
    out = fake_run(tmp_path, n_per=6, k=2)
    first = build_report(out, write_figures=False).path.read_bytes()
    assert build_report(out, write_figures=False).path.read_bytes() == first


@pytest.mark.slow
def test_cli_run_writes_report_and_report_rebuilds_it(tmp_path, capsys, image_folder):
    out = tmp_path / "run"
    code = main(["run", str(image_folder), "--out", str(out), "--k", "2", "--labels-from-folders",
                 "--backbone", "efficientnet_lite0", "--workers", "0", "--cache-dir", str(tmp_path / "c")])
    assert code == 0 and "report:" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<div class="montage" id="cluster-\d+"', page)) == 2
    man = json.loads((out / "manifest.json").read_text())
    assert man["report"]["built_by"] == "brainclust run" and man["n_images"] == 8
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").read_text() == page.replace("brainclust run</code>", "brainclust report</code>")
    (out / "report.html").unlink()
    os.symlink(out, tmp_path / "latest")  # a link to the run: the run is rebuilt, the link stays a link
    assert main(["report", str(tmp_path / "latest")]) == 0
    assert (tmp_path / "latest").is_symlink() and (out / "report.html").is_file()


@pytest.mark.parametrize("flag", [[], ["--no-report"]])
def test_run_no_report_flag(tmp_path, monkeypatch, capsys, flag):
    from types import SimpleNamespace

    import brainclust.pipeline

    def fake_pipeline_run(data, out, cfg, finish=None):
        fake_run(Path(out).parent / "fake", n_per=5, k=2)
        import shutil

        shutil.copytree(Path(out).parent / "fake" / "out", out)
        if finish is not None:  # the report is built while the run folder is still locked
            finish(Path(out))
        return SimpleNamespace(metrics=json.loads((Path(out) / "metrics.json").read_text()), skipped=[],
                               manifest={}, out_dir=Path(out))

    monkeypatch.setattr(brainclust.pipeline, "run", fake_pipeline_run)
    (tmp_path / "in").mkdir()
    assert main(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--k", "2", *flag]) == 0
    assert (tmp_path / "o" / "report.html").exists() == (not flag)


def test_k_auto_curves_are_plotted_only_when_present(tmp_path):
    out = fake_run(tmp_path, n_per=6, k=2, method="kmeans")
    assert 'id="k-selection"' not in build_report(out, write_figures=False).path.read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["k_selection"] = {"ks": [2, 3, 4], "chosen_k": 2, "indices": {
        "silhouette": {"best": "max", "curve": [0.5, 0.3, None], "vote": 2},
        "davies_bouldin": {"best": "min", "curve": [0.9, 1.1, 1.3], "vote": 2}}}
    (out / "metrics.json").write_text(json.dumps(metrics))
    info = build_report(out)
    assert 'id="k-selection"' in info.path.read_text()
    assert "figures/k_selection.png" in info.figures and (out / "figures" / "k_selection.svg").is_file()


def test_settings_that_are_paths_show_their_last_part():
    from brainclust.report.tables import settings_rows

    rows = dict(settings_rows({"settings": {"cache_dir": "/mnt/export/DOE_JANE/cache", "metadata": "DOE_JANE/meta.csv",
                                            "split_table": "C:\\Users\\x\\DOE_JANE\\split.csv", "k": 4,
                                            "labels": "folder", "include": ["**/Tr-*"]}}))
    assert rows == {"cache_dir": ".../cache", "metadata": ".../meta.csv", "split_table": ".../split.csv", "k": "4",
                    "labels": "folder", "include": "**/Tr-*"}


def test_settings_that_did_not_apply_to_the_run_are_not_listed():
    """The defaults of options the run did not use (``ssl_mode`` without ``--self-supervised``, ``remove_rule``
    without ``--remove``, ``calibration_size`` without int8...) said nothing about it; the rules are
    RunConfig's (brainclust.core.needs), so a run that used them lists them."""
    from dataclasses import asdict

    from brainclust.model.config import RunConfig
    from brainclust.report.tables import settings_rows

    plain = dict(settings_rows({"settings": asdict(RunConfig())}))
    for name in ("ssl_mode", "ssl_gate", "remove_rule", "calibration_size", "fusion_norm", "split_column"):
        assert name not in plain
    assert {"k", "pca", "clip_percentiles", "method", "checks"} <= set(plain)
    used = asdict(RunConfig(ssl=("contrastive",), remove="folder", precision="int8", backbone="pixels+hog",
                            split_table="s.csv", reduce="umap", intensity_window=(0.0, 255.0)))
    rows = dict(settings_rows({"settings": used}))
    assert {"ssl_mode", "ssl_gate", "remove_rule", "calibration_size", "fusion_norm", "split_column"} <= set(rows)
    assert "pca" not in rows and "clip_percentiles" not in rows  # --reduce umap, --intensity-window: not used


def test_k_with_dbscan_is_not_listed_unless_it_was_used():
    """``k 4`` was listed for a DBSCAN run, whose header says ``eps = ...`` (it finds its own number of clusters;
    the run warns of a given --k, brainclust.core.needs): still listed where k sized the self-supervised heads or
    cut the first tree of a level_N column, and for a run folder of any other method."""
    from dataclasses import asdict

    from brainclust.model.config import RunConfig
    from brainclust.report.tables import settings_rows

    assert "k" not in dict(settings_rows({"settings": asdict(RunConfig(method="dbscan", k=6))}))
    for used in ({"ssl": ("rotation",)}, {"within": "level_2"}, {"remove": "level_3"}):
        assert dict(settings_rows({"settings": asdict(RunConfig(method="dbscan", k=6, **used))}))["k"] == "6"
    assert dict(settings_rows({"settings": asdict(RunConfig(method="kmeans"))}))["k"] == "4"


def test_settings_with_no_option_are_not_listed():
    """A run given --pca listed ``pca_given True``: bookkeeping of the run (its cap is then a warning), which no
    option sets; ``progress`` neither."""
    from dataclasses import asdict

    from brainclust.model.config import RunConfig
    from brainclust.report.tables import settings_rows

    rows = dict(settings_rows({"settings": asdict(RunConfig(pca=20, pca_given=True, progress=False))}))
    assert "pca_given" not in rows and "progress" not in rows and rows["pca"] == "20"


def test_slices_and_volume_index_are_listed_only_where_the_scan_found_nifti(tmp_path):
    """A folder of PNGs listed ``slices axial:mid`` and ``volume_index 0``, which only NIfTI volumes use: the run
    records whether its scan found a NIfTI file (``scan.nifti``) and the table follows it. The settings alone cannot
    tell, so they are never refused: a mixed folder slices its volumes; a run folder without the record lists them."""
    import brainclust
    from corpus import brain_volume, write_nifti

    from brainclust.report.tables import settings_rows

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        arr = (np.outer(np.linspace(0, 1, 24), np.linspace(0, 1, 20)) * (60 + 40 * i)).astype(np.uint8)
        Image.fromarray(arr).save(data / f"img_{i}.png")
    kw = dict(backbone="histogram", checks="off", descriptors="off", k=2, cache_dir=str(tmp_path / "c"),
              progress=False)
    pngs = brainclust.run(data, None, **kw).manifest
    assert pngs["scan"]["nifti"] is False
    rows = dict(settings_rows(pngs))
    assert "slices" not in rows and "volume_index" not in rows and rows["backbone"] == "histogram"
    write_nifti(data / "vol.nii.gz", brain_volume())
    mixed = brainclust.run(data, None, slices="axial:3", **kw).manifest
    assert mixed["scan"]["nifti"] is True
    assert dict(settings_rows(mixed))["slices"] == "axial:3"  # volume_index: only with a 4-D file (below)
    del pngs["scan"]["nifti"], pngs["scan"]["nifti_multi_volume"]  # a run folder written before the records
    assert {"slices": "axial:mid", "volume_index": "0"}.items() <= dict(settings_rows(pngs)).items()


def test_volume_index_is_listed_only_where_a_nifti_file_had_several_volumes(tmp_path):
    """A folder of 3-D NIfTI files listed ``volume_index 0``, which picks a volume of 4-D files only: the run records
    whether a NIfTI file had more than one volume (``scan.nifti_multi_volume``) and the table follows it; a run
    folder without the record lists it."""
    import brainclust
    from corpus import brain_volume, write_nifti

    from brainclust.report.tables import settings_rows

    for i in range(2):
        write_nifti(tmp_path / "data" / f"v{i}.nii.gz", brain_volume(seed=i))
    kw = dict(backbone="histogram", checks="off", descriptors="off", k=2, slices="axial:3",
              cache_dir=str(tmp_path / "c"), progress=False)
    flat = brainclust.run(tmp_path / "data", None, **kw).manifest
    assert flat["scan"]["nifti"] is True and flat["scan"]["nifti_multi_volume"] is False
    rows = dict(settings_rows(flat))
    assert "volume_index" not in rows and rows["slices"] == "axial:3"
    del flat["scan"]["nifti_multi_volume"]  # a run folder written before the record
    assert dict(settings_rows(flat))["volume_index"] == "0"
    write_nifti(tmp_path / "data" / "series.nii.gz", np.stack([brain_volume(seed=5)] * 2, axis=-1))
    series = brainclust.run(tmp_path / "data", None, **kw).manifest
    assert series["scan"]["nifti_multi_volume"] is True and dict(settings_rows(series))["volume_index"] == "0"


def test_the_page_holds_no_absolute_path(built):
    """The report is meant to be mailed: a data folder under /mnt/export/DOE_JANE/ would name the patient. The
    page names the data folder and the weights file by their own names (the full paths stay in manifest.json)."""
    out, _, page = built
    data = Path(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["input"])
    assert str(data) not in page and str(data.parent) not in page and "/w/lite0.pth" not in page
    assert data.name in page and "lite0.pth" in page


def test_numbers_of_auto_csv_are_shown_short():
    from brainclust.report.tables import short_number

    assert short_number("0.24512345678901") == "0.2451" and short_number("-0.000123456") == "-0.0001235"
    assert short_number("12") == "12" and short_number("kmeans") == "kmeans" and short_number("") == ""


def test_report_on_the_demos_folder_points_at_its_run(tmp_path, capsys):
    (tmp_path / "demo_out" / "results").mkdir(parents=True)
    (tmp_path / "demo_out" / "results" / "manifest.json").write_text("{}")
    assert main(["report", str(tmp_path / "demo_out")]) == 2
    err = capsys.readouterr().err
    assert "not a finished brainclust run" in err
    assert f"writes its run into '{tmp_path / 'demo_out' / 'results'}': give that folder" in err


def test_captions_name_a_file_as_it_is_called_not_as_the_csv_guards_it(tmp_path):
    """'-2.png' is '\\x2d2.png' in assignments.csv; the montages, the explorer and the viewer show '-2.png'."""
    from brainclust.report.viewdata import ViewData
    from brainclust.report.viewquery import Focus, Queries

    out = fake_run(tmp_path, n_per=3, k=2, method="kmeans", extra_paths=("-2.png",))
    page = build_report(out, write_figures=False, montage_size=8).path.read_text()
    assert "<figcaption>-2.png</figcaption>" in page and "x2d2.png</figcaption>" not in page
    data = json.loads(re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S).group(1))
    j = data["names"].index("\\x2d2.png")                       # the data keeps the guarded form (its CSV too)
    assert data["shown"] == {str(j): "-2.png"}                  # only the names shown otherwise
    view = ViewData(out, cache_dir=tmp_path / "vc")
    i = [r["path"] for r in read_rows(out)].index("\\x2d2.png")
    assert view.caption(i).startswith("-2.png | cluster ")
    items = Queries(view).page(Focus(), 0, 100)["items"]
    assert {it["name"] for it in items if it["i"] == i} == {"-2.png"}
    for q in ("-2.png", "x2d2", "-2"):  # found by its name and by its guarded form
        assert [it["i"] for it in Queries(view).page(Focus(q=q), 0, 100)["items"]] == [i], q


def test_view_gives_labels_without_a_cluster_colours_no_cluster_has(tmp_path):
    """4 labels, 2 clusters: the 2 matched labels take their clusters' colours, the other 2 their own
    (as the report)."""
    from brainclust.report.viewdata import ViewData

    out = fake_run(tmp_path, n_per=4, k=4, method="kmeans", clusters_override=[0] * 8 + [1] * 8)
    view = ViewData(out, cache_dir=tmp_path / "vc")
    lab, clu = view.by_name["label"], view.by_name["cluster"]
    assert len(lab.categories) == 4 and len(set(lab.colours)) == 4
    assert len(set(lab.colours) & set(clu.colours)) == 2


def test_images_set_aside_by_exclude_are_not_called_noise(tmp_path):
    override = [0] * 8 + [1] * 6 + [-1] * 2
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=override)
    mark_set_aside(out, 2)
    page = build_report(out, write_figures=False).path.read_text()
    assert ", 2 set aside</span>" in page and "14 clustered, 2 set aside by --exclude" in page
    clustering = re.search(r"<tr><th>Clustering</th><td>(.*?)</td></tr>", page, re.S).group(1)
    assert "set aside" not in clustering  # said once, in the row above
    assert "<h3>Set aside: 2 images" in page and ", 2 noise" not in page
    assert 'data-browse-value="set aside" data-browse-label="set aside"' in page  # the legend's own name
    data = json.loads(re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S).group(1))
    cluster = next(c for c in data["columns"] if c["name"] == "cluster")
    assert data["unclustered"] == "set aside" and "set aside" in cluster["cats"] and "noise" not in cluster["cats"]
    from brainclust.report.viewdata import ViewData

    view = ViewData(out, cache_dir=tmp_path / "vc")
    assert view.meta()["unclustered"] == "set aside" and "set aside" in view.by_name["cluster"].categories
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "settings": {**manifest["settings"], "exclude": []}}))
    assert "noise" in ViewData(out, cache_dir=tmp_path / "vc2").by_name["cluster"].categories  # DBSCAN's, then
    assert "<h3>Noise: 2 images" in build_report(out, write_figures=False).path.read_text()


def mark_set_aside(out: Path, n: int) -> None:
    """Make the last ``n`` rows (cluster -1) rows an ``--exclude duplicate`` left out: their flag and the setting."""
    rows = read_rows(out)
    for r in rows[-n:]:
        r["flags"] = "duplicate"
    atomic_write_csv(out / "assignments.csv", list(rows[0]) + ["flags"] * ("flags" not in rows[0]), rows)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"]["exclude"] = ["duplicate"]
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_the_outlier_gallery_holds_outliers_not_images_set_aside(tmp_path):
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=[0] * 7 + [1] * 6 + [-1] * 3)
    mark_set_aside(out, 2)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps(
        {**metrics, "outliers": {"n": 1, "tiny": 0, "far": 1, "rule": "r", "scored_as": "s"}}))
    page = build_report(out, write_figures=False).path.read_text()
    gallery = page.split('id="outliers"')[1].split("</section>")[0] if 'id="outliers"' in page else ""
    assert gallery.count("<figure>") == 1


def test_units_are_counted_in_the_plural():
    from brainclust.report.render import environment

    plural = environment().filters["units"]
    assert [plural(u) for u in ("slice", "volume", "series", "subject")] == ["images", "volumes", "series", "subjects"]


def test_the_summary_counts_the_images_clustered_apart_from_those_set_aside(tmp_path):
    """16 rows, 2 set aside by --exclude: the page says 14 clustered and 2 set aside (as the terminal and
    metrics.json), not 16 clustered; the set-aside group's montage is not headed "Most typical"."""
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=[0] * 8 + [1] * 6 + [-1] * 2)
    mark_set_aside(out, 2)
    page = build_report(out, write_figures=False).path.read_text()
    clustered = re.search(r"<tr id=\"images-row\"><th>Images clustered</th><td>(.*?)</td></tr>", page, re.S).group(1)
    # all 16 come from the files; of those 14 were clustered (not "14 from 17 files", as if 2 files gave nothing)
    assert clustered.startswith("16 images from ") and clustered.endswith(": 14 clustered, 2 set aside by --exclude "
                                                                         "(not clustered)")
    assert page.count("set aside by --exclude") == 1  # said once
    assert '<span class="chip">14 images clustered</span>' in page  # the terminal's count
    group = page.split('id="cluster-noise"')[1].split('<div class="montage"')[0].split("</section>")[0]
    assert "Most typical" not in group and "typical" not in group.split("<h3>")[1].split("</h3>")[0]
    assert "All 2 images, in file order (set aside: in no cluster, so none is more typical than another)" in group
    clusters = page.split('id="cluster-0"')[1].split('id="cluster-noise"')[0]
    assert "Most typical" in clusters  # the clusters keep theirs


def test_a_run_without_images_set_aside_counts_every_image_as_clustered(tmp_path):
    out = fake_run(tmp_path, n_per=4, k=2, method="kmeans")
    page = build_report(out, write_figures=False).path.read_text()
    assert '<tr id="images-row"><th>Images clustered</th><td>8 images from ' in page and "set aside" not in page
    assert '<span class="chip">8 images</span>' in page


def test_noise_shows_its_first_images_in_file_order_under_its_own_name(tmp_path, monkeypatch):
    """DBSCAN's noise (no --exclude): the group is named noise, its first images shown in file order; the
    montage figure says so in the group's row title."""
    from brainclust.report import figures

    titles = []
    real = figures.montage_figure
    monkeypatch.setattr(figures, "montage_figure", lambda rows, size: titles.extend(t for t, _, _ in rows) or real(
        rows, size))
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=[0] * 6 + [1] * 6 + [-1] * 4)
    page = build_report(out, montage_size=3).path.read_text()
    group = page.split('id="cluster-noise"')[1].split("</section>")[0]
    assert "First 3 of the 4 images, in file order (noise: in no cluster, so none is more typical than another)" \
        in group and "Most typical" not in group
    assert titles[-1] == "noise\nn=4\nfile order" and titles[0].startswith("cluster 0")


def test_the_statistic_note_names_no_date_and_explains_epsilon_squared_only_where_the_run_has_it(tmp_path):
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans")
    (out / "associations.csv").write_text("level,column,statistic,score,p_value\ncluster,label,AMI,0.9,0.005\n"
                                          "cluster,width,AMI_quintiles,0.5,0.005\n", encoding="utf-8")
    note = re.search(r"<p class=\"note\">From associations.csv:(.*?)</p>", build_report(
        out, write_figures=False).path.read_text(), re.S).group(1)
    assert not re.search(r"\b20\d\d\b", note) and "ε²" not in note and "of the quintiles for numeric columns" in note
    (out / "associations.csv").write_text("level,column,statistic,score,p_value\ncluster,label,AMI,0.9,0.005\n"
                                          "cluster,width,epsilon2,0.5,0.005\n", encoding="utf-8")
    note = re.search(r"<p class=\"note\">From associations.csv:(.*?)</p>", build_report(
        out, write_figures=False).path.read_text(), re.S).group(1)
    assert not re.search(r"\b20\d\d\b", note)
    assert "ε², epsilon squared of a one-way ANOVA, for numeric columns (statistic epsilon2:" in note
