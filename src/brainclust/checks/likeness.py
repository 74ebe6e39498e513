"""``not_mri`` by likeness: CNN features decide the grey pictures the pixel rules cannot.

The pixel rules (:mod:`brainclust.checks.rules`) err towards never flagging an MRI, so a grey
photograph of one object (a portrait, coins, a product shot on a white ground) passes them; and
their ``no_air`` and ``scene`` reasons also catch a slice cropped tight to the head. The features
of a CNN trained on ImageNet tell such pictures from slices. The rule is label-free and relative
to the folder being checked:

1. *references*: the images no pixel rule flags whose frame is mostly border-connected dark air
   (``air_border >= Thresholds.likeness_air_border``) around one main object (the largest non-air
   object holds ``main_object >= Thresholds.likeness_main_object`` of them all: not a star field, not
   the letters of a logo; and it is no rectangle, ``box_edge <= Thresholds.likeness_box_edge``: not a
   photograph pasted on a dark ground), the slices that look like MRI on pixels alone; a seeded sample of at most
   :data:`REFERENCE_MAX` of them;
2. *candidates*, in 2-D image files only (slices of NIfTI volumes and DICOM series never are): the
   images no rule flags that are not references, and the *suspected* ones, flagged ``not_mri``
   by the pixel rules only for ``no_air``, ``scene`` or ``strokes`` (not for colour, nor as a two-level graphic);
3. every candidate is scored by the mean cosine similarity of its features to its :data:`TOP` most
   similar references of the sample, as a robust z-score over the sample's own scores (each against the
   others: median and 1.4826 x MAD, at least :data:`MAD_FLOOR`); every reference in a 2-D image file is
   scored alike on the same scale, its own duplicate group left out (itself, its copies and near copies:
   a copy is not a second opinion); references outside the sample are scored against it, in chunks of
   :data:`JUDGE_CHUNK` (slices of volumes and series are compared against, never scored);
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
   photograph on a dark ground that the pixel rules let through) lends no crop;
6. a reference in a 2-D image file whose z-score is below ``Thresholds.likeness_reference_below`` (-9.5)
   is ``not_mri``: a grey picture on a dark ground around one object (a portrait, a slide, a colour wheel)
   passes the pixel rules as a slice, but its features are far from every slice's (real references: -7.5
   and above in every local set and planting, ``docs/checks.md``);
7. *picture*: an image whose z-score is below ``Thresholds.likeness_picture_z`` (-4: less like the folder's
   slices than they are to each other) and with more than ``Thresholds.label_levels`` grey levels (a
   posterised slice or a mask, as the yes/no set holds, is far from both sides and was once called a
   picture; a graphic of so few levels is the pixel rules' business) gets a *picture score*: the decision
   value of a linear classifier (logistic regression on standardised features) fitted to tell the reference
   sample (the folder's own slices) from a fixed
   :func:`picture_bank` of non-MRI pictures that ship with the package (features of scikit-image's,
   scikit-learn's and matplotlib's sample pictures and of rendered charts, text and diagrams, each grey,
   on a dark canvas, in an oval crop and faded to a dark edge: ``benchmarks/picture_bank.py``; no MRI).
   A reference of the sample is scored by classifiers fitted without its duplicate group's fold
   (:data:`FOLDS`: a picture among the references does not vouch for itself). Below
   ``Thresholds.likeness_picture_below`` (-3.5) it is ``not_mri``: well on the pictures' side, where the
   folder-relative z-score alone (steps 4 and 6) cannot tell a picture on a dark ground from a rare kind of
   slice. The classifier is fitted per folder because a fixed one does not carry to a
   new source of MRI (fitted on two of our three real sources it called 4-70 % of the third's slices
   pictures, ``docs/checks.md``).

Nothing is computed when there is neither a candidate nor a reference in a 2-D image file, or fewer than
:data:`REFERENCE_MIN` references (the pixel verdicts then stand). The features are EfficientNet-Lite0's
whatever the run's backbone (:data:`BACKBONE`: its weights ship with the package, so the rule works offline, and its
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
from pathlib import Path
from typing import NamedTuple

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
#: References outside the sample are judged in chunks of this many (bounded memory: a chunk's similarities to
#: the sample are one JUDGE_CHUNK x REFERENCE_MAX matrix).
JUDGE_CHUNK = 20000
#: Step 7's picture bank, and the names of pictures left out of it (for measurements only: a planting of
#: the bank's own pictures leaves them out, so that its recall is measured on pictures the bank never held).
BANK_FILE = Path(__file__).with_name("pictures.npz")
BANK_LEAVE_OUT: frozenset[str] = frozenset()
#: The sample's references are scored in this many folds (by duplicate group), each by a classifier fitted
#: without it; the regularisation of that logistic regression.
FOLDS = 5
PICTURE_C = 0.1


class Likeness(NamedTuple):
    """Per row: ``z`` the likeness z-score, ``picture`` the picture score (step 7), NaN where not scored;
    ``reference`` whether it is a reference (step 1)."""

    z: np.ndarray
    picture: np.ndarray
    reference: np.ndarray


def _features(records: Sequence[ImageRecord], extraction: dict, view: str | None = None) -> np.ndarray:
    """Unit rows of :data:`BACKBONE` features (NaN rows for zero vectors); ``extraction``: the extractor's
    ``cache_dir``, ``progress``, ``precision`` and ``runtime``."""
    from brainclust.features.extractor import FeatureExtractor

    ex = FeatureExtractor(backbone=BACKBONE, view=view, **extraction).fit()
    x = np.asarray(ex.transform(list(records)), np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.full_like(x, np.nan), where=norm > 0)


def reference_rows(vectors: np.ndarray, unflagged: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Step 1's references (a boolean mask): unflagged rows whose frame is mostly border-connected dark air
    around one main object that is no rectangle."""
    v = np.asarray(vectors)
    return unflagged & (v[:, slot("air_border")] >= thresholds.likeness_air_border) & \
        (v[:, slot("main_object")] >= thresholds.likeness_main_object) & \
        (v[:, slot("box_edge")] <= thresholds.likeness_box_edge)


def _similarity(base: np.ndarray, queries: np.ndarray, top: int, base_group: np.ndarray | None = None,
                query_group: np.ndarray | None = None) -> np.ndarray:
    """Mean cosine similarity of each query to its ``top`` most similar rows of ``base``, those in its own group
    left out when groups are given (itself; for a judged reference also its copies and near copies: a copy
    is not a second opinion); NaN where none is left."""
    if base_group is None:
        return exact_knn(base, queries, top)[0].mean(axis=1)
    sims = np.asarray(queries, np.float32) @ np.asarray(base, np.float32).T  # every pair: a group can be large
    sims[np.asarray(query_group)[:, None] == np.asarray(base_group)[None, :]] = -np.inf
    top = min(top, sims.shape[1])
    best = -np.partition(-sims, top - 1, axis=1)[:, :top]
    counted = np.isfinite(best)
    out = np.full(len(queries), np.nan, np.float32)
    some = counted.any(axis=1)
    out[some] = np.where(counted, best, 0.0)[some].sum(axis=1) / counted[some].sum(axis=1)
    return out


def likeness_scores(records: Sequence[ImageRecord], vectors: np.ndarray, unflagged: np.ndarray,
                    suspected: np.ndarray, sliced: np.ndarray, thresholds: Thresholds, random_state: int = 0,
                    cache_dir=False, progress: bool | None = None, precision: str = "fp32",
                    runtime: str = "auto", group: np.ndarray | None = None) -> Likeness:
    """The robust z-score of every candidate row and of every reference in a 2-D image file, and the picture
    score of those whose z-score is below ``thresholds.likeness_picture_z`` and that hold more than
    ``thresholds.label_levels`` grey levels (see the module docstring); NaN for the other rows.

    ``vectors``: the descriptor rows; ``unflagged``: rows that decoded and no pixel rule flags;
    ``suspected``: rows flagged ``not_mri`` by the pixel rules only for ``no_air``, ``scene`` or ``strokes``;
    ``sliced``: rows that are slices of a volume or series (never scored); ``group``: each row's duplicate
    group (its representative's row; ``None``: every row alone), whose other members a row is not compared
    with. ``precision`` and ``runtime``: of the features (see :data:`PRECISIONS`).
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"likeness features: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    extraction = dict(cache_dir=cache_dir, progress=progress, precision=precision, runtime=runtime)
    n = len(records)
    reference = reference_rows(vectors, unflagged, thresholds)
    out = Likeness(np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32), reference)
    z = out.z
    group = np.arange(n) if group is None else np.asarray(group)
    refs = np.flatnonzero(reference)
    cands = np.flatnonzero(((unflagged & ~reference) | suspected) & ~sliced)
    judged = reference & ~sliced  # slices of a volume or series are compared against, never judged
    if len(refs) < REFERENCE_MIN or not (len(cands) or judged.any()):
        return out
    rng = np.random.default_rng(random_state)
    if len(refs) > REFERENCE_MAX:
        refs = np.sort(rng.choice(refs, REFERENCE_MAX, replace=False))
    rows = np.concatenate([refs, cands])
    try:
        x = _features([records[i] for i in rows], extraction)
    except WeightsUnavailableError as exc:
        log.warning("checks: not_mri by likeness skipped (%s)", exc)
        return out
    ok, nb, sample = np.isfinite(x).all(axis=1), len(refs), refs
    refs, base, queries = refs[ok[:nb]], x[:nb][ok[:nb]], x[nb:][ok[nb:]]
    if len(base) < REFERENCE_MIN:
        return out
    alone = np.arange(len(base))
    own = _similarity(base, base, TOP, alone, alone)  # the scale: each reference against the others
    med = float(np.median(own))
    mad = max(1.4826 * float(np.median(np.abs(own - med))), MAD_FLOOR)
    ref_z = (own - med) / mad
    mine = judged[refs]  # the sample's own judged references, against the others outside their groups
    z[refs[mine]] = (_similarity(base, base[mine], TOP, group[refs], group[refs][mine]) - med) / mad
    scored = cands[ok[nb:]]
    z[scored] = _candidates(records, base, refs, ref_z, queries, scored, suspected, thresholds, rng, extraction,
                            med, mad)
    graded = np.asarray(vectors)[:, slot("grey_levels")] > thresholds.label_levels
    pictures = _PictureScorer(base, group[refs])

    def score_pictures(rows, x):  # step 7, as each batch of rows is scored (no batch's features are kept)
        keep = graded[rows] & (z[rows] < thresholds.likeness_picture_z)
        out.picture[rows[keep]] = pictures.score(x[keep], group[rows[keep]])

    score_pictures(refs, base)
    score_pictures(scored, queries)
    others = np.setdiff1d(np.flatnonzero(judged), sample)
    for start in range(0, len(others), JUDGE_CHUNK):  # references outside the sample, against it
        chunk = others[start:start + JUDGE_CHUNK]
        xc = _features([records[i] for i in chunk], extraction)
        good = np.isfinite(xc).all(axis=1)
        z[chunk[good]] = (_similarity(base, xc[good], TOP, group[refs], group[chunk[good]]) - med) / mad
        score_pictures(chunk[good], xc[good])
    return out


def picture_bank() -> np.ndarray:
    """Step 7's bank: unit rows of :data:`BACKBONE` features of non-MRI pictures (less those named in
    :data:`BANK_LEAVE_OUT`)."""
    with np.load(BANK_FILE) as bank:
        if str(bank["backbone"]) != BACKBONE:
            raise ParameterError(f"{BANK_FILE}: a picture bank of {bank['backbone']} features, not {BACKBONE}'s")
        return np.asarray(bank["features"][~np.isin(bank["name"], sorted(BANK_LEAVE_OUT))], np.float32)


def _picture_model(slices: np.ndarray, bank: np.ndarray):
    """A logistic regression on standardised features telling ``slices`` (class 1) from the ``bank`` (class 0),
    the classes weighed alike."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([slices, bank])
    y = np.r_[np.ones(len(slices)), np.zeros(len(bank))]
    model = LogisticRegression(C=PICTURE_C, class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), model).fit(x, y)


class _PictureScorer:
    """Step 7's classifiers, each fitted when first needed: per fold of the sample's duplicate groups (rows of a
    group with a member in the sample, wherever they are: a picture or its copy among the references does not
    vouch for itself) and on the whole sample (rows of the other groups)."""

    def __init__(self, base: np.ndarray, ref_group: np.ndarray):
        self.base = base
        groups, index = np.unique(ref_group, return_inverse=True)
        self.fold = index % FOLDS  # of each sample row
        self.fold_of_group = dict(zip(groups.tolist(), (np.arange(len(groups)) % FOLDS).tolist()))
        self.models: dict[int, object] = {}
        self.bank: np.ndarray | None = None

    def score(self, x: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Picture scores of the rows ``x`` of duplicate groups ``group`` (NaN when the bank is empty)."""
        out = np.full(len(x), np.nan, np.float32)
        if not len(x):
            return out
        if self.bank is None:
            try:
                self.bank = picture_bank()
                if self.bank.shape[1] != self.base.shape[1]:
                    raise ValueError(f"{self.bank.shape[1]}-d pictures, {self.base.shape[1]}-d features")
            except (OSError, KeyError, ValueError, ParameterError) as exc:
                log.warning("checks: not_mri by picture skipped (picture bank: %s)", exc)
                self.bank = np.zeros((0, self.base.shape[1]), np.float32)
        if not len(self.bank):  # every picture left out, or no bank
            return out
        key = np.array([self.fold_of_group.get(g, FOLDS) for g in np.asarray(group).tolist()])
        for k in np.unique(key):
            if k not in self.models:
                self.models[k] = _picture_model(self.base[self.fold != k], self.bank)  # FOLDS: the whole sample
            out[key == k] = self.models[k].decision_function(x[key == k])
        return out


def _candidates(records, base, refs, ref_z, queries, rows, suspected, thresholds: Thresholds, rng, extraction: dict,
                med: float, mad: float) -> np.ndarray:
    """Steps 4 and 5: the candidates' z-scores, against the references joined by their typical ones' crops when
    a verdict is at stake."""
    if len(rows) == 0:
        return np.zeros(0, np.float32)
    cz = (_similarity(base, queries, TOP) - med) / mad
    at_stake = np.where(suspected[rows], cz <= thresholds.likeness_alike_above, cz < thresholds.likeness_unlike_below)
    if at_stake.any():
        crops = _crops(records, refs[ref_z > thresholds.likeness_alike_above], rng, extraction)
        if len(crops):
            cz = (_similarity(np.vstack([base, crops]), queries, TOP) - med) / mad
    return cz


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


def pictured(picture: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Rows that step 7 calls pictures: picture score below ``thresholds.likeness_picture_below`` (NaN, where
    nothing was scored: the z-score was not below ``likeness_picture_z``, never)."""
    return np.nan_to_num(np.asarray(picture, np.float32), nan=np.inf) < thresholds.likeness_picture_below


def unlike(z: np.ndarray, thresholds: Thresholds, reference: np.ndarray | None = None) -> np.ndarray:
    """Rows whose likeness z-score is below their threshold: ``thresholds.likeness_reference_below`` for the
    ``reference`` rows (None: none), ``thresholds.likeness_unlike_below`` for the others (NaN: never)."""
    z = np.nan_to_num(np.asarray(z, np.float32), nan=np.inf)
    ref = np.zeros(len(z), bool) if reference is None else np.asarray(reference, bool)
    return z < np.where(ref, thresholds.likeness_reference_below, thresholds.likeness_unlike_below)


def revise_not_mri(not_mri: np.ndarray, z: np.ndarray, suspected: np.ndarray, thresholds: Thresholds,
                   reference: np.ndarray | None = None, picture: np.ndarray | None = None) -> np.ndarray:
    """The pixel rules' ``not_mri`` after the likeness verdicts (steps 4, 6 and 7 of the module docstring;
    ``picture``: the picture scores, ``None``: none)."""
    cleared = suspected & (np.nan_to_num(np.asarray(z, np.float32), nan=-np.inf) > thresholds.likeness_alike_above)
    flagged = not_mri | unlike(z, thresholds, reference)
    if picture is not None:
        flagged |= pictured(picture, thresholds)
    return flagged & ~cleared
