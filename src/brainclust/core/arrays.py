"""Array helpers every stage uses, each written once.

* :func:`as_numbers`: an array of numbers, else one line naming what was given (a string, ragged rows);
  :func:`check_finite_rows`: one line saying how many rows hold NaN or infinite values, and the first.
* :func:`unit_rows`: rows scaled to unit length. **The zero-row rule** (one rule everywhere): a row
  whose norm is at most :data:`ZERO_NORM` has no direction and stays all zero, so its cosine
  similarity to every row is 0 and its cosine distance 1 (scikit-learn's convention, which the
  silhouette, DBSCAN and the neighbour searches already follow). :func:`cosine_pdist` and
  :func:`cosine_cdist` give scipy's cosine distances under the same rule (scipy itself is
  undefined for zero rows).
* :func:`seeded_sample`: sorted row indices drawn without replacement from a seed or a generator;
  :func:`stratified_sample`: the same per cluster, every cluster kept.
* :func:`cosine_knn`: exact cosine nearest neighbours, in row blocks (bounded memory).
* :func:`silhouette_rows`, :func:`silhouette_values`, :func:`mean_silhouette`: the cosine
  silhouette, on a cluster-stratified seeded sample of :data:`SILHOUETTE_BUDGET` rows above that
  size. ``metrics.json`` and the report's silhouette plot use the same rows, so their means agree.
"""

from __future__ import annotations

import numpy as np

from brainclust.errors import ParameterError

#: Rows with a norm at most this are zero rows (see the module docstring).
ZERO_NORM = 1e-12
#: The silhouette's row budget: above it, a cluster-stratified seeded sample of this many rows.
SILHOUETTE_BUDGET = 10000
#: Memory (MB) of one block of the silhouette's pairwise distances; each row lies within one block,
#: so the value does not depend on it.
SILHOUETTE_MEMORY_MB = 128


def as_numbers(X, what: str = "features", dtype=np.float64) -> np.ndarray:
    """``X`` as an array of ``dtype`` (``None``: its own numeric dtype, float32 kept); a ParameterError starting
    with ``what`` when it holds something else (text, paths, ragged rows)."""
    try:
        A = np.asarray(X, dtype=dtype)
        return A if A.dtype.kind in "fiub" else A.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{what} must be an array of numbers, got {type(X).__name__} ({exc})") from None


def read_only(X) -> np.ndarray:
    """A read-only view of array ``X``: a step given it may keep it without a copy (no one can edit it through
    the view; the clusterers copy a writeable array they keep, :class:`~brainclust.cluster.base.BaseClusterer`)."""
    view = np.asarray(X).view()
    view.flags.writeable = False
    return view


def check_finite_rows(X: np.ndarray, what: str = "") -> None:
    """A ParameterError (``what`` first) when rows of ``X`` (n, d) hold NaN or infinite values: how many, the first,
    and the usual cause (the NaN row of an image that failed to decode)."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ParameterError(f"{what}the features of {int(bad.sum())} of {len(X)} rows are not finite (NaN or "
                             f"infinite; first: row {int(np.argmax(bad))}): an image that failed to decode? "
                             "(FeatureExtractor.extract says which; leave their rows out)")


def unit_rows(X) -> np.ndarray:
    """Rows divided by their Euclidean norm; zero rows stay zero (the module's zero-row rule).

    Floating input keeps its precision (float32 stays float32); anything else becomes float64.
    """
    X = np.asarray(X)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    zero = norm[:, 0] <= ZERO_NORM
    if not zero.any():
        return X / norm
    out = X / np.where(norm > ZERO_NORM, norm, 1.0)
    out[zero] = 0.0
    return out


def zero_rows(X) -> np.ndarray:
    """Boolean mask of the zero rows of ``X`` (norm at most :data:`ZERO_NORM`)."""
    return np.linalg.norm(np.asarray(X, dtype=np.float64), axis=1) <= ZERO_NORM


def _defined(X: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """``X`` with its zero rows replaced by ones, so that scipy's cosine is defined (they are fixed after)."""
    X = X.copy()
    X[zero] = 1.0
    return X


def cosine_pdist(X) -> np.ndarray:
    """Condensed cosine distances (scipy's ``pdist``); a zero row is at distance 1 from every other row."""
    from scipy.spatial.distance import pdist, squareform

    X = np.asarray(X, dtype=np.float64)
    zero = zero_rows(X)
    if not zero.any():
        return pdist(X, "cosine")
    D = squareform(pdist(_defined(X, zero), "cosine"))
    D[zero, :] = 1.0
    D[:, zero] = 1.0
    np.fill_diagonal(D, 0.0)
    return squareform(D, checks=False)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (``(n,)``; 1.0 for two zero rows)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(1)
    out = np.ones(len(a))
    ok = (na > 0) & (nb > 0)
    out[ok] = dot[ok] / (na[ok] * nb[ok])
    return out


def cosine_cdist(A, B) -> np.ndarray:
    """``(len(A), len(B))`` cosine distances (scipy's ``cdist``); a zero row is at distance 1 from every row."""
    from scipy.spatial.distance import cdist

    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    za, zb = zero_rows(A), zero_rows(B)
    D = cdist(_defined(A, za) if za.any() else A, _defined(B, zb) if zb.any() else B, "cosine")
    D[za, :] = 1.0
    D[:, zb] = 1.0
    return D


def seeded_sample(n: int, size: int, rng) -> np.ndarray:
    """``size`` distinct row indices of ``range(n)``, sorted; ``rng`` is a seed or a ``numpy`` Generator.

    A Generator is used (and advanced) as it is, so a caller drawing more from it gets the same
    stream as before this helper existed.
    """
    return np.sort(np.random.default_rng(rng).choice(n, size, replace=False))


def group_members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(ids, sizes, members)``: the distinct labels (sorted), their counts and each one's row indices in
    ascending order, from one stable sort (the cost does not grow with the number of labels)."""
    ids, sizes = np.unique(labels, return_counts=True)
    return ids, sizes, np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])


def stratified_sample(clusters: np.ndarray, cap: int, random_state: int | None = 0) -> np.ndarray:
    """``cap`` sorted indices (or all when there are not more), drawn per cluster in proportion to its size
    with at least one image each, so that small clusters stay visible.

    Each cluster gets ``floor(size * cap / n)`` (at least 1); what is left goes to the clusters
    with the largest remainders (largest-remainder rounding), so the sample has exactly ``cap``
    rows unless there are more clusters than that.
    """
    clusters = np.asarray(clusters)
    n = len(clusters)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    _, sizes, by_cluster = group_members(clusters)
    share = sizes * cap / n
    quota = np.minimum(np.maximum(1, np.floor(share)).astype(int), sizes)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for i in order[:max(0, cap - int(quota.sum()))]:
        quota[i] = min(quota[i] + 1, sizes[i])
    picked = [rng.choice(members, size=q, replace=False) for members, q in zip(by_cluster, quota)]
    return np.sort(np.concatenate(picked))


def cosine_knn(X, k: int, exclude_self: bool = False, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine nearest neighbours: ``(indices int32, distances float32)`` of shape ``(n, k)``.

    Nearest first (ties by index). With ``exclude_self=False`` each row's own index comes first, at
    distance 0; with ``exclude_self=True`` a row is never its own neighbour. Distances are
    computed in the input's floating precision, ``chunk`` rows at a time.
    """
    U = unit_rows(X)
    n = len(U)
    idx = np.empty((n, k), dtype=np.int32)
    dist = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, chunk):
        D = 1.0 - U[s:s + chunk] @ U.T
        rows = np.arange(s, min(s + chunk, n))
        D[rows - s, rows] = np.inf if exclude_self else -1.0  # self last, or first
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # ties by index
        order = np.argsort(np.take_along_axis(D, part, 1), axis=1, kind="stable")
        idx[rows] = np.take_along_axis(part, order, 1)
        dist[rows] = np.maximum(np.take_along_axis(D, idx[rows], 1), 0.0)
    return idx, dist


def silhouette_rows(labels, budget: int | None = SILHOUETTE_BUDGET, random_state: int | None = 0):
    """The rows the silhouette is computed on, or ``None`` when it is undefined.

    Every row not in cluster ``-1`` (noise, outliers); above ``budget`` such rows a
    cluster-stratified seeded sample of ``budget`` (:func:`stratified_sample`). Undefined: fewer
    than 2 clusters, or as many clusters as rows.
    """
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels != -1)
    if not 2 <= len(set(labels[rows].tolist())) < len(rows):
        return None
    if budget is not None and len(rows) > budget:
        rows = rows[stratified_sample(labels[rows], budget, random_state)]
        if len(set(labels[rows].tolist())) < 2:
            return None
    return rows


def _samples(X, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    from sklearn import config_context
    from sklearn.metrics import silhouette_samples

    with config_context(working_memory=SILHOUETTE_MEMORY_MB):  # row blocks: same values, bounded memory
        return silhouette_samples(np.asarray(X, dtype=np.float64)[rows], labels[rows], metric="cosine")


def silhouette_values(X, labels, budget: int | None = SILHOUETTE_BUDGET,
                      random_state: int | None = 0) -> np.ndarray | None:
    """Cosine silhouette of every row of :func:`silhouette_rows` (NaN for the others), or ``None``."""
    labels = np.asarray(labels)
    rows = silhouette_rows(labels, budget, random_state)
    if rows is None:
        return None
    out = np.full(len(labels), np.nan)
    out[rows] = _samples(X, labels, rows)
    return out


def mean_silhouette(X, labels, budget: int | None = SILHOUETTE_BUDGET,
                    random_state: int | None = 0) -> tuple[float | None, int | None]:
    """``(mean cosine silhouette, sample size or None)`` over :func:`silhouette_rows`; ``(None, None)`` if undefined.

    The mean is scikit-learn's ``silhouette_score`` (the mean of ``silhouette_samples``) on those rows;
    the sample size is ``None`` when every row counted.
    """
    labels = np.asarray(labels)
    rows = silhouette_rows(labels, budget, random_state)
    if rows is None:
        return None, None
    sampled = len(rows) < int((labels != -1).sum())
    return float(np.mean(_samples(X, labels, rows))), (len(rows) if sampled else None)
