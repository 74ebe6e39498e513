"""The report of a --self-supervised (or UMAP) run says which space its silhouette was taken in, as the terminal and
metrics.json do (brainclust.model.scorespace), and shows what the run recorded comparing the embedding with the frozen
features, label-free (the --ssl-gate figures). Fake finished runs (no CNN), as in test_report."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from test_report import fake_run

from brainclust.io.atomic import atomic_write_json
from brainclust.report.build import build_report

ALL = ["contrastive", "rotation", "joint", "refine"]
GATE = {"rule": "keep iff ssl >= frozen", "frozen": {"stability": 0.9649, "knn_agreement": 0.943},
        "ssl": {"stability": 0.9706, "knn_agreement": 0.951}}


def page_of(out: Path, settings: dict, ssl: dict | None = None) -> str:
    """The report of the fake run ``out`` with ``settings`` over its manifest's (and ``ssl`` as its record)."""
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"].update(settings)
    if ssl is not None:
        manifest["ssl"] = {"mode": "head", "components": ALL, "embedding_dim": 96,
                           "timings_s": {"views": 39.5, "train": 7.7}, **ssl}
    atomic_write_json(out / "manifest.json", manifest)
    return build_report(out, write_figures=False).path.read_text(encoding="utf-8")


def text(page: str, pattern: str) -> str:
    found = re.search(pattern, page, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split()) if found else ""


def test_a_kept_ssl_embeddings_silhouette_is_named_and_said_not_comparable(tmp_path):
    page = page_of(fake_run(tmp_path, n_per=6, k=2), {"ssl": ALL}, {})
    assert ">Silhouette (SSL embedding) <b>" in page                                  # the headline chip
    note = text(page, r'<p class="note" id="silhouette-space">.*?</p>')
    assert note.startswith("Silhouette on the self-supervised embedding (contrastive,rotation,joint,refine), trained "
                           "to separate the clusters, which tends to raise it: not comparable with that of a run "
                           "without --self-supervised.")
    assert "No label-free comparison with the frozen features is recorded: --ssl-gate measures one" in note
    section = text(page, r'<section id="ssl">.*?</section>')
    assert "--self-supervised contrastive,rotation,joint,refine (--ssl-mode head): an embedding of 96 dimensions; " \
           "the stage took 47 s." in section and "The clustering, the map and the silhouette use this" in section


def test_the_gates_figures_are_shown_with_the_caveat_when_it_kept_the_embedding(tmp_path):
    page = page_of(fake_run(tmp_path, n_per=6, k=2), {"ssl": ALL}, {"gate": {**GATE, "kept": True}})
    figures = ("Label-free comparison with the frozen features (--ssl-gate, which kept the embedding): SSL vs frozen: "
               "stability 0.971 vs 0.965, kNN agreement 0.951 vs 0.943 (manifest.json ssl.gate).")
    assert figures in text(page, r'<p class="note" id="silhouette-space">.*?</p>')
    assert figures in text(page, r'<section id="ssl">.*?</section>')


@pytest.mark.parametrize("settings, kept", [({"ssl": []}, {}),  # a run before 2026-12-07: no components
                                            ({"ssl": ALL}, {"kept": False})])  # now: the request and ssl.kept
def test_an_embedding_the_gate_set_aside_leaves_the_silhouette_as_it_is(tmp_path, settings, kept):
    page = page_of(fake_run(tmp_path, n_per=6, k=2), settings, {"gate": {**GATE, "kept": False}, **kept})
    assert 'id="silhouette-space"' not in page and ">Silhouette <b>" in page
    section = text(page, r'<section id="ssl">.*?</section>')
    assert "Not used: --ssl-gate set it aside" in section
    assert "(--ssl-gate, which set it aside): SSL vs frozen" in section


def test_a_umap_runs_silhouette_is_said_not_comparable_in_the_report_too(tmp_path):
    page = page_of(fake_run(tmp_path, n_per=6, k=2), {"reduce": "umap"})
    assert text(page, r'<p class="note" id="silhouette-space">.*?</p>').startswith(
        "Silhouette on the UMAP embedding, whose clumps tend to raise it: not comparable with a PCA run's.")
    assert 'id="ssl"' not in page


def test_a_run_on_the_frozen_features_has_no_caveat_and_names_its_space(tmp_path):
    page = page_of(fake_run(tmp_path, n_per=6, k=2), {"reduce": "pca"})
    assert 'id="silhouette-space"' not in page and 'id="ssl"' not in page
    assert "Taken on the PCA of the frozen backbone features." in text(page, r'<tr id="score-silhouette">.*?</tr>')



def test_the_feature_cache_row_counts_the_augmented_views(tmp_path):
    """The row said "12 hits, 0 misses" after the views' 24 extractions (manifest.json cache.views)."""
    out = fake_run(tmp_path, n_per=6, k=2)
    manifest = json.loads((out / "manifest.json").read_text())
    atomic_write_json(out / "manifest.json", {**manifest, "cache": {"hits": 12, "misses": 0, "views": {
        "views": 2, "hits": 0, "misses": 24}}})
    assert text(page_of(out, {"ssl": ALL}, {}), r"<th>Feature cache</th><td>.*?</td>") == (
        "Feature cache 12 hits, 0 misses; augmented views for --self-supervised (2 of each image): 0 hits, 24 misses")


@pytest.mark.parametrize("settings, ssl, of", [
    ({"ssl": ALL}, {}, " of the self-supervised embedding (contrastive,rotation,joint,refine; 96 dimensions), not "
                       "of the backbone features; seed 0"),
    ({"ssl": ["temi"]}, {"embedding_dim": 12}, " of TEMI's embedding (cluster probabilities; 12 dimensions), not of "
                                               "the backbone features; seed 0"),
    ({"ssl": ALL}, {"kept": False}, " of the variance; seed 0"),  # the gate set it aside: the frozen features' PCA
    ({"ssl": []}, None, " of the variance; seed 0")])
def test_the_pca_row_says_it_is_the_pca_of_the_learned_embedding(tmp_path, settings, ssl, of):
    """The summary's PCA row follows the backbone's (1280-d features): a self-supervised run's PCA is fitted on the
    embedding the stage learned, and the row says so, with the embedding's width."""
    page = page_of(fake_run(tmp_path, n_per=6, k=2), settings, ssl)
    assert text(page, r'<tr id="pca-row">.*?</tr>').endswith(of)


@pytest.mark.parametrize("settings, ssl, width, of", [
    ({"ssl": ALL}, {}, 96, "the self-supervised embedding (contrastive,rotation,joint,refine; 96 dimensions)"),
    ({"ssl": ["temi"]}, {"embedding_dim": 12}, 12, "TEMI's embedding (cluster probabilities; 12 dimensions)"),
    ({"ssl": ALL}, {"kept": False}, 1280, "the 1280 backbone features"),  # the gate set it aside
    ({"ssl": []}, None, 1280, "the 1280 backbone features")])
def test_the_pca_row_of_a_run_without_pca_says_it_fitted_none(tmp_path, settings, ssl, width, of):
    """``--pca 0`` fits no PCA (``pca.solver`` ``none``; ``n_components`` is then the width of what was clustered):
    the row read ``96 components of the self-supervised embedding (...; 96 dimensions), not of the backbone
    features`` and, without --self-supervised, ``1280 components``."""
    out = fake_run(tmp_path, n_per=6, k=2)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["pca"] = {"n_components": width, "solver": "none", "fit_rows": 12, "explained_variance": None}
    atomic_write_json(out / "manifest.json", manifest)
    page = page_of(out, {**settings, "pca": 0}, ssl)
    assert text(page, r'<tr id="pca-row">.*?</tr>') == f"PCA none (--pca 0): the clustering takes {of} directly; seed 0"


@pytest.mark.parametrize("pre_pca, fitted, ssl, row", [
    ("auto", 100, None, "100 components, then UMAP to 10 dimensions (--reduce umap)"),
    (50, 50, None, "50 components, then UMAP to 10 dimensions (--reduce pca+umap)"),
    (50, 50, {}, "50 components of the self-supervised embedding (contrastive,rotation,joint,refine; 96 dimensions), "
                 "not of the backbone features, then UMAP to 10 dimensions (--reduce pca+umap)"),
    ("auto", 0, None, "none (no wider than 100 dimensions): UMAP to 10 dimensions takes the backbone features "
                      "directly (--reduce umap)"),
    (0, 0, None, "none (--pca 0): UMAP to 10 dimensions takes the backbone features directly (--reduce pca+umap)")])
def test_the_pca_row_of_a_umap_run_says_what_was_fitted(tmp_path, pre_pca, fitted, ssl, row):
    """``--reduce umap`` / ``pca+umap`` record UMAP's output width as ``pca.n_components``: the row read ``10
    components`` whatever PCA came first, or none; it reads the ``reduce`` record now."""
    out = fake_run(tmp_path, n_per=6, k=2)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["pca"] = {"n_components": 10, "solver": f"{'full' if fitted else 'none'}+umap", "fit_rows": 12,
                       "explained_variance": None}
    manifest["reduce"] = {"method": "umap", "pre_pca": pre_pca, "pre_pca_components": fitted, "n_components": 10,
                          "n_neighbors": 30, "min_dist": 0.0, "metric": "cosine", "n_fit": 12, "centred": True}
    atomic_write_json(out / "manifest.json", manifest)
    reduce = "umap" if pre_pca == "auto" else "pca+umap"
    page = page_of(out, {"reduce": reduce, "ssl": ALL if ssl is not None else []}, ssl)
    assert text(page, r'<tr id="pca-row">.*?</tr>') == f"PCA {row}; seed 0"
