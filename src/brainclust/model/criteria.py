"""The label-free criteria of ``--auto`` and ``--consensus`` (:mod:`brainclust.model.auto` fits them).

Measured on three unseen sets: no configuration wins everywhere (fusion
efficientnet_lite0+pixels: 0.34 vs 0.27 NMI on the largest, 0.41 vs 0.82 on
another), and label-free criteria picked the best configuration on one set but
not on the largest. So the rule is **conservative: keep the default unless the
evidence for another candidate is strong on every criterion.**

Portfolio (:data:`PORTFOLIO` x :data:`AUTO_REDUCTIONS`): the backbones
efficientnet_lite0 (the default), efficientnet_lite0_multi, pixels, hog and the
fusion efficientnet_lite0+pixels, each reduced by PCA (``--pca``) and by PCA+UMAP
(:mod:`brainclust.cluster.manifold`); each candidate is clustered by the reference
cell (average-cosine hierarchical with the run's k). Criteria (no labels):

* ``stability``: :func:`brainclust.selfsup.gate.subsample_stability` (mean ARI of the
  full clustering vs 5 seeded 80% subsamples, re-clustered in the candidate's space);
* ``xsil``: the cosine silhouette of the candidate's labels averaged over the PCA
  spaces of *all* backbones (one common set of spaces for every candidate, so a
  representation cannot win by scoring itself alone);
* ``agreement``: mean ARI of the candidate's labels with every other candidate's
  (a partition that many representations share).

Rule (:func:`choose`): the default (efficientnet_lite0, PCA) is kept unless a
challenger beats it by ``xsil >= +0.02`` **and** ``agreement >= +0.0`` **and** is
at least as stable as the default backbone *under the same reduction* (UMAP
makes every clustering more stable, so stability is not comparable across
reductions); among challengers that pass, the one with the largest sum of the
three gains. Labels, when given, are only reported (``nmi`` column),
never used to choose. Every candidate's criteria go to ``auto.csv`` in the run folder, with the margins
it passed or fell short of (``margins``); :func:`outcome` says the decision in one sentence.

``--consensus`` (:func:`consensus`, :func:`consensus_row`): instead of one winner,
the co-association consensus of the five PCA candidates (one partition per
backbone, UMAP not in its portfolio), with the same criteria in its own
``auto.csv`` row. On ten 2- and 3-class tasks made from the dev set
(``benchmarks/auto_subsets.py``) the single-winner rule lost up to 0.47 NMI to
the default (it chose the multi-layer backbone where the default was at 0.835);
the consensus lost at most 0.09 and gained on average. The run keeps the default's
features, PCA space (map, silhouette) and report; ``predict`` refuses it.

Above :data:`AUTO_MAX` images the criteria are computed on a seeded sample of that many images
(:class:`brainclust.model.auto.AutoSelect` then fits the chosen configuration on every image;
:class:`brainclust.model.auto.ConsensusModel` extends the consensus to every image).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from brainclust.cluster.manifold import build_reducer, check_reduce
from brainclust.cluster.methods import make_clusterer
from brainclust.cluster.reduce import EXACT_MAX_COST, check_not_constant
from brainclust.core.arrays import mean_silhouette
from brainclust.errors import ParameterError
from brainclust.selfsup.gate import reference_labels, stability, subsample_clusterings

log = logging.getLogger(__name__)

PORTFOLIO = ("efficientnet_lite0", "efficientnet_lite0_multi", "pixels", "hog", "efficientnet_lite0+pixels")
AUTO_REDUCTIONS = ("pca", "pca+umap")


def installed_reductions(reductions: Sequence[str] = AUTO_REDUCTIONS) -> tuple[str, ...]:
    """The ``reductions`` this installation can run: without the optional umap-learn the UMAP candidates are
    left out, with one warning (``--auto`` then chooses among the PCA candidates)."""
    out = []
    for r in reductions:
        try:
            out.append(check_reduce(r))
        except ParameterError:
            log.warning("--auto: umap-learn is not installed, so the %s candidates are left out "
                        "(pip install 'brainclust[umap]' to include them)", r)
    return tuple(out)
DEFAULT = ("efficientnet_lite0", "pca")
MARGINS = {"stability": 0.0, "xsil": 0.02, "agreement": 0.0}
COLUMNS = ["backbone", "reduce", "stability", "xsil", "agreement", "chosen", "nmi", "wall_s", "margins"]
RULE = ("keep the default (efficientnet_lite0, pca) unless a candidate beats it by xsil >= +0.02 and "
        "agreement >= +0.0 and is at least as stable as the default backbone under the same reduction; "
        "then the largest sum of gains; labels never used")
#: The criteria's silhouette budget (it is computed for every candidate in every backbone's space).
SIL_SAMPLE = 3000
#: Above this many images the portfolio is scored on a seeded sample of this many (its features are held
#: in memory together); the chosen configuration, or the consensus, then covers every image.
AUTO_MAX = 20000
#: The ``backbone`` of the consensus row of ``auto.csv`` (``--consensus``).
CONSENSUS = "consensus"
CONSENSUS_RULE = ("the consensus of the PCA candidates (one partition per backbone): average linkage on "
                  "1 - their co-association, cut into k; labels never used")


@dataclass
class AutoResult:
    rows: list[dict]
    chosen: tuple[str, str]
    labels: dict
    #: ``--consensus``: the fitted consensus clustering (its ``labels_`` are the partition of the rows scored).
    consensus: object | None = None
    #: The rule's outcome in one sentence (:func:`outcome`, :func:`consensus_outcome`): the run prints it.
    outcome: str = ""

    def as_dict(self) -> dict:
        if self.consensus is not None:
            return {"chosen": {"backbone": self.chosen[0], "reduce": self.chosen[1]}, "rule": CONSENSUS_RULE,
                    "outcome": self.outcome, "candidates": self.rows}
        return {"chosen": {"backbone": self.chosen[0], "reduce": self.chosen[1]}, "rule": RULE,
                "margins": MARGINS, "outcome": self.outcome, "candidates": self.rows}


def _silhouette(space: np.ndarray, labels: np.ndarray, seed: int | None) -> float:
    value, _ = mean_silhouette(space, labels, SIL_SAMPLE, seed)
    return -1.0 if value is None else value


def labelled_nmi(labels_true, labels) -> float:
    """NMI over the labelled images only ("" = unlabelled), as :func:`~brainclust.cluster.scores.score` counts it."""
    y = np.asarray(labels_true, dtype=str)
    mask = y != ""
    return float(normalized_mutual_info_score(y[mask], np.asarray(labels)[mask])) if mask.any() else float("nan")


def pca_space(X: np.ndarray, pca, seed: int | None) -> np.ndarray:
    """The PCA scores of ``X`` for the criteria.

    The same solver as the output run's :class:`~brainclust.cluster.reduce.PCAReducer`
    (exact up to :data:`~brainclust.cluster.reduce.EXACT_MAX_COST`, randomized above),
    so a candidate's criteria describe the space its run would cluster. Where that is
    the exact solver and the features are wide (pixels, HOG, fusions: more than twice
    as many dimensions as images), the scores come from the eigendecomposition of the
    ``(n, n)`` Gram matrix: about twice as fast as the full SVD of ``X`` and equal to it
    up to the signs of the components (cosine geometry, hence every criterion, ignores those).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    exact = min(n, d) ** 2 * max(n, d) <= EXACT_MAX_COST
    if isinstance(pca, bool) or not isinstance(pca, int) or pca < 1 or d <= 2 * n or not exact:
        return build_reducer("pca", pca, seed).fit_transform(X)
    if not np.all(np.isfinite(X)):
        raise ParameterError("PCA: features must be a finite 2-D array")
    check_not_constant(X)
    Xc = X - X.mean(axis=0)
    evals, evecs = np.linalg.eigh(Xc @ Xc.T)
    top = np.argsort(evals)[::-1][:min(pca, n)]
    return evecs[:, top] * np.sqrt(np.maximum(evals[top], 0.0))


def evaluate(features: Mapping[str, np.ndarray], k: int, seed: int | None = 0, *, pca=50,
             reductions: Sequence[str] = AUTO_REDUCTIONS, n_sub: int = 5, labels_true=None,
             keep: dict | None = None) -> list[dict]:
    """Criteria of every (backbone, reduction) candidate on precomputed ``features`` (name -> (n, d)).

    ``keep``: if given, receives ``spaces`` (backbone -> PCA space), ``labels``
    ((backbone, reduction) -> the candidate's partition) and ``subsamples`` (the same
    key -> its :func:`~brainclust.selfsup.gate.subsample_clusterings`).
    """
    spaces, labels, subs, rows = {}, {}, {}, []
    for name, X in features.items():
        t0 = time.perf_counter()
        spaces[name] = pca_space(X, pca, seed)
        for red in reductions:
            # pca+umap = the same PCA, then UMAP: fitted once per backbone, shared by both candidates
            emb = spaces[name] if red == "pca" else build_reducer(red, 0, seed).embed_only(spaces[name])
            lab = reference_labels(emb, k, seed)
            labels[(name, red)] = lab
            subs[(name, red)] = subsample_clusterings(emb, k, seed, n_sub)
            rows.append({"backbone": name, "reduce": red, "stability": stability(lab, subs[(name, red)]),
                         "_emb_s": time.perf_counter() - t0})
            t0 = time.perf_counter()
    for r in rows:
        t0 = time.perf_counter()
        lab = labels[(r["backbone"], r["reduce"])]
        r["xsil"] = float(np.mean([_silhouette(S, lab, seed) for S in spaces.values()]))
        others = [adjusted_rand_score(lab, o) for key, o in labels.items() if key != (r["backbone"], r["reduce"])]
        r["agreement"] = float(np.mean(others)) if others else 0.0
        if labels_true is not None:
            r["nmi"] = labelled_nmi(labels_true, lab)
        r["wall_s"] = r.pop("_emb_s") + time.perf_counter() - t0
    if keep is not None:
        keep.update(spaces=spaces, labels=labels, subsamples=subs)
    return rows


def coassociation_rows(partitions: Sequence[np.ndarray], sizes: Sequence[int] | None = None) -> np.ndarray:
    """Each image's members' one-hot cluster codes side by side, divided by ``sqrt(m)`` (see :func:`consensus`).

    ``sizes`` fixes each member's number of clusters (the training partitions' when rows of new
    images are coded).
    """
    sizes = [int(p.max()) + 1 for p in partitions] if sizes is None else sizes
    return np.concatenate([np.eye(int(s))[p] for p, s in zip(partitions, sizes)], axis=1) / np.sqrt(len(partitions))


def consensus(partitions: Sequence[np.ndarray], k: int, seed: int | None):
    """The reference clustering on the co-association of ``partitions`` (one label array per member).

    Each image becomes the concatenation of its members' one-hot cluster codes divided by
    ``sqrt(m)``: the cosine of two images is then the fraction of members that put them in
    one cluster, so average-cosine linkage of these rows *is* average linkage on
    ``1 - co-association`` (Strehl and Ghosh's cluster-based similarity), and the run's
    tree and its ten levels apply unchanged.
    """
    H = coassociation_rows(partitions)
    return make_clusterer("hierarchical", n_clusters=int(k), random_state=seed).fit(H)


def consensus_row(spaces: Mapping[str, np.ndarray], members: Mapping[str, np.ndarray], subsamples: Mapping,
                  k: int, seed: int | None, labels_true=None) -> tuple[dict, object]:
    """The consensus of ``members`` (backbone -> partition) and its criteria, as an ``auto.csv`` row.

    ``stability``: on each of the members' shared subsamples (``subsamples``: backbone ->
    :func:`~brainclust.selfsup.gate.subsample_clusterings`, the same rows for every
    member), the consensus of the members' subsample clusterings against the full consensus.
    """
    t0 = time.perf_counter()
    fitted = consensus(list(members.values()), k, seed)
    lab = fitted.labels_
    per_draw = zip(*(subsamples[b] for b in members))  # one tuple of (rows, labels) per subsample
    stab = stability(lab, [(draw[0][0], consensus([sub for _, sub in draw], k, seed).labels_) for draw in per_draw])
    row = {"backbone": CONSENSUS, "reduce": "pca", "stability": stab,
           "xsil": float(np.mean([_silhouette(S, lab, seed) for S in spaces.values()])),
           "agreement": float(np.mean([adjusted_rand_score(lab, p) for p in members.values()]))}
    if labels_true is not None:
        row["nmi"] = labelled_nmi(labels_true, lab)
    row["wall_s"] = time.perf_counter() - t0
    return row, fitted


def gains(rows: list[dict], default: tuple[str, str] = DEFAULT) -> dict:
    """Each candidate's gains over the default, as :func:`choose` weighs them: ``(backbone, reduce)`` -> criterion
    -> gain (``{}`` when the default is not among the rows).

    Stability is compared within a reduction only (UMAP makes every clustering more stable,
    so a UMAP candidate's stability is compared with the default backbone's under UMAP).
    """
    by_key = {(r["backbone"], r["reduce"]): r for r in rows}
    base = by_key.get(default)
    if base is None:
        return {}
    return {key: {"stability": r["stability"] - by_key.get((default[0], r["reduce"]), base)["stability"],
                  "xsil": r["xsil"] - base["xsil"], "agreement": r["agreement"] - base["agreement"]}
            for key, r in by_key.items()}


def _short_of(gain: dict) -> list[str]:
    return [c for c in gain if gain[c] < MARGINS[c]]


def choose(rows: list[dict], default: tuple[str, str] = DEFAULT) -> tuple[str, str]:
    """The rule of the module docstring; marks ``chosen`` and ``margins`` (``default``, ``passed`` or the margins a
    candidate falls short of) in ``rows`` and returns (backbone, reduce)."""
    got = gains(rows, default)
    pick = default if got else (rows[0]["backbone"], rows[0]["reduce"])
    best = 0.0
    for key, gain in got.items():
        if key != default and not _short_of(gain) and sum(gain.values()) > best:
            best, pick = sum(gain.values()), key
    for r in rows:
        key = (r["backbone"], r["reduce"])
        r["chosen"] = key == pick
        if key in got:
            r["margins"] = ("default" if key == default else
                            "short on " + "/".join(_short_of(got[key])) if _short_of(got[key]) else "passed")
    return pick


def _gains_text(gain: dict) -> str:
    return ", ".join(f"{c} {v:+.3f}" + ("" if v >= MARGINS[c] else f" (short of {MARGINS[c]:+.2f})")
                     for c, v in gain.items())


def outcome(rows: list[dict], pick: tuple[str, str], default: tuple[str, str] = DEFAULT) -> str:
    """:func:`choose`'s decision in one sentence: the margins, and the gains of the chosen candidate, or when the
    default is kept of the one nearest to passing (short of the fewest margins, then the largest sum of gains)."""
    got = gains(rows, default)
    if not got:
        return f"chose {pick[0]}, --reduce {pick[1]} (the default was not among the candidates)"
    others = [k for k in got if k != default]
    passed = [k for k in others if not _short_of(got[k])]
    margins = (f"stability >= {MARGINS['stability']:+.2f} against the default backbone under the same reduction, "
               f"xsil >= {MARGINS['xsil']:+.2f}, agreement >= {MARGINS['agreement']:+.2f}")
    if pick != default:
        return (f"chose {pick[0]}, --reduce {pick[1]} over the default {default[0]}, --reduce {default[1]}: "
                f"{_gains_text(got[pick])}; {len(passed)} of {len(others)} candidates passed every margin "
                f"({margins}), the largest sum of gains chosen")
    text = (f"kept the default {default[0]}, --reduce {default[1]}: none of the {len(others)} other candidates "
            f"passed every margin over it ({margins})")
    near = min(others, key=lambda k: (len(_short_of(got[k])), -sum(got[k].values())), default=None)
    return text + (f"; the nearest, {near[0]}, --reduce {near[1]}: {_gains_text(got[near])}" if near else "")


def consensus_outcome(members, k: int) -> str:
    """What ``--consensus`` did, in one sentence (no margin: every member's partition counts)."""
    return (f"the consensus of {len(members)} backbones' partitions ({', '.join(members)}; each PCA, then "
            f"hierarchical into k = {k}), combined by average linkage on 1 - their co-association, cut into {k} "
            "clusters")


def select(features: Mapping[str, np.ndarray], k: int, seed: int | None = 0, labels_true=None,
           with_consensus: bool = False, **kwargs) -> AutoResult:
    """:func:`evaluate` then :func:`choose` (the API the tests drive with synthetic candidates).

    ``with_consensus``: also the consensus of the PCA candidates (one partition per
    backbone), which is then the choice.
    """
    if with_consensus and "pca" not in kwargs.get("reductions", AUTO_REDUCTIONS):
        raise ParameterError("consensus: needs the 'pca' reduction among the candidates (its members)")
    keep: dict = {}
    rows = evaluate(features, k, seed, labels_true=labels_true, keep=keep, **kwargs)
    default = DEFAULT if DEFAULT[0] in features else (next(iter(features)), "pca")
    pick = choose(rows, default)
    if not with_consensus:
        return AutoResult(rows, pick, keep["labels"], outcome=outcome(rows, pick, default))
    members = {b: keep["labels"][(b, "pca")] for b in features}
    row, fitted = consensus_row(keep["spaces"], members, {b: keep["subsamples"][(b, "pca")] for b in features},
                                k, seed, labels_true)
    for r in rows:
        r["chosen"] = False
        r.pop("margins", None)  # the consensus applies no margin
    rows.append({**row, "chosen": True})
    return AutoResult(rows, (CONSENSUS, "pca"), keep["labels"], fitted, consensus_outcome(list(members), k))
