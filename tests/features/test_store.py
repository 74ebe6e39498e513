"""The SQLite feature store: several writers, damaged entries, unusable folders (features/cache.py)."""

from __future__ import annotations

import errno
import hashlib
import logging
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from brainclust.features.cache import DB_NAME, FeatureCache
from brainclust.features.extractor import FeatureExtractor

SETTINGS = {"backbone": "toy", "weights": "abc", "precision": "fp32", "size": 8}
BACKBONE = "pixels@8"  # no network: 64-d features, fast

WRITER = r"""
import sys, time, json
from pathlib import Path
import numpy as np
from brainclust.features.cache import FeatureCache
root, prefix, n, go, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), json.loads(sys.argv[5])
dim = int(sys.argv[6])
c = FeatureCache(root, settings)
while not go.exists():
    time.sleep(0.005)
for i in range(n):
    c.put_many([f"{prefix}{i:04d}"], np.full((1, dim), i + (0.5 if prefix == "B" else 0.25), np.float32))
"""


def _writer(root, prefix, n, go, settings, dim) -> subprocess.Popen:
    import json

    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), prefix, str(n), str(go), json.dumps(settings),
                             str(dim)], stderr=subprocess.PIPE)


def _expected(prefix, i, dim):
    return np.full(dim, i + (0.5 if prefix == "B" else 0.25), np.float32)


@pytest.fixture
def images(tmp_path, make_image) -> list[Path]:
    return [make_image(tmp_path / "img" / f"i{i:03d}.png", "L", size=(20, 24), seed=i) for i in range(70)]


def _extractor(cache, batch_size=8):
    return FeatureExtractor(backbone=BACKBONE, batch_size=batch_size, num_workers=0, progress=False,
                            cache_dir=False if cache is False else str(cache)).fit()


def _rows(db_path: Path) -> dict[str, tuple]:
    with sqlite3.connect(db_path) as db:
        return {k: (d, c, v) for k, d, c, v in db.execute("SELECT key, dim, crc, vec FROM features")}


# -- several writers ---------------------------------------------------------------------------
def test_two_processes_write_at_the_same_time(tmp_path):
    go = tmp_path / "go"
    procs = [_writer(tmp_path / "c", p, 80, go, SETTINGS, 16) for p in ("A", "B")]
    go.touch()
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    c = FeatureCache(tmp_path / "c", SETTINGS)
    assert len(c) == 160
    for prefix in ("A", "B"):
        for i in range(80):
            np.testing.assert_array_equal(c.get(f"{prefix}{i:04d}"), _expected(prefix, i, 16))


def test_run_with_batch_size_1_keeps_entries_another_process_writes(tmp_path, images):
    """The old cache's compaction deleted shards written by another process; this store keeps them."""
    cache = tmp_path / "cache"
    ex = _extractor(cache, batch_size=1).fit()
    go = tmp_path / "go"
    b = _writer(cache, "B", 60, go, ex.cache_settings_, ex.spec_.dim)
    go.touch()
    feats = (ex_got := ex.extract(images)).features  # run A: 70 images, one transaction each, while B writes
    assert b.wait(timeout=300) == 0, b.stderr.read().decode()
    assert ex_got.cache_misses == 70
    store = FeatureCache(cache, ex.cache_settings_)
    assert len(store) == 70 + 60
    for i in range(60):
        np.testing.assert_array_equal(store.get(f"B{i:04d}"), _expected("B", i, ex.spec_.dim))
    again = _extractor(cache)
    np.testing.assert_array_equal((again_got := again.extract(images)).features, feats)
    assert again_got.cache_hits == 70


# -- damaged store -------------------------------------------------------------------------------
def _clean_and_cached(tmp_path, images):
    clean = _extractor(False).transform(images)
    cache = tmp_path / "cache"
    ex = _extractor(cache)
    np.testing.assert_array_equal(ex.transform(images), clean)
    store = FeatureCache(cache, ex.cache_settings_)
    store.close()
    return clean, cache, ex, store.path


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_truncated_store_is_moved_aside_and_recomputed(tmp_path, images, caplog):
    clean, cache, ex, db = _clean_and_cached(tmp_path, images)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    again = _extractor(cache)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        np.testing.assert_array_equal((again_got := again.extract(images)).features, clean)
    assert again_got.cache_misses == 70
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "damaged" in msgs[0], msgs
    assert list(db.parent.glob(f"{DB_NAME}.damaged-*"))
    third = _extractor(cache)
    np.testing.assert_array_equal((third_got := third.extract(images)).features, clean)
    assert third_got.cache_hits == 70


def test_garbage_store_file_is_replaced(tmp_path, images, caplog):
    clean, cache, ex, db = _clean_and_cached(tmp_path, images)
    db.write_bytes(b"this is not an SQLite database" * 100)
    for suffix in ("-wal", "-shm"):
        db.with_name(DB_NAME + suffix).unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        np.testing.assert_array_equal(_extractor(cache).transform(images), clean)
    assert len(_warnings(caplog)) == 1


def test_corrupted_vector_bytes_drop_only_that_entry(tmp_path, images, caplog):
    clean, cache, ex, db = _clean_and_cached(tmp_path, images)
    rows = _rows(db)
    victims = sorted(rows)[:3]
    data = bytearray(db.read_bytes())
    for k in victims:
        at = data.find(rows[k][2])
        assert at > 0
        data[at + 8: at + 16] = b"\x13\x37" * 4
    db.write_bytes(bytes(data))
    again = _extractor(cache)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        np.testing.assert_array_equal((again_got := again.extract(images)).features, clean)
    assert again_got.cache_misses == 3 and again_got.cache_hits == 67
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "dropped 3 damaged entries" in msgs[0], msgs
    third = _extractor(cache)
    third_got = third.extract(images)
    assert third_got.cache_hits == 70


@pytest.mark.parametrize("poison", ["wrong_shape", "nan", "inf", "bad_blob_length"])
def test_poisoned_entry_is_recomputed(tmp_path, images, caplog, poison):
    clean, cache, ex, db = _clean_and_cached(tmp_path, images)
    key = sorted(_rows(db))[5]
    dim = ex.spec_.dim
    if poison == "wrong_shape":  # a valid row of the wrong dimension, as put_many would store it
        FeatureCache(cache, ex.cache_settings_).put_many([key], np.ones((1, dim + 3), np.float32))
    else:
        vec = np.ones(dim, np.float32)
        vec[7] = {"nan": np.nan, "inf": np.inf, "bad_blob_length": 1.0}[poison]
        blob = vec.tobytes()[:-2] if poison == "bad_blob_length" else vec.tobytes()
        with sqlite3.connect(db) as conn:  # checksum matches: only the value check can catch it
            conn.execute("UPDATE features SET vec = ?, crc = ? WHERE key = ?", (blob, zlib.crc32(blob), key))
    again = _extractor(cache)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        np.testing.assert_array_equal((again_got := again.extract(images)).features, clean)
    assert again_got.cache_misses == 1
    assert len(_warnings(caplog)) == 1
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]  # the store's keys
    np.testing.assert_array_equal(FeatureCache(cache, ex.cache_settings_).get(key), clean[hashes.index(key)])


# -- unusable folder -----------------------------------------------------------------------------
def _uncached_run_warns_once(cache, images, caplog):
    clean = _extractor(False).transform(images[:10])
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        ex = _extractor(cache)
        np.testing.assert_array_equal(ex.transform(images[:10]), clean)
        ex_got = ex.extract(images[:10])
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "running without a feature cache" in msgs[0], msgs
    assert ex_got.cache_misses == 10


def test_cache_path_is_a_regular_file(tmp_path, images, caplog):
    f = tmp_path / "file"
    f.write_text("x")
    _uncached_run_warns_once(f, images, caplog)
    assert f.read_text() == "x"


def test_cache_path_under_a_regular_file(tmp_path, images, caplog):
    f = tmp_path / "file"
    f.write_text("x")
    _uncached_run_warns_once(f / "sub" / "cache", images, caplog)


def test_read_only_filesystem(tmp_path, images, caplog, monkeypatch):
    def refuse(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    _uncached_run_warns_once(tmp_path / "ro", images, caplog)


def test_read_only_database_still_serves_hits(tmp_path, images, caplog, monkeypatch):
    clean, cache, ex, db = _clean_and_cached(tmp_path, images[:10])
    real_connect = sqlite3.connect

    class ReadOnly:
        def __init__(self, *a, **k):
            self.db = real_connect(*a, **k)

        def __getattr__(self, name):
            return getattr(self.db, name)

        def __enter__(self):
            return self.db.__enter__()

        def __exit__(self, *exc):
            return self.db.__exit__(*exc)

        def execute(self, sql, *a):
            if sql.startswith("BEGIN IMMEDIATE"):
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return self.db.execute(sql, *a)

    monkeypatch.setattr(sqlite3, "connect", ReadOnly)
    more = _extractor(cache)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        feats = (more_got := more.extract(images[:20])).features
    np.testing.assert_array_equal(feats, _extractor(False).transform(images[:20]))
    assert more_got.cache_hits == 10 and more_got.cache_misses == 10
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "cannot write" in msgs[0], msgs


def test_a_whole_run_warns_once_about_an_unusable_cache_folder(tmp_path, capsys):
    """Features, check descriptors, likeness features and near-duplicate pairs each have a store in the folder;
    a new user's probe got four warnings for one read-only folder, where the help says it warns once."""
    from PIL import Image

    from brainclust.cli import main

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(data / f"i{i}.png")
    (tmp_path / "file").write_text("x")
    assert main(["run", str(data), "--out", str(tmp_path / "out"), "--backbone", "pixels@16", "--pca", "2",
                 "--k", "2", "--workers", "0", "--no-report", "--cache-dir", str(tmp_path / "file" / "c")]) == 0
    err = capsys.readouterr().err
    assert err.count("is unusable") == 1 and "cache folder" in err and "cannot cache" not in err, err


def test_copies_are_counted_among_the_misses_and_said(tmp_path, images):
    """A file and its byte copy are computed once: the progress bar counts what is computed (69), the cache
    summary counted 70 misses without a word (a walk: "990 of 990 img" against "1000 misses")."""
    import shutil

    from brainclust.clisummary import run_summary

    copy = tmp_path / "img" / "zcopy.png"
    shutil.copy(images[0], copy)
    got = _extractor(tmp_path / "cache").extract([*images, copy])
    assert (got.cache_hits, got.cache_misses, got.copies) == (0, 71, 1)
    assert got.cache_info() == {"hits": 0, "misses": 71, "copies": 1}
    np.testing.assert_array_equal(got.features[-1], got.features[0])
    again = _extractor(tmp_path / "cache").extract([*images, copy])
    assert again.cache_info() == {"hits": 71, "misses": 0}
    result = type("R", (), {"metrics": {"n_images": 71, "n_clusters": 2}, "manifest": {"cache": got.cache_info()},
                            "skipped": [], "config": None, "out_dir": None})()
    assert "feature cache: 0 hits, 71 misses (of which 1 repeat an earlier image: computed once)" in run_summary(result)
