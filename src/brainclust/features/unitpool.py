"""The unit step of a model: slices pooled into volumes, series or subjects (``--unit``).

::

    records --extractor--> slice features --[ssl]--> --units--> unit features --reducer--> ... --clusterer-->

:class:`UnitPool` sits between the extractor (and the optional self-supervised step, which
works on slices) and the reducer. ``fit_batch`` groups the batch's rows by
:func:`brainclust.features.units.unit_id` and returns one row per unit: a :class:`UnitRecord`
and the unit's feature vector (:func:`brainclust.features.units.aggregate`: the mean of its
slices' L2-normalised vectors, L2-normalised). The rule has no learned state, so
``transform_batch`` (``predict``) pools new units the same way. Everything after it (PCA,
clustering, ``assignments.csv``, the report) sees units.

A :class:`UnitRecord` has the fields of an :class:`~brainclust.io.scan.ImageRecord` that the
outputs read, plus ``unit``, ``n_slices`` and its ``members`` (the slice records):

========== =============================================================================
``path``   the unit id (``sub-01/anat/sub-01_T1w.nii.gz``, ``patient1/MR#series=2``, ``sub-01``); ``unit``: the same
``name``   the id's last path component
``type``   the slices' type, ``mixed`` when they differ
``size``   bytes of the unit's distinct files
``width``  ``height``: of the unit's first slice
``label``  the label the slices share, ``mixed`` when they differ
``sha256`` SHA-256 of the slices' keys in order (changes when any slice changes)
``meta``   :func:`brainclust.features.units.unit_columns` of the slices' metadata (shared value,
           else the mean of numbers, else ``mixed``), without ``n_slices``
========== =============================================================================
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from brainclust.core.params import OneOf, Step, param
from brainclust.errors import ModelFileError, ParameterError
from brainclust.features.units import MIXED, UNITS, aggregate, group, unit_columns, unit_ids
from brainclust.io.metadata import record_columns
from brainclust.io.outputs import escape_name, shown_name
from brainclust.io.scan import ImageRecord

log = logging.getLogger(__name__)

__all__ = ["UnitPool", "UnitRecord", "slice_rows", "unit_records"]


@dataclass(frozen=True)
class UnitRecord(ImageRecord):
    """One unit (volume, series or subject) as a row of the outputs; see the module docstring. Its
    ``key`` is its ``sha256`` (of the slices' keys): a unit has no frame."""

    unit: str = ""  #: the unit id (the same as ``path``: the ``unit`` column, which --metadata keys match)
    kind: str = ""  #: volume, series or subject
    n_slices: int = 0
    members: tuple = field(default=(), compare=False, repr=False)

    @property
    def key(self) -> str:
        return self.sha256


def _shared(values, mixed: str = MIXED):
    first = values[0]
    return first if all(v == first for v in values) else mixed


def in_slice_order(recs: list) -> list:
    """A unit's slices in acquisition order when each is a DICOM slice with its own ``instance_number`` (files
    named by UID come in no useful order); else as scanned (NIfTI slices already are)."""
    nums = [(r.meta or {}).get("instance_number") for r in recs]
    if len(recs) > 1 and all(isinstance(n, int) for n in nums) and len(set(nums)) == len(nums):
        return [r for _, r in sorted(zip(nums, recs), key=lambda t: t[0])]
    return recs


def unit_records(records: Sequence, ids: Sequence[str], unit: str) -> list[UnitRecord]:
    """One :class:`UnitRecord` per unit of ``ids`` (one id per record), in order of first appearance."""
    idx = group([str(u) for u in ids])
    meta = unit_columns(record_columns(records), idx)
    meta.pop("n_slices", None)
    members: list[list[int]] = [[] for _ in idx.ids]
    for i, u in enumerate(idx.index):
        members[u].append(i)
    out = []
    for u, (uid, rows) in enumerate(zip(idx.ids, members)):
        recs = in_slice_order([records[i] for i in rows])
        sizes = {r.abspath: r.size for r in recs}
        digest = hashlib.sha256("\n".join(r.key for r in recs).encode()).hexdigest()
        m = {k: v[u] for k, v in meta.items() if v[u] is not None}
        out.append(UnitRecord(path=uid, abspath=recs[0].abspath, name=uid.rstrip("/").rsplit("/", 1)[-1],
                              type=_shared([r.type for r in recs]), size=int(sum(sizes.values())),
                              width=recs[0].width, height=recs[0].height, sha256=digest,
                              label=_shared([r.label or "" for r in recs]), meta=m, unit=uid, kind=unit,
                              n_slices=len(recs), members=tuple(recs)))
    _warn_mixed_planes(out, unit)
    return out


def _warn_mixed_planes(units: Sequence[UnitRecord], unit: str) -> None:
    """One warning when DICOM series units hold slices of several planes (a localizer: axial, coronal and
    sagittal under one SeriesInstanceUID): such a unit's features average its planes."""
    if unit not in ("volume", "series"):
        return
    mixed = [u.path for u in units if u.type == "dicom" and u.meta.get("plane") == MIXED]
    if mixed:
        log.warning("--unit %s: %d DICOM series hold slices of more than one plane (a localizer?), e.g. '%s'; "
                    "each is one unit whose features average its planes (its plane column: %s)", unit, len(mixed),
                    shown_name(escape_name(mixed[0])), MIXED)


def slice_rows(units: Sequence[UnitRecord]) -> list[dict]:
    """The rows of ``slices.csv``: every slice of every unit (:data:`brainclust.io.slicefile.SLICE_COLUMNS`)."""
    return [{"unit": escape_name(u.path), "path": escape_name(r.path), "name": escape_name(r.name), "type": r.type,
             "width": r.width, "height": r.height, "sha256": r.sha256} for u in units for r in u.members]


class UnitPool(Step):
    """Pool slice features into unit features (``--unit volume|series|subject``); see the module docstring.

    Parameters
    ----------
    unit : {"volume", "series", "subject", "slice"}, default "volume"
        ``slice`` keeps one row per image (the step changes nothing).

    Attributes
    ----------
    n_features_in_ : int
        Width of the slice features (the unit features have the same width).
    n_units_, n_slices_ : int
        Units and slices of the fit.
    """

    _parameter_constraints = {"unit": param(OneOf(UNITS), option="--unit")}
    _fitted_attribute = "n_features_in_"

    def __init__(self, unit: str = "volume"):
        self.unit = unit

    def _pool(self, batch):
        X = batch.X
        if X.ndim != 2 or X.shape[0] != len(batch.records):
            raise ParameterError(f"--unit {self.unit}: expected one feature row per record, got {X.shape} for "
                                 f"{len(batch.records)} records")
        ids = unit_ids(batch.records, self.unit)
        idx = group(ids)
        return replace(batch, records=unit_records(batch.records, ids, self.unit),
                       X=aggregate(X, idx.index, len(idx.ids)))

    def fit_batch(self, batch):
        """Group the batch's slices into units; the batch of units (records and pooled features)."""
        self.check_params()
        out = self._pool(batch)
        self.n_features_in_, self.n_units_, self.n_slices_ = int(batch.X.shape[1]), len(out.records), len(batch.records)
        return out

    def transform_batch(self, batch):
        """The same pooling for new slices (``predict``)."""
        self.check_is_fitted()
        if batch.X.shape[1] != self.n_features_in_:
            raise ParameterError(f"--unit {self.unit}: {batch.X.shape[1]} features per slice, the model was fitted "
                                 f"on {self.n_features_in_}")
        return self._pool(batch)

    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        return {**self.entry(), "n_features_in": self.n_features_in_, "files": []}

    @classmethod
    def load_step(cls, folder, entry) -> "UnitPool":
        step = cls(**(entry.get("params") or {}))
        n = entry.get("n_features_in")
        try:
            step.check_params()
        except ParameterError as exc:
            raise ModelFileError(f"model config in '{folder}': step 'units': {exc}") from None
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ModelFileError(f"model config in '{folder}': step 'units': field 'n_features_in' must be a "
                                 f"positive integer, got {n!r:.40}")
        step.n_features_in_, step.n_units_, step.n_slices_ = n, 0, 0
        return step

