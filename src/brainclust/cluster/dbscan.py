"""Cosine DBSCAN with ``min_samples`` (default 5); noise is labelled ``-1``.

``eps`` comes from the data: the knee of the sorted distances to each point's
``min_samples``-th cosine neighbour (the point of the curve farthest below the chord joining
its ends). New points go to the cluster of their nearest core point within ``eps``, else noise.
DBSCAN chooses its own number of clusters (no ``k``) and has no randomness.
"""

from __future__ import annotations

import numpy as np

from brainclust.cluster.base import EXACT_MAX, BaseClusterer, log, need_array
from brainclust.core.arrays import cosine_cdist
from brainclust.core.cellinfo import cell_info
from brainclust.core.params import Integer, param
from brainclust.errors import ModelFileError


def knee_eps(X: np.ndarray, min_samples: int) -> float:
    """DBSCAN ``eps`` from the knee of the sorted k-distance curve (cosine)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(min_samples, len(X) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X)
    d = np.sort(nn.kneighbors(X)[0][:, -1])
    if d[-1] - d[0] < 1e-12:
        return float(max(d[-1], 1e-6))
    x = np.linspace(0.0, 1.0, len(d))
    y = (d - d[0]) / (d[-1] - d[0])
    return float(max(d[int(np.argmax(x - y))], 1e-6))


class DBSCANClusterer(BaseClusterer):
    """Cosine DBSCAN (see the module docstring).

    Parameters
    ----------
    min_samples : int, default 5
    exact_max : int, default 20000
        At most this many rows (its neighbour graph and memory grow with n).

    Attributes
    ----------
    eps_ : float
    core_ : ndarray of bool, shape (n_samples,)
    """

    method = "dbscan"
    allows_minus_one = True
    _parameter_constraints = {"min_samples": param(Integer(1), option="min_samples"),
                              "exact_max": param(Integer(1), option="exact_max")}

    def __init__(self, min_samples: int = 5, exact_max: int = EXACT_MAX):
        self.min_samples = min_samples
        self.exact_max = exact_max

    def _check_size(self, n: int) -> None:
        super()._check_size(n)
        self._refuse_above(n, "its neighbour graph and memory grow with n")

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        self.eps_ = knee_eps(X, self.min_samples)
        db = DBSCAN(eps=self.eps_, min_samples=self.min_samples, metric="cosine").fit(X)
        self.core_ = np.zeros(len(X), bool)
        self.core_[db.core_sample_indices_] = True
        return db.labels_

    def _warn_degenerate(self) -> None:
        super()._warn_degenerate()
        if self.n_clusters_ > 1:
            cell_info(log, "dbscan: eps=%.4g, %d noise points", self.eps_, int((self.labels_ == -1).sum()))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        core = self.X_fit_[self.core_]
        if len(core) == 0:
            return np.full(len(X), -1)
        D = cosine_cdist(X, core)
        j = np.argmin(D, axis=1)
        return np.where(D[np.arange(len(X)), j] <= self.eps_, self.labels_[self.core_][j], -1)

    def _arrays(self) -> dict:
        return {"eps": np.asarray(self.eps_), "core": self.core_}

    @classmethod
    def check_arrays(cls, data: dict, path):
        n, d, lab = super().check_arrays(data, path)
        eps = need_array(data, path, "eps", "f", ())
        if not float(eps) > 0:
            raise ModelFileError(f"cluster model '{path}': field 'eps' must be > 0, got {float(eps)}")
        need_array(data, path, "core", "b", (n,))
        return n, d, lab

    def _restore(self, data: dict) -> None:
        self.eps_ = float(data["eps"])
        self.core_ = data["core"]
