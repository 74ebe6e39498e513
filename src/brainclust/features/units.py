"""Units above the slice: volumes, series and subjects, and their features.

``--unit slice|volume|series|subject`` (default ``slice``) says what one row of
the results is. Every image (slice) of the scan belongs to one unit of each
kind (:func:`unit_id`):

==========  =====================================================================
unit        id
==========  =====================================================================
``slice``   the record's path (``sub-01/anat/x.nii.gz#axial=45``): one row per image
``volume``  NIfTI: the file's path, plus ``#t=N`` for volume ``N`` of a 4-D file;
            DICOM: the series (``meta['series_id']``, a series is a volume);
            a 2-D image file: its path (it is its own volume)
``series``  DICOM: the series; NIfTI: the file (the scan reads one volume of a
            4-D file, ``--volume-index``: the slices of its volume unit);
            a 2-D image file: its path
``subject`` BIDS: ``sub-<label>`` (``meta['subject']``); otherwise the first-level
            folder under the data folder; a file directly in the data folder is
            a subject of its own (its volume id)
==========  =====================================================================

Aggregation rule (:class:`UnitAggregator`): a unit's feature vector is the
mean of its slices' L2-normalised feature vectors, L2-normalised again (a
slice whose features are all zero adds nothing; a unit whose mean is zero stays
zero). Every slice weighs the same whatever its feature norm, and the result
lives on the same unit sphere as the cosine distances the clustering uses. The
rule has no learned state: ``predict`` aggregates new units the same way.

Unit metadata (:func:`unit_columns`): for each column, the value its slices
share (a value missing in every slice stays missing); when they differ, the
mean when every slice has a number, else ``mixed`` (also when the column is
missing in some slices only).
The slice-only columns (:data:`SLICE_ONLY`) are dropped; ``n_slices`` counts
the unit's slices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from brainclust.errors import ParameterError

UNITS = ("slice", "volume", "series", "subject")
#: Metadata columns that describe one slice and mean nothing for a unit.
SLICE_ONLY = frozenset({"slice_index", "slice_position", "instance_number"})
#: The text value of a unit whose slices disagree on a text column.
MIXED = "mixed"
#: Rows aggregated per block (bounds the memory of the normalised copy).
CHUNK_ROWS = 65536


def check_unit(unit) -> str:
    """Validate ``--unit``."""
    if unit not in UNITS:
        raise ParameterError(f"--unit: must be one of {', '.join(UNITS)}, got {unit!r}")
    return unit


def _file_part(path: str) -> str:
    return path.split("#", 1)[0]


def unit_id(record, unit: str) -> str:
    """The id of the ``unit`` a record belongs to (see the module docstring)."""
    if unit == "slice":
        return record.path
    meta = getattr(record, "meta", None) or {}
    file_rel = _file_part(record.path)
    if record.type == "dicom" and meta.get("series_id"):
        volume = series = str(meta["series_id"])
    else:
        series = file_rel
        frame = record.frame or ""
        volume = f"{file_rel}#t={frame.split('&t=', 1)[1]}" if record.type == "nifti" and "&t=" in frame \
            else file_rel
    if unit == "volume":
        return volume
    if unit == "series":
        return series
    if meta.get("subject"):
        return str(meta["subject"])
    return file_rel.split("/", 1)[0] if "/" in file_rel else volume


def unit_ids(records: Sequence, unit: str) -> list[str]:
    """:func:`unit_id` of every record."""
    check_unit(unit)
    return [unit_id(r, unit) for r in records]


def count_units(records: Sequence, unit: str) -> int:
    """The rows a ``unit`` run clusters: one per record (``slice``), else one per distinct :func:`unit_id`."""
    return len(records) if unit == "slice" else len(set(unit_ids(records, unit)))


def count_contents(records: Sequence, unit: str) -> int | None:
    """How many of the rows of a ``slice`` run have distinct contents (:attr:`ImageRecord.key`: the file's hash and
    frame; identical contents get identical features); ``None`` for other units (a unit pools its slices)."""
    return len({r.key for r in records}) if unit == "slice" else None


@dataclass(frozen=True)
class UnitIndex:
    """Rows grouped into units: ``ids`` in order of first appearance, ``index[i]`` = unit of row ``i``."""

    ids: list[str]
    index: np.ndarray
    counts: np.ndarray

    @property
    def first_row(self) -> np.ndarray:
        """The first row of each unit (e.g. the record that stands for it)."""
        return np.unique(self.index, return_index=True)[1].astype(np.int64)


def group(ids: Sequence[str]) -> UnitIndex:
    """Group row ids into units (first-appearance order)."""
    pos: dict[str, int] = {}
    index = np.empty(len(ids), np.int64)
    for i, u in enumerate(ids):
        index[i] = pos.setdefault(u, len(pos))
    counts = np.bincount(index, minlength=len(pos)).astype(np.int64)
    return UnitIndex(list(pos), index, counts)


def aggregate(X, index: np.ndarray, n_units: int) -> np.ndarray:
    """Mean of the L2-normalised rows of each unit, L2-normalised (the module's rule); float32."""
    from scipy import sparse

    X = np.asarray(X) if not hasattr(X, "shape") else X
    n, dim = X.shape
    out = np.zeros((n_units, dim), np.float64)
    for start in range(0, n, CHUNK_ROWS):
        block = np.asarray(X[start:start + CHUNK_ROWS], dtype=np.float64)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
        rows = index[start:start + len(block)]
        m = sparse.csr_matrix((np.ones(len(block)), (rows, np.arange(len(block)))), shape=(n_units, len(block)))
        out += m @ block
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return out.astype(np.float32)


class UnitAggregator:
    """Slice features -> unit features (mean of L2-normalised slices, re-normalised).

    Parameters
    ----------
    unit : {"slice", "volume", "series", "subject"}, default "volume"
        Recorded for the manifest; the grouping itself comes from the ids given to ``fit``.

    Attributes
    ----------
    units_ : list of str
        Unit ids in order of first appearance.
    index_ : ndarray of shape (n_samples,)
        Unit position of each row.
    counts_ : ndarray of shape (n_units,)
        Slices per unit.
    unit_features_ : ndarray of shape (n_units, n_features)
        The aggregated features.
    n_features_in_ : int
    """

    def __init__(self, unit: str = "volume") -> None:
        self.unit = unit

    def _check(self, X, ids) -> tuple[object, UnitIndex]:
        check_unit(self.unit)
        if not hasattr(X, "shape") or len(X.shape) != 2:
            X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ParameterError(f"unit features: expected an (n, dim) matrix, got shape {X.shape}")
        if len(ids) != X.shape[0]:
            raise ParameterError(f"unit features: {len(ids)} unit ids for {X.shape[0]} rows; one id per row needed")
        if X.shape[0] == 0:
            raise ParameterError("unit features: no rows to aggregate")
        return X, group([str(u) for u in ids])

    def fit(self, X, units: Sequence[str]) -> "UnitAggregator":
        """Group the rows of ``X`` by ``units`` (one id per row) and aggregate them."""
        X, idx = self._check(X, units)
        self.units_, self.index_, self.counts_ = idx.ids, idx.index, idx.counts
        self.n_features_in_ = int(X.shape[1])
        self.unit_features_ = aggregate(X, idx.index, len(idx.ids))
        return self

    def fit_transform(self, X, units: Sequence[str]) -> np.ndarray:
        return self.fit(X, units).unit_features_

    def transform(self, X, units: Sequence[str]) -> np.ndarray:
        """Aggregate new rows by the same rule (e.g. in ``predict``); rows in first-appearance order of ``units``."""
        if not hasattr(self, "n_features_in_"):
            raise ParameterError("UnitAggregator: call fit before transform")
        X, idx = self._check(X, units)
        if X.shape[1] != self.n_features_in_:
            raise ParameterError(f"unit features: {X.shape[1]} features per row, the fitted aggregator had "
                                 f"{self.n_features_in_}")
        return aggregate(X, idx.index, len(idx.ids))


def _numeric(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    try:
        x = float(str(v))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == "")


def unit_columns(columns: Mapping[str, Sequence], idx: UnitIndex) -> dict[str, list]:
    """Per-unit metadata (module docstring): shared value, else the mean (all numbers) or ``mixed``.

    ``columns`` are per-row metadata columns (:func:`brainclust.io.metadata.record_columns`);
    the result has one value per unit and the column ``n_slices`` first.
    """
    out: dict[str, list] = {"n_slices": [int(c) for c in idx.counts]}
    n_units = len(idx.ids)
    members: list[list[int]] = [[] for _ in range(n_units)]
    for i, u in enumerate(idx.index):
        members[u].append(i)
    for name, values in columns.items():
        if name in SLICE_ONLY:
            continue
        col = []
        for rows in members:
            vals = [None if _missing(values[i]) else values[i] for i in rows]
            first = vals[0]
            if all(v == first for v in vals):
                col.append(first)
                continue
            nums = [_numeric(v) for v in vals]
            col.append(round(float(np.mean(nums)), 6) if all(x is not None for x in nums) else MIXED)
        out[name] = col
    return out
