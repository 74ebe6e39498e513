"""Average-cosine linkage at scale: a two-stage tree.

Exact average linkage needs the ``n x n`` distance matrix (about 3.3 GB and
15 s at 20 000 points with scipy). Above a size limit
(:class:`~brainclust.cluster.hierarchical.HierarchicalClusterer`'s ``exact_max``) the tree is
built in two stages:

1. **Micro-clusters.** Seeded k-means (:func:`micro_clusters`: Lloyd's
   iterations on a sample of ``10 m`` rows, then one assignment pass over all
   rows) groups the L2-normalised rows into ``m`` micro-clusters (``n_micro``,
   default 4000). scikit-learn's MiniBatchKMeans was 3x slower here at
   ``m = 2000`` (its k-means++ start and many small steps).
2. **The exact average-linkage tree between micro-clusters.** For unit
   vectors the mean pairwise cosine similarity of clusters ``A`` and ``B`` is
   ``S_A . S_B / (n_A n_B)`` with ``S`` the sum of a cluster's vectors, so
   average linkage over micro-clusters is exact from sums and sizes: the
   initial distance is ``1 - S_i . S_j / (n_i n_j)`` and a merge updates by
   Lance-Williams with sizes,
   ``d(k, i+j) = (n_i d(k, i) + n_j d(k, j)) / (n_i + n_j)``.

:func:`weighted_average_linkage` is that tree: a nearest-neighbour chain
(average linkage is reducible) on an ``m x m`` matrix, O(m^2) memory and
time. Its result is a scipy linkage matrix over the ``m`` micro-clusters
(column 3 counts micro-clusters, as scipy's validity check requires), so
scipy's ``cut_tree`` and ``dendrogram`` work on it. With every point its own micro-cluster (all sizes 1) it is scipy's
``linkage(X, "average", "cosine")``, up to ties.
"""

from __future__ import annotations

import numpy as np

from brainclust.core.arrays import seeded_sample, unit_rows

__all__ = ["N_MICRO", "average_cosine_distances", "cluster_sums", "micro_clusters", "nearest", "two_stage_tree",
           "unit_rows", "weighted_average_linkage"]

#: Default number of micro-clusters (see docs/performance.md, "Scale", for the calibration).
N_MICRO = 4000


def cluster_sums(U: np.ndarray, assign: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S, sizes)``: the sum of the rows of ``U`` and their number in each of ``m`` groups."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(U)), (assign, np.arange(len(U)))), shape=(m, len(U)))
    return np.asarray(onehot @ U), np.bincount(assign, minlength=m).astype(np.float64)


def average_cosine_distances(S: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``m x m`` mean pairwise cosine distance between groups of unit vectors, from sums and sizes."""
    M = S / sizes[:, None]
    D = 1.0 - M @ M.T
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, np.inf)
    return D


def _nn_chain(D: np.ndarray, sizes: np.ndarray) -> list[tuple[int, int, float]]:
    """Merges ``(a, b, distance)`` of average linkage by a nearest-neighbour chain (``D`` is overwritten).

    ``a`` and ``b`` are representative leaves: the union of a merge lives on in slot ``b``.
    """
    m = len(sizes)
    size = sizes.astype(np.float64).copy()
    active = np.ones(m, dtype=bool)
    merges: list[tuple[int, int, float]] = []
    chain: list[int] = []
    for _ in range(m - 1):
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        while True:
            x = chain[-1]
            row = D[x]
            y = int(np.argmin(row))
            if len(chain) > 1 and row[chain[-2]] <= row[y]:
                y = chain[-2]
            if len(chain) > 1 and y == chain[-2]:
                break
            chain.append(y)
        chain.pop()
        chain.pop()
        merges.append((x, y, float(D[x, y])))
        nx, ny = size[x], size[y]
        with np.errstate(invalid="ignore"):
            new = (nx * D[x] + ny * D[y]) / (nx + ny)
        new[~active] = np.inf
        D[y, :] = new
        D[:, y] = new
        D[y, y] = np.inf
        D[x, :] = np.inf
        D[:, x] = np.inf
        active[x] = False
        size[y] = nx + ny
    return merges


def _to_scipy(merges: list[tuple[int, int, float]], counts: np.ndarray) -> np.ndarray:
    """Sort merges by distance (stably) and number the clusters as scipy does (union-find)."""
    m = len(counts)
    order = np.argsort(np.array([d for _, _, d in merges]), kind="stable")
    parent = np.arange(2 * m - 1)
    count = np.concatenate([counts.astype(np.float64), np.zeros(m - 1)])

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    Z = np.empty((m - 1, 4))
    for row, j in enumerate(order.tolist()):
        a, b, d = merges[j]
        ra, rb = find(a), find(b)
        new = m + row
        parent[ra] = parent[rb] = new
        count[new] = count[ra] + count[rb]
        Z[row] = (min(ra, rb), max(ra, rb), d, count[new])
    return Z


def weighted_average_linkage(S: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Scipy linkage matrix of average-cosine linkage between groups of unit vectors.

    Parameters
    ----------
    S : array of shape (m, d)
        Sum of each group's unit vectors.
    sizes : array of shape (m,)
        Number of vectors in each group (all > 0).

    Returns
    -------
    ndarray of shape (m - 1, 4)
        ``[a, b, distance, number of groups]`` per merge, in scipy's convention.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(sizes) < 2:
        return np.empty((0, 4))
    D = average_cosine_distances(np.asarray(S, dtype=np.float64), sizes)
    return _to_scipy(_nn_chain(D, sizes), np.ones(len(sizes)))


def micro_clusters(U: np.ndarray, m: int, random_state, fit_size: int | None = None,
                   n_iter: int = 5, assign_all=None) -> tuple[np.ndarray, np.ndarray]:
    """``(centres, assign)``: seeded k-means of the unit rows ``U`` into at most ``m`` groups.

    Lloyd's iterations (``n_iter``, from ``m`` distinct random rows) run on a seeded sample of
    ``fit_size`` rows (default ``10 m``); then every row goes to its nearest centre (Euclidean on
    the unit rows, the rule :func:`nearest` also applies to new points), so the cost is a few
    ``fit_size x m`` passes plus one ``n x m`` pass. Empty groups are dropped, so every centre has
    members. With ``m >= len(U)`` every row is its own micro-cluster (the tree is then the exact one).
    ``assign_all(centres, U)`` replaces :func:`nearest` for the pass over every row (the Ray
    engine runs it as ``map_batches``); it must return what :func:`nearest` returns.
    """
    n = len(U)
    if m >= n:
        return U.copy(), np.arange(n)
    rng = np.random.default_rng(random_state)
    fit_size = min(n, 10 * int(m) if fit_size is None else int(fit_size))
    sample = U[seeded_sample(n, fit_size, rng)] if fit_size < n else U
    centres = sample[rng.choice(len(sample), int(m), replace=False)].copy()
    for _ in range(n_iter):
        S, sizes = cluster_sums(sample, nearest(centres, sample), len(centres))
        filled = sizes > 0
        centres[filled] = S[filled] / sizes[filled, None]
    assign = (assign_all or nearest)(centres, U)
    used = np.unique(assign)
    remap = np.full(len(centres), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return centres[used], remap[assign]


def nearest(centres: np.ndarray, U: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of every row of ``U``, in chunks (bounded memory).

    Default chunk: about 2**25 distances (256 MB of float64) at a time.
    """
    c2 = (centres ** 2).sum(axis=1)
    chunk = max(256, 2**25 // max(len(centres), 1)) if chunk is None else int(chunk)
    out = np.empty(len(U), dtype=np.int64)
    for s in range(0, len(U), chunk):
        out[s:s + chunk] = np.argmin(c2[None, :] - 2.0 * U[s:s + chunk] @ centres.T, axis=1)
    return out


def two_stage_tree(X: np.ndarray, m: int = N_MICRO, random_state=None,
                   assign_all=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tree, centres, assign)``: the average-cosine tree over micro-clusters of ``X``.

    ``tree`` is a scipy linkage matrix over ``len(centres)`` leaves; ``assign[i]`` is the leaf of row ``i``.
    """
    U = unit_rows(X)
    centres, assign = micro_clusters(U, m, random_state, assign_all=assign_all)
    S, sizes = cluster_sums(U, assign, len(centres))
    return weighted_average_linkage(S, sizes), centres, assign
