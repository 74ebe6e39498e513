"""Spectral clustering on a symmetric ``n_neighbors``-NN graph of the unit rows (cosine geometry).

New points get the distance-weighted vote of their ``n_neighbors`` cosine-nearest training points.
"""

from __future__ import annotations

import numpy as np

from brainclust.cluster.base import EXACT_MAX, N_CLUSTERS, RANDOM_STATE, BaseClusterer
from brainclust.core.arrays import unit_rows
from brainclust.core.params import Integer, param
from brainclust.errors import ParameterError


class SpectralClusterer(BaseClusterer):
    """Spectral clustering into ``n_clusters``.

    Parameters
    ----------
    n_clusters : int, default 4
    random_state : int, None, numpy Generator or RandomState, default None
        Seed of the fit; a generator gives one seed per ``fit`` (``seed_``).
    n_neighbors : int, default 10
        Graph size, and voters of :meth:`predict`.
    exact_max : int, default 20000
        At most this many rows (its neighbour graph and memory grow with n).
    """

    method = "spectral"
    allows_minus_one = True  # images set aside before the clustering (--exclude: cluster.setaside)
    _parameter_constraints = {"n_clusters": N_CLUSTERS, "random_state": RANDOM_STATE,
                              "n_neighbors": param(Integer(1), option="n_neighbors"),
                              "exact_max": param(Integer(1), option="exact_max")}

    def __init__(self, n_clusters: int = 4, random_state: int | None = None, n_neighbors: int = 10,
                 exact_max: int = EXACT_MAX):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.exact_max = exact_max

    def _check_size(self, n: int) -> None:
        super()._check_size(n)
        self._refuse_above(n, "its neighbour graph and memory grow with n")

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import SpectralClustering
        from sklearn.neighbors import kneighbors_graph

        k = int(self.n_clusters)
        if len(X) <= k + 1:  # the sparse eigensolver needs more images than eigenvectors
            raise ParameterError(f"--method spectral: needs at least k + 2 = {k + 2} images, got {len(X)}; "
                                 "use --method hierarchical or a smaller --k")
        # scikit-learn's affinity="nearest_neighbors", built here: given the rows, fit took a square X (as many
        # images as PCA dimensions) for an affinity matrix and warned that its "API has changed"
        graph = kneighbors_graph(unit_rows(X), n_neighbors=min(self.n_neighbors, len(X) - 1), include_self=True)
        sc = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=self.seed_,
                                assign_labels="kmeans")
        return sc.fit(0.5 * (graph + graph.T)).labels_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import KNeighborsClassifier

        knn = KNeighborsClassifier(n_neighbors=min(self.n_neighbors, len(self.X_fit_)), weights="distance",
                                   metric="cosine").fit(self.X_fit_, self.labels_)
        return knn.predict(X)  # scikit-learn's cosine follows the zero-row rule of brainclust.core.arrays
