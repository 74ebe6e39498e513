"""The checks' descriptors cached by image content, so a rerun decodes nothing a second time.

A run decodes every image twice on its first pass: once for the backbone (grey, resized) and
once for the checks (:func:`brainclust.checks.decode.decode`: colour kept, the whole frame).
:func:`cached_descriptors` keeps the second decode's result, the descriptor vector, the 64x64
thumbnail and the content hash of the decoded pixels, in the feature store
(:class:`brainclust.features.cache.FeatureCache`: one SQLite database per configuration, every row
checked on reading) under the image's cache key (SHA-256 of the file's bytes, plus the frame), so
a rerun on the same images (another ``--k``, ``--method``, ``--exclude``...) reads them back.

The verified near-duplicate pairs are cached too (:func:`cached_near_pairs`): they depend only on
the contents searched, their order, the thresholds, the search settings and the code (and, when
the pairs the codes miss are compared as pixel windows, :mod:`~brainclust.checks.windows`: its
result too depends on the decoded pixels only), so a rerun on
the same images with the same thresholds skips the search and its verification (the costliest part
of the checks). One small ``.npz`` per (data set, settings) under ``<cache>/check-pairs/``.

The configuration is :func:`store_settings`: the slot names, the thumbnail size and a hash of the
source of the modules that compute them (:mod:`~brainclust.checks.decode`,
:mod:`~brainclust.checks.descriptors`), so a change of the rules' code never reads stale values.

One row is a float32 vector (:func:`pack`): the descriptor slots, then the thumbnail's bytes three
to a value (``b0 + 256 b1 + 65536 b2``, exact in float32 below 2**24), then the 32 bytes of the
content hash the same way: 1,391 values (5.6 kB) per image instead of 4,142 unpacked.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from brainclust.checks import decode as decode_module
from brainclust.checks import descriptors as descriptors_module
from brainclust.checks import duplicates as duplicates_module
from brainclust.checks import nearcode as nearcode_module
from brainclust.checks import neighbors as neighbors_module
from brainclust.checks import shape as shape_module
from brainclust.checks import windows as windows_module
from brainclust.checks.descriptors import DESCRIPTOR_NAMES, THUMB, Descriptors, describe_records
from brainclust.checks.duplicates import near_pairs
from brainclust.checks.flags import Thresholds
from brainclust.errors import ModelFileError
from brainclust.features.cache import FeatureCache, default_cache_dir
from brainclust.io.atomic import atomic_write_npz, read_npz
from brainclust.io.scan import ImageRecord
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

_N = len(DESCRIPTOR_NAMES)
_THUMB_BYTES = THUMB * THUMB
_THUMB_VALUES = -(-_THUMB_BYTES // 3)
_HASH_VALUES = 11  # 32 bytes, padded to 33
#: Most describing processes by default: a bound for large machines (measured on 2 cores only).
MAX_WORKERS = 16
#: Length of one stored row.
ROW = _N + _THUMB_VALUES + _HASH_VALUES


#: The modules whose source computes a stored descriptor (a change to any of them is a new store).
DESCRIBING_MODULES = (decode_module, descriptors_module, shape_module)


def _source_hash(modules=DESCRIBING_MODULES) -> str:
    h = hashlib.sha256()
    for mod in modules:
        try:
            h.update(Path(mod.__file__).read_bytes())
        except (OSError, TypeError):  # no source (frozen install): the slot names and sizes still key it
            h.update(mod.__name__.encode())
    return h.hexdigest()[:16]


def store_settings() -> dict:
    """The feature-store configuration of the descriptors (see the module docstring)."""
    return {"kind": "check-descriptors", "names": list(DESCRIPTOR_NAMES), "thumb": THUMB, "code": _source_hash()}


def _to_values(raw: bytes, n_values: int) -> np.ndarray:
    b = np.frombuffer(raw.ljust(3 * n_values, b"\0"), np.uint8).astype(np.uint32).reshape(n_values, 3)
    return (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)).astype(np.float32)


def _from_values(values: np.ndarray, n_bytes: int) -> bytes | None:
    v = np.asarray(values, np.float64)
    if np.any(v < 0) or np.any(v >= 1 << 24) or np.any(v != np.floor(v)):
        return None
    u = v.astype(np.uint32)
    b = np.stack([u & 255, (u >> 8) & 255, (u >> 16) & 255], 1).astype(np.uint8).reshape(-1)
    return b[:n_bytes].tobytes()


def pack(vector: np.ndarray, thumb: np.ndarray, pixel_sha256: str) -> np.ndarray:
    """One stored row (:data:`ROW` float32 values) of an image's descriptors."""
    out = np.empty(ROW, np.float32)
    out[:_N] = vector
    out[_N:_N + _THUMB_VALUES] = _to_values(np.ascontiguousarray(thumb, np.uint8).tobytes(), _THUMB_VALUES)
    out[_N + _THUMB_VALUES:] = _to_values(bytes.fromhex(pixel_sha256), _HASH_VALUES)
    return out


def unpack(row: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """``(vector, thumb, pixel_sha256)`` of a stored row; ``None`` when it does not decode (a bad row)."""
    thumb = _from_values(row[_N:_N + _THUMB_VALUES], _THUMB_BYTES)
    digest = _from_values(row[_N + _THUMB_VALUES:], 32)
    if thumb is None or digest is None:
        return None
    return (np.asarray(row[:_N], np.float32), np.frombuffer(thumb, np.uint8).reshape(THUMB, THUMB).copy(),
            digest.hex())


def _root(cache_dir) -> Path | None:
    return None if cache_dir is False else (Path(cache_dir) if cache_dir else default_cache_dir())


def open_store(cache_dir) -> FeatureCache | None:
    """The descriptor store under ``cache_dir`` (``None``: the default cache folder; ``False``: no store)."""
    root = _root(cache_dir)
    return None if root is None else FeatureCache(root, store_settings())


def pairs_key(hashes: Sequence[str], rows: np.ndarray, thresholds: Thresholds, backend: str, random_state: int,
              windows: bool = False) -> str:
    """What the verified near pairs depend on: the searched contents in order, the settings, the code."""
    h = hashlib.sha256()
    h.update(repr((thresholds.near_similarity, thresholds.exact_max, backend, random_state,
                   (thresholds.window_similarity, windows_module.library_versions()) if windows else None,
                   _source_hash((duplicates_module, nearcode_module, neighbors_module, descriptors_module,
                                 decode_module, windows_module)))).encode())
    for i in np.asarray(rows, np.int64):
        h.update(hashes[i].encode() + b"\n")
    return h.hexdigest()[:32]


def cached_near_pairs(cache_dir, descriptors: Descriptors, rows: np.ndarray, thresholds: Thresholds,
                      backend: str = "auto", random_state: int = 0,
                      progress: bool | None = None,
                      records: Sequence[ImageRecord] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`~brainclust.checks.duplicates.near_pairs` of ``rows``, read back when the same contents were
    searched with the same settings before; ``(pairs, similarities, from_cache)``. With ``records`` (the
    descriptors' images), the candidates the codes miss are compared as pixel windows
    (:func:`~brainclust.checks.windows.window_similarity`).

    Pairs are stored as positions among ``rows`` (not image indices), so the entry holds whatever the rows'
    indices are in another run of the same contents. A damaged entry is recomputed and replaced.
    """
    rows = np.asarray(rows, np.int64)
    root = _root(cache_dir)
    path = None
    if root is not None and len(rows) >= 2:
        key = pairs_key(descriptors.pixel_sha256, rows, thresholds, backend, random_state, records is not None)
        path = root / "check-pairs" / f"{key}.npz"
        try:
            if path.is_file():
                got = read_npz(path, "near-duplicate pairs")
                pos, sims = got["pairs"], got["similarity"]
                if (pos.ndim == 2 and pos.shape[1] == 2 and len(sims) == len(pos) and pos.dtype.kind == "i"
                        and (pos.size == 0 or (pos.min() >= 0 and pos.max() < len(rows)))):
                    return rows[pos].reshape(-1, 2), sims.astype(np.float32), True
                log.warning("near-duplicate pairs %s are damaged; searching again", path)
        except (ModelFileError, KeyError, OSError) as exc:
            log.warning("near-duplicate pairs %s are unreadable (%s); searching again", path, exc)
    windows, unread = None, set()
    if records is not None:
        sizes = descriptors.vectors[:, [DESCRIPTOR_NAMES.index("width"), DESCRIPTOR_NAMES.index("height")]]
        windows = partial(windows_module.window_similarity, records, sizes, progress=progress, unread=unread)
    pairs, sims = near_pairs(descriptors.thumbs, rows, thresholds, backend, random_state, progress,
                             windows=windows)
    if unread:  # a passing read error must not be remembered until the contents change
        log.info("near-duplicate pairs not cached: %s could not be read again", count_text(len(unread), "image"))
    elif path is not None:
        at = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, np.int64)
        at[rows] = np.arange(len(rows))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_npz(path, pairs=at[pairs].reshape(-1, 2), similarity=np.asarray(sims, np.float32))
        except OSError as exc:  # said once per folder, with the feature store's own warning
            log.debug("cannot cache near-duplicate pairs under %s (%s)", path.parent, exc)
    return pairs, sims, False


def cached_descriptors(records: Sequence[ImageRecord], cache_dir=None, workers: int = 0,
                       progress: bool | None = None, chunk: int = 8192) -> tuple[Descriptors, dict]:
    """Descriptors of ``records`` (as :func:`~brainclust.checks.descriptors.describe_records`), read from the
    store where it has them and computed (then stored) for the others.

    Returns ``(descriptors, {"hits": int, "misses": int})``. Images that cannot be described are not
    stored (they are tried again next time).
    """
    n = len(records)
    store = open_store(cache_dir)
    keys = [r.key for r in records]
    vecs = np.zeros((n, _N), np.float32)
    thumbs = np.zeros((n, THUMB, THUMB), np.uint8)
    hashes = [""] * n
    hit = np.zeros(n, bool)
    for s in range(0, n if store is not None else 0, chunk):  # bounded memory: chunk x 5.6 kB at a time
        rows = np.zeros((min(chunk, n - s), ROW), np.float32)
        for j in np.flatnonzero(store.fill(keys[s:s + chunk], rows)):
            got = unpack(rows[j])
            if got is not None:
                vecs[s + j], thumbs[s + j], hashes[s + j] = got
                hit[s + j] = True
    miss = np.flatnonzero(~hit)
    failed: dict[int, str] = {}
    if len(miss):
        if store is not None:
            store.close()  # before any worker process is forked (reopened on the next call)
        new = describe_records([records[i] for i in miss], workers, progress)
        if len(miss) == n:  # nothing was stored: no second copy of the thumbnails
            vecs, thumbs, hashes = new.vectors, new.thumbs, list(new.pixel_sha256)
        else:
            vecs[miss], thumbs[miss] = new.vectors, new.thumbs
            for j, i in enumerate(miss):
                hashes[i] = new.pixel_sha256[j]
        failed = {int(miss[j]): reason for j, reason in new.failed.items()}
        ok = [j for j in range(len(miss)) if j not in new.failed and np.isfinite(new.vectors[j]).all()]
        for s in range(0, len(ok) if store is not None else 0, chunk):
            part = ok[s:s + chunk]
            store.put_many([keys[miss[j]] for j in part],
                           np.stack([pack(new.vectors[j], new.thumbs[j], new.pixel_sha256[j]) for j in part]))
    if store is not None:
        store.close()
    log.debug("check descriptors: %d from the store, %d computed", int(hit.sum()), len(miss))
    return Descriptors(vecs, thumbs, hashes, failed), {"hits": int(hit.sum()), "misses": int(len(miss))}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS gives it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(workers: int | None) -> int:
    """Processes that decode and describe: ``workers``, or (``None``) every usable core, at most
    :data:`MAX_WORKERS`: nothing else runs while the checks describe (the network is done), so
    unlike extraction they take the whole machine (1.85x on 2 cores, 1,000 dev images); 1 runs in this
    process (a pool of one is slower than none)."""
    w = min(usable_cores(), MAX_WORKERS) if workers is None else int(workers)
    return 0 if w <= 1 else w
