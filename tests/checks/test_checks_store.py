"""The checks' descriptor store: exact round trip, reads on a rerun, no store, damaged rows recomputed."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from brainclust.checks.descriptors import DESCRIPTOR_NAMES, describe_records
from brainclust.checks.store import ROW, cached_descriptors, open_store, pack, store_settings, unpack
from brainclust.io.scan import scan

from checks_planting import head_slice, save, screenshot


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for i in range(5):
        save(root / f"s{i}.png", head_slice(i))
    save(root / "shot.png", screenshot(1))
    whole = (root / "s0.png").read_bytes()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])  # scans, but does not decode
    return scan(root).records


def test_pack_and_unpack_are_exact():
    rng = np.random.default_rng(0)
    vec = rng.normal(size=len(DESCRIPTOR_NAMES)).astype(np.float32)
    thumb = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    digest = "0f" * 32
    row = pack(vec, thumb, digest)
    assert row.shape == (ROW,) and row.dtype == np.float32 and np.isfinite(row).all()
    back = unpack(row)
    np.testing.assert_array_equal(back[0], vec)
    np.testing.assert_array_equal(back[1], thumb)
    assert back[2] == digest
    bad = row.copy()
    bad[len(DESCRIPTOR_NAMES) + 3] = 0.5  # a thumbnail value that is not an integer: not a packed value
    assert unpack(bad) is None


def test_a_rerun_reads_what_the_first_run_computed(records, tmp_path):
    ref = describe_records(records, 0, progress=False)
    first, info1 = cached_descriptors(records, str(tmp_path), 0, progress=False)
    n_ok = len(records) - len(ref.failed)
    assert len(ref.failed) == 1 and n_ok == 6
    assert info1 == {"hits": 0, "misses": len(records)}
    second, info2 = cached_descriptors(records, str(tmp_path), 0, progress=False)
    assert info2 == {"hits": n_ok, "misses": len(records) - n_ok}  # an unreadable image is tried again
    for got in (first, second):
        np.testing.assert_array_equal(got.vectors, ref.vectors)
        np.testing.assert_array_equal(got.thumbs, ref.thumbs)
        assert got.pixel_sha256 == ref.pixel_sha256 and set(got.failed) == set(ref.failed)


def test_no_store_when_the_cache_is_off(records, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINCLUST_CACHE", str(tmp_path / "default"))
    got, info = cached_descriptors(records, False, 0, progress=False)
    assert info["hits"] == 0 and not (tmp_path / "default").exists() and open_store(False) is None
    assert got.vectors.shape == (len(records), len(DESCRIPTOR_NAMES))


def test_a_damaged_row_is_dropped_and_recomputed(records, tmp_path):
    cached_descriptors(records[:3], str(tmp_path), 0, progress=False)
    store = open_store(str(tmp_path))
    db = sqlite3.connect(store.path)
    db.execute("UPDATE features SET vec = zeroblob(length(vec)) WHERE rowid = 1")  # checksum no longer matches
    db.commit()
    db.close()
    store.close()
    got, info = cached_descriptors(records[:3], str(tmp_path), 0, progress=False)
    assert info == {"hits": 2, "misses": 1}
    np.testing.assert_array_equal(got.vectors, describe_records(records[:3], 0, progress=False).vectors)


def test_the_store_is_keyed_by_the_code_that_computes_the_descriptors():
    s = store_settings()
    assert s["kind"] == "check-descriptors" and len(s["code"]) == 16 and s["thumb"] == 64
    # the shape cues are part of every descriptor: their code keys the store too
    from brainclust.checks import decode, descriptors, shape
    from brainclust.checks.store import DESCRIBING_MODULES

    assert {decode, descriptors, shape} <= set(DESCRIBING_MODULES)


def test_the_verified_near_pairs_are_read_back_for_the_same_contents(tmp_path):
    from PIL import Image, ImageOps

    from brainclust.checks.flags import Thresholds
    from brainclust.checks.stage import run_checks
    from brainclust.checks.store import cached_near_pairs

    for i in range(6):
        save(tmp_path / "d" / f"s{i}.png", head_slice(i))
    save(tmp_path / "d" / "s9_flip.png", ImageOps.mirror(Image.open(tmp_path / "d" / "s2.png")))
    recs = scan(tmp_path / "d").records
    desc = describe_records(recs, 0, progress=False)
    rows = np.arange(len(recs))
    first = cached_near_pairs(str(tmp_path / "c"), desc, rows, Thresholds(), progress=False)
    again = cached_near_pairs(str(tmp_path / "c"), desc, rows, Thresholds(), progress=False)
    assert (first[2], again[2]) == (False, True) and len(first[0]) >= 1
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    other = cached_near_pairs(str(tmp_path / "c"), desc, rows, Thresholds(near_similarity=0.99), progress=False)
    assert other[2] is False  # other thresholds: searched again
    shifted = cached_near_pairs(str(tmp_path / "c"), desc, rows[1:], Thresholds(), progress=False)
    assert shifted[2] is False  # other contents searched: searched again
    for f in (tmp_path / "c" / "check-pairs").iterdir():
        f.write_bytes(b"damaged")
    redo = cached_near_pairs(str(tmp_path / "c"), desc, rows, Thresholds(), progress=False)
    assert redo[2] is False
    np.testing.assert_array_equal(redo[0], first[0])
    a = run_checks(recs, descriptors=desc, progress=False, cache_dir=str(tmp_path / "c"))
    b = run_checks(recs, descriptors=desc, progress=False)
    assert a.flags == b.flags and a.duplicate_of == b.duplicate_of


def test_describing_processes_default_to_every_core_and_give_the_same_descriptors(records, monkeypatch):
    from brainclust.checks import store

    monkeypatch.setattr(store, "usable_cores", lambda: 2)
    assert store.default_workers(None) == 2  # the checks describe alone: the whole machine
    monkeypatch.setattr(store, "usable_cores", lambda: 1)
    assert store.default_workers(None) == 0  # one core: in this process, no pool of one
    monkeypatch.setattr(store, "usable_cores", lambda: 64)
    assert store.default_workers(None) == store.MAX_WORKERS
    assert store.default_workers(1) == 0 and store.default_workers(3) == 3
    many = list(records) * 6  # enough rows for the pool (at least two chunks of 16)
    alone = describe_records(many, 0, progress=False)
    pooled = describe_records(many, 2, progress=False)
    np.testing.assert_array_equal(pooled.vectors, alone.vectors)
    np.testing.assert_array_equal(pooled.thumbs, alone.thumbs)
    assert pooled.pixel_sha256 == alone.pixel_sha256 and pooled.failed == alone.failed and len(alone.failed) == 6
