"""The columns a run may steer by, score against or colour by, checked before any feature is extracted
(``--within``, ``--remove``, ``--labels``, ``--color-by``; see ``docs/steering.md``).

A ``--within`` / ``--remove`` column is a metadata column of the rows, ``plane`` (read from a NIfTI frame,
else estimated) or ``level_N`` of a first pass (:mod:`brainclust.model.steering`). A metadata column's values
are known once the folder is scanned, so one that names a measurement or an identifier (too few rows per
value) is refused here too, not after the extraction.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from brainclust.cluster.steer import MIN_STRATUM, as_strata, check_categories
from brainclust.errors import InputError, ParameterError
from brainclust.io.outputs import META_PREFIX, N_LEVELS, RESERVED, RUN_MADE
from brainclust.terminal import did_you_mean

__all__ = ["LEVELS", "PLANE", "PLANE_COLUMNS", "available_columns", "check_column", "check_label_column",
           "check_run_columns", "check_steer_labels", "is_meta_column", "label_evidence", "meta_values"]

log = logging.getLogger(__name__)

PLANE = "plane"
LEVELS = tuple(f"level_{i + 1}" for i in range(N_LEVELS))
PLANE_COLUMNS = ("plane", "plane_source", "plane_confidence")
MIN_EVIDENCE = 2  # labelled images a stratum needs before it tells whether it holds one label


def available_columns(records) -> list[str]:
    """The columns ``--within`` / ``--remove`` accept for these rows: metadata, ``plane``, ``level_1..10``."""
    meta = sorted({k for r in records for k in (getattr(r, "meta", None) or {})})
    return [*meta, *([PLANE] if PLANE not in meta else []), *LEVELS]


def check_column(option: str, name: str, records, table_columns=()) -> None:
    """One line (ParameterError) when ``name`` is not a column the rows have (the message lists them);
    ``table_columns``: the ``--metadata`` table's, whose empty ones the rows do not hold."""
    cols = available_columns(records)
    if name not in cols:
        if name in table_columns:
            raise ParameterError(f"{option}: column '{name}' of the --metadata table has no value in any row of "
                                 "this run (empty, or no row matches)")
        shown = ", ".join(cols[:40]) + (", ..." if len(cols) > 40 else "")
        levels = f"; the tree's levels are {LEVELS[0]} to {LEVELS[-1]}" if name.startswith("level_") else ""
        raise ParameterError(f"{option}: no column '{name}' in this run{did_you_mean(name, cols)}; available: "
                             f"{shown}{levels}")


def check_run_columns(records, *, remove=None, within=None, labels=None, color_by=None, table=None) -> None:
    """The columns a run is asked to use, before its features are extracted: ``--remove``/``--within``
    (:func:`check_column`), ``--labels`` (:func:`check_label_column`) and ``--color-by``: also a column the
    run writes (``cluster``, ``level_3``, ``flags``...) or a metadata column as written (``meta_NAME``).
    ``table``: the ``--metadata`` table (``MetadataTable``), if any."""
    for flag, column, min_rows in (("--remove", remove, 2), ("--within", within, MIN_STRATUM)):
        if column is not None:
            check_column(flag, column, records, table.header if table is not None else ())
            # a metadata column's values are known already; the plane is estimated by the fit for the rows
            # without a header's, so its strata are counted there
            if column != PLANE and is_meta_column(records, column):
                check_categories(as_strata(meta_values(records, column)), flag, column, min_rows, warn=False)
    check_label_column(labels, records)
    check_steer_labels(records, labels, within=within, remove=remove)
    meta = [c for c in available_columns(records) if c not in LEVELS]
    if color_by not in (None, *RESERVED, *PLANE_COLUMNS, *meta) and color_by.removeprefix(META_PREFIX) not in meta:
        hint = did_you_mean(color_by, [*RESERVED, *meta])  # as 'brainclust report --color-by' says it
        shown = ", ".join(meta[:30]) + (", ..." if len(meta) > 30 else "")
        raise ParameterError(f"--color-by: no column '{color_by}' in this run{hint}; it has cluster, label, level_N, "
                             f"flags and the metadata columns {shown}")


def check_steer_labels(records, labels: str | None, *, within=None, remove=None) -> None:
    """Labels only score. A ``--within`` metadata column each of whose strata holds one label (the run's scores
    would measure the strata, not the clusters), or a ``--remove`` one whose strata are the label classes (the
    labels would shape the features), is refused in one line; a ``--remove`` one each of whose strata holds one
    label, not 1:1 (subjects of one diagnosis each), warns (it takes the labels' differences out too). By the
    values, not the names: the labels of ``--labels-from-folders`` under split folders are the class folders, not
    ``folder``. ``plane`` when it is estimated and ``level_N`` are made by the run, after this check
    (``model.steerrecord`` warns then)."""
    from brainclust.model.enrich import scoring_labels, with_labels

    if labels is None or (within is None and remove is None):
        return
    try:
        y = np.asarray(scoring_labels(with_labels(records, labels), labels), dtype=object)
    except InputError:  # a label column the run makes (plane, level_N): known after the fit
        return
    has = y != ""
    if len(set(y[has].tolist())) < 2:
        return
    given = "--labels-from-folders" if labels == "folder" else f"--labels {labels}"
    for flag, column in (("--within", within), ("--remove", remove)):
        if column is None or not is_meta_column(records, column):
            continue
        evidence = label_evidence(meta_values(records, column), y)
        one_label_each = bool(evidence) and len(evidence) == len({s for s, _ in evidence})
        # each label in one stratum: any labelled image of it elsewhere says no, even a stratum's only one
        pairs = set(zip(as_strata(meta_values(records, column))[has].tolist(), y[has].tolist()))
        if flag == "--within" and one_label_each:
            raise ParameterError(f"--within {column}: each stratum's labelled images share one label ({given}): the "
                                 "scores would measure the strata, not the clusters; labels only score: drop the "
                                 "labels or steer by another column")
        if flag == "--remove" and one_label_each and len(pairs) == len(set(y[has].tolist())):
            raise ParameterError(f"--remove {column}: its strata are the label classes ({given}); labels only "
                                 "score, they must not shape the features: drop the labels or remove another column")
        if flag == "--remove" and one_label_each:
            log.warning("--remove %s: each stratum's labelled images share one label (%s), so removing it takes "
                        "out what the labels tell apart: expect label scores near 0", column, given)


def label_evidence(strata, labels) -> set[tuple[str, str]]:
    """The (stratum, label) pairs of the labelled images (label not ``""``) in the strata with at least
    :data:`MIN_EVIDENCE` of them: whether each stratum holds one label is read from these strata only. A stratum
    with one labelled image holds one label by coincidence (sparse labels: most images unlabelled), so it is no
    evidence either way; no pair at all: nothing to tell. With every image labelled, the strata of one image
    only are left out, which changes the answer only when every stratum is of one image."""
    s, y = as_strata(strata), np.asarray(labels, dtype=object)
    has = y != ""
    counts = Counter(s[has].tolist())
    return {(v, label) for v, label in zip(s[has].tolist(), y[has].tolist()) if counts[v] >= MIN_EVIDENCE}


def check_label_column(column: str | None, records) -> None:
    """``--labels COLUMN`` before the features are extracted: one line (InputError) when no row has a value
    there. ``folder``, the tree levels, the other columns the run makes and ``plane`` where a DICOM header may
    give it are checked after it."""
    from brainclust.model.enrich import require_label_column, warn_folder_labels

    if column == "folder":
        warn_folder_labels(records)
    elif column not in (None, PLANE, *LEVELS, *RUN_MADE) or (column == PLANE and not _may_read_plane(records)):
        require_label_column(records, column)


def _may_read_plane(records) -> bool:
    """Whether some row has a header's plane or may get one from a DICOM header read with its pixels (an
    estimated plane never scores: it is the run's own guess)."""
    return any(r.type == "dicom" or PLANE in (getattr(r, "meta", None) or {}) for r in records)


def is_meta_column(records, column: str) -> bool:
    """Whether ``column`` is a metadata column of the rows (some row has it), not a first pass's ``level_N``."""
    return column not in LEVELS and any(column in (getattr(r, "meta", None) or {}) for r in records)


def meta_values(records, column: str) -> list:
    return [(getattr(r, "meta", None) or {}).get(column) for r in records]
