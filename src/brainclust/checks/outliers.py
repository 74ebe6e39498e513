"""``outlier``: an image far from everything else in feature space.

Score: the cosine distance from an image's L2-normalised feature vector to its ``k``-th
nearest other distinct image, on a log scale, as a robust z-score over the data set
(median and 1.4826 x MAD). An image is an outlier when the score exceeds
``Thresholds.outlier_z``. Exact duplicates are searched once (one row per content) so
that a copy cannot make its original look typical; they share the original's score.
"""

from __future__ import annotations

import numpy as np

from brainclust.checks.flags import Thresholds
from brainclust.checks.neighbors import knn
from brainclust.errors import ParameterError


def outlier_scores(features: np.ndarray, thresholds: Thresholds, first: np.ndarray | None = None,
                   valid: np.ndarray | None = None, backend: str = "auto",
                   random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(z, flag)`` per row of ``features`` (n, d).

    ``first[i]`` is the first row with the same content as row ``i`` (default: every row distinct);
    rows with ``valid[i]`` False (undecodable, NaN features) get NaN and are never flagged.
    """
    x = np.asarray(features, np.float32)
    if x.ndim != 2:
        raise ParameterError(f"outlier features: must be a 2-D array, got shape {x.shape}")
    n = len(x)
    first = np.arange(n) if first is None else np.asarray(first)
    ok = np.isfinite(x).all(1) if valid is None else (np.asarray(valid, bool) & np.isfinite(x).all(1))
    rows = np.nonzero(ok & (first == np.arange(n)))[0]
    z = np.full(n, np.nan, np.float32)
    k = thresholds.outlier_k
    if len(rows) <= k + 1:
        return z, np.zeros(n, bool)
    v = x[rows]
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    sims, _ = knn(v, v, k + 1, backend, thresholds.exact_max, random_state)
    dist = np.clip(1.0 - sims[:, k], 0.0, 2.0)  # column 0 is the image itself
    score = np.log(dist + 1e-6)
    med = np.median(score)
    mad = 1.4826 * np.median(np.abs(score - med))
    zr = (score - med) / mad if mad > 0 else np.zeros_like(score)
    z[rows] = zr
    z[ok] = z[first[ok]]
    flag = np.nan_to_num(z, nan=-np.inf) > thresholds.outlier_z
    return z, flag
