"""Large feature matrices are memory-mapped, and the checks on them make no full-size copy."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.cluster.reduce import check_not_constant, distinct_rows
from brainclust.features import extraction as ex_mod
from brainclust.errors import InputError
from brainclust.features.extractor import FeatureExtractor
from conftest import make_image


def test_feature_matrix_is_memory_mapped_above_the_limit_with_the_same_values(tmp_path, monkeypatch):
    for i in range(6):
        (tmp_path / "img").mkdir(exist_ok=True)
        make_image(tmp_path / "img" / f"{i}.png", seed=i)
    paths = sorted(str(p) for p in (tmp_path / "img").glob("*.png"))
    small = FeatureExtractor(backbone="pixels@16", cache_dir=False, progress=False).fit().transform(paths)
    monkeypatch.setattr(ex_mod, "MEMMAP_VALUES", 10)
    mapped = FeatureExtractor(backbone="pixels@16", cache_dir=False, progress=False).fit().transform(paths)
    assert isinstance(mapped, np.memmap) and not isinstance(small, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), small)


def test_result_array_starts_as_nan_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(ex_mod.tempfile, "tempdir", None)
    monkeypatch.setattr(ex_mod, "MEMMAP_VALUES", 1)
    arr = ex_mod.result_array(70000, 2)
    assert isinstance(arr, np.memmap) and arr.shape == (70000, 2) and np.isnan(arr).all()
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing is left behind


def test_distinct_rows_and_constant_check_in_blocks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7)).astype(np.float32)
    X = np.concatenate([X, X[:10]])  # 10 duplicates
    assert distinct_rows(X, chunk=8) == 50
    check_not_constant(X)  # varied: no error
    with pytest.raises(InputError, match="identical features"):
        check_not_constant(np.repeat(X[:1], 40, axis=0))


def test_take_rows_copies_into_a_memory_map_above_the_limit(monkeypatch):
    X = np.arange(70000 * 3, dtype=np.float32).reshape(70000, 3)
    keep = np.ones(70000, bool)
    keep[::7] = False
    assert not isinstance(ex_mod.take_rows(X, keep), np.memmap)  # small: a plain copy
    monkeypatch.setattr(ex_mod, "MEMMAP_VALUES", 10)
    for rows in (keep, np.flatnonzero(keep)):
        out = ex_mod.take_rows(X, rows)
        assert isinstance(out, np.memmap)
        np.testing.assert_array_equal(np.asarray(out), X[keep])
