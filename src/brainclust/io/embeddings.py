"""``embeddings.parquet``: one row per image of ``assignments.csv``, with its embedding.

Columns: ``path`` (the same text as ``assignments.csv``), ``sha256``, ``frame``,
``embedding`` (``fixed_size_list<float32>``, the PCA embedding), ``cluster``
(int32), ``level_1..level_10`` (int32, hierarchical runs only) and, on request,
``features`` (the raw backbone features, ``fixed_size_list<float32>``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from brainclust.io.atomic import atomic_write_bytes
from brainclust.io.outputs import LEVEL_COLUMNS


def _vectors(pa, matrix: np.ndarray):
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected an (n, dim) matrix, got shape {m.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1), type=pa.float32()), m.shape[1])


def write_embeddings(path, rows: Sequence[Mapping], records: Sequence, embedding: np.ndarray,
                     features: np.ndarray | None = None) -> Path:
    """Write ``embeddings.parquet`` atomically; ``rows`` are the rows of ``assignments.csv``, ``records`` their images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (len(rows) == len(records) == len(embedding)) or (features is not None and len(features) != len(rows)):
        raise ValueError("rows, records, embedding and features must have one entry per image")
    cols = {"path": pa.array([str(r["path"]) for r in rows], type=pa.string()),
            "sha256": pa.array([r.sha256 for r in records], type=pa.string()),
            "frame": pa.array([r.frame for r in records], type=pa.string()),
            "embedding": _vectors(pa, np.asarray(embedding).reshape(len(rows), -1)),
            "cluster": pa.array([int(r["cluster"]) for r in rows], type=pa.int32())}
    if rows and LEVEL_COLUMNS[0] in rows[0]:
        for c in LEVEL_COLUMNS:
            cols[c] = pa.array([int(r[c]) for r in rows], type=pa.int32())
    if features is not None:
        cols["features"] = _vectors(pa, np.asarray(features).reshape(len(rows), -1))
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return atomic_write_bytes(path, buf.getvalue())
