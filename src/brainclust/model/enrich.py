"""The metadata of a run's rows, before and after the fit: descriptors, the ``--metadata`` table, the labels.

``run`` and ``predict`` call, in this order::

    scan -> enrich(records) -> model.fit / predict -> with_labels(rows) -> publish

* :func:`enrich` adds to every image record's ``meta`` the intensity descriptors
  (``--descriptors on``, from the feature store when known:
  :func:`brainclust.features.descstore.describe_cached`) and the columns of the
  ``--metadata`` table (:func:`brainclust.io.metadata.join_table`, joined per image
  against its path, file name, subject and unit id, so a table keyed by volume or
  subject fills every slice of it). The unit step then aggregates the slices' metadata
  (:func:`brainclust.features.units.unit_columns`).
* :func:`with_labels` puts the column the clusters are scored against
  (``--labels COLUMN``; ``--labels-from-folders`` is the column ``folder``) into
  each row's ``label`` (the ``label`` column of ``assignments.csv``).

Column names, order and text follow one rule (:mod:`brainclust.io.outputs`: run columns first,
then metadata in order of first appearance, reserved names prefixed ``meta_``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from brainclust.checks.stage import check_split_table
from brainclust.errors import InputError
from brainclust.features.descstore import describe_cached
from brainclust.features.units import MIXED, unit_ids
from brainclust.io.bids import NAME_COLUMNS
from brainclust.io.metadata import MetadataTable, join_table, merge_columns, read_table, record_columns, record_rows
from brainclust.io.outputs import column_name, escape_name
from brainclust.io.pathfilter import SPLIT_WORDS
from brainclust.io.privacy import is_missing, phi_reason
from brainclust.terminal import count_text, did_you_mean

__all__ = ["enrich", "label_column", "read_metadata", "require_label_column", "scoring_labels", "with_labels"]

log = logging.getLogger(__name__)


def read_metadata(path) -> MetadataTable | None:
    """The ``--metadata`` table (read before any work, so a bad file fails first), or ``None``."""
    return read_table(path) if path is not None else None


def enrich(records: list, cfg, table: MetadataTable | None = None, splits: bool = False) -> tuple[list, dict]:
    """``records`` with their ``meta`` completed (module docstring) and what was done (for the manifest).

    ``cfg`` gives ``unit``, ``descriptors``, ``metadata_key``, ``cache_dir`` and ``progress``; with ``splits``
    (a run) its ``--split-table`` is matched against the records first, so a table naming none of them is one
    line before any image is decoded.
    """
    if not records:
        return records, {}
    if splits and cfg.split_table is not None and cfg.checks != "off":
        check_split_table(records, cfg.split_table, cfg.split_column)
    cols = record_columns(records)
    info: dict = {}
    if cfg.descriptors == "on":
        desc, info["descriptors"] = describe_cached(records, cfg.cache_dir, cfg.progress)
        cols = merge_columns(cols, desc, source="descriptors")
    if table is not None:
        j = join_table(table, record_rows(records, unit_ids(records, cfg.unit)), cfg.metadata_key)
        cols = merge_columns(cols, j.columns)
        info["metadata"] = {"file": escape_name(Path(table.path).name), "key": j.key, "kind": j.kind,
                            "rows_matched": j.n_matched, "rows": j.n_rows, "table_rows_unused": j.n_unused,
                            "columns": list(j.columns), "dropped": j.dropped}
    out = [replace(r, meta={k: v[i] for k, v in cols.items() if not is_missing(v[i])}) for i, r in enumerate(records)]
    return out, info


def label_column(cfg) -> str | None:
    """The column the clusters are scored against: ``--labels``, ``folder`` for ``--labels-from-folders``."""
    return "folder" if getattr(cfg, "labels_from_folders", False) else getattr(cfg, "labels", None)


def _lookup(meta: dict, column: str):
    if column in meta:
        return meta[column]
    return meta.get(column_name(column))


def _value(meta: dict, column: str):
    """The row's value of ``column``; for ``folder`` (``--labels-from-folders``) below a split folder, the class
    folder under it (``Training/glioma/`` -> ``glioma``; none for a file directly in the split folder)."""
    v = _lookup(meta, column)
    if column == "folder" and str(v or "").lower() in SPLIT_WORDS:
        return meta.get("class_folder", "")
    return v


def with_labels(rows: list, column: str | None) -> list:
    """The rows (records or unit records) with ``label`` = their value of ``column`` (``""`` when missing).

    Raises
    ------
    InputError
        No row has a value in ``column`` (the message lists the columns there are).
    """
    if column is None:
        return rows
    require_label_column(rows, column)
    # a unit whose slices disagree (or are only partly labelled) has no label: "mixed" is not a class
    out = [replace(r, label="" if is_missing(v := _value(r.meta, column)) or (v == MIXED and hasattr(r, "members"))
                   else str(v)) for r in rows]
    if out and hasattr(out[0], "members") and not any(r.label for r in out):  # rows without one: said before
        log.warning("--labels %s: no unit has one value of it (each mixes several: it varies within the units); no "
                    "label score is computed", column)
    _warn_unscorable([r.label for r in out if r.label], column)
    return out


def _warn_unscorable(labels: list[str], column: str) -> None:
    """A warning when the label scores against ``column`` cannot mean anything: one value (every score is that
    of one class), or more values than half the labelled rows (an identifier or a continuous number)."""
    values = len(set(labels))
    if len(labels) >= 2 and values == 1:
        log.warning("--labels %s: one value in every labelled row; the label scores say nothing", column)
    elif len(labels) >= 4 and values > len(labels) / 2:
        log.warning("--labels %s: %d values for %d labelled rows (an identifier or a continuous number?); the label "
                    "scores say little: name a column of classes", column, values, len(labels))


def warn_folder_labels(rows: list) -> None:
    """``--labels-from-folders``: a warning when the folders give nothing to score against (a flat folder, or split
    folders such as ``Training/`` with no class folder below them) and when they are the subject folders of a BIDS
    data set (naming the columns of its file names that vary: ``--labels suffix``...); says so when the labels come
    from the class folders below split folders."""
    folders = {str(_lookup(r.meta, "folder") or "") for r in rows} - {""}
    splits = sorted(f for f in folders if f.lower() in SPLIT_WORDS)
    classes = sorted({str(v) for r in rows if not is_missing(v := _value(r.meta, "folder"))})
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    if not classes:
        why = (f"the first-level folders ({', '.join(splits)}) are splits with no class folder below them"
               if splits else "no image is in a sub-folder of DATA")
        log.warning("--labels-from-folders: %s, so there are no labels; no label score is computed (give --labels "
                    "with a class column of --metadata)", why)
    elif splits:
        log.info("--labels-from-folders: the labels are the folders below %s %s (%s)",
                 count_text(len(splits), "split folder"), ", ".join(splits), shown)
    elif any(r.meta.get("datatype") and r.meta.get("subject") == _value(r.meta, "folder") for r in rows):  # BIDS
        varying = [c for c in NAME_COLUMNS if len({str(r.meta.get(c) or "") for r in rows}) > 1]
        log.warning("--labels-from-folders: the first-level folders of a BIDS data set are its subjects (%s), so the "
                    "clusters are scored against the subjects; %s", shown,
                    f"to score against a column the file names give, use --labels COLUMN instead (here: "
                    f"{', '.join(varying)})" if varying else "--labels COLUMN scores against a metadata column instead")


def require_label_column(rows: list, column: str) -> None:
    """InputError (listing the columns there are) when no row has a value in ``column`` (``folder``: always one)."""
    if column != "folder" and not any(not is_missing(_lookup(r.meta, column)) for r in rows):
        names = sorted({k for r in rows for k in r.meta})
        why = (" (a column whose name marks patient data is never read)" if phi_reason(column, ()) else
               " (only DICOM headers and volumes give it; the plane the run estimates for 2-D images never scores)"
               if column == "plane" else "")
        hint = did_you_mean(column, [n for n in names if n != column])
        raise InputError(f"--labels: no row has a value in column '{column}'{hint}{why}; metadata columns: "
                         f"{', '.join(names[:40]) or '(none)'}")


def scoring_labels(rows: list, column: str | None) -> list[str] | None:
    """The labels to score against (the rows' ``label``), or ``None`` without a label column."""
    return None if column is None else [r.label or "" for r in rows]
