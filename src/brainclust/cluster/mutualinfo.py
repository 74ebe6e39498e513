"""Mutual information of two labellings, its adjustment for chance, and the bins of a numeric column.

The pieces :mod:`brainclust.cluster.associations` ranks columns with: computed here without scikit-learn's
per-call input checks, for the many small tables of a within-strata ranking, and equal to
``sklearn.metrics.adjusted_mutual_info_score`` (arithmetic normalisation) to 1e-12.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainclust.errors import ParameterError

#: The fewest rows a column (or a stratum) is scored on: two rows in two groups always score AMI 1.
MIN_ROWS = 3


def label_codes(labels: Sequence) -> np.ndarray:
    """Codes 0..m-1 of the labels' distinct values, in sorted order (text compared stripped)."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        arr = np.char.strip(arr.astype(str))
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(-1)


def mutual_info(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> float:
    """Mutual information (nats) of two code vectors."""
    n = len(a)
    counts = np.bincount(a * nb + b)
    cells = np.flatnonzero(counts)  # the occupied cells only: a table of many values is mostly empty
    c = counts[cells].astype(np.float64)
    pi, pj = np.bincount(a, minlength=na).astype(np.float64), np.bincount(b, minlength=nb).astype(np.float64)
    return float(np.sum(c / n * np.log(c * n / (pi[cells // nb] * pj[cells % nb]))))


#: Largest (values x groups x cell count) grid the expected mutual information is summed over here; above it
#: scikit-learn computes it.
EMI_GRID_MAX = 4_000_000


def ami(a: np.ndarray, b: np.ndarray, b_coded: bool = False) -> float:
    """``sklearn.metrics.adjusted_mutual_info_score(a, b)`` (arithmetic normalisation) without its per-call input
    checks, for the many small tables of a within-strata ranking; the expected mutual information is the sum of
    Vinh, Epps and Bailey (2010) over the hypergeometric cell counts."""
    from scipy.special import gammaln

    a, b = label_codes(a), (b if b_coded else label_codes(b))
    n, na, nb = len(a), int(a.max()) + 1, int(b.max()) + 1
    if na == nb == 1:
        return 1.0
    if na == 1 or nb == 1:
        return 0.0
    ai = np.bincount(a, minlength=na).astype(np.float64)
    bj = np.bincount(b, minlength=nb).astype(np.float64)
    top = int(min(ai.max(), bj.max()))
    if na * nb * top > EMI_GRID_MAX:
        from sklearn.metrics import adjusted_mutual_info_score

        return float(adjusted_mutual_info_score(a, b))
    A, B = ai[:, None, None], bj[None, :, None]
    k = np.arange(1, top + 1, dtype=np.float64)[None, None, :]
    valid = (k >= np.maximum(1, A + B - n)) & (k <= np.minimum(A, B))
    lg = gammaln(A + 1) + gammaln(B + 1) + gammaln(n - A + 1) + gammaln(n - B + 1) - gammaln(n + 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lg = lg - gammaln(k + 1) - gammaln(A - k + 1) - gammaln(B - k + 1) - gammaln(n - A - B + k + 1)
        term = k / n * (np.log(n * k) - np.log(A * B)) * np.exp(lg)
    emi = float(np.sum(np.where(valid, term, 0.0)))
    h = [float(-np.sum((c / n)[c > 0] * np.log((c / n)[c > 0]))) for c in (ai, bj)]
    denom = (h[0] + h[1]) / 2 - emi
    eps = np.finfo(np.float64).eps
    num = mutual_info(a, b, na, nb) - emi  # both kept away from 0 with their sign, as scikit-learn does
    denom = min(denom, -eps) if denom < 0 else max(denom, eps)
    return (min(num, -eps) if num < 0 else max(num, eps)) / denom


#: Bins of a numeric column (quintiles).
BINS = 5


def quintiles(values: Sequence[float]) -> np.ndarray:
    """Bin codes of finite numeric ``values``: the quintile intervals ``(q_i-1, q_i]`` (the lowest value in the
    first; equal edges merged, as ``pandas.qcut(values, 5, duplicates="drop")``), except that the values tied at
    the minimum, or at the maximum, form a bin of their own when they fill a fifth of the rows or more (many
    zeros: zero against the rest)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ParameterError("associations: quintiles need finite values")
    inner = np.unique(np.quantile(v, np.arange(1, BINS) / BINS))
    codes = np.searchsorted(inner, v, side="left")  # v <= q_1: 0, so ties at the minimum filling q_1 are alone
    if inner[-1] >= v.max():  # ties at the maximum fill the last quintile: a bin of their own
        codes[v >= v.max()] = len(inner)
    return label_codes(codes)
