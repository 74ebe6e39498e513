"""How far a faster precision (bf16, int8) or another runtime moves the features and the clusters.

:func:`agreement` compares two feature matrices of the same images (rows in
the same order), e.g. fp32 and bf16: the cosine similarity of each image's two
vectors, then each matrix goes through the run's own steps (PCA with the run's
settings, then the clustering) separately, as two runs would, and the two
partitions are compared with the adjusted Rand index. No label is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.reduce import PCAReducer
from brainclust.core.arrays import row_cosine
from brainclust.errors import ParameterError

#: Methods compared by default: the run's default and k-means.
METHODS = ("hierarchical", "kmeans")


def agreement(features_a: np.ndarray, features_b: np.ndarray, k: int, seed: int = 0,
              methods: Sequence[str] = METHODS, pca: int | float = 50) -> dict:
    """Agreement of two feature matrices of the same images.

    Parameters
    ----------
    features_a, features_b : ndarray of shape (n_images, dim)
        The same images in the same order (e.g. fp32 and bf16 features); rows
        that are not finite in either matrix are left out.
    k : int
        Number of clusters.
    seed : int
        ``random_state`` of the PCA and of the clustering (the same for both).
    methods : sequence of str
        Clustering methods of :class:`~brainclust.cluster.methods.Clusterer`.
    pca : int or float
        PCA components, as ``--pca``.

    Returns
    -------
    dict
        ``n`` (images compared), ``cosine_mean``, ``cosine_min``, and ``ari_<method>``
        (adjusted Rand index between the two partitions) per method.
    """
    from brainclust.analysis.common import cluster_and_score

    a, b = np.asarray(features_a, np.float32), np.asarray(features_b, np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ParameterError(f"agreement: the two feature matrices must have the same (n, dim) shape, got "
                             f"{a.shape} and {b.shape}")
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        raise ParameterError(f"agreement: needs at least 3 images with finite features in both, got {len(a)}")
    cos = row_cosine(a, b)
    out = {"n": int(len(a)), "k": int(k), "seed": int(seed), "cosine_mean": float(cos.mean()),
           "cosine_min": float(cos.min())}
    emb_a = PCAReducer(pca, random_state=seed).fit_transform(a)
    emb_b = PCAReducer(pca, random_state=seed).fit_transform(b)
    for method in methods:
        la = cluster_and_score(emb_a, None, method, k, seed)[0].labels_
        lb = cluster_and_score(emb_b, None, method, k, seed)[0].labels_
        out[f"ari_{method}"] = float(adjusted_rand_score(la, lb))
    return out
