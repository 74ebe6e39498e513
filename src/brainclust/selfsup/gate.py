"""A label-free gate for the self-supervised stage (``--ssl-gate``): keep the SSL embedding only if it earns it.

Measured: ``--self-supervised all`` lowered NMI on the one unseen set where
it was run (0.82 -> 0.68) and on the dev set (0.218 vs 0.227). The gate lets the
stage step aside when a label-free check says it did not help. Both the frozen
features and the SSL embedding go through the run's reference cell (PCA, then
average-cosine hierarchical with the run's k) and are compared on two criteria:

* **stability** (:func:`subsample_stability`): mean ARI between the clustering of
  all images and the clusterings of ``n_sub`` seeded 80% subsamples (on the
  subsample's rows);
* **neighbourhood agreement** (:func:`knn_agreement`): the fraction of each
  image's ``n_neighbors`` (10) nearest neighbours *in the frozen feature space*
  that share its cluster. For the frozen clustering this is how well it follows
  the frozen neighbourhoods; an SSL clustering that scatters images away from
  their frozen neighbours scores low.

An embedding that is sharpened towards a few clusters (TEMI's cluster
probabilities) is trivially stable under subsampling of a *fixed* embedding
(1.0 on every set measured, whatever its NMI), so for a model that trains
several heads trained from different initial weights the SSL side's
stability is the **smaller** of the subsample stability and the heads'
agreement (mean ARI between the heads' partitions,
:func:`brainclust.selfsup.temi.head_agreement`; the heads share batches, so
this is a proxy for seed stability): a partition that the training does not
reproduce from another initialisation has not earned its place.

The SSL embedding is **kept** only when it is at least as good as the frozen
features on both criteria and strictly better on their sum; otherwise the run
continues with the frozen features (``kept: false`` in the manifest). Ties go
to the frozen features: the stage costs time and adds variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.methods import make_clusterer
from brainclust.cluster.reduce import PCAReducer
from brainclust.core.arrays import cosine_knn, seeded_sample


def reference_labels(X: np.ndarray, k: int, seed: int | None) -> np.ndarray:
    """The reference cell on an embedding: average-cosine hierarchical into ``k`` clusters."""
    return make_clusterer("hierarchical", n_clusters=int(min(k, len(X))), random_state=seed).fit(X).labels_


def subsample_clusterings(X: np.ndarray, k: int, seed: int | None, n_sub: int = 5,
                          fraction: float = 0.8) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(rows, labels)`` of the reference clustering of ``n_sub`` seeded ``fraction`` subsamples of ``X``.

    The rows depend only on ``len(X)``, ``k`` and ``seed``: every embedding of the same
    images gets the same subsamples.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    m = max(k + 1, int(round(fraction * len(X))))
    out = []
    for _ in range(n_sub):
        idx = seeded_sample(len(X), min(m, len(X)), rng)
        out.append((idx, reference_labels(X[idx], k, seed)))
    return out


def stability(labels: np.ndarray, subsamples) -> float:
    """Mean ARI between ``labels`` and :func:`subsample_clusterings` on the same rows."""
    return float(np.mean([adjusted_rand_score(labels[idx], sub) for idx, sub in subsamples]))


def subsample_stability(X: np.ndarray, labels: np.ndarray, k: int, seed: int | None, n_sub: int = 5,
                        fraction: float = 0.8) -> float:
    """Mean ARI between ``labels`` and the reference clustering of seeded ``fraction`` subsamples of ``X``."""
    return stability(labels, subsample_clusterings(X, k, seed, n_sub, fraction))


def knn_agreement(space: np.ndarray, labels: np.ndarray, n_neighbors: int = 10) -> float:
    """Mean fraction of each row's ``n_neighbors`` cosine nearest neighbours in ``space`` sharing its label."""
    ind, _ = cosine_knn(np.asarray(space, dtype=np.float64), min(n_neighbors, len(space) - 1), exclude_self=True)
    return float((labels[ind] == labels[:, None]).mean())


@dataclass
class GateDecision:
    kept: bool
    frozen: dict
    ssl: dict

    def as_dict(self) -> dict:
        return {"kept": self.kept, "frozen": self.frozen, "ssl": self.ssl,
                "rule": "keep iff ssl >= frozen on stability (for several heads: min of subsample stability and "
                        "head agreement) and kNN agreement (frozen space), and > on their sum"}


def check(frozen: np.ndarray, ssl_embedding: np.ndarray, k: int, pca=50, seed: int | None = 0,
          n_sub: int = 5, seed_stability: float | None = None) -> GateDecision:
    """Compare the SSL embedding with the frozen features (the rule of the module docstring).

    ``seed_stability``: the model's agreement between independently trained heads, if it has one.
    """
    space = PCAReducer(pca, random_state=seed).fit_transform(frozen)
    crit = {}
    for name, X in (("frozen", space), ("ssl", PCAReducer(pca, random_state=seed).fit_transform(ssl_embedding))):
        lab = reference_labels(X, k, seed)
        crit[name] = {"stability": subsample_stability(X, lab, k, seed, n_sub),
                      "knn_agreement": knn_agreement(space, lab)}
    f, s = crit["frozen"], crit["ssl"]
    if seed_stability is not None:
        s["subsample_stability"], s["head_agreement"] = s["stability"], float(seed_stability)
        s["stability"] = min(s["stability"], float(seed_stability))
    kept = (s["stability"] >= f["stability"] and s["knn_agreement"] >= f["knn_agreement"]
            and s["stability"] + s["knn_agreement"] > f["stability"] + f["knn_agreement"])
    return GateDecision(bool(kept), f, s)
