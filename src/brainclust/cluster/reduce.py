"""Stage 4: dimensionality reduction with PCA (METHOD.md eqs 5-9).

A thin wrapper over :class:`sklearn.decomposition.PCA` that accepts a number of
components, a variance fraction, or 0 for "off", caps the number of components
at what the data allow, and saves/loads itself as ``.npz`` (no pickle).
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz

log = logging.getLogger(__name__)


class PCAReducer(TransformerMixin, BaseEstimator):
    """PCA to ``n_components`` dimensions.

    Parameters
    ----------
    n_components : int or float, default 50
        ``int >= 1``: number of components (capped at ``min(n_samples, n_features)``
        with a warning); ``0 < float < 1``: smallest number of components that
        explains this fraction of the variance; ``0``: no reduction (identity).
    random_state : int or None, default None
        Seed of the randomised SVD solver, when scikit-learn picks it.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    components_ : ndarray of shape (n_components_, n_features) or None when off
    explained_variance_ratio_ : ndarray of shape (n_components_,) or None
    n_components_ : int
    """

    def __init__(self, n_components: int | float = 50, random_state: int | None = None):
        self.n_components = n_components
        self.random_state = random_state

    def check_params(self):
        """The rule of ``n_components`` (no data needed); returns it as an int or a fraction."""
        n = self.n_components
        if isinstance(n, bool) or not isinstance(n, numbers.Real):
            raise ParameterError(f"--pca: must be a number, got {n!r}")
        if n == 0:
            return 0
        if n >= 1 and float(n).is_integer():
            return int(n)
        if 0 < n < 1:
            return float(n)
        raise ParameterError(f"--pca: must be 0 (off), an integer >= 1 or a variance fraction in (0, 1), got {n}")

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        n = self.check_params()
        self.n_features_in_ = X.shape[1]
        if n == 0:
            self.mean_ = np.zeros(X.shape[1])
            self.components_ = None
            self.explained_variance_ratio_ = None
            self.n_components_ = X.shape[1]
            return self
        if isinstance(n, int):
            cap = min(X.shape)
            if n > cap:
                log.warning("--pca %d is more than the data allow (min(n_images, n_features) = %d); using %d",
                            n, cap, cap)
                n = cap
        pca = PCA(n_components=n, svd_solver="full", random_state=self.random_state).fit(X)
        self.mean_ = pca.mean_
        self.components_ = pca.components_
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        self.n_components_ = int(pca.n_components_)
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ParameterError(f"features have {X.shape[1]} dimensions; the PCA was fitted on {self.n_features_in_}")
        if self.components_ is None:
            return X
        return (X - self.mean_) @ self.components_.T

    def save(self, path) -> None:
        arrays = {"mean": self.mean_, "n_features_in": np.asarray(self.n_features_in_)}
        if self.components_ is not None:
            arrays["components"] = self.components_
            arrays["explained_variance_ratio"] = self.explained_variance_ratio_
        atomic_write_npz(path, **arrays)

    @classmethod
    def load(cls, path) -> "PCAReducer":
        try:
            with np.load(path, allow_pickle=False) as z:
                self = cls(n_components=int(z["components"].shape[0]) if "components" in z else 0)
                self.mean_ = z["mean"]
                self.n_features_in_ = int(z["n_features_in"])
                self.components_ = z["components"] if "components" in z else None
                self.explained_variance_ratio_ = (z["explained_variance_ratio"] if "components" in z else None)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"PCA file '{path}' is missing or damaged ({exc})") from None
        self.n_components_ = self.n_features_in_ if self.components_ is None else self.components_.shape[0]
        return self
