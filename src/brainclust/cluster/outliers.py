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

from brainclust.cluster.methods import Clusterer
from brainclust.errors import ParameterError

OUTLIER_MODES = ("off", "auto")
RULE = ("tiny: clusters < max(3, {min_fraction} n); far: cosine distance to own centroid > median + 3*1.4826*MAD "
        "(per cluster of >= 10); up to {max_rounds} rounds, at most {max_fraction} n in all; "
        "the k clusters re-formed among the inliers")
SCORED_AS = "excluded from silhouette, own singleton in ARI/NMI/FMI, a miss in ACC"


def check_outliers(value) -> str:
    if value not in OUTLIER_MODES:
        raise ParameterError(f"--outliers: must be one of {', '.join(OUTLIER_MODES)}, got {value!r}")
    return value


def unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def centroid_distances(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine distance of each row to the centroid of its cluster's unit rows (``nan`` for ``-1``)."""
    U = unit(X)
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


def cluster_with_outliers(X: np.ndarray, method: str, k: int, seed: int | None, mode: str = "off",
                          assign_all=None):
    """The run's clustering; with ``mode="auto"`` outliers apart (:func:`split_outliers`).

    Returns ``(clusterer, info)``; ``info`` is ``None`` when ``mode="off"`` (exactly today's fit).
    With outliers the clusterer is the fit on the inliers, with ``X_fit_``, ``labels_`` and
    ``levels_`` widened to all rows (``-1`` for the outliers), so the saved model lists every
    image and ``predict`` assigns new images to the inliers' clusters only.
    """
    check_outlier_method(mode, method)
    if mode == "off":
        return Clusterer(method=method, n_clusters=k, random_state=seed).fit(X, assign_all=assign_all), None

    def fit(Xi):
        c = Clusterer(method=method, n_clusters=min(k, len(Xi)), random_state=seed).fit(Xi)
        return c.labels_, c

    exact_max = Clusterer().exact_max
    if method == "hierarchical" and len(X) > exact_max:
        raise ParameterError(f"--outliers auto: at most {exact_max} images with --method hierarchical "
                             f"(the two-stage tree above that is not supported yet), got {len(X)}; use --outliers off")
    split = split_outliers(X, fit)
    cl = split.inlier_fit
    cl.X_fit_ = np.asarray(X, dtype=np.float64)
    cl.labels_ = split.labels
    if cl.levels_ is not None:
        levels = np.full((len(X), cl.levels_.shape[1]), -1, dtype=np.int64)
        levels[~split.outlier] = cl.levels_
        cl.levels_ = levels
    return cl, split.info
