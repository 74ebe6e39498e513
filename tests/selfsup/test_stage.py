"""The self-supervised stage end to end: rotation pretext on held-apart demo images, run/predict, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

import brainclust  # noqa: E402
from brainclust import scan  # noqa: E402
from brainclust.cli import main  # noqa: E402
from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.features.extractor import FeatureExtractor  # noqa: E402
from brainclust.selfsup import SelfSupervisedHead  # noqa: E402
from brainclust.selfsup import views as views_mod  # noqa: E402


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=8, size=64)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_rotation_head_beats_chance_on_held_apart_images(demo_data, cache):
    records = scan(demo_data, labels_from_folders=True).records
    ex = FeatureExtractor(backbone="efficientnet_lite0", cache_dir=cache, num_workers=0).fit()
    views = views_mod.extract(ex, records, views_mod.ROTATION_VIEWS)
    test = np.arange(len(records)) % 3 == 0  # 8 of 24 images, never seen in training
    train_views = {k: v[~test] for k, v in views.items()}
    head = SelfSupervisedHead(components=("rotation",), n_clusters=3, epochs=150, n_heads=1, tta=False,
                              batch_size=32, random_state=0).fit(train_views)
    acc = head.rotation_accuracy({k: v[test] for k, v in views.items()})
    assert acc >= 0.6, acc  # chance is 0.25


@pytest.mark.slow
def test_run_with_all_components_then_predict(demo_data, cache, tmp_path):
    out = tmp_path / "run"
    res = brainclust.run(demo_data, out, backbone="efficientnet_lite0", k=3, method="kmeans", labels_from_folders=True,
                         cache_dir=cache, workers=0, pca=8, ssl=("contrastive", "rotation", "joint", "refine"),
                         ssl_epochs=6)
    man = json.loads((out / "manifest.json").read_text())
    ssl = man["ssl"]
    assert ssl["mode"] == "head" and ssl["components"] == ["contrastive", "rotation", "joint", "refine"]
    assert set(ssl["loss_curves"]) >= {"contrastive", "rotation", "joint", "total"}
    assert len(ssl["loss_curves"]["contrastive"]) == 6
    assert ssl["refine_rounds"][0]["round"] == 0 and "stop" in ssl["refine_rounds"][-1]
    assert man["settings"]["ssl"] == ["contrastive", "rotation", "joint", "refine"]
    assert (out / "model" / "ssl_head.safetensors").is_file()
    space = json.loads((out / "metrics.json").read_text())["silhouette_space"]  # measured in the embedding: said so
    assert space["space"] == "ssl" and "not comparable" in space["note"] and space == res.metrics["silhouette_space"]
    assert res.embedding.shape[0] == 24 and np.all(np.isfinite(res.embedding))
    again = brainclust.run(demo_data, None, backbone="efficientnet_lite0", k=3, method="kmeans", cache_dir=cache,
                           workers=0, pca=8, ssl=("contrastive", "rotation", "joint", "refine"), ssl_epochs=6)
    assert np.array_equal(again.labels, res.labels)  # same seed, same result
    pred = brainclust.predict(out, demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
    assert np.array_equal(pred.labels, res.labels)
    np.testing.assert_allclose(pred.embedding, res.embedding, atol=1e-5)
    assert json.loads((tmp_path / "pred" / "metrics.json").read_text())["silhouette_space"]["space"] == "ssl"


@pytest.mark.slow
def test_run_with_chosen_appearance_views_then_predict(demo_data, cache, tmp_path):
    out = tmp_path / "run"
    code = main(["run", str(demo_data), "--out", str(out), "--backbone", "efficientnet_lite0", "--k", "3",
                 "--method", "kmeans", "--cache-dir", cache, "--workers", "0", "--pca", "8", "--no-report",
                 "--self-supervised", "contrastive,joint", "--ssl-epochs", "4", "--ssl-views", "hflip,intensity"])
    assert code == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["settings"]["ssl_views"] == ["hflip", "intensity"]
    assert man["ssl"]["views"] == ["identity", "hflip", "intensity"]
    assert man["ssl"]["params"]["appearance_views"] == ["identity", "hflip", "intensity"]
    with open(out / "assignments.csv", newline="") as fh:
        clusters = [int(r["cluster"]) for r in csv.DictReader(fh)]
    pred = brainclust.predict(out, demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
    assert len(clusters) == 24 and pred.labels.tolist() == clusters  # predict re-embeds with the same views


def test_cli_rejects_unknown_component(demo_data, tmp_path, capsys):
    code = main(["run", str(demo_data), "--out", str(tmp_path / "o"), "--self-supervised", "contrastive,jigsaw"])
    assert code == 2
    assert "unknown component 'jigsaw'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_heads_k_is_said_and_too_few_images_per_cluster_are_warned(caplog):
    """With --method dbscan the heads still learn --k clusters (k = 4 unless given), which nothing said; a walk
    trained heads on 3 images without a word."""
    import logging

    from brainclust.model.composite import Batch
    from brainclust.selfsup.stage import MIN_IMAGES_PER_CLUSTER, SelfSupervisedStep

    step = SelfSupervisedStep(components=("rotation",), n_clusters=3)
    step.train = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop after the lines"))  # no training here
    for n, warned in ((3 * MIN_IMAGES_PER_CLUSTER - 1, True), (3 * MIN_IMAGES_PER_CLUSTER, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="brainclust"), pytest.raises(RuntimeError, match="stop after"):
            step.fit_batch(Batch([None] * n, np.zeros((n, 4))))
        assert f"self-supervised heads learn k = 3 clusters of {n} images (--k)" in caplog.text
        assert ("fewer than 10 per cluster" in caplog.text) is warned


def test_the_cache_line_counts_the_augmented_views(demo_data, tmp_path):
    """A walk's --self-supervised run said "feature cache: 200 hits, 0 misses" after 1,000 view extractions: the
    views' own cache counts were left out of manifest.json, the summary line and the report."""
    from brainclust.clisummary import run_summary

    kw = dict(backbone="pixels@16", k=3, method="kmeans", cache_dir=str(tmp_path / "cache"), workers=0, pca=4,
              ssl=("contrastive",), ssl_epochs=1)
    first = brainclust.run(demo_data, None, **kw)
    assert first.manifest["cache"]["views"] == {"views": 2, "hits": 0, "misses": 48}  # hflip and strong, 24 images
    assert first.manifest["ssl"]["kept"] is True  # no gate: the embedding is clustered
    line = next(ln for ln in run_summary(first).splitlines() if ln.startswith("feature cache: "))
    assert line.endswith("; augmented views for --self-supervised (2 of each image): 0 hits, 48 misses")
    again = brainclust.run(demo_data, None, **kw)
    assert again.manifest["cache"]["views"] == {"views": 2, "hits": 48, "misses": 0}
    assert "views" not in brainclust.run(demo_data, None, **{**kw, "ssl": ("temi",)}).manifest["cache"]  # none


def test_a_prediction_counts_the_augmented_views_of_the_new_images(demo_data, tmp_path):
    """A head-mode model embeds new images with its augmented views too (hflip and strong): a prediction extracted
    48 view features of 24 images, and its manifest and cache line said "2 hits, 0 misses" of the images alone."""
    from brainclust.clisummary import run_summary
    from brainclust.model.composite import BrainClusterModel

    kw = dict(backbone="pixels@16", k=3, method="kmeans", workers=0, pca=4, ssl=("contrastive",), ssl_epochs=1)
    brainclust.run(demo_data, tmp_path / "run", cache_dir=str(tmp_path / "cache"), **kw)
    pred = brainclust.predict(tmp_path / "run", demo_data, tmp_path / "pred", cache_dir=str(tmp_path / "new"),
                              workers=0)
    assert pred.manifest["cache"]["views"] == {"views": 2, "hits": 0, "misses": 48}
    assert json.loads((tmp_path / "pred" / "manifest.json").read_text())["cache"]["views"] == pred.manifest[
        "cache"]["views"]
    line = next(ln for ln in run_summary(pred).splitlines() if ln.startswith("feature cache: "))
    assert line == "feature cache: 0 hits, 24 misses; augmented views for --self-supervised (2 of each image): " \
                   "0 hits, 48 misses"
    model = BrainClusterModel.load(tmp_path / "run", {"cache_dir": str(tmp_path / "new"), "num_workers": 0})
    step = dict(model.steps_)["ssl"]
    assert model.predict(scan(demo_data).records).cache["views"] == {"views": 2, "hits": 48, "misses": 0}
    assert step.view_cache_ == {}  # counted in what predict returns, not left on the fitted step


def test_a_gate_rejection_keeps_the_request_and_records_the_decision(demo_data, tmp_path, monkeypatch):
    """A rejection by --ssl-gate emptied settings.ssl while ssl.components still named the method: the manifest
    contradicted itself. The request stays; ssl.kept (and the model's step, and a prediction) say it was not used."""
    from brainclust.selfsup import gate

    monkeypatch.setattr(gate, "check", lambda *a, **k: gate.GateDecision(False, {"stability": 1.0}, {"stability": 0.5}))
    cache, out = str(tmp_path / "cache"), tmp_path / "run"
    res = brainclust.run(demo_data, out, backbone="pixels@16", k=3, method="kmeans", cache_dir=cache, workers=0,
                         pca=4, ssl=("contrastive",), ssl_epochs=1, ssl_gate=True)
    man = json.loads((out / "manifest.json").read_text())
    assert man["settings"]["ssl"] == man["ssl"]["components"] == ["contrastive"] and man["settings"]["ssl_gate"]
    assert man["ssl"]["kept"] is False and man["ssl"]["gate"]["kept"] is False
    model = json.loads((out / "model" / "config.json").read_text())
    assert model["settings"]["ssl"] == ["contrastive"]
    assert [s["kept"] for s in model["steps"] if s["name"] == "ssl"] == [False]
    assert res.metrics["silhouette_space"]["space"] == "features"  # the frozen features were clustered
    pred = brainclust.predict(out, demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
    assert pred.manifest["ssl"] == {"kept": False} and pred.metrics["silhouette_space"]["space"] == "features"
    assert np.array_equal(pred.labels, res.labels)
