"""``embeddings.parquet`` in every run folder (io/embeddings.py, pipeline.write_outputs)."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from brainclust.io.outputs import LEVEL_COLUMNS, RUN_ENTRIES, RunFolder  # noqa: E402
from brainclust.pipeline import RunConfig, predict, run  # noqa: E402


def _cfg(tmp_path, **kw):
    return RunConfig(backbone="pixels@8", batch_size=4, workers=0, pca=3, k=2, seed=0,
                     cache_dir=str(tmp_path / "cache"), progress=False, **kw)


def _csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def data_flags_match(table, rows) -> bool:
    """The data checks' ``flags`` column (a default run checks its data) equals assignments.csv's."""
    return table.column("flags").to_pylist() == [r["flags"] for r in rows]


@pytest.mark.parametrize("method", ["hierarchical", "kmeans"])
def test_embeddings_parquet_matches_assignments_row_for_row(tmp_path, image_folder, method):
    res = run(image_folder, tmp_path / "out", _cfg(tmp_path, method=method))
    folder = RunFolder(tmp_path / "out")
    assert folder.embeddings.name in RUN_ENTRIES
    table = pq.read_table(folder.embeddings)
    rows = _csv(folder.assignments)
    levels = LEVEL_COLUMNS if method == "hierarchical" else []
    fixed = ["path", "sha256", "frame", "embedding", "cluster", *levels, "flags"]
    assert table.column_names[:len(fixed)] == fixed
    assert data_flags_match(table, rows)
    # then the metadata columns of assignments.csv, in its order (issue 23)
    assert table.column_names[len(fixed):] == list(rows[0])[list(rows[0]).index("flags") + 1:]
    assert table.num_rows == len(rows) == len(res.records) == 8
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), res.embedding.shape[1])
    assert table.schema.field("cluster").type == pa.int32()
    data = table.to_pydict()
    assert data["path"] == [r["path"] for r in rows]
    assert data["cluster"] == [int(r["cluster"]) for r in rows]
    for c in levels:
        assert data[c] == [int(r[c]) for r in rows]
    for p, h in zip(data["path"], data["sha256"]):
        assert h == hashlib.sha256((image_folder / p).read_bytes()).hexdigest()
    assert data["frame"] == [""] * 8
    np.testing.assert_array_equal(np.asarray(data["embedding"], np.float32), res.embedding.astype(np.float32))
    assert "features" not in table.column_names


def test_embeddings_features_option_adds_raw_features(tmp_path, image_folder):
    res = run(image_folder, tmp_path / "out", _cfg(tmp_path, method="kmeans", embeddings_features=True))
    table = pq.read_table(RunFolder(tmp_path / "out").embeddings)
    assert table.column_names[-1] == "features"
    assert table.schema.field("features").type == pa.list_(pa.float32(), res.features.shape[1])
    np.testing.assert_array_equal(np.asarray(table.column("features").to_pylist(), np.float32), res.features)


def test_predict_folder_has_embeddings_too(tmp_path, image_folder):
    run(image_folder, tmp_path / "out", _cfg(tmp_path, method="kmeans"))
    res = predict(tmp_path / "out", image_folder, out=tmp_path / "pred", cache_dir=str(tmp_path / "cache"),
                  workers=0, progress=False)
    table = pq.read_table(RunFolder(tmp_path / "pred").embeddings)
    assert table.column("path").to_pylist() == [r["path"] for r in _csv(RunFolder(tmp_path / "pred").assignments)]
    np.testing.assert_array_equal(np.asarray(table.column("embedding").to_pylist(), np.float32),
                                  res.embedding.astype(np.float32))
