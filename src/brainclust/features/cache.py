"""On-disk feature cache.

Features are stored per *configuration* (backbone, weights hash, precision and
pre-processing settings, hashed into :func:`config_key`) and, inside it, per
*image content* (SHA-256 of the file's bytes). Each extraction batch is saved
as its own small ``.npz`` shard with an atomic rename, so a killed run loses at
most the batch in flight and the next run resumes from the shards on disk.
Shards are merged into one file when they become numerous.

Files hold only numeric and fixed-width string arrays and are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from brainclust.io.atomic import atomic_write_json, atomic_write_npz

log = logging.getLogger(__name__)

_MERGE_AT = 64


def _digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$BRAINCLUST_CACHE``, else ``$XDG_CACHE_HOME/brainclust``, else ``~/.cache/brainclust``."""
    env = os.environ.get("BRAINCLUST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brainclust"


def config_key(settings: dict) -> str:
    """A stable 16-hex-digit key of a JSON-serialisable settings dict."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FeatureCache:
    """Feature vectors of one configuration, keyed by image content hash.

    Parameters
    ----------
    root : path-like
        Cache folder shared by all configurations.
    settings : dict
        Everything that changes the features; written next to the shards.
    """

    def __init__(self, root: str | os.PathLike, settings: dict):
        self.settings = settings
        self.dir = Path(root) / config_key(settings)
        self._index: dict[str, np.ndarray] = {}
        self._n_shards = 0
        self._load()

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz")) if self.dir.is_dir() else []

    def _load(self) -> None:
        shards = self._shards()
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, feats = z["keys"], z["features"]
            except Exception as exc:  # noqa: BLE001 - a damaged shard is just a cache miss
                log.warning("ignoring damaged cache shard %s (%s)", shard, exc)
                continue
            for k, f in zip(keys.tolist(), feats):
                self._index[k] = f
        self._n_shards = len(shards)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, key: str) -> np.ndarray:
        return self._index[key]

    def put_many(self, keys: list[str], features: np.ndarray) -> None:
        """Store a batch of features as one shard (atomic)."""
        if not keys:
            return
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.dir / "settings.json", self.settings)
        features = np.asarray(features, dtype=np.float32)
        atomic_write_npz(self.dir / f"shard-{_digest(keys)}.npz", keys=np.asarray(keys), features=features)
        for k, f in zip(keys, features):
            self._index[k] = f
        self._n_shards += 1
        if self._n_shards >= _MERGE_AT:
            self.compact()

    def compact(self) -> None:
        """Merge all shards into one (atomic write first, then delete the old ones)."""
        old = self._shards()
        if len(old) <= 1 or not self._index:
            return
        keys = sorted(self._index)
        feats = np.stack([self._index[k] for k in keys])
        merged = self.dir / f"shard-merged-{_digest(keys)}.npz"
        atomic_write_npz(merged, keys=np.asarray(keys), features=feats)
        for p in old:
            if p != merged:
                p.unlink(missing_ok=True)
        self._n_shards = 1
