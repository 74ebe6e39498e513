"""Stage 6: scores.

* **silhouette** with the cosine distance, on the features the clustering used
  (internal; needs no labels);
* with labels: **ARI**, **NMI**, **FMI** (scikit-learn) and **ACC**, the
  accuracy after the best one-to-one matching of clusters to labels (Hungarian
  algorithm, scipy).

DBSCAN noise (``-1``): each noise point counts as its own singleton cluster in
ARI/NMI/FMI and as a miss in ACC, so marking points as noise is never rewarded;
silhouette is computed on the non-noise points only. ``n_noise`` is reported.
Above ``silhouette_max`` non-noise points (default 10000) the silhouette is
the mean over a cluster-stratified seeded sample of about that many
(:func:`brainclust.core.arrays.mean_silhouette`, the rows the report's
silhouette plot uses too), and ``silhouette_sample`` records the sample size.
Rows with an empty label are left out of the label-based scores.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics
from sklearn.metrics.cluster import contingency_matrix

from brainclust.core.arrays import SILHOUETTE_BUDGET, as_numbers, mean_silhouette
from brainclust.errors import ParameterError


def clustering_accuracy(labels_true, labels_pred) -> float:
    """Hungarian-matched accuracy: the best one-to-one cluster -> label mapping.

    Points in cluster ``-1`` (noise) count as misses.
    """
    yt, yp = np.asarray(labels_true), np.asarray(labels_pred)
    keep = yp != -1
    if not keep.any():
        return 0.0
    C = contingency_matrix(yt[keep], yp[keep])
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].sum() / len(yt))


def _noise_as_singletons(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred).copy()
    noise = pred == -1
    pred[noise] = pred.max(initial=-1) + 1 + np.arange(noise.sum())
    return pred


def score(X, labels_pred, labels_true=None, silhouette_max: int = SILHOUETTE_BUDGET,
          random_state: int | None = 0) -> dict:
    """All scores of a clustering as a JSON-ready dict (``None`` where undefined, never NaN).

    Parameters
    ----------
    X : array of shape (n, d)
        The features the clustering ran on.
    labels_pred : array of shape (n,)
        Cluster ids, ``-1`` for noise.
    labels_true : sequence of str or int, or None
        Ground truth; ``""``, ``None``, NaN and ``pandas.NA`` are unlabelled rows (``0`` is a class).
    silhouette_max : int, default 10000
        Above this many non-noise points the silhouette is computed on a cluster-stratified seeded sample.
    random_state : int or None, default 0
        Seed of that sample.
    """
    if isinstance(labels_true, (str, bytes)):
        raise ParameterError("score: labels_true is one string; give one label per row (a list or an array)")
    X = as_numbers(X, "score: X")
    pred = np.asarray(labels_pred)
    if pred.dtype.kind not in "iub" and not (pred.dtype.kind == "f" and np.all(np.isfinite(pred))
                                              and np.array_equal(pred, np.round(pred))):
        raise ParameterError(f"score: labels_pred must be integer cluster ids (-1: noise), got {pred.dtype} values")
    pred = pred.astype(np.int64)
    if not np.isfinite(X).all():
        raise ParameterError("score: X holds NaN or infinite values")
    if isinstance(silhouette_max, bool) or not isinstance(silhouette_max, (int, np.integer)) or silhouette_max < 2:
        raise ParameterError(f"score: silhouette_max must be an integer of at least 2, got {silhouette_max!r}")
    n_true = None if labels_true is None else len(labels_true)
    if X.ndim != 2 or pred.ndim != 1 or len(X) != len(pred) or n_true not in (None, len(pred)):
        raise ParameterError(f"score: X {X.shape}, labels_pred {pred.shape}"
                             + ("" if n_true is None else f" and labels_true ({n_true},)")
                             + ": expected (n, d), (n,) and (n,) for the same n")
    keep = pred != -1
    found = len(np.unique(pred[keep]))
    ids, sizes = np.unique(pred, return_counts=True)  # one pass, however many clusters (DBSCAN)
    out: dict = {"n_images": int(len(pred)), "n_clusters": int(found), "n_noise": int((~keep).sum()),
                 "cluster_sizes": {str(c): int(m) for c, m in zip(ids.tolist(), sizes)}}
    sil, sample = mean_silhouette(X, pred, int(silhouette_max), random_state)
    if sample is not None:
        out["silhouette_sample"] = sample
    out["silhouette"] = sil
    if labels_true is not None:
        out.update(label_scores(pred, labels_true))
    return {k: finite_or_none(v) for k, v in out.items()}


def _labelled(v) -> bool:
    """Whether a label is one: not ``None``, ``""`` or a missing value (NaN, ``pandas.NA``); ``0`` and ``False``
    are labels (until 2026-12-07 they were taken for unlabelled rows, and NaN was a class of its own)."""
    if v is None or (isinstance(v, str) and not v):
        return False
    try:
        return not (v != v)  # NaN is the one value unequal to itself
    except TypeError:  # pandas.NA: its truth value is undefined
        return False


def label_scores(labels_pred, labels_true) -> dict:
    """``n_labelled`` and, with two labelled rows at least, ``ari``, ``nmi``, ``fmi`` and ``acc`` of cluster ids
    (``-1``: noise, each its own singleton, a miss in ACC) against labels (empty strings: unlabelled rows)."""
    y, pred = np.asarray(labels_true, dtype=object), np.asarray(labels_pred)
    lab = np.array([_labelled(v) for v in y], dtype=bool)
    out: dict = {"n_labelled": int(lab.sum())}
    if lab.sum() >= 2:
        yt, yp = y[lab].astype(str), pred[lab]
        yp_s = _noise_as_singletons(yp)
        out.update(ari=float(metrics.adjusted_rand_score(yt, yp_s)),
                   nmi=float(metrics.normalized_mutual_info_score(yt, yp_s)),
                   fmi=float(metrics.fowlkes_mallows_score(yt, yp_s)),
                   acc=clustering_accuracy(yt, yp))
    return out


def finite_or_none(value):
    """``None`` for a NaN or infinite float (an undefined score), the value otherwise (JSON has no NaN)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
