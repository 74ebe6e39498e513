"""The self-supervised stage end to end: rotation pretext on held-apart demo images, run/predict, finetune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import brainclust  # noqa: E402
from brainclust import scan  # noqa: E402
from brainclust.cli import main  # noqa: E402
from brainclust.demo import make_demo_dataset  # noqa: E402
from brainclust.features import FeatureExtractor  # noqa: E402
from brainclust.selfsup import SelfSupervisedHead  # noqa: E402
from brainclust.selfsup import views as views_mod  # noqa: E402
from brainclust.selfsup.finetune import FinetuneSSL  # noqa: E402


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=8, size=64)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


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
    assert res.embedding.shape[0] == 24 and np.all(np.isfinite(res.embedding))
    again = brainclust.run(demo_data, None, backbone="efficientnet_lite0", k=3, method="kmeans", cache_dir=cache,
                           workers=0, pca=8, ssl=("contrastive", "rotation", "joint", "refine"), ssl_epochs=6)
    assert np.array_equal(again.labels, res.labels)  # same seed, same result
    pred = brainclust.predict(out, demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
    assert np.array_equal(pred.labels, res.labels)
    np.testing.assert_allclose(pred.embedding, res.embedding, atol=1e-5)


def test_cli_rejects_unknown_component(demo_data, tmp_path, capsys):
    code = main(["run", str(demo_data), "--out", str(tmp_path / "o"), "--self-supervised", "contrastive,jigsaw"])
    assert code == 2
    assert "unknown component 'jigsaw'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_finetune_trains_only_the_last_blocks_and_round_trips(demo_data, tmp_path):
    records = scan(demo_data).records[::12]  # 2 images, 1 epoch: correctness on CPU, not quality
    est = FinetuneSSL(components=("contrastive", "rotation", "joint", "refine"), n_clusters=2, epochs=1,
                      max_rounds=1, refine_epochs=1, batch_size=2, input_dim=3, hidden=16, embed_dim=4,
                      n_neighbors=1, random_state=0)
    est._prepare()
    initial = {k: v.clone() for k, v in est.backbone_.state_dict().items()}
    est.fit(records)
    assert est.embedding_.shape == (2, 4) and np.all(np.isfinite(est.embedding_))
    assert {"contrastive", "rotation"} <= set(est.history_["loss"])
    assert est.history_["refine"][-1]["round"] == 1
    after = est.backbone_.state_dict()
    changed = {k for k in initial if not np.array_equal(initial[k].numpy(), after[k].numpy())}
    assert changed, "fine-tuning changed no backbone weight"
    assert all(k.startswith(("net._blocks.14", "net._blocks.15", "net._conv_head", "net._bn1")) for k in changed)
    est.save(tmp_path)
    loaded = FinetuneSSL.load(tmp_path)
    np.testing.assert_allclose(loaded.transform(records), est.embedding_, atol=1e-4)
