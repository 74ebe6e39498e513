"""On-disk feature store.

Features are stored per *configuration* (backbone, weights hash, precision and
pre-processing settings, hashed into :func:`config_key`) and, inside it, per
*image content* (the record's key: SHA-256 of the file's bytes, plus the frame).

Format: one SQLite database per configuration (``<root>/<config_key>/features.sqlite``)
in WAL mode, one row per image: ``key -> (dim, crc32, float32 BLOB)``. Chosen over
append-only shards because SQLite already gives what the store needs: atomic
transactions (a killed run loses at most the batch in flight), several writer
processes on one folder (writers queue on a lock), an on-disk index (memory stays
bounded: vectors are read per batch) and appends without compaction (O(n) I/O).
It needs a local filesystem (WAL does not work over NFS). ``.npz`` shards of
older versions are ignored.

Everything the store returns is checked as strictly as what a backbone returns
(shape ``(dim,)``, checksum, finite): a bad row is dropped and recomputed; a
database SQLite cannot read is moved aside (``features.sqlite.damaged-*``) and
started afresh. An unusable folder (a file, read-only...) logs one warning and the
store turns into a no-op, so the run completes uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainclust.io.atomic import atomic_write_json

log = logging.getLogger(__name__)

DB_NAME = "features.sqlite"
_CHUNK = 500  # keys per SELECT ... IN (...)
_BUSY_TIMEOUT_S = 120.0
_CACHE_KIB = 8192  # SQLite page cache per connection (default 4 KiB pages: least write amplification)
_SCHEMA = ("CREATE TABLE IF NOT EXISTS features "
           "(key TEXT PRIMARY KEY, dim INTEGER NOT NULL, crc INTEGER NOT NULL, vec BLOB NOT NULL)")
_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, where: Path, msg: str, *args) -> None:
    tag = (kind, str(where))
    if tag not in _warned:
        _warned.add(tag)
        log.warning(msg, *args)


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


def _valid(row: tuple, dim: int | None) -> np.ndarray | None:
    """The vector of a ``(dim, crc, vec)`` row, or None when it fails any check."""
    d, crc, blob = row
    if not isinstance(blob, bytes) or not isinstance(d, int) or (dim is not None and d != dim):
        return None
    if d <= 0 or len(blob) != 4 * d or zlib.crc32(blob) != crc:
        return None
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    return vec if np.all(np.isfinite(vec)) else None


class FeatureCache:
    """Feature vectors of one configuration, keyed by image content hash.

    Parameters
    ----------
    root : path-like
        Cache folder shared by all configurations.
    settings : dict
        Everything that changes the features; written to ``settings.json`` next to the database.

    Attributes
    ----------
    dir : Path
        The configuration's folder; ``path`` is its database.
    usable : bool
        False when the folder cannot be used; every method is then a no-op (all misses).
    """

    def __init__(self, root: str | os.PathLike, settings: dict):
        self.settings = settings
        self.dir = Path(root) / config_key(settings)
        self.path = self.dir / DB_NAME
        self.usable = True
        self._writable = True
        self._db: sqlite3.Connection | None = None
        try:
            self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._unusable(exc)

    # -- connection --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "settings.json").is_file():
            atomic_write_json(self.dir / "settings.json", self.settings)
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            self._retry(lambda: db.execute(_SCHEMA))
            db.execute("SELECT count(*) FROM features").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise
            db = self._replace_damaged(exc)
        self._db = db
        return db

    @staticmethod
    def _retry(fn):
        """``fn()``, retried while another process holds a lock SQLite's busy handler does not wait on."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _replace_damaged(self, exc: Exception) -> sqlite3.Connection:
        """Move an unreadable database aside (one warning) and start an empty one."""
        aside = self.path.with_name(f"{DB_NAME}.damaged-{int(time.time())}-{os.getpid()}")
        _warn_once("damaged", self.path, "feature store %s is damaged (%s); moved aside to %s, "
                   "its features will be recomputed", self.path, exc, aside.name)
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.path.exists():
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(DB_NAME + suffix).unlink(missing_ok=True)
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
        db.execute("PRAGMA synchronous=NORMAL")
        self._retry(lambda: db.execute(_SCHEMA))
        return db

    def _unusable(self, exc: Exception) -> None:
        self.usable = False
        self._db = None
        _warn_once("unusable", self.dir.parent, "cache folder %s is unusable (%s); running without a feature cache",
                   self.dir.parent, exc)  # once per folder, not per store in it (features, descriptors...)

    def _failed(self, exc: sqlite3.Error) -> None:
        """A read or write failed: damage -> start afresh; anything else -> stop using the store."""
        if isinstance(exc, sqlite3.OperationalError) or not isinstance(exc, sqlite3.DatabaseError):
            self._unusable(exc)
            return
        try:
            self._db = self._replace_damaged(exc)
        except (OSError, sqlite3.Error) as exc2:
            self._unusable(exc2)

    def close(self) -> None:
        """Close the database (it reopens on the next call). Call before forking worker processes."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- reading -------------------------------------------------------------------------------
    def _rows(self, keys: Sequence[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        if not self.usable:
            return found
        try:
            db = self._connect()
            uniq = list(dict.fromkeys(keys))
            for s in range(0, len(uniq), _CHUNK):
                chunk = uniq[s:s + _CHUNK]
                q = f"SELECT key, dim, crc, vec FROM features WHERE key IN ({','.join('?' * len(chunk))})"
                found.update((r[0], r[1:]) for r in db.execute(q, chunk))
        except (OSError, sqlite3.Error) as exc:
            self._failed(exc)
            return {}
        return found

    def fill(self, keys: Sequence[str], out: np.ndarray) -> np.ndarray:
        """Write the stored vector of ``keys[i]`` into ``out[i]``; the boolean mask of rows filled.

        A stored vector that is not ``(out.shape[1],)``, fails its checksum or holds NaN/inf is
        deleted (one warning per call) and reported as a miss, so the caller recomputes it.
        """
        hit = np.zeros(len(keys), dtype=bool)
        bad: list[str] = []
        for s in range(0, len(keys), _CHUNK):
            part = keys[s:s + _CHUNK]
            rows = self._rows(part)
            for j, k in enumerate(part):
                if k not in rows:
                    continue
                vec = _valid(rows[k], out.shape[1])
                if vec is None:
                    bad.append(k)
                    continue
                out[s + j] = vec
                hit[s + j] = True
        if bad:
            bad = list(dict.fromkeys(bad))
            log.warning("feature store %s: dropped %d damaged entries (wrong shape, checksum or NaN/inf); "
                        "they will be recomputed", self.path, len(bad))
            self._delete(bad)
        return hit

    def _delete(self, keys: list[str]) -> None:
        try:
            db = self._connect()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM features WHERE key = ?", [(k,) for k in keys])
        except (OSError, sqlite3.Error) as exc:
            self._failed(exc)

    def __len__(self) -> int:
        if not self.usable:
            return 0
        try:
            return int(self._connect().execute("SELECT count(*) FROM features").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            self._failed(exc)
            return 0

    def __contains__(self, key: str) -> bool:
        return key in self._rows([key])

    def get(self, key: str) -> np.ndarray:
        """The stored vector of ``key``; KeyError when it is missing or fails its checks."""
        row = self._rows([key]).get(key)
        vec = None if row is None else _valid(row, None)
        if vec is None:
            raise KeyError(key)
        return vec

    # -- writing -------------------------------------------------------------------------------
    def put_many(self, keys: Sequence[str], features: np.ndarray) -> None:
        """Store a batch of features in one transaction (replacing any earlier vector of a key)."""
        if not keys or not self.usable or not self._writable:
            return
        feats = np.ascontiguousarray(features, dtype="<f4")
        if feats.ndim != 2 or feats.shape[0] != len(keys):
            raise ValueError(f"features must be (len(keys), dim), got {feats.shape} for {len(keys)} keys")
        if not np.all(np.isfinite(feats)):
            raise ValueError("refusing to store non-finite features")
        rows = []
        for k, f in zip(keys, feats):
            blob = f.tobytes()
            rows.append((k, int(f.shape[0]), zlib.crc32(blob), blob))
        try:
            db = self._connect()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO features (key, dim, crc, vec) VALUES (?, ?, ?, ?)", rows)
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.OperationalError):
                self._writable = False
                _warn_once("readonly", self.dir, "cannot write to feature cache %s (%s); new features "
                           "are not cached", self.dir, exc)
            else:
                self._failed(exc)
