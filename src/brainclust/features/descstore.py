"""Image descriptors (:mod:`brainclust.io.descriptors`) kept in the feature store, keyed by image content.

The intensity descriptors cost one more decode per image (about 0.17 of a cold
extraction; far more than a rerun whose features all come from the cache). They are
stored like a tiny backbone: a :class:`~brainclust.features.cache.FeatureCache`
configuration of its own (:data:`SETTINGS`), one 5-float vector per record key
(content SHA-256 and frame), so a rerun on the same images decodes nothing for them.
An image that could not be decoded is not stored (its columns stay empty and it is
tried again next time).

Values are float32 in the store; fresh and stored values are written the same way
(:func:`as_value`: the float32 value with 7 significant digits), so a cached rerun
writes the same text as the first run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from brainclust.features.cache import FeatureCache, default_cache_dir
from brainclust.io.descriptors import INTENSITY_COLUMNS, describe_records

log = logging.getLogger(__name__)

#: The store configuration of the descriptors (a change of rule must change it).
SETTINGS = {"descriptors": "intensity", "version": 1, "columns": list(INTENSITY_COLUMNS)}


def as_value(x) -> float | None:
    """A stored float32 as the value written to the outputs (``None`` when not finite)."""
    x = np.float32(x)
    return float(f"{x:.7g}") if np.isfinite(x) else None


def describe_cached(records: Sequence, cache_dir=None, progress: bool | None = None) -> tuple[dict[str, list], dict]:
    """The intensity columns of ``records`` (column -> one value per record) and ``{"hits", "computed", "failed"}``.

    ``cache_dir``: the feature store's folder (``None``: the default; ``False``: no store).
    """
    n, dim = len(records), len(INTENSITY_COLUMNS)
    keys = [r.key for r in records]
    values = np.full((n, dim), np.nan, dtype=np.float32)
    hit = np.zeros(n, dtype=bool)
    store = None
    if cache_dir is not False and n:
        store = FeatureCache(cache_dir or default_cache_dir(), SETTINGS)
        hit = store.fill(keys, values)
    todo: dict[str, int] = {}
    for i, k in enumerate(keys):
        if not hit[i]:
            todo.setdefault(k, i)
    failed = 0
    if todo:
        rows = list(todo.values())
        fresh = describe_records([records[i] for i in rows], progress)
        block = np.array([[np.nan if fresh[c][j] is None else fresh[c][j] for c in INTENSITY_COLUMNS]
                          for j in range(len(rows))], dtype=np.float32).reshape(len(rows), dim)
        ok = np.all(np.isfinite(block), axis=1)
        failed = int((~ok).sum())
        values[rows] = block
        if store is not None and ok.any():
            store.put_many([keys[i] for i, good in zip(rows, ok) if good], block[ok])
        for i, k in enumerate(keys):  # a repeated image: computed once, at its first row
            if not hit[i] and todo[k] != i:
                values[i] = values[todo[k]]
    if store is not None:
        store.close()
    info = {"hits": int(hit.sum()), "computed": len(todo) - failed, "failed": failed}
    log.debug("descriptors: %d from the store, %d computed, %d not decodable", info["hits"], info["computed"], failed)
    return {c: [as_value(values[i, j]) for i in range(n)] for j, c in enumerate(INTENSITY_COLUMNS)}, info
