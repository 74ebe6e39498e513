"""Atomic file writing and the on-disk feature cache."""

from __future__ import annotations

import csv
import json
import os
import pathlib

import numpy as np
import pytest

from brainclust.features.cache import FeatureCache, config_key, default_cache_dir
from brainclust.io.atomic import (atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_npz,
                           atomic_write_text)


def _leftovers(folder):
    """Temporary files an atomic write might leave behind."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


# -- atomic writes ----------------------------------------------------------------------------
def test_atomic_write_bytes_and_text(tmp_path):
    p = atomic_write_bytes(tmp_path / "sub" / "dir" / "x.bin", b"\x00\x01\xff")
    assert p == tmp_path / "sub" / "dir" / "x.bin"
    assert p.read_bytes() == b"\x00\x01\xff"
    t = atomic_write_text(tmp_path / "t.txt", "grüße\n")
    assert t.read_bytes() == "grüße\n".encode("utf-8")
    # overwriting replaces the whole content
    atomic_write_text(tmp_path / "t.txt", "a")
    assert (tmp_path / "t.txt").read_text() == "a"
    assert _leftovers(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sub", "t.txt"]


def test_atomic_write_json(tmp_path):
    obj = {"b": np.int64(3), "a": [np.float32(0.5), np.arange(3)], "p": tmp_path / "x", "s": "é"}
    p = atomic_write_json(tmp_path / "o.json", obj)
    text = p.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text) == {"a": [0.5, [0, 1, 2]], "b": 3, "p": (tmp_path / "x").as_posix(), "s": "é"}
    assert text.index('"a"') < text.index('"b"') < text.index('"p"')  # sorted keys
    assert "\n  " in text  # indented
    # equal input -> identical bytes
    p2 = atomic_write_json(tmp_path / "o2.json", dict(reversed(list(obj.items()))))
    assert p2.read_bytes() == p.read_bytes()
    assert _leftovers(tmp_path) == []


def test_atomic_write_json_rejects_nan_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "bad.json", {"x": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_csv(tmp_path):
    rows = [{"path": "a/1.png", "cluster": 0, "extra": "ignored"}, {"path": "b,2.png", "cluster": -1},
            {"cluster": 3}]
    p = atomic_write_csv(tmp_path / "out.csv", ["path", "cluster"], rows)
    text = p.read_text()
    assert text.splitlines()[0] == "path,cluster"
    assert "\r" not in text
    back = list(csv.DictReader(text.splitlines()))
    assert back == [{"path": "a/1.png", "cluster": "0"}, {"path": "b,2.png", "cluster": "-1"},
                    {"path": "", "cluster": "3"}]
    assert _leftovers(tmp_path) == []


def test_atomic_write_npz(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    keys = np.asarray(["k1", "key2"])
    p = atomic_write_npz(tmp_path / "a.npz", a=a, keys=keys)
    with np.load(p, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], a)
        assert z["a"].dtype == np.float32
        assert z["keys"].tolist() == ["k1", "key2"]
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails while writing the temporary file
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- cache location and key --------------------------------------------------------------------
def test_default_cache_dir_uses_env(tmp_path, monkeypatch):
    # the session fixture in conftest already points it away from the home folder
    assert os.environ.get("BRAINCLUST_CACHE")
    assert default_cache_dir() == pathlib.Path(os.environ["BRAINCLUST_CACHE"])
    monkeypatch.setenv("BRAINCLUST_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BRAINCLUST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "brainclust"


def test_config_key_stable_and_order_independent():
    a = config_key({"backbone": "resnet50", "precision": "fp32", "pre": {"size": 224, "clip": [0.5, 99.5]}})
    b = config_key({"pre": {"clip": [0.5, 99.5], "size": 224}, "precision": "fp32", "backbone": "resnet50"})
    assert a == b
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    assert config_key({"backbone": "resnet50", "precision": "fp16"}) != config_key(
        {"backbone": "resnet50", "precision": "fp32"})


# -- feature cache ---------------------------------------------------------------------------------
SETTINGS = {"backbone": "toy", "weights": "abc123", "precision": "fp32", "size": 32}


def _feats(n, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _keys(prefix, n):
    return [f"{prefix}{i:063d}" for i in range(n)]  # 64 characters, like a SHA-256


def test_put_many_get_roundtrip(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    assert len(c) == 0
    keys, f = _keys("a", 3), _feats(3)
    c.put_many(keys, f)
    assert len(c) == 3
    for k, row in zip(keys, f):
        assert k in c
        np.testing.assert_array_equal(c.get(k), row)
        assert c.get(k).dtype == np.float32
    assert "missing" not in c
    with pytest.raises(KeyError):
        c.get("missing")
    assert json.loads((c.dir / "settings.json").read_text()) == SETTINGS
    assert _leftovers(tmp_path) == []


def test_float64_input_stored_as_float32(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    c.put_many(["k"], np.array([[0.1, 0.2]], dtype=np.float64))
    assert c.get("k").dtype == np.float32
    np.testing.assert_allclose(FeatureCache(tmp_path, SETTINGS).get("k"), [0.1, 0.2], rtol=1e-6)


def test_empty_batch_is_a_no_op(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    c.put_many([], np.zeros((0, 4), np.float32))
    assert len(c) == 0
    assert len(FeatureCache(tmp_path, SETTINGS)) == 0


def test_persistence_across_instances(tmp_path):
    c1 = FeatureCache(tmp_path, SETTINGS)
    k1, k2 = _keys("a", 2), _keys("b", 3)
    f1, f2 = _feats(2, seed=1), _feats(3, seed=2)
    c1.put_many(k1, f1)
    c1.put_many(k2, f2)
    assert [p.name for p in c1.dir.glob("shard-*")] == []  # no shards: one database per configuration
    c2 = FeatureCache(tmp_path, dict(SETTINGS))
    assert len(c2) == 5
    for k, row in zip(k1 + k2, np.vstack([f1, f2])):
        np.testing.assert_array_equal(c2.get(k), row)
    # the new instance can add more and a third one sees everything
    c2.put_many(_keys("c", 1), _feats(1, seed=3))
    assert len(FeatureCache(tmp_path, SETTINGS)) == 6


def test_different_settings_use_different_folders(tmp_path):
    a = FeatureCache(tmp_path, SETTINGS)
    b = FeatureCache(tmp_path, {**SETTINGS, "precision": "fp16"})
    assert a.dir != b.dir
    assert a.dir.parent == b.dir.parent == tmp_path
    a.put_many(["k"], _feats(1))
    assert "k" in FeatureCache(tmp_path, SETTINGS)
    assert "k" not in FeatureCache(tmp_path, {**SETTINGS, "precision": "fp16"})
    assert len(FeatureCache(tmp_path, {**SETTINGS, "precision": "fp16"})) == 0


def test_many_batches_keep_one_database_and_every_entry(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    expected = {}
    for b in range(70):
        keys, f = [f"{b:064d}"], _feats(1, seed=b)
        c.put_many(keys, f)
        expected.update(zip(keys, f))
    c.close()
    assert sorted(p.name for p in c.dir.iterdir() if not p.name.startswith("features.sqlite-")) == [
        "features.sqlite", "settings.json"]
    reopened = FeatureCache(tmp_path, SETTINGS)
    assert len(reopened) == 70
    for k, row in expected.items():
        np.testing.assert_array_equal(reopened.get(k), row)
    assert _leftovers(tmp_path) == []


def test_put_replaces_an_earlier_vector(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    c.put_many(["k"], _feats(1, seed=1))
    c.put_many(["k"], _feats(1, seed=2))
    assert len(c) == 1
    np.testing.assert_array_equal(FeatureCache(tmp_path, SETTINGS).get("k"), _feats(1, seed=2)[0])


def test_old_npz_shards_are_ignored(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    np.savez(c.dir / "shard-old.npz", keys=np.asarray(["k"]), features=_feats(1))
    again = FeatureCache(tmp_path, SETTINGS)
    assert len(again) == 0 and "k" not in again


def test_put_many_rejects_bad_input(tmp_path):
    c = FeatureCache(tmp_path, SETTINGS)
    with pytest.raises(ValueError):
        c.put_many(["a", "b"], _feats(3))
    with pytest.raises(ValueError):
        c.put_many(["a"], np.array([[1.0, np.nan]], np.float32))
    assert len(c) == 0
