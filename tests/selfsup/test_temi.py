"""``--self-supervised temi``: TEMI heads on frozen features, their gate, persistence and the run/predict path."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import brainclust  # noqa: E402
from brainclust.cli import main  # noqa: E402
from brainclust.cluster.reduce import PCAReducer  # noqa: E402
from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.errors import ModelFileError, ParameterError  # noqa: E402
from brainclust.selfsup import gate, parse_components  # noqa: E402
from brainclust.selfsup.gate import reference_labels  # noqa: E402
from brainclust.selfsup.temi import TEMIHead, head_agreement  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def blobs(seed=0, n_per=40, dim=40, k=3, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, dim))
    X = np.concatenate([c + rng.normal(0, spread, (n_per, dim)) for c in centres])
    return X, np.repeat(np.arange(k), n_per)


def small(k=3, **kw):
    return TEMIHead(n_clusters=k, epochs=kw.pop("epochs", 150), n_heads=kw.pop("n_heads", 4), hidden=32, **kw)


def test_temi_recovers_planted_clusters_and_its_heads_agree():
    X, y = blobs()
    m = small().fit(X)
    assert m.embedding_.shape == (len(X), 4 * 3)
    labels = reference_labels(m.embedding_, 3, 0)
    assert adjusted_rand_score(y, labels) > 0.9
    assert m.head_agreement_ > 0.8
    curve = m.history_["loss"]["temi"]
    assert len(curve) == 150 and curve[-1] < curve[0]  # the objective goes down
    # each head's rows are square roots of probabilities: unit norm per head, so unit norm overall
    np.testing.assert_allclose(np.linalg.norm(m.embedding_, axis=1), 1.0, atol=1e-5)


def test_temi_is_deterministic_under_a_seed_and_differs_across_seeds():
    X, _ = blobs(seed=1, spread=3.0)  # overlapping blobs: room for seeds to differ
    a, b, c = small(random_state=3).fit(X), small(random_state=3).fit(X), small(random_state=4).fit(X)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    assert not np.array_equal(a.embedding_, c.embedding_)


def test_max_steps_caps_training():
    X, _ = blobs()
    m = small(epochs=50, max_steps=7).fit(X)
    assert m.history_["steps"] == 7 and len(m.history_["loss"]["temi"]) == 2  # 4 steps an epoch: 1 full + 1 partial


def test_save_load_round_trip_and_damage(tmp_path):
    X, _ = blobs()
    m = small().fit(X)
    m.save(tmp_path)
    back = TEMIHead.load(tmp_path)
    np.testing.assert_allclose(back.transform(X), m.embedding_, atol=1e-6)
    with pytest.raises(ParameterError, match="dimensions"):
        back.transform(X[:, :5])
    info = json.loads((tmp_path / "ssl_temi.json").read_text())
    info["params"]["n_heads"] = 9  # shapes no longer match the weights
    (tmp_path / "ssl_temi.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="ssl_temi"):
        TEMIHead.load(tmp_path)
    (tmp_path / "ssl_temi.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ModelFileError):
        TEMIHead.load(tmp_path)


@pytest.mark.parametrize("bad", [{"n_heads": 0}, {"beta": 0.0}, {"momentum": 1.5}, {"teacher_temperature": -1},
                                 {"batch_size": True}, {"lr": float("nan")},
                                 {"weight_decay": -1.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ParameterError):
        TEMIHead(**bad).fit(blobs()[0])


def test_temi_is_a_method_of_its_own():
    assert parse_components("temi") == ("temi",)
    assert "temi" not in parse_components("all")
    with pytest.raises(ParameterError, match="of its own"):
        parse_components("temi,joint")


def test_head_agreement():
    one_hot = np.eye(3)[np.repeat(np.arange(3), 10)]
    same = np.concatenate([one_hot, one_hot], axis=1)
    assert head_agreement(same, 2, 3) == pytest.approx(1.0)
    shuffled = np.concatenate([one_hot, one_hot[np.random.default_rng(0).permutation(30)]], axis=1)
    assert head_agreement(shuffled, 2, 3) < 0.3


def test_gate_uses_the_heads_agreement_when_the_model_has_one():
    X, _ = blobs(n_per=50, spread=4.0)  # overlapping: the frozen clustering is not perfectly stable
    frozen_labels = reference_labels(PCAReducer(10, random_state=0).fit_transform(X), 3, 0)
    sharp = np.eye(3)[frozen_labels] + np.random.default_rng(0).normal(0, 0.01, (len(X), 3))  # sharpened copy
    kept = gate.check(X, sharp, 3, 10, 0)
    assert kept.kept and kept.frozen["stability"] < kept.ssl["stability"]  # more stable, same neighbourhoods
    refused = gate.check(X, sharp, 3, 10, 0, seed_stability=0.2)  # but the heads did not reproduce it
    assert not refused.kept
    assert refused.ssl["stability"] == pytest.approx(0.2) and refused.ssl["subsample_stability"] > 0.95


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=8, size=64)


@pytest.mark.slow
def test_run_with_temi_then_predict(demo_data, tmp_path):
    cache = str(tmp_path / "cache")
    out = tmp_path / "run"
    kw = dict(backbone="efficientnet_lite0", k=3, method="kmeans", cache_dir=cache, workers=0, pca=8, ssl=("temi",),
              ssl_epochs=20)
    res = brainclust.run(demo_data, out, ssl_gate=True, **kw)
    man = json.loads((out / "manifest.json").read_text())
    assert man["ssl"]["components"] == ["temi"] and man["ssl"]["params"]["method"] == "temi"
    assert len(man["ssl"]["loss_curves"]["temi"]) == 20 and 0 <= man["ssl"]["head_agreement"] <= 1
    assert man["ssl"]["gate"]["ssl"]["head_agreement"] == pytest.approx(man["ssl"]["head_agreement"])
    if man["ssl"]["gate"]["kept"]:
        assert (out / "model" / "ssl_temi.safetensors").is_file()
        pred = brainclust.predict(out, demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
        assert np.array_equal(pred.labels, res.labels)
    else:
        assert not (out / "model" / "ssl_temi.safetensors").exists() and man["ssl"]["kept"] is False
        assert man["settings"]["ssl"] == ["temi"]  # the request stays; ssl.kept says it was set aside
    ungated = brainclust.run(demo_data, tmp_path / "run2", **kw)
    assert json.loads((tmp_path / "run2" / "manifest.json").read_text())["ssl"]["embedding_dim"] == 10 * 3
    pred = brainclust.predict(tmp_path / "run2", demo_data, tmp_path / "pred2", cache_dir=cache, workers=0)
    assert np.array_equal(pred.labels, ungated.labels)
    np.testing.assert_allclose(pred.embedding, ungated.embedding, atol=1e-5)


@pytest.mark.parametrize("extra", [["--ssl-mode", "finetune"], ["--ssl-views", "hflip"]])
def test_cli_refuses_temi_with_views_or_finetune(demo_data, tmp_path, capsys, extra):
    assert main(["run", str(demo_data), "--out", str(tmp_path / "o"), "--self-supervised", "temi", *extra]) == 2
    assert "temi" in capsys.readouterr().err


def test_fit_on_a_sample_embeds_every_image():
    X, y = blobs(n_per=60)
    m = small(fit_max=90).fit(X)
    assert m.fit_rows_ == 90 and m.embedding_.shape == (180, 12)
    np.testing.assert_allclose(m.transform(X), m.embedding_, atol=1e-6)
    assert adjusted_rand_score(y, reference_labels(m.embedding_, 3, 0)) > 0.9
