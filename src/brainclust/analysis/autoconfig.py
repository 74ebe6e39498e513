"""``brainclust run DATA --auto``: choose the backbone and the reduction without labels.

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
never used to choose. Every candidate's criteria go to ``auto.csv`` in the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from brainclust.analysis.common import write_rows_csv
from brainclust.cluster.manifold import build_reducer
from brainclust.errors import ParameterError
from brainclust.io.outputs import RunFolder
from brainclust.pipeline import extract_records, resolve_k, run, scan_nonempty, write_outputs
from brainclust.selfsup.gate import reference_labels, subsample_stability

PORTFOLIO = ("efficientnet_lite0", "efficientnet_lite0_multi", "pixels", "hog", "efficientnet_lite0+pixels")
AUTO_REDUCTIONS = ("pca", "pca+umap")
DEFAULT = ("efficientnet_lite0", "pca")
MARGINS = {"stability": 0.0, "xsil": 0.02, "agreement": 0.0}
COLUMNS = ["backbone", "reduce", "stability", "xsil", "agreement", "chosen", "nmi", "wall_s"]
RULE = ("keep the default (efficientnet_lite0, pca) unless a candidate beats it by xsil >= +0.02 and "
        "agreement >= +0.0 and is at least as stable as the default backbone under the same reduction; "
        "then the largest sum of gains; labels never used")
SIL_SAMPLE = 3000


@dataclass
class AutoResult:
    rows: list[dict]
    chosen: tuple[str, str]
    labels: dict

    def as_dict(self) -> dict:
        return {"chosen": {"backbone": self.chosen[0], "reduce": self.chosen[1]}, "rule": RULE,
                "margins": MARGINS, "candidates": self.rows}


def _silhouette(space: np.ndarray, labels: np.ndarray, seed: int | None) -> float:
    if len(set(labels.tolist())) < 2 or len(set(labels.tolist())) >= len(labels):
        return -1.0
    sample = SIL_SAMPLE if len(labels) > SIL_SAMPLE else None
    return float(silhouette_score(space, labels, metric="cosine", sample_size=sample, random_state=seed))


def pca_space(X: np.ndarray, pca, seed: int | None) -> np.ndarray:
    """The PCA scores of ``X`` for the criteria.

    For wide features (pixels, HOG, fusions: more than twice as many dimensions as
    images) the exact scores come from the eigendecomposition of the ``(n, n)`` Gram
    matrix, which is several times faster than the full SVD of ``X`` and equal to it up
    to the signs of the components (cosine geometry, hence every criterion, ignores those).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if isinstance(pca, bool) or not isinstance(pca, int) or pca < 1 or d <= 2 * n:
        return build_reducer("pca", pca, seed).fit_transform(X)
    Xc = X - X.mean(axis=0)
    evals, evecs = np.linalg.eigh(Xc @ Xc.T)
    top = np.argsort(evals)[::-1][:min(pca, n)]
    return evecs[:, top] * np.sqrt(np.maximum(evals[top], 0.0))


def evaluate(features: Mapping[str, np.ndarray], k: int, seed: int | None = 0, *, pca=50,
             reductions: Sequence[str] = AUTO_REDUCTIONS, n_sub: int = 5, labels_true=None) -> list[dict]:
    """Criteria of every (backbone, reduction) candidate on precomputed ``features`` (name -> (n, d))."""
    spaces, labels, rows = {}, {}, []
    for name, X in features.items():
        t0 = time.perf_counter()
        spaces[name] = pca_space(X, pca, seed)
        for red in reductions:
            # pca+umap = the same PCA, then UMAP: fitted once per backbone, shared by both candidates
            emb = spaces[name] if red == "pca" else build_reducer(red, 0, seed).embed_only(spaces[name])
            lab = reference_labels(emb, k, seed)
            labels[(name, red)] = lab
            rows.append({"backbone": name, "reduce": red, "stability": subsample_stability(emb, lab, k, seed, n_sub),
                         "_emb_s": time.perf_counter() - t0})
            t0 = time.perf_counter()
    for r in rows:
        t0 = time.perf_counter()
        lab = labels[(r["backbone"], r["reduce"])]
        r["xsil"] = float(np.mean([_silhouette(S, lab, seed) for S in spaces.values()]))
        others = [adjusted_rand_score(lab, o) for key, o in labels.items() if key != (r["backbone"], r["reduce"])]
        r["agreement"] = float(np.mean(others)) if others else 0.0
        if labels_true is not None:
            r["nmi"] = float(normalized_mutual_info_score(np.asarray(labels_true, dtype=str), lab))
        r["wall_s"] = r.pop("_emb_s") + time.perf_counter() - t0
    return rows


def choose(rows: list[dict], default: tuple[str, str] = DEFAULT) -> tuple[str, str]:
    """The rule of the module docstring; marks ``chosen`` in ``rows`` and returns (backbone, reduce).

    Stability is compared within a reduction only (UMAP makes every clustering more stable,
    so a UMAP candidate's stability is compared with the default backbone's under UMAP).
    """
    by_key = {(r["backbone"], r["reduce"]): r for r in rows}
    base = by_key.get(default)
    pick = default if base is not None else (rows[0]["backbone"], rows[0]["reduce"])
    best = 0.0
    for r in rows if base is not None else ():
        ref = by_key.get((default[0], r["reduce"]), base)
        gains = {"stability": r["stability"] - ref["stability"], "xsil": r["xsil"] - base["xsil"],
                 "agreement": r["agreement"] - base["agreement"]}
        if r is not base and all(gains[c] >= m for c, m in MARGINS.items()) and sum(gains.values()) > best:
            best, pick = sum(gains.values()), (r["backbone"], r["reduce"])
    for r in rows:
        r["chosen"] = (r["backbone"], r["reduce"]) == pick
    return pick


def select(features: Mapping[str, np.ndarray], k: int, seed: int | None = 0, labels_true=None,
           **kwargs) -> AutoResult:
    """:func:`evaluate` then :func:`choose` (the API the tests drive with synthetic candidates)."""
    rows = evaluate(features, k, seed, labels_true=labels_true, **kwargs)
    pick = choose(rows, DEFAULT if DEFAULT[0] in features else (next(iter(features)), "pca"))
    return AutoResult(rows, pick, {})


def portfolio_features(data, cfg, backbones: Sequence[str] = PORTFOLIO) -> tuple[dict, list]:
    """Each backbone's features of the images that every backbone could decode (through the cache)."""
    scanned = scan_nonempty(data, cfg.labels_from_folders, cfg.slices, cfg.volume_index)
    feats, keep = {}, None
    for b in backbones:
        records, X, _ = extract_records(replace(cfg, backbone=b).extractor().fit(), scanned)
        feats[b] = dict(zip((r.path for r in records), X))
        paths = {r.path for r in records}
        keep = paths if keep is None else keep & paths
    records = [r for r in scanned.records if r.path in keep]
    return {b: np.stack([f[r.path] for r in records]) for b, f in feats.items()}, records


def run_auto(data, out=None, config=None, *, finish=None, backbones: Sequence[str] = PORTFOLIO):
    """``brainclust run --auto``: choose a candidate label-free, then run it as a normal run.

    The run folder is the chosen configuration's, plus ``auto.csv``; the manifest's
    ``auto`` section holds the rule, the choice and every candidate's criteria.
    """
    cfg = replace(config, auto=False)
    if cfg.ssl:
        raise ParameterError("--auto: cannot be combined with --self-supervised; choose first, then add it")
    if cfg.reduce != "pca" or cfg.backbone not in ("auto", DEFAULT[0]):
        raise ParameterError("--auto: chooses --backbone and --reduce itself; leave them at their defaults")
    cfg.validate()
    t0 = time.perf_counter()
    feats, records = portfolio_features(data, cfg, backbones)
    k = cfg.k
    if k == "auto":
        k, _ = resolve_k("auto", "hierarchical", build_reducer("pca", cfg.pca, cfg.seed).fit_transform(
            feats[DEFAULT[0]]), cfg.seed)
    y = [r.label or "" for r in records] if cfg.labels_from_folders else None
    res = select(feats, int(k), cfg.seed, labels_true=y, pca=cfg.pca)
    t_sel = time.perf_counter() - t0
    result = run(data, None, replace(cfg, backbone=res.chosen[0], reduce=res.chosen[1], k=int(k)))
    result.manifest["settings"]["auto"] = True
    result.manifest["auto"] = {**res.as_dict(), "wall_s": t_sel}
    result.manifest["timings_s"]["auto"] = t_sel

    def done(o) -> None:
        write_rows_csv(RunFolder(o).auto, COLUMNS, res.rows)
        if finish is not None:
            finish(o)

    if out is not None:
        write_outputs(result, out, done)
    return result, res
