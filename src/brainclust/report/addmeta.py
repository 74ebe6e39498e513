"""``brainclust report RUN --metadata FILE``: add a metadata table's columns to a finished run, rank them again.

The table is joined against the rows of ``assignments.csv`` (:func:`brainclust.io.metadata.join_table`:
its key is a ``path`` column, a unit id, a file name or a subject; in a unit run the rows' ``path`` is the
unit id). Its columns pass the same privacy rules as at run time and are named by the one rule of
:mod:`brainclust.io.outputs` (a name of the run's own columns gets ``meta_``; a metadata column of the
same name is replaced, with a warning). Then, each file rewritten atomically, in this order:

1. ``assignments.csv`` with the new columns at the end (the run's rows, in the same order);
2. ``embeddings.parquet`` with the same columns (text);
3. ``associations.csv``, ranked again from ``assignments.csv`` as written, with the run's
   ``--permutations`` and ``--seed``;
4. ``manifest.json``: ``metadata_added`` lists each table joined (file name, SHA-256 of its bytes, key, counts,
   columns); the table joined last, joined again unchanged with the same key, adds no second entry.

Nothing else changes (no feature is extracted, no clustering is refitted). ``brainclust report
--metadata`` calls it on the staged copy of the run folder inside the all-or-nothing rebuild
(:func:`brainclust.report.rebuild.rebuild_report`'s ``prepare``): the columns are published with the
new report, or not at all.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from brainclust.cluster.associations import from_assignments, write_associations
from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_csv, atomic_write_json
from brainclust.io.metadata import check_key, join_table, overlay, read_table
from brainclust.io.outputs import (RESERVED, RunFolder, column_name, escape_name, meta_text, read_assignments,
                                   read_json)
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

__all__ = ["AddedMetadata", "add_metadata"]


@dataclass
class AddedMetadata:
    """What :func:`add_metadata` did."""

    columns: list[str]
    key: str
    kind: str
    n_matched: int
    n_rows: int
    associations: list[dict]
    #: the run's ``--within`` column: the associations are scored within its strata
    within: str | None = None


def _update_embeddings(path: Path, new: dict[str, list[str]]) -> None:
    """``embeddings.parquet`` with the columns ``new`` (text; ``""`` = null) added or replaced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None
    for name, values in new.items():
        if len(values) != table.num_rows:
            raise ModelFileError(f"'{path}' has {table.num_rows} rows but assignments.csv has {len(values)}")
        arr = pa.array([v or None for v in values], type=pa.string())
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def add_metadata(out_dir, table_path, key: str | None = None) -> AddedMetadata:
    """Join the table ``table_path`` to the finished run ``out_dir`` (module docstring).

    Raises
    ------
    InputError
        The table cannot be read, has no key column or duplicate keys, or matches no row.
    ModelFileError
        The run's outputs are missing or damaged.
    """
    folder = RunFolder(out_dir)
    manifest = read_json(folder.manifest, folder.root)
    rows = read_assignments(folder.assignments, folder.root)
    key = check_key(key)
    table = read_table(table_path)
    if not rows:
        raise ModelFileError(f"'{folder.assignments}' has no rows")
    j = join_table(table, rows, key)
    header = list(rows[0].keys())
    added: dict[str, list[str]] = {}
    for name, values in j.columns.items():
        col = column_name(name)
        if col != name.strip():
            log.warning("--metadata '%s': column '%s' has the name of a run column; written as '%s'",
                        table.path, name, col)
        added[col] = [meta_text(v) for v in values]
        if col in header and col not in RESERVED:
            added[col] = overlay([r.get(col, "") for r in rows], added[col], f"--metadata '{table.path}'", col)
    for i, r in enumerate(rows):
        for col, values in added.items():
            r[col] = values[i]
    atomic_write_csv(folder.assignments, header + [c for c in added if c not in header], rows)
    _update_embeddings(folder.embeddings, added)
    settings = manifest.get("settings") or {}
    perms, seed = settings.get("permutations", 199), settings.get("seed", 0)
    perms = perms if isinstance(perms, int) and not isinstance(perms, bool) and perms >= 0 else 199
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    aside = (manifest.get("checks") or {}).get("exclude") if isinstance(manifest.get("checks"), dict) else None
    within = settings.get("within")  # --within: the clusters lie inside its values by construction, not ranked
    ranked = from_assignments(read_assignments(folder.assignments, folder.root), perms, seed,
                              exclude=[within] if isinstance(within, str) else [],
                              aside_flags=[f for f in aside or () if isinstance(f, str)])
    write_associations(folder.associations, ranked)
    entry = {"file": escape_name(Path(table.path).name), "sha256": table.sha256, "key": j.key, "kind": j.kind,
             "rows_matched": j.n_matched, "rows": j.n_rows, "table_rows_unused": j.n_unused, "columns": list(added),
             "dropped": j.dropped}
    entries = manifest.setdefault("metadata_added", [])
    if entries and entries[-1] == entry:  # the same table (same bytes, same key) joined again: nothing new
        log.info("report: '%s' was the last table joined to this run (same content, same key): metadata_added "
                 "unchanged", escape_name(str(table.path)))
    else:
        entries.append(entry)
    atomic_write_json(folder.manifest, manifest)  # as read: its names are escaped already
    log.info("report: added %s from '%s' (key '%s', %d of %d rows matched); associations.csv ranked again",
             count_text(len(added), "column"), escape_name(str(table.path)), j.key, j.n_matched, j.n_rows)
    return AddedMetadata(list(added), j.key, j.kind, j.n_matched, j.n_rows, ranked,
                         within if isinstance(within, str) else None)
