"""The report's geometry: typical and atypical images per cluster, the map's sample, t-SNE and
SVG coordinates, and the per-image silhouette. All distances are cosine, like the clustering."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from brainclust.core.arrays import (SILHOUETTE_BUDGET, group_members, silhouette_values, stratified_sample,
                                    unit_rows)
from brainclust.report.run import NOISE

__all__ = ["SILHOUETTE_MAX", "largest_clusters", "map_svg_points", "silhouette_per_image", "stratified_sample",
           "tsne_2d", "tsne_perplexity", "typical_atypical"]


def largest_clusters(clusters: np.ndarray, cap: int) -> tuple[list[int], dict[int, int]]:
    """The ``cap`` largest clusters (ties by id) in id order, then noise if any; and every cluster's size."""
    ids, sizes = np.unique(clusters, return_counts=True)
    size_of = dict(zip(ids.tolist(), sizes.tolist()))
    largest = sorted((c for c in size_of if c != NOISE), key=lambda c: (-size_of[c], c))[:cap]
    return sorted(largest) + ([NOISE] if NOISE in size_of else []), size_of


def typical_atypical(X: np.ndarray, clusters: np.ndarray, n: int,
                     only: Iterable[int] | None = None) -> dict[int, tuple[list[int], list[int]]]:
    """Per cluster (or per cluster of ``only``), the ``n`` images closest to its centre and the ``n``
    farthest (cosine).

    The centre is the mean of the cluster's unit vectors. A cluster with fewer
    than ``2n`` images shows each image once (typical first). Noise gets its
    first ``n`` images and no atypical list. The images are grouped by
    :func:`~brainclust.core.arrays.group_members` (one sort, whatever the number of clusters).
    """
    U = unit_rows(np.asarray(X, dtype=np.float64))
    ids, _, members = group_members(clusters)
    wanted = set(ids.tolist()) if only is None else set(only)
    out = {}
    for cid, idx in zip(ids.tolist(), members):
        if cid not in wanted:
            continue
        if cid == NOISE:
            out[cid] = (idx[:n].tolist(), [])
            continue
        centre = unit_rows(U[idx].mean(axis=0, keepdims=True))[0]
        d = 1.0 - U[idx] @ centre
        order = idx[np.lexsort((idx, d))]
        typ = order[:n].tolist()
        rest = order[len(typ):]
        aty = rest[::-1][: min(n, len(rest))].tolist()
        out[cid] = (typ, aty)
    return out


def tsne_perplexity(n: int) -> float:
    """The perplexity :func:`tsne_2d` uses for ``n`` images."""
    return min(30.0, (n - 1) / 3.0)


def tsne_2d(X: np.ndarray, random_state: int = 0) -> np.ndarray:
    """2-D t-SNE (cosine, PCA init, perplexity ``min(30, (n-1)/3)``); tiny inputs fall back to PCA, and
    so do rows a cosine cannot compare (a zero row) or that are all the same (scikit-learn's t-SNE crashed the
    process on those); one feature (``--pca 1``, where every cosine is +-1) is drawn as it is, along x."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if X.ndim == 2 and X.shape[1] == 1:
        return np.column_stack([X[:, 0], np.zeros(n)])
    if n < 5 or not (np.linalg.norm(X, axis=1) > 0).all() or np.ptp(X, axis=0).max() == 0:
        Z = X - X.mean(axis=0)
        if Z.shape[1] >= 2 and n >= 2:
            _, _, vt = np.linalg.svd(Z, full_matrices=False)
            Y = Z @ vt[:2].T
            return np.hstack([Y, np.zeros((n, 2 - Y.shape[1]))])
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # one thread: the Barnes-Hut OpenMP loop gains little here, is many times slower on a busy machine
    # (oversubscription: 66 s vs 10 s for 1000 images measured on 2 shared cores) and sums in a fixed order
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=tsne_perplexity(n), init="pca", metric="cosine",
                    random_state=random_state).fit_transform(X)


#: Above this many images the silhouette (plot and mean) uses a cluster-stratified sample of this size:
#: the budget of ``metrics.json``'s silhouette too (:func:`brainclust.core.arrays.silhouette_rows`).
SILHOUETTE_MAX = SILHOUETTE_BUDGET


def silhouette_per_image(X: np.ndarray, clusters: np.ndarray, max_images: int = SILHOUETTE_MAX,
                         random_state: int = 0) -> np.ndarray | None:
    """Cosine silhouette of the non-noise images (NaN for noise), or ``None`` when undefined.

    The cost is quadratic in the number of images, so above ``max_images`` only a
    cluster-stratified seeded sample of that size gets a value (the others are NaN); each
    image's value is then its silhouette within the sample. With the defaults these are the
    rows, and their mean the value, of ``metrics.json``'s silhouette.
    """
    return silhouette_values(X, clusters, max_images, random_state)


def map_svg_points(coords: np.ndarray, width: float = 560.0, height: float = 480.0, pad: float = 12.0):
    """Map coordinates scaled into a ``width`` × ``height`` SVG (``pad`` margin, y pointing down), 0.1 px."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    scale = min((width - 2 * pad) / span[0], (height - 2 * pad) / span[1])
    off = np.array([(width - scale * span[0]) / 2, (height - scale * span[1]) / 2])
    xy = (coords - lo) * scale + off
    xy[:, 1] = height - xy[:, 1]
    return np.round(xy, 1)
