"""--reduce umap|pca+umap: determinism under a seed, the sample + chunked transform, persistence without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("umap")

from brainclust.cluster.manifold import UMAPReducer, build_reducer, check_reduce  # noqa: E402
from brainclust.cluster.reduce import PCAReducer  # noqa: E402
from brainclust.errors import ParameterError  # noqa: E402


def blobs(n_per=40, dim=60, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, dim))
    X = np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centres])
    return X, np.repeat(np.arange(3), n_per)


@pytest.mark.slow
def test_same_seed_same_embedding_and_other_seed_differs():
    X, _ = blobs()
    a = UMAPReducer(pre_pca=20, random_state=3).fit_transform(X)
    b = UMAPReducer(pre_pca=20, random_state=3).fit_transform(X)
    c = UMAPReducer(pre_pca=20, random_state=4).fit_transform(X)
    assert a.shape == (120, 10)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-4)  # centred


@pytest.mark.slow
def test_fit_on_sample_transforms_the_rest_and_keeps_clusters_apart():
    X, y = blobs()
    r = UMAPReducer(pre_pca=20, fit_max=80, chunk=16, random_state=0)
    emb = r.fit_transform(X)
    assert len(r.fit_index_) == 80 and r.fit_rows_ == 80
    from brainclust.cluster.methods import Clusterer
    from sklearn.metrics import adjusted_rand_score

    lab = Clusterer(n_clusters=3).fit(emb).labels_
    assert adjusted_rand_score(y, lab) > 0.95


@pytest.mark.slow
def test_save_load_refits_without_pickle(tmp_path):
    X, _ = blobs()
    r = UMAPReducer(pre_pca=20, random_state=5).fit(X)
    r.pca_.save(tmp_path / "pca.npz")
    r.save(tmp_path / "umap.npz")
    with np.load(tmp_path / "umap.npz", allow_pickle=False) as z:  # plain arrays only
        assert json.loads(str(z["params"]))["random_state"] == 5
    back = UMAPReducer.load(tmp_path / "umap.npz", PCAReducer.load(tmp_path / "pca.npz"))
    np.testing.assert_allclose(back.transform(X[:10]), r.transform(X[:10]), atol=1e-6)


def test_build_reducer_and_checks():
    assert isinstance(build_reducer("pca", 50, 0), PCAReducer)
    assert build_reducer("pca+umap", 30, 1).pre_pca == 30
    assert build_reducer("umap", 30, 1).pre_pca == "auto"
    with pytest.raises(ParameterError, match="--reduce"):
        check_reduce("tsne")
    with pytest.raises(ParameterError, match="at least"):
        UMAPReducer(random_state=0).fit(np.random.default_rng(0).normal(size=(8, 5)))


@pytest.mark.slow
def test_run_and_predict_with_umap(tmp_path):
    from brainclust.data.demo import make_demo_dataset
    from brainclust.pipeline import predict, run

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=8, random_state=0)
    kw = dict(backbone="pixels", cache_dir=str(tmp_path / "cache"), k=3, reduce="pca+umap", pca=20, seed=2,
              progress=False)
    r1 = run(data, tmp_path / "out", **kw)
    r2 = run(data, None, **kw)
    np.testing.assert_array_equal(r1.labels, r2.labels)
    assert r1.manifest["reduce"]["method"] == "umap" and r1.manifest["reduce"]["random_state"] == 2
    assert (tmp_path / "out" / "model" / "umap.npz").is_file()
    p = predict(tmp_path / "out", data, cache_dir=str(tmp_path / "cache"))
    assert p.embedding.shape[1] == 10
    assert (p.labels == r1.labels).mean() >= 0.8


@pytest.mark.slow
def test_embed_only_uses_exact_neighbours_and_keeps_the_structure():
    from sklearn.metrics import adjusted_rand_score

    from brainclust.cluster.manifold import cosine_knn
    from brainclust.cluster.methods import Clusterer

    X, y = blobs()
    idx, dist = cosine_knn(X, 5, chunk=7)
    assert np.array_equal(idx[:, 0], np.arange(len(X))) and np.all(dist[:, 0] == 0)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = 1 - U @ U.T
    np.fill_diagonal(D, np.inf)
    nearest = D.argmin(axis=1)  # the nearest other row; another CPU's kernels may only swap a near tie
    rows = np.arange(len(X))
    swapped = idx[:, 1] != nearest
    assert swapped.mean() < 0.02
    np.testing.assert_allclose(D[rows, idx[:, 1]][swapped], D[rows, nearest][swapped], rtol=0, atol=1e-5)
    assert np.all(np.diff(dist, axis=1) >= 0)
    a = UMAPReducer(pre_pca=20, random_state=3).embed_only(X)
    b = UMAPReducer(pre_pca=20, random_state=3).embed_only(X)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (120, 10)
    assert adjusted_rand_score(y, Clusterer(n_clusters=3, random_state=0).fit(a).labels_) > 0.95
    with pytest.raises(ParameterError, match="fit_max"):
        UMAPReducer(fit_max=50).embed_only(X)
    with pytest.raises(ParameterError, match="cosine"):
        UMAPReducer(metric="euclidean").embed_only(X)
