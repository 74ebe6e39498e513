"""K-Means (scikit-learn, Euclidean, ``n_init=10``); MiniBatchKMeans above ``kmeans_max`` rows.

New points go to the nearest centre. The centres are kept in the canonical order of the ids.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from brainclust.cluster.base import N_CLUSTERS, RANDOM_STATE, BaseClusterer, need_array
from brainclust.core.params import Integer, param


class KMeansClusterer(BaseClusterer):
    """K-Means into ``n_clusters``.

    Parameters
    ----------
    n_clusters : int, default 4
    random_state : int, None, numpy Generator or RandomState, default None
        Seed of the fit; a generator gives one seed per ``fit`` (``seed_``).
    kmeans_max : int, default 100000
        Largest n for full K-Means (``n_init=10``); above it MiniBatchKMeans (``n_init=3``).

    Attributes
    ----------
    centers_ : ndarray of shape (n_clusters, n_features)
        In the order of the canonical ids.
    """

    method = "kmeans"
    allows_minus_one = True  # images an OutlierRule set apart
    _parameter_constraints = {"n_clusters": N_CLUSTERS, "random_state": RANDOM_STATE,
                              "kmeans_max": param(Integer(1), option="kmeans_max")}

    def __init__(self, n_clusters: int = 4, random_state: int | None = None, kmeans_max: int = 100000):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.kmeans_max = kmeans_max

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        k = int(self.n_clusters)
        if len(X) <= self.kmeans_max:
            km = KMeans(n_clusters=k, n_init=10, random_state=self.seed_).fit(X)
        else:
            km = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=self.seed_).fit(X)
        ids, first = np.unique(km.labels_, return_index=True)
        self.centers_ = km.cluster_centers_[ids[np.argsort(first)]]  # the canonical order of relabel()
        return km.labels_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmin(cdist(X, self.centers_), axis=1)

    def _arrays(self) -> dict:
        return {"centers": self.centers_}

    @classmethod
    def check_arrays(cls, data: dict, path):
        n, d, lab = super().check_arrays(data, path)
        need_array(data, path, "centers", "f", (int(lab.max()) + 1 if lab.size else 0, d))
        return n, d, lab

    def _restore(self, data: dict) -> None:
        self.centers_ = data["centers"]
