"""Iterative refinement (METHOD.md step 7): cluster, self-label, retrain, re-cluster.

Round 0 clusters the consensus embedding with K-Means (``k = n_clusters``,
on L2-normalised rows, so it approximates cosine K-Means). Each round ``t >= 1``:

1. **Confident self-labels**: in each cluster of round ``t - 1``, the
   ``confident_fraction`` of members nearest (cosine) to the cluster centre keep
   their cluster as pseudo-label; the others are ignored (SCAN's self-labelling
   keeps only confident samples; taking a fixed fraction per cluster keeps
   small clusters alive).
2. **Retrain** every head for ``refine_epochs`` epochs with the class-balanced
   cross-entropy on those labels (a fresh cluster head each round, as in
   DeepCluster, because cluster ids change meaning), on random appearance views,
   together with the pretext losses that were on, so the embedding does not
   collapse onto the pseudo-labels.
3. **Re-cluster** and record ``NMI(round t, round t - 1)``.

It stops when that NMI reaches ``tol`` (the assignments stopped changing) or
after ``max_rounds`` rounds. Each record says which rule stopped it.
"""

from __future__ import annotations

import logging

import numpy as np

from brainclust.core.arrays import unit_rows
from brainclust.core.cellinfo import cell_info
from brainclust.selfsup.common import seed_for
from brainclust.selfsup.loop import train_head

log = logging.getLogger(__name__)


def kmeans_labels(E: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K-Means labels of the L2-normalised rows of ``E``."""
    from sklearn.cluster import KMeans

    E = unit_rows(E)
    return KMeans(n_clusters=k, n_init=10, random_state=seed % (2**31)).fit_predict(E)


def confident_targets(E: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """``labels`` where the row is among the ``fraction`` nearest its cluster's centre, else ``-1``."""
    E = unit_rows(E)
    out = np.full(len(labels), -1, dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        centre = E[members].mean(0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        sim = E[members] @ centre
        keep = max(1, int(round(fraction * len(members))))
        out[members[np.argsort(-sim, kind="stable")[:keep]]] = c
    return out


def refine(head, source) -> list[dict]:
    """Refine the fitted heads of ``head`` (a SelfSupervisedHead) in place; return the round records."""
    import torch
    from sklearn.metrics import normalized_mutual_info_score

    k = min(head.n_clusters, source.n)
    epochs = head.refine_epochs if head.refine_epochs is not None else max(1, head.epochs // 3)
    pretext = [c for c in ("contrastive", "rotation") if c in head.components_]
    E = head.consensus(source).numpy().astype(np.float64)
    prev = kmeans_labels(E, k, seed_for(head.random_state, "kmeans", 0))
    rounds = [{"round": 0, "nmi_to_previous": None, "n_confident": None,
               "cluster_sizes": np.bincount(prev, minlength=k).tolist()}]
    for t in range(1, head.max_rounds + 1):
        targets = torch.from_numpy(confident_targets(E, prev, head.confident_fraction))
        losses = []
        for m, net in enumerate(head.nets_):
            gen = torch.Generator().manual_seed(seed_for(head.random_state, "refine", t, m))
            net.reset_cluster_head(gen)
            hist = train_head(net, source, pretext, epochs, gen, targets=targets, **head.train_kwargs(),
                              desc=f"ssl refinement round {t}/{head.max_rounds}, head {m + 1}/{len(head.nets_)}")
            losses.append(hist.get("self_label", [float("nan")])[-1])
        E = head.consensus(source).numpy().astype(np.float64)
        labels = kmeans_labels(E, k, seed_for(head.random_state, "kmeans", t))
        agreement = float(normalized_mutual_info_score(prev, labels))
        rounds.append({"round": t, "nmi_to_previous": round(agreement, 5),
                       "n_confident": int((targets >= 0).sum()),
                       "self_label_loss": round(float(np.mean(losses)), 5),
                       "cluster_sizes": np.bincount(labels, minlength=k).tolist()})
        cell_info(log, "refinement round %d: NMI to previous round %.3f", t, agreement)
        prev = labels
        if agreement >= head.tol:
            rounds[-1]["stop"] = f"converged: NMI to previous round >= tol={head.tol}"
            break
    else:
        rounds[-1]["stop"] = f"max_rounds={head.max_rounds} reached"
        log.warning("refinement stopped after %d rounds without converging (NMI to the previous round %.3f < "
                    "%g): the clusters still moved between rounds", head.max_rounds, agreement, head.tol)
    return rounds
