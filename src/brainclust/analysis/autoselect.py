"""A label-free ``--auto`` (issue 24): choose the representation, report the dominant factor, choose k.

What the measurements behind it say (``docs/results.md``, "Steering, TURTLE, k, and
``--auto``"): **no label-free criterion can tell which question a user asks.** The same
1,440 slices are a plane task (``plane``) and a sequence task (``mixed_sequence``); a rule
that factors out the plane wins the second and loses the first, whatever evidence it reads.
So this ``--auto`` keeps the steering (``--within`` / ``--remove``) a user's decision: it
**detects** the factor that dominates the clustering, **records** how strongly it does and
**suggests** the option, but changes the clusters only by choosing among representations,
and only when the evidence is clear on every criterion (the margin rule of the first
``--auto``).

Decision, in order (:func:`decide`):

1. **k** (``k="auto"``): the four-index vote of :class:`~brainclust.cluster.kselect.KSelector`
   on the default representation (it found the true k 20 times in 40 on the local sets,
   prediction strength 12), with :class:`~brainclust.cluster.kchoice.StableK`'s strength
   curve recorded beside it as evidence (``passed: false`` = no level finer than the
   coarsest reproduces).
2. **Representation.** Candidates: the backbones of :data:`PORTFOLIO` (features given by
   the caller), each reduced by PCA (the UMAP candidates of the first ``--auto`` are left
   out: subsampling a fixed UMAP embedding is stable by construction, and on ``yes_no``
   that made the first rule switch on a stability of 1.0 and lose). Each is clustered by
   the reference cell (average-cosine hierarchical into k) and scored without labels:

   * ``stability``: mean ARI between the full clustering and 5 seeded 80 % subsamples;
   * ``xsil``: the cosine silhouette of its labels averaged over the PCA spaces of *all*
     candidates;
   * ``agreement``: mean ARI with the other candidates' partitions;
   * ``strength``: prediction strength at k (disjoint halves clustered separately and
     compared; unlike ``stability`` a fixed embedding cannot fake it).

   **Rule** (fixed before the five-seed table was run): keep the default
   (``efficientnet_lite0``) unless a candidate beats it by ``xsil >= +0.02``,
   ``agreement >= 0``, ``stability >= 0`` **and** ``strength >= 0``; among those, the
   largest sum of the four gains.
3. **Dominant factor** (never applied, always recorded): for each candidate factor
   (the estimated or header plane, and any metadata column given), the adjusted mutual
   information between it and the chosen partition, ranked. When the first ranks at
   ``AMI >= 0.5`` (it explains more than half of the clusters), the record suggests
   ``--remove COLUMN`` and ``--within COLUMN`` in words, with the numbers.

Measured on eight local sets over 5 seeds: mean NMI 0.208 against the default's 0.209 and
the first ``--auto``'s 0.227; it loses 0.44 on ``ce_subject``, where every criterion prefers
the plane partition that pixels and HOG share. It is a proposal with its numbers, not a
replacement for the first rule; the factor record (step 3) is the part worth wiring in.

:class:`AutoDecision.as_dict` is what goes to ``manifest.json`` (``auto``) and the
report; :data:`COLUMNS` are the columns of ``auto.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (adjusted_rand_score, normalized_mutual_info_score,
                             silhouette_score)

from brainclust.cluster.kchoice import StableK, mean_distance_assign, pair_share
from brainclust.cluster.kselect import KSelector
from brainclust.cluster.methods import cut_levels, hierarchical_tree
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.steer import DOMINANT_AMI, rank_factors, suggestion_for  # noqa: F401 (re-exported)
from brainclust.cluster.twostage import unit_rows
from brainclust.errors import ParameterError
from brainclust.selfsup.gate import reference_labels, stability, subsample_clusterings

PORTFOLIO = ("efficientnet_lite0", "efficientnet_lite0_multi", "pixels", "hog", "efficientnet_lite0+pixels")
DEFAULT = "efficientnet_lite0"
MARGINS = {"xsil": 0.02, "agreement": 0.0, "stability": 0.0, "strength": 0.0}
CRITERIA = tuple(MARGINS)
COLUMNS = ["backbone", "reduce", "stability", "xsil", "agreement", "strength", "chosen", "nmi", "wall_s"]
RULE = ("keep the default (efficientnet_lite0, pca) unless a candidate beats it by xsil >= +0.02, agreement >= 0, "
        "stability >= 0 and prediction strength at k >= 0; then the largest sum of gains; labels never used")
SIL_SAMPLE = 3000
STRENGTH_SPLITS = 5


@dataclass
class AutoDecision:
    """What :func:`decide` chose and why."""

    k: int
    chosen: str
    labels: np.ndarray
    rows: list[dict]
    factors: list[dict] = field(default_factory=list)
    suggestion: str | None = None
    k_selection: dict | None = None

    def as_dict(self) -> dict:
        return {"chosen": {"backbone": self.chosen, "reduce": "pca"}, "k": int(self.k), "rule": RULE,
                "margins": MARGINS, "candidates": self.rows, "factors": self.factors,
                "suggestion": self.suggestion, "k_selection": self.k_selection,
                "dominant_ami": DOMINANT_AMI}


def strength_at(X: np.ndarray, k: int, seed: int | None, n_splits: int = STRENGTH_SPLITS) -> float:
    """Prediction strength of average-cosine hierarchical clustering at ``k``
    (see :mod:`brainclust.cluster.kchoice`)."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_splits):
        perm = rng.permutation(len(X))
        a, b = np.sort(perm[: len(X) // 2]), np.sort(perm[len(X) // 2:])
        kk = int(min(k, len(a), len(b)))
        la = cut_levels(hierarchical_tree(X[a]), [kk])[kk]
        lb = cut_levels(hierarchical_tree(X[b]), [kk])[kk]
        vals.append(pair_share(lb, mean_distance_assign(unit_rows(X[b]), unit_rows(X[a]), la)))
    return float(np.mean(vals))


def labelled_nmi(labels_true, labels) -> float:
    """NMI over the labelled images ("" = unlabelled); only for the report's ``nmi`` column."""
    y = np.asarray(labels_true, dtype=str)
    ok = y != ""
    return float(normalized_mutual_info_score(y[ok], np.asarray(labels)[ok])) if ok.any() else float("nan")


def _silhouette(space: np.ndarray, labels: np.ndarray, seed) -> float:
    m = len(set(labels.tolist()))
    if m < 2 or m >= len(labels):
        return -1.0
    return float(silhouette_score(space, labels, metric="cosine",
                                  sample_size=SIL_SAMPLE if len(labels) > SIL_SAMPLE else None, random_state=seed))


def evaluate(spaces: Mapping[str, np.ndarray], k: int, seed: int | None = 0, labels_true=None,
             n_sub: int = 5) -> tuple[list[dict], dict]:
    """The criteria of every candidate (``spaces``: backbone -> its PCA space); rows and partitions."""
    rows, parts = [], {}
    for name, S in spaces.items():
        t0 = time.perf_counter()
        lab = reference_labels(S, k, seed)
        parts[name] = lab
        rows.append({"backbone": name, "reduce": "pca",
                     "stability": stability(lab, subsample_clusterings(S, k, seed, n_sub)),
                     "strength": strength_at(S, k, seed), "_t": time.perf_counter() - t0})
    for r in rows:
        t0 = time.perf_counter()
        lab = parts[r["backbone"]]
        r["xsil"] = float(np.mean([_silhouette(S, lab, seed) for S in spaces.values()]))
        others = [adjusted_rand_score(lab, o) for b, o in parts.items() if b != r["backbone"]]
        r["agreement"] = float(np.mean(others)) if others else 0.0
        if labels_true is not None:
            r["nmi"] = labelled_nmi(labels_true, lab)
        r["wall_s"] = r.pop("_t") + time.perf_counter() - t0
    return rows, parts


def choose(rows: list[dict], default: str = DEFAULT) -> str:
    """The margin rule of the module docstring; marks ``chosen`` and returns the backbone."""
    by = {r["backbone"]: r for r in rows}
    base = by.get(default)
    pick, best = (default if base is not None else rows[0]["backbone"]), 0.0
    for r in rows if base is not None else ():
        gains = {c: r[c] - base[c] for c in CRITERIA}
        if r is not base and all(gains[c] >= MARGINS[c] for c in CRITERIA) and sum(gains.values()) > best:
            best, pick = sum(gains.values()), r["backbone"]
    for r in rows:
        r["chosen"] = r["backbone"] == pick
    return pick


def decide(features: Mapping[str, np.ndarray], k, seed: int | None = 0, *, pca=50,
           factors: Mapping[str, object] | None = None, labels_true=None) -> AutoDecision:
    """:func:`evaluate` then :func:`choose`, the k choice and the factor record (see the module docstring).

    ``features``: backbone -> ``(n, d)`` features of the same images (:data:`DEFAULT` among them);
    ``factors``: column -> one value per image (an estimated plane, metadata); ``labels_true`` only
    fills the ``nmi`` column.
    """
    if DEFAULT not in features:
        raise ParameterError(f"--auto: the portfolio needs the default backbone '{DEFAULT}'")
    n = len(features[DEFAULT])
    spaces = {b: PCAReducer(pca, random_state=seed).fit_transform(X) for b, X in features.items()}
    k_rec = None
    if k == "auto":
        vote = KSelector(random_state=seed).fit(spaces[DEFAULT])
        strength = StableK(random_state=seed).fit(spaces[DEFAULT])
        k, k_rec = vote.k_, {"chosen_k": int(vote.k_), "vote": vote.as_dict(),
                             "prediction_strength": strength.as_dict()}
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k < n:
        raise ParameterError(f"--k: must be 'auto' or an integer from 2 to {n - 1}, got {k!r}")
    rows, parts = evaluate(spaces, int(k), seed, labels_true)
    chosen = choose(rows)
    ranked = rank_factors(parts[chosen], factors or {})
    return AutoDecision(int(k), chosen, parts[chosen], rows, ranked, suggestion_for(ranked), k_rec)
