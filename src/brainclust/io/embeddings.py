"""``embeddings.parquet``: one row per image of ``assignments.csv``, with its embedding.

Columns: ``path`` (the same text as ``assignments.csv``), ``sha256``, ``frame``,
``embedding`` (``fixed_size_list<float32>``, the PCA embedding), ``cluster``
(int32), ``level_1..level_10`` (int32, hierarchical runs only) and, on request,
``features`` (the raw backbone features, ``fixed_size_list<float32>``).
The schema and its writer live with every other output file in :mod:`brainclust.io.outputs`.
"""

from brainclust.io.outputs import write_embeddings

__all__ = ["write_embeddings"]
