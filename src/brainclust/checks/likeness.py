"""``not_mri`` by likeness: CNN features decide the grey pictures the pixel rules cannot.

The pixel rules (:mod:`brainclust.checks.rules`) err towards never flagging an MRI, so a grey
photograph of one object (a portrait, coins, a product shot on a white ground) passes them; and
their ``no_air`` and ``scene`` reasons also catch a slice cropped tight to the head. The features
of a CNN trained on ImageNet tell such pictures from slices. The rule is label-free and relative
to the folder being checked:

1. *references*: the images no pixel rule flags whose frame is mostly border-connected dark air
   (``air_border >= Thresholds.likeness_air_border``) around one main object (the largest non-air
   object holds ``main_object >= Thresholds.likeness_main_object`` of them all: not a star field, not
   the letters of a logo), the slices that look like MRI on pixels alone; a seeded sample of at most
   :data:`REFERENCE_MAX` of them;
2. *candidates*, in 2-D image files only (slices of NIfTI volumes and DICOM series never are): the
   images no rule flags that are not references, and the *suspected* ones, flagged ``not_mri``
   by the pixel rules only for ``no_air``, ``scene`` or ``strokes`` (not for colour, nor as a two-level graphic);
3. every reference and candidate is scored by the mean cosine similarity of its features to its
   :data:`TOP` most similar references (a reference not counting itself), as a robust z-score over
   the references' own scores (median and 1.4826 x MAD, at least :data:`MAD_FLOOR`);
4. a candidate whose z-score is below ``Thresholds.likeness_unlike_below`` (-7) is ``not_mri``; a
   suspected one whose z-score is above ``Thresholds.likeness_alike_above`` (-4) is not (it is about
   as close to the folder's slices as they are to each other);
5. when step 4 would flag a candidate or keep a suspected image flagged, the candidates are scored
   again against the references joined by the *tight crops* of the typical ones, those whose own
   z-score is above ``likeness_alike_above`` (the ``tight_crop`` view of
   :mod:`brainclust.features.augment`: cut to the head and up to 10 % further in; at most
   :data:`CROP_MAX`, a seeded sample), on the same scale (the references' own scores): a slice
   cropped tight to the head is then compared with slices cropped alike, a photograph still with
   slices. The crops can only raise a score: they clear, they never flag. An atypical reference (a
   photograph on a dark ground that the pixel rules let through) lends no crop.

Nothing is computed when there is no candidate or fewer than :data:`REFERENCE_MIN` references (the
pixel verdicts then stand). The features are EfficientNet-Lite0's whatever the run's backbone
(:data:`BACKBONE`: its weights ship with the package, so the rule works offline, and its
thresholds were measured on them), read through the feature store, so a run with that backbone
already has them. They are fp32 unless the run asks for bf16 on the CPU (:data:`PRECISIONS`): a bf16
run then shares them instead of extracting most of its images a second time in fp32 (bf16 moved the
z-scores by at most 0.65 and no planted verdict; int8 moved them by up to 1.8, more than the
margins, so they are never int8: an int8 run's are bf16 where the CPU runs it natively,
see :func:`brainclust.checks.step.likeness_extraction`). ``docs/checks.md`` gives the measurements.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from brainclust.checks.descriptors import slot
from brainclust.checks.flags import Thresholds
from brainclust.checks.neighbors import exact_knn
from brainclust.errors import ParameterError, WeightsUnavailableError
from brainclust.io.scan import ImageRecord

log = logging.getLogger(__name__)

#: The backbone whose features the rule compares, and the precisions they may have.
BACKBONE = "efficientnet_lite0"
PRECISIONS = ("fp32", "bf16")
#: At most this many references (a seeded sample) and no rule below this many.
REFERENCE_MAX = 1000
REFERENCE_MIN = 20
#: Each image is scored against this many of its most similar references.
TOP = 5
#: The spread of the references' scores is taken as at least this (cosine similarity): a folder of
#: near-identical slices must not make every other slice unlike them. Real sets: 0.032-0.048.
MAD_FLOOR = 0.03
#: At most this many references (a seeded sample) are cropped for step 5, and the view that crops them.
CROP_MAX = 500
CROP_VIEW = "tight_crop"


def _features(records: Sequence[ImageRecord], extraction: dict, view: str | None = None) -> np.ndarray:
    """Unit rows of :data:`BACKBONE` features (NaN rows for zero vectors); ``extraction``: the extractor's
    ``cache_dir``, ``progress``, ``precision`` and ``runtime``."""
    from brainclust.features.extractor import FeatureExtractor

    ex = FeatureExtractor(backbone=BACKBONE, view=view, **extraction).fit()
    x = np.asarray(ex.transform(list(records)), np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.full_like(x, np.nan), where=norm > 0)


def _reference_scale(base: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Median and robust SD (at least :data:`MAD_FLOOR`) of the references' own scores, and their z-scores."""
    sims, _ = exact_knn(base, base, min(TOP, len(base) - 1) + 1)
    own = sims[:, 1:].mean(axis=1)  # column 0: the reference itself (or an identical copy)
    med = float(np.median(own))
    mad = max(1.4826 * float(np.median(np.abs(own - med))), MAD_FLOOR)
    return med, mad, (own - med) / mad


def _similarity(base: np.ndarray, queries: np.ndarray, top: int) -> np.ndarray:
    """Mean cosine similarity of each query to its ``top`` most similar rows of ``base``."""
    return exact_knn(base, queries, top)[0].mean(axis=1)


def likeness_scores(records: Sequence[ImageRecord], vectors: np.ndarray, unflagged: np.ndarray,
                    suspected: np.ndarray, sliced: np.ndarray, thresholds: Thresholds, random_state: int = 0,
                    cache_dir=False, progress: bool | None = None, precision: str = "fp32",
                    runtime: str = "auto") -> np.ndarray:
    """The robust z-score of every candidate row (see the module docstring); NaN for the other rows.

    ``vectors``: the descriptor rows; ``unflagged``: rows that decoded and no pixel rule flags;
    ``suspected``: rows flagged ``not_mri`` by the pixel rules only for ``no_air``, ``scene`` or ``strokes``;
    ``sliced``: rows that are slices of a volume or series (never candidates). ``precision`` and
    ``runtime``: of the features (see :data:`PRECISIONS`).
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"likeness features: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    extraction = dict(cache_dir=cache_dir, progress=progress, precision=precision, runtime=runtime)
    n = len(records)
    z = np.full(n, np.nan, np.float32)
    v = np.asarray(vectors)
    typical = (v[:, slot("air_border")] >= thresholds.likeness_air_border) & \
        (v[:, slot("main_object")] >= thresholds.likeness_main_object)
    refs = np.flatnonzero(unflagged & typical)
    cands = np.flatnonzero(((unflagged & ~typical) | suspected) & ~sliced)
    if len(cands) == 0 or len(refs) < REFERENCE_MIN:
        return z
    rng = np.random.default_rng(random_state)
    if len(refs) > REFERENCE_MAX:
        refs = np.sort(rng.choice(refs, REFERENCE_MAX, replace=False))
    rows = np.concatenate([refs, cands])
    try:
        x = _features([records[i] for i in rows], extraction)
    except WeightsUnavailableError as exc:
        log.warning("checks: not_mri by likeness skipped (%s)", exc)
        return z
    ok = np.isfinite(x).all(axis=1)
    ref_ok, scored = ok[:len(refs)], ok[len(refs):]
    base = x[:len(refs)][ref_ok]
    if len(base) < REFERENCE_MIN:
        return z
    queries = x[len(refs):][scored]
    med, mad, ref_z = _reference_scale(base)
    top = min(TOP, len(base) - 1)
    cz = (_similarity(base, queries, top) - med) / mad
    at_stake = np.where(suspected[cands[scored]], cz <= thresholds.likeness_alike_above,
                        cz < thresholds.likeness_unlike_below)
    if at_stake.any():
        crops = _crops(records, refs[ref_ok][ref_z > thresholds.likeness_alike_above], rng, extraction)
        if len(crops):
            cz = (_similarity(np.vstack([base, crops]), queries, top) - med) / mad
    z[cands[scored]] = cz
    return z


def _crops(records, typical: np.ndarray, rng, extraction: dict) -> np.ndarray:
    """Step 5: features of the tight crops of (a sample of) the ``typical`` references (none without weights)."""
    if len(typical) > CROP_MAX:
        typical = np.sort(rng.choice(typical, CROP_MAX, replace=False))
    if len(typical) == 0:
        return np.zeros((0, 0), np.float32)
    try:
        x = _features([records[i] for i in typical], extraction, view=CROP_VIEW)
    except WeightsUnavailableError:
        return np.zeros((0, 0), np.float32)
    return x[np.isfinite(x).all(axis=1)]


def unlike(z: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Rows whose likeness z-score is below ``thresholds.likeness_unlike_below`` (NaN: never)."""
    return np.nan_to_num(np.asarray(z, np.float32), nan=np.inf) < thresholds.likeness_unlike_below


def revise_not_mri(not_mri: np.ndarray, z: np.ndarray, suspected: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """The pixel rules' ``not_mri`` after the likeness verdicts (step 4 of the module docstring)."""
    cleared = suspected & (np.nan_to_num(np.asarray(z, np.float32), nan=-np.inf) > thresholds.likeness_alike_above)
    return (not_mri | unlike(z, thresholds)) & ~cleared
