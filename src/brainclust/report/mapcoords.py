"""2-D map coordinates for every image of a run: computed once, stored as ``map.npy``, read by report and view.

The report used to compute a t-SNE of at most 2,000 images when it was built;
``brainclust view`` needs a place for every image, up to a million and more.
:func:`compute_map` gives one: an exact t-SNE (scikit-learn, cosine, PCA init,
the run's seed) of at most ``n_tsne`` images, and for the others a cheap
out-of-sample placement: each image goes to a similarity-weighted mean of the
map positions of its ``k`` cosine-nearest t-SNE images (the initialisation
openTSNE uses for new points, without the optimisation that follows; weights
in :func:`place_by_neighbours`). Cost:
the t-SNE of ``n_tsne`` images plus an ``n x n_tsne`` matrix product in
chunks, so memory stays bounded (about ``chunk x n_tsne`` floats).

A run folder may hold the result as ``OUT/map.npy`` (float32, shape ``(n, 2)``, row
``i`` = row ``i`` of ``assignments.csv``), written with :func:`save_map` (a run does not by default: minutes
at a million images); the report and ``brainclust view`` read it with :func:`read_map` and compute it when
it is missing or does not match the run (``view`` keeps what it computed in its cache).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from brainclust.errors import ParameterError
from brainclust.io.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

#: File name of the stored map inside a run folder.
MAP_FILE = "map.npy"
#: Images placed by the exact t-SNE; the others are placed by their nearest t-SNE neighbours.
N_TSNE = 5000
#: Nearest t-SNE images that place one other image.
N_NEIGHBOURS = 10
#: Softmax temperature of the placement weights, in cosine similarity.
TEMPERATURE = 0.01


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), np.float32(1e-12))


def tsne_sample(n: int, n_tsne: int, random_state: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the images the exact t-SNE places (all of them when ``n <= n_tsne``).

    With ``clusters``, the sample is stratified by cluster (every cluster present).
    """
    if n <= n_tsne:
        return np.arange(n)
    if clusters is not None:
        from brainclust.report.geometry import stratified_sample

        return stratified_sample(np.asarray(clusters), n_tsne, random_state)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=n_tsne, replace=False))


def top_k_columns(S: np.ndarray, k: int, block: int = 100) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row of ``S`` (in no particular order).

    Two passes instead of one ``argpartition`` over every row (3-7 times faster
    on 8192 x 5000 blocks): the ``k`` column blocks with the largest maxima hold
    a top-``k`` set (any block with a top-``k`` value has a maximum at least
    that value), then one ``argpartition`` over those ``k x block`` values.
    """
    c, a = S.shape
    k = min(k, a)
    nb = -(-a // block)
    if nb <= k:
        return np.argpartition(-S, k - 1, axis=1)[:, :k] if k < a else np.broadcast_to(np.arange(a), (c, a))
    if nb * block != a:
        S = np.pad(S, ((0, 0), (0, nb * block - a)), constant_values=-np.inf)
    S3 = S.reshape(c, nb, block)
    blocks = np.argpartition(-S3.max(axis=2), k - 1, axis=1)[:, :k]
    rows = np.arange(c)[:, None]
    cand = S3[rows, blocks].reshape(c, k * block)
    pick = np.argpartition(-cand, k - 1, axis=1)[:, :k]
    return blocks[rows, pick // block] * block + pick % block


def place_by_neighbours(queries: np.ndarray, anchors: np.ndarray, anchor_xy: np.ndarray, k: int = N_NEIGHBOURS,
                        chunk: int = 8192) -> np.ndarray:
    """Map positions of ``queries``: the weighted mean of the positions of their ``k`` cosine-nearest anchors.

    Parameters
    ----------
    queries : ndarray of shape (m, d)
    anchors : ndarray of shape (a, d)
        The images already on the map.
    anchor_xy : ndarray of shape (a, 2)
        Their map positions.
    k : int
        Neighbours per query (at most ``a``).
    chunk : int
        Queries per block; memory is about ``chunk x a`` float32.

    Returns
    -------
    ndarray of shape (m, 2), float64
        Weights are ``exp((s - s_max) / TEMPERATURE)`` of the cosine similarities
        ``s``: the nearest anchors dominate; a duplicate of an anchor that has
        no other anchor within a few hundredths of similarity lands on it.
        Plain mean-like weights pull the placed images towards the middle of
        their cluster (on the 4-class set, 300-500 t-SNE images: cluster spread
        0.77-0.96 of the t-SNE images' with ``1/distance`` weights, 0.91-1.01
        with these; the placed image's nearest t-SNE image on the map is one of
        its 10 nearest in feature space for 57-62 % vs 91-93 % of the images).
    """
    A = _unit(anchors)
    xy = np.asarray(anchor_xy, dtype=np.float64)
    k = max(1, min(int(k), len(A)))
    out = np.empty((len(queries), 2), dtype=np.float64)
    for s in range(0, len(queries), chunk):
        S = _unit(queries[s:s + chunk]) @ A.T                     # cosine similarity, (c, a)
        nn = top_k_columns(S, k)
        sim = S[np.arange(len(S))[:, None], nn].astype(np.float64)
        w = np.exp((sim - sim.max(axis=1, keepdims=True)) / TEMPERATURE)
        out[s:s + chunk] = np.einsum("ck,ckj->cj", w, xy[nn]) / w.sum(axis=1, keepdims=True)
    return out


def compute_map(embedding: np.ndarray, seed: int = 0, *, clusters: np.ndarray | None = None,
                n_tsne: int = N_TSNE, k: int = N_NEIGHBOURS) -> np.ndarray:
    """2-D map coordinates of every row of ``embedding``.

    An exact t-SNE (:func:`brainclust.report.geometry.tsne_2d`: cosine, PCA
    init, perplexity ``min(30, (m-1)/3)``, ``random_state=seed``) of at most
    ``n_tsne`` rows (stratified by ``clusters`` when given, else uniform), then
    :func:`place_by_neighbours` for the other rows.

    Parameters
    ----------
    embedding : ndarray of shape (n, d)
        What the clustering used (the PCA features, ``X_fit`` of ``model/cluster.npz``).
    seed : int
        The run's seed: the sample and the t-SNE depend only on it and the data.
    clusters : ndarray of shape (n,), optional
        Cluster ids, to stratify the t-SNE sample.
    n_tsne : int, default 5000
        Rows placed by the exact t-SNE.
    k : int, default 10
        t-SNE neighbours that place each other row.

    Returns
    -------
    ndarray of shape (n, 2), float32
    """
    from brainclust.report.geometry import tsne_2d

    X = np.asarray(embedding)
    if X.ndim != 2 or len(X) == 0:
        raise ParameterError(f"embedding: must be a non-empty 2-D array, got shape {X.shape}")
    if isinstance(n_tsne, bool) or not isinstance(n_tsne, (int, np.integer)) or n_tsne < 2:
        raise ParameterError(f"n_tsne: must be an integer >= 2, got {n_tsne!r}")
    if not all(np.isfinite(X[s:s + 65536]).all() for s in range(0, len(X), 65536)):
        raise ParameterError("embedding: holds NaN or infinite values")
    n = len(X)
    sample = tsne_sample(n, int(n_tsne), seed, clusters)
    out = np.empty((n, 2), dtype=np.float64)
    out[sample] = tsne_2d(X[sample], seed)
    if len(sample) < n:
        rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
        log.info("map: t-SNE of %d images, %d placed by their %d nearest t-SNE neighbours", len(sample), len(rest), k)
        block = 1 << 17                                           # copies of X stay this many rows
        for s in range(0, len(rest), block):
            part = rest[s:s + block]
            out[part] = place_by_neighbours(X[part], X[sample], out[sample], k)
    return out.astype(np.float32)


def map_info(n: int, seed: int, n_tsne: int = N_TSNE, k: int = N_NEIGHBOURS) -> dict:
    """What :func:`compute_map` did, for the manifest (``manifest["map"]``)."""
    return {"file": MAP_FILE, "method": "t-SNE (cosine, PCA init) + nearest-neighbour placement",
            "tsne_images": min(n, n_tsne), "neighbours": k, "random_state": seed, "n_images": n}


def save_map(out_dir, coords: np.ndarray) -> Path:
    """Write ``OUT/map.npy`` atomically (float32, shape (n, 2))."""
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ParameterError(f"map coordinates: must have shape (n, 2), got {coords.shape}")
    buf = io.BytesIO()
    np.save(buf, coords, allow_pickle=False)
    return atomic_write_bytes(Path(out_dir) / MAP_FILE, buf.getvalue())


def read_map(out_dir, n: int) -> np.ndarray | None:
    """``OUT/map.npy`` as float32 (n, 2), or ``None`` when it is missing or does not fit this run.

    A file that exists but is damaged, has another shape or holds non-finite
    values is ignored with a warning (the caller then computes the map).
    """
    path = Path(out_dir) / MAP_FILE
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
        ok = arr.ndim == 2 and arr.shape == (n, 2) and arr.dtype.kind == "f"
        arr = np.asarray(arr, dtype=np.float32) if ok else None
    except (OSError, ValueError) as exc:  # never numpy's advice to load a run folder's file with pickling allowed
        why = "not a .npy array written by brainclust" if "pickle" in str(exc) else exc
        log.warning("map: '%s' is damaged (%s); computing the map instead", path, why)
        return None
    if arr is None or not np.isfinite(arr).all():
        log.warning("map: '%s' does not fit this run (%d images expected); computing the map instead", path, n)
        return None
    return arr


def normalise(coords: np.ndarray, pad: float = 0.02) -> np.ndarray:
    """Coordinates scaled into the unit square (aspect kept, centred, ``pad`` margin), y pointing down.

    Both the report and ``brainclust view`` hand these to the page.
    """
    c = np.asarray(coords, dtype=np.float64)
    if len(c) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    lo, hi = c.min(axis=0), c.max(axis=0)
    span = float(max((hi - lo).max(), 1e-12))
    scale = (1.0 - 2 * pad) / span
    xy = (c - lo) * scale + (1.0 - scale * (hi - lo)) / 2
    xy[:, 1] = 1.0 - xy[:, 1]
    return xy.astype(np.float32)
