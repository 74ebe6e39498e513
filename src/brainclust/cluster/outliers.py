"""Outliers apart (``--outliers auto``): images far from every cluster or in tiny groups get cluster ``-1``.

Average-cosine linkage isolates outliers: asked for k clusters it may spend
some of them on a handful of odd images (on 6,019 unseen images a k=4 run gave
928, 2155, 2931 and 5). :func:`split_outliers` sets such images apart and forms
the k clusters among the rest. The rule needs no labels:

1. cluster the current inliers into k clusters (the run's own method);
2. a cluster is **tiny** when it has fewer than ``max(3, min_fraction * n)``
   members (``min_fraction = 0.01``, n = all images): its members are outliers;
3. a member is **far** when its cosine distance to its cluster's centroid (the
   mean of the cluster's unit rows) exceeds ``median + 3 * 1.4826 * MAD`` of that
   cluster's distances (clusters of >= 10 members; smaller ones use the pooled
   distances of all inliers);
4. repeat with the remaining inliers until a round flags nothing (at most
   ``max_rounds`` = 3 rounds), never flagging more than ``max_fraction`` (5%)
   of the images in all (the farthest go first when the cap bites).

The last round's clustering of the inliers is the result. Scoring (see
:mod:`brainclust.cluster.scores`, which treats ``-1`` as DBSCAN noise): outliers
are excluded from the silhouette and count as their own singleton clusters in
ARI/NMI/FMI and as misses in ACC, so setting images apart is never rewarded by
the label-based scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClusterMixin, clone

from brainclust.cluster.base import BaseClusterer, check_features
from brainclust.core.arrays import unit_rows
from brainclust.core.choices import OUTLIER_MODES
from brainclust.core.params import Integer, Kind, Real, Step, param
from brainclust.errors import ParameterError

RULE = ("tiny: clusters < max(3, {min_fraction} n); far: cosine distance to own centroid > median + 3*1.4826*MAD "
        "(per cluster of >= 10); up to {max_rounds} rounds, at most {max_fraction} n in all; "
        "the k clusters re-formed among the inliers")
SCORED_AS = "excluded from silhouette, own singleton in ARI/NMI/FMI, a miss in ACC"


def check_outliers(value) -> str:
    if value not in OUTLIER_MODES:
        raise ParameterError(f"--outliers: must be one of {', '.join(OUTLIER_MODES)}, got {value!r}")
    return value


def centroid_distances(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine distance of each row to the centroid of its cluster's unit rows (``nan`` for ``-1``)."""
    U = unit_rows(np.asarray(X, dtype=np.float64))
    d = np.full(len(U), np.nan)
    for c in np.unique(labels[labels >= 0]):
        m = labels == c
        cen = U[m].mean(axis=0)
        d[m] = 1.0 - U[m] @ (cen / max(np.linalg.norm(cen), 1e-12))
    return d


def robust_threshold(d: np.ndarray, n_mad: float = 3.0) -> float:
    med = float(np.median(d))
    return med + n_mad * 1.4826 * float(np.median(np.abs(d - med)))


def far_points(X: np.ndarray, labels: np.ndarray, n_mad: float = 3.0, min_size: int = 10) -> np.ndarray:
    """Boolean mask of rows farther from their centroid than their cluster's robust threshold."""
    d = centroid_distances(X, labels)
    pooled = robust_threshold(d[labels >= 0], n_mad)
    far = np.zeros(len(labels), bool)
    for c in np.unique(labels[labels >= 0]):
        m = labels == c
        thr = robust_threshold(d[m], n_mad) if m.sum() >= min_size else pooled
        far[m] = d[m] > thr + 1e-12
    return far


@dataclass
class OutlierSplit:
    """The result of :func:`split_outliers`: labels over all rows (``-1`` = outlier) and the inliers' fit."""

    labels: np.ndarray
    outlier: np.ndarray
    inlier_fit: object
    info: dict


def split_outliers(X, fit: Callable[[np.ndarray], np.ndarray], *, min_fraction: float = 0.01,
                   max_fraction: float = 0.05, max_rounds: int = 3, n_mad: float = 3.0) -> OutlierSplit:
    """Set outliers apart and cluster the rest (the rule of the module docstring).

    Parameters
    ----------
    X : array (n, d)
        The embedding the clustering runs on.
    fit : callable
        ``fit(X_inliers) -> (labels, model)``: the run's clustering into k clusters.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    min_size = max(3, int(np.ceil(min_fraction * n)))
    cap = int(np.floor(max_fraction * n))
    outlier = np.zeros(n, bool)
    counts = {"tiny": 0, "far": 0}
    rounds = 0
    labels_in, model = fit(X)
    while rounds < max_rounds:
        idx = np.flatnonzero(~outlier)
        sizes = np.bincount(labels_in[labels_in >= 0])
        tiny = np.isin(labels_in, np.flatnonzero(sizes < min_size))
        far = far_points(X[idx], labels_in, n_mad) & ~tiny
        room = cap - int(outlier.sum())
        if not (tiny.any() or far.any()) or room <= 0:
            break
        flag = _capped(tiny, far, centroid_distances(X[idx], labels_in), room)
        counts["tiny"] += int((flag & tiny).sum())
        counts["far"] += int((flag & far).sum())
        outlier[idx[flag]] = True
        rounds += 1
        labels_in, model = fit(X[~outlier])
    labels = np.full(n, -1, dtype=np.int64)
    labels[~outlier] = labels_in
    info = {"n": int(outlier.sum()), **counts, "rounds": rounds, "min_size": min_size, "max_n": cap,
            "rule": RULE.format(min_fraction=min_fraction, max_rounds=max_rounds, max_fraction=max_fraction),
            "scored_as": SCORED_AS}
    return OutlierSplit(labels, outlier, model, info)


def _capped(tiny: np.ndarray, far: np.ndarray, dist: np.ndarray, room: int) -> np.ndarray:
    """The rows to flag this round, at most ``room``: tiny groups first, then the farthest far points."""
    order = np.lexsort((-np.nan_to_num(dist), ~tiny))  # tiny first, then by distance, farthest first
    cand = order[(tiny | far)[order]][:room]
    flag = np.zeros(len(tiny), bool)
    flag[cand] = True
    return flag


#: Methods whose saved model still predicts sensibly with outliers among its training rows.
OUTLIER_METHODS = ("hierarchical", "kmeans")


def check_outlier_method(mode: str, method: str) -> None:
    if check_outliers(mode) == "auto" and method not in OUTLIER_METHODS:
        raise ParameterError(f"--outliers auto: supported with --method {' or '.join(OUTLIER_METHODS)}, "
                             f"got {method!r} (dbscan has its own noise label)")


def _widen(part: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    """Rows of the inliers' ``part`` (labels or levels) spread over all rows, ``-1`` on the others."""
    if part is None:
        return None
    out = np.full((len(keep), *part.shape[1:]), -1, dtype=np.int64)
    out[keep] = part
    return out


class OutlierRule(ClusterMixin, Step):
    """``--outliers auto`` as a step: it owns the outlier mask and the clustering of the inliers.

    ``fit(X)`` runs :func:`split_outliers` with clones of ``estimator`` (its ``n_clusters`` capped
    at the inliers' count); the last round's clustering of the inliers is ``estimator_``, fitted on
    the inliers only. This rule's own ``labels_``, ``levels_`` and ``X_fit_`` cover every row
    (``-1`` for an outlier); ``predict`` assigns new points to the inliers' clusters (never ``-1``).

    Parameters
    ----------
    estimator : HierarchicalClusterer or KMeansClusterer
        The run's clustering (its ``n_clusters`` is k).
    min_fraction, max_fraction, max_rounds, n_mad
        The rule of the module docstring.

    Attributes
    ----------
    estimator_ : the clustering of the inliers
    outlier_ : ndarray of bool, shape (n_samples,)
    labels_, levels_, X_fit_, n_clusters_
        Over every row, outliers ``-1``.
    info_ : dict
        What ``metrics.json`` records under ``outliers``.
    """

    _parameter_constraints = {"estimator": param(Kind((BaseClusterer,), "a clustering estimator"),
                                                 option="--outliers"),
                              "min_fraction": param(Real(0.0, 1.0), option="min_fraction"),
                              "max_fraction": param(Real(0.0, 1.0), option="max_fraction"),
                              "max_rounds": param(Integer(1), option="max_rounds"),
                              "n_mad": param(Real(0.0, None, open=True), option="n_mad")}
    _fitted_attribute = "estimator_"
    eps_ = None

    def __init__(self, estimator: BaseClusterer | None = None, min_fraction: float = 0.01,
                 max_fraction: float = 0.05, max_rounds: int = 3, n_mad: float = 3.0):
        self.estimator = estimator
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.max_rounds = max_rounds
        self.n_mad = n_mad

    def check_params(self):
        super().check_params()
        check_outlier_method("auto", self.estimator.method)
        self.estimator.check_params()
        return self

    @property
    def method(self) -> str:
        return self.estimator.method

    def fit(self, X, y=None, **fit_params):
        """Set outliers apart and cluster the rest; ``fit_params`` go to each fit of the estimator."""
        self.check_params()
        X = check_features(X)
        k = int(self.estimator.n_clusters)

        def fit(Xi):
            est = clone(self.estimator).set_params(n_clusters=min(k, len(Xi))).fit(Xi, **fit_params)
            return est.labels_, est

        split = split_outliers(X, fit, min_fraction=self.min_fraction, max_fraction=self.max_fraction,
                               max_rounds=self.max_rounds, n_mad=self.n_mad)
        self._set_fitted(split.inlier_fit, split.outlier, X, split.labels)
        self.info_ = split.info
        return self

    def _set_fitted(self, inner: BaseClusterer, outlier: np.ndarray, X: np.ndarray, labels: np.ndarray) -> None:
        self.estimator_, self.outlier_, self.X_fit_, self.labels_ = inner, outlier, X, labels
        self.levels_ = _widen(inner.levels_, ~outlier)
        self.n_clusters_ = inner.n_clusters_

    @property
    def tree_(self):
        self.check_is_fitted()
        return self.estimator_.tree_

    def predict(self, X) -> np.ndarray:
        self.check_is_fitted()
        return self.estimator_.predict(X)

    def predict_levels(self, X):
        self.check_is_fitted()
        return self.estimator_.predict_levels(X)

    def leaf_labels(self) -> np.ndarray:
        self.check_is_fitted()
        return self.estimator_.leaf_labels()

    # -- persistence: one cluster.npz over every row (as written before this class existed) ----------
    def state_arrays(self) -> dict:
        self.check_is_fitted()
        arrays = self.estimator_.state_arrays()
        arrays.update(X_fit=self.X_fit_, labels=self.labels_)
        if self.levels_ is not None:
            arrays["levels"] = self.levels_
        return arrays

    def save(self, path) -> None:
        from brainclust.io.atomic import atomic_write_npz

        self.check_is_fitted()
        atomic_write_npz(path, params=np.asarray(self.estimator_.params_json()), **self.state_arrays())

    def save_step(self, folder) -> dict:
        from brainclust.io.outputs import MODEL_FILES

        self.save(folder / MODEL_FILES["cluster"])
        entry = self.entry()
        entry["params"].pop("estimator")
        return {**entry, "estimator": self.estimator_.entry(), "files": [MODEL_FILES["cluster"]]}

    @classmethod
    def from_saved(cls, loaded: BaseClusterer, **params) -> "OutlierRule":
        """The rule around a clustering loaded from a file whose labels hold ``-1`` for the outliers."""
        keep = loaded.labels_ != -1
        state = {k: v for k, v in loaded.state_arrays().items()}
        state["X_fit"], state["labels"] = loaded.X_fit_[keep], loaded.labels_[keep]
        if loaded.levels_ is not None:
            state["levels"] = loaded.levels_[keep]
        inner = type(loaded).from_arrays(loaded.get_params(), state, "(the inliers)")
        rule = cls(estimator=clone(inner), **params)
        rule._set_fitted(inner, ~keep, loaded.X_fit_, loaded.labels_)
        rule.info_ = None
        return rule


def cluster_with_outliers(X: np.ndarray, method: str, k: int, seed: int | None, mode: str = "off",
                          assign_all=None):
    """The run's clustering of ``X``; with ``mode="auto"`` outliers apart (an :class:`OutlierRule`).

    Returns ``(fitted estimator, info)``; ``info`` is ``None`` when ``mode="off"``.
    """
    from brainclust.cluster.methods import make_clusterer

    check_outlier_method(mode, method)
    est = make_clusterer(method, n_clusters=k, random_state=seed)
    fit_params = {"assign_all": assign_all} if assign_all is not None else {}
    if mode == "off":
        return est.fit(X, **fit_params), None
    rule = OutlierRule(est).fit(X, **fit_params)
    return rule, rule.info_
