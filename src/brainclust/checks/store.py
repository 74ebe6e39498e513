"""The checks' descriptors cached by image content, so a rerun decodes nothing a second time.

A run decodes every image twice on its first pass: once for the backbone (grey, resized) and
once for the checks (:func:`brainclust.checks.decode.decode`: colour kept, the whole frame).
:func:`cached_descriptors` keeps the second decode's result, the descriptor vector, the 64x64
thumbnail and the content hash of the decoded pixels, in the feature store
(:class:`brainclust.features.cache.FeatureCache`: one SQLite database per configuration, every row
checked on reading) under the image's cache key (SHA-256 of the file's bytes, plus the frame), so
a rerun on the same images (another ``--k``, ``--method``, ``--exclude``...) reads them back.

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
from pathlib import Path

import numpy as np

from brainclust.checks import decode as decode_module
from brainclust.checks import descriptors as descriptors_module
from brainclust.checks.descriptors import DESCRIPTOR_NAMES, THUMB, Descriptors, describe_records
from brainclust.features.cache import FeatureCache, default_cache_dir
from brainclust.io.scan import ImageRecord

log = logging.getLogger(__name__)

_N = len(DESCRIPTOR_NAMES)
_THUMB_BYTES = THUMB * THUMB
_THUMB_VALUES = -(-_THUMB_BYTES // 3)
_HASH_VALUES = 11  # 32 bytes, padded to 33
#: Length of one stored row.
ROW = _N + _THUMB_VALUES + _HASH_VALUES


def _source_hash() -> str:
    h = hashlib.sha256()
    for mod in (decode_module, descriptors_module):
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


def open_store(cache_dir) -> FeatureCache | None:
    """The descriptor store under ``cache_dir`` (``None``: the default cache folder; ``False``: no store)."""
    if cache_dir is False:
        return None
    return FeatureCache(Path(cache_dir) if cache_dir else default_cache_dir(), store_settings())


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


def default_workers(workers: int | None) -> int:
    """Decoding processes for the descriptors: ``workers`` (``None``: half the cores); 1 runs in this process
    (a pool of one is slower than none)."""
    w = max(1, (os.cpu_count() or 2) // 2) if workers is None else int(workers)
    return 0 if w <= 1 else w
