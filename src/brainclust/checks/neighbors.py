"""Nearest neighbours by inner product, exact below a size threshold, faiss above it.

Exact: a faiss flat index (every inner product, the top ``k`` per row kept in a heap).
Approximate: a faiss inverted-file index (inner product, lists of 8-bit scalar-quantised
vectors, ``IndexIVFScalarQuantizer``) with ``nlist = 2 sqrt(n)`` lists (balancing the coarse
search over the lists against the scan of ``nprobe`` of them) trained on a seeded sample and
``nprobe = 4`` lists searched per query, its candidates re-scored exactly (:class:`FaissIndex`);
its memory is the float vectors, a quarter of that for the codes, and the list ids. faiss-cpu was
chosen over usearch's HNSW by measurement (``benchmarks/bench_checks_scale.py``,
``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from brainclust.errors import ParameterError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "exact", "faiss")
#: Lists searched per query by the faiss index.
NPROBE = 4


def _check(base: np.ndarray, queries: np.ndarray, k: int, backend: str) -> None:
    if backend not in BACKENDS:
        raise ParameterError(f"nearest-neighbour backend: must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise ParameterError(f"nearest neighbours: base {base.shape} and queries {queries.shape} must be 2-D "
                             "with the same number of columns")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ParameterError(f"nearest neighbours: k must be an integer >= 1, got {k!r}")
    if not (np.isfinite(base).all() and np.isfinite(queries).all()):
        raise ParameterError("nearest neighbours: the vectors must be finite (no NaN or infinity)")


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query over ``base``: ``(sims, idx)``, each (n_queries, k), best first;
    missing neighbours (``k`` above the base's size) have index -1 and similarity -inf.

    A faiss flat index: every product computed (BLAS), the best kept in a heap; about 10x faster than
    sorting blocks of products with numpy at 20,000 x 128, with the same neighbours and similarities.
    """
    import faiss

    base = np.ascontiguousarray(base, np.float32)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    sims, idx = index.search(np.ascontiguousarray(queries, np.float32), k)
    sims[idx < 0] = -np.inf
    return sims, idx.astype(np.int64)


class FaissIndex:
    """An IVF inner-product index over ``base`` (k-means: 10 iterations on a seeded sample of 16 vectors per
    list) whose lists hold 8-bit scalar-quantised vectors; each query's ``2 k`` best by the quantised
    products are re-scored exactly against ``base`` and the best ``k`` kept, so the similarities returned
    are exact. Against float lists (``IndexIVFFlat``) at 1M x 64: ~3x faster per pass (a quarter of the
    bytes to scan), the same planted pairs found (``benchmarks/bench_checks_scale.py``)."""

    def __init__(self, base: np.ndarray, random_state: int = 0, nprobe: int = NPROBE):
        import faiss

        self.base = np.ascontiguousarray(base, np.float32)
        n, d = self.base.shape
        nlist = max(1, min(int(2 * math.sqrt(n)), n // 39))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(random_state)
        sample = self.base[np.sort(rng.choice(n, min(n, 16 * nlist), replace=False))]
        index.cp.seed = int(random_state)
        index.cp.niter = 10
        index.cp.min_points_per_centroid = 1
        index.train(sample)
        index.add(self.base)
        index.nprobe = min(nprobe, nlist)
        self.index = index

    def search(self, queries: np.ndarray, k: int, block: int = 16384) -> tuple[np.ndarray, np.ndarray]:
        sims = np.empty((len(queries), k), np.float32)
        idx = np.empty((len(queries), k), np.int64)
        for s in range(0, len(queries), block):
            q = np.ascontiguousarray(queries[s:s + block], np.float32)
            _, cand = self.index.search(q, min(2 * k, len(self.base)))
            exact = np.einsum("ij,ikj->ik", q, self.base[np.maximum(cand, 0)])
            exact[cand < 0] = -np.inf
            best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            got = best.shape[1]
            sims[s:s + len(q), :got] = np.take_along_axis(exact, best, 1)
            idx[s:s + len(q), :got] = np.where(np.isfinite(sims[s:s + len(q), :got]),
                                               np.take_along_axis(cand, best, 1), -1)
            if got < k:
                sims[s:s + len(q), got:], idx[s:s + len(q), got:] = -np.inf, -1
        return sims, idx


def knn(base: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto", exact_max: int = 20000,
        random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours by inner product: exact up to ``exact_max`` base rows (or ``backend="exact"``),
    else faiss. Missing neighbours have index -1 and similarity -inf."""
    _check(base, queries, k, backend)
    if backend == "exact" or (backend == "auto" and len(base) <= exact_max):
        return exact_knn(base, queries, k)
    index = FaissIndex(base, random_state)
    sims, idx = index.search(queries, k)
    return _fill_short_rows(index.base, queries, sims, idx, k)


def _fill_short_rows(base, queries, sims, idx, k):
    """Rows for which the index found fewer than ``min(k, n)`` neighbours (ties: identical vectors put in one
    list while the probed lists are others; or k above what ``nprobe`` lists hold) are searched exactly."""
    short = np.flatnonzero((idx >= 0).sum(axis=1) < min(k, len(base)))
    if len(short):
        log.debug("nearest neighbours: %d of %d queries searched exactly (the index found too few)",
                  len(short), len(queries))
        sims[short], idx[short] = exact_knn(base, np.asarray(queries)[short], k)
    sims[idx < 0] = -np.inf
    return sims, idx


class Searcher:
    """One index over ``base`` searched many times (exact or faiss, as :func:`knn` decides)."""

    def __init__(self, base: np.ndarray, backend: str = "auto", exact_max: int = 20000, random_state: int = 0):
        _check(base, base[:1], 1, backend)
        self.base = np.ascontiguousarray(base, np.float32)
        self.exact = backend == "exact" or (backend == "auto" and len(base) <= exact_max)
        self.index = None if self.exact else FaissIndex(self.base, random_state)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.exact:
            return exact_knn(self.base, queries, k)
        sims, idx = self.index.search(queries, k)
        return _fill_short_rows(self.base, queries, sims, idx, k)
