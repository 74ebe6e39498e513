"""Map coordinates for every image: exact t-SNE of a sample, neighbour placement of the rest, map.npy."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.errors import ParameterError
from brainclust.report.geometry import tsne_2d
from brainclust.report.mapcoords import (
    MAP_FILE,
    TEMPERATURE,
    compute_map,
    normalise,
    place_by_neighbours,
    read_map,
    save_map,
    top_k_columns,
    tsne_sample,
)


def blobs(n, k=4, d=12, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, d)) * 5
    lab = rng.integers(0, k, n)
    return c[lab] + rng.normal(size=(n, d)), lab


@pytest.mark.parametrize("shape,k", [((50, 1000), 10), ((30, 357), 7), ((20, 64), 10), ((10, 5), 3), ((7, 4), 4)])
def test_top_k_columns_matches_a_full_sort(shape, k):
    rng = np.random.default_rng(1)
    S = rng.normal(size=shape).astype(np.float32)
    S[:, ::7] = S[:, :1]                                    # ties
    got = top_k_columns(S, k)
    ref = -np.sort(-S, axis=1)[:, :k]
    assert got.shape == (shape[0], min(k, shape[1]))
    assert np.allclose(-np.sort(-np.take_along_axis(S, got, axis=1), axis=1), ref)
    assert all(len(set(r)) == len(r) for r in got.tolist())


def test_placement_equals_a_naive_loop():
    rng = np.random.default_rng(2)
    A, Q = rng.normal(size=(40, 6)), rng.normal(size=(25, 6))
    Ya = rng.normal(size=(40, 2))
    got = place_by_neighbours(Q, A, Ya, k=5, chunk=7)
    Au = A / np.linalg.norm(A, axis=1, keepdims=True)
    for j, q in enumerate(Q):
        s = Au @ (q / np.linalg.norm(q))
        nn = np.argsort(-s)[:5]
        w = np.exp((s[nn] - s[nn].max()) / TEMPERATURE)
        assert np.allclose(got[j], (w[:, None] * Ya[nn]).sum(0) / w.sum(), atol=1e-4)


def test_a_duplicate_of_a_lone_tsne_image_lands_on_it():
    X, lab = blobs(300)
    s = tsne_sample(300, 100, 0)                            # depends on n and the seed only
    a, b = int(s[0]), int(np.setdiff1d(np.arange(300), s)[0])
    X[a] = np.r_[np.zeros(11), 40.0]                        # far from every other image
    X[b] = 2.0 * X[a]                                       # the same direction: a cosine duplicate
    Y = compute_map(X, 0, n_tsne=100)
    assert np.allclose(Y[b], Y[a], atol=1e-4 * np.ptp(Y))


def test_small_runs_get_the_exact_tsne_and_large_ones_a_sample():
    X, lab = blobs(120)
    Y = compute_map(X, 3, n_tsne=500)
    assert Y.shape == (120, 2) and Y.dtype == np.float32
    assert np.allclose(Y, tsne_2d(X, 3), atol=1e-4)
    X, lab = blobs(400)
    Y = compute_map(X, 3, clusters=lab, n_tsne=120)
    s = tsne_sample(400, 120, 3, lab)
    assert len(s) <= 124 and set(lab[s].tolist()) == set(lab.tolist())
    assert np.allclose(Y[s], tsne_2d(X[s], 3), atol=1e-4)
    assert np.isfinite(Y).all()
    assert np.array_equal(Y, compute_map(X, 3, clusters=lab, n_tsne=120))   # same seed, same map
    # placed images sit with their own blob: nearest t-SNE image on the map has their blob for most
    rest = np.setdiff1d(np.arange(400), s)
    d = ((Y[rest, None, :] - Y[None, s, :]) ** 2).sum(-1)
    assert np.mean(lab[s][d.argmin(1)] == lab[rest]) > 0.9


def test_bad_input_is_a_parameter_error():
    with pytest.raises(ParameterError, match="embedding"):
        compute_map(np.zeros((0, 3)))
    with pytest.raises(ParameterError, match="NaN"):
        compute_map(np.full((5, 3), np.nan))
    with pytest.raises(ParameterError, match="n_tsne"):
        compute_map(np.ones((5, 3)), n_tsne=1)
    with pytest.raises(ParameterError, match="shape"):
        save_map("/tmp", np.zeros((3, 3)))


def test_map_file_round_trip_and_rejections(tmp_path):
    Y = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    save_map(tmp_path, Y)
    assert np.array_equal(read_map(tmp_path, 30), Y)                    # a stored array: exact
    assert read_map(tmp_path, 31) is None                               # another run's map
    Y[4, 1] = np.nan
    save_map(tmp_path, Y)
    assert read_map(tmp_path, 30) is None
    (tmp_path / MAP_FILE).write_bytes(b"not an npy file")
    assert read_map(tmp_path, 30) is None
    assert read_map(tmp_path / "missing", 30) is None


def test_a_map_file_that_is_no_npy_array_gets_no_advice_to_load_it_with_pickling(tmp_path, caplog):
    """A run folder is untrusted: its map.npy replaced by a CSV was 'damaged (This file contains pickled (object)
    data. If you trust the file you can load it unsafely using the `allow_pickle=` keyword argument ...)'."""
    (tmp_path / MAP_FILE).write_bytes(b"path,cluster\na.png,0\n")
    with caplog.at_level("WARNING", logger="brainclust"):
        assert read_map(tmp_path, 1) is None
    assert "is damaged (not a .npy array written by brainclust); computing the map instead" in caplog.text
    assert "pickle" not in caplog.text


def test_normalise_fits_the_unit_square_keeping_the_aspect():
    c = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]])
    xy = normalise(c, pad=0.0)
    assert xy.min() >= 0 and xy.max() <= 1
    assert np.ptp(xy[:, 0]) == pytest.approx(1.0) and np.ptp(xy[:, 1]) == pytest.approx(0.5)
    assert xy[0, 1] > xy[3, 1]                                          # y points down
    assert normalise(np.zeros((3, 2))).shape == (3, 2)


def test_one_feature_is_drawn_along_x():
    """``--pca 1``: every cosine between 1-D vectors is +-1, so t-SNE would be meaningless (and PCA init fails)."""
    x = np.random.default_rng(0).normal(size=(40, 1))
    xy = tsne_2d(x)
    assert xy.shape == (40, 2)
    np.testing.assert_array_equal(xy[:, 0], x[:, 0])
    assert not xy[:, 1].any()
    assert compute_map(x, 0).shape == (40, 2)
