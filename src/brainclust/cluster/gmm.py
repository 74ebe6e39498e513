"""Gaussian mixture, full covariances (``reg_covar=1e-4``).

Above ``exact_max`` rows it is fitted on a seeded sample of ``exact_max`` rows and assigns every
row. New points go to their most probable component.
"""

from __future__ import annotations

import numpy as np

from brainclust.cluster.base import EXACT_MAX, N_CLUSTERS, RANDOM_STATE, BaseClusterer, need_array, relabel_like
from brainclust.core.arrays import seeded_sample
from brainclust.core.params import Integer, param


class GMMClusterer(BaseClusterer):
    """Gaussian mixture with ``n_clusters`` components.

    Parameters
    ----------
    n_clusters : int, default 4
    random_state : int, None, numpy Generator or RandomState, default None
        Seed of the fit; a generator gives one seed per ``fit`` (``seed_``).
    exact_max : int, default 20000
        Above this many rows the mixture is fitted on a seeded sample of this size.

    Attributes
    ----------
    model_ : sklearn.mixture.GaussianMixture
    """

    method = "gmm"
    allows_minus_one = True  # images set aside before the clustering (--exclude: cluster.setaside)
    _parameter_constraints = {"n_clusters": N_CLUSTERS, "random_state": RANDOM_STATE,
                              "exact_max": param(Integer(1), option="exact_max")}

    def __init__(self, n_clusters: int = 4, random_state: int | None = None, exact_max: int = EXACT_MAX):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.exact_max = exact_max

    def _fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(n_components=int(self.n_clusters), covariance_type="full", reg_covar=1e-4,
                             random_state=self.seed_)
        if len(X) <= self.exact_max:
            self.model_ = gm.fit(X)
        else:  # fit on a seeded sample, assign every point
            self.model_ = gm.fit(X[seeded_sample(len(X), self.exact_max, self.seed_)])
        return self.model_.predict(X)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return relabel_like(self.model_.predict(X), self.model_.predict(self.X_fit_), self.labels_)

    def _arrays(self) -> dict:
        g = self.model_
        return {"weights": g.weights_, "means": g.means_, "covariances": g.covariances_,
                "precisions_cholesky": g.precisions_cholesky_}

    @classmethod
    def check_arrays(cls, data: dict, path):
        n, d, lab = super().check_arrays(data, path)
        w = need_array(data, path, "weights", "f", (None,))
        need_array(data, path, "means", "f", (len(w), d))
        for f in ("covariances", "precisions_cholesky"):
            need_array(data, path, f, "f", (len(w), d, d))
        return n, d, lab

    def _restore(self, data: dict) -> None:
        from sklearn.mixture import GaussianMixture

        g = GaussianMixture(n_components=len(data["weights"]), covariance_type="full")
        g.weights_, g.means_ = data["weights"], data["means"]
        g.covariances_, g.precisions_cholesky_ = data["covariances"], data["precisions_cholesky"]
        g.n_features_in_ = data["means"].shape[1]
        self.model_ = g
