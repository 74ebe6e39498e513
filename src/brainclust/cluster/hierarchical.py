"""Agglomerative clustering, the method's reference: **average linkage on cosine distance** (scipy).

``linkage`` (average / complete / single / ward) and ``metric`` (cosine / euclidean) change it;
ward requires euclidean. Besides the flat cut at ``n_clusters`` the top of the tree is kept:
``levels_[:, L-1]`` is the cut into ``L`` clusters for ``L = 1..10`` (level 1 = one cluster).
Above ``exact_max`` rows, average/cosine builds the two-stage tree of
:mod:`brainclust.cluster.twostage` (the other linkages refuse). New points go to the cluster of
lowest mean distance (the run's ``metric``) to its members, consistent with average linkage (at
scale: the cluster of their nearest micro-cluster). Zero rows follow the zero-row rule of
:mod:`brainclust.core.arrays` (cosine distance 1 to every row).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage

from brainclust.cluster.base import EXACT_MAX, N_CLUSTERS, RANDOM_STATE, BaseClusterer, need_array, relabel
from brainclust.cluster.twostage import N_MICRO, nearest, two_stage_tree
from brainclust.core.arrays import cosine_cdist, cosine_pdist, unit_rows
from brainclust.core.params import Integer, OneOf, param
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.outputs import N_LEVELS

LINKAGES = ("average", "complete", "single", "ward")
METRICS = ("cosine", "euclidean")


def hierarchical_tree(X: np.ndarray, linkage: str = "average", metric: str = "cosine") -> np.ndarray:
    """The scipy linkage matrix of ``X`` (cosine distances under the zero-row rule)."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        return scipy_linkage(cosine_pdist(X), method=linkage)
    return scipy_linkage(X, method=linkage, metric=metric)


def cut_levels(tree: np.ndarray, ks) -> dict[int, np.ndarray]:
    """Flat cuts of a linkage tree: ``{k: labels}`` for every ``k`` in ``ks`` (capped at n).

    Labels are renumbered with :func:`~brainclust.cluster.base.relabel`. One tree serves every
    ``k``. The k-cluster cut is the partition after the tree's first ``n - k`` merges (the
    partition of scipy's ``cut_tree``), replayed here with small-into-large relabelling:
    O(n log n), where ``cut_tree``'s Python-level traversal took 0.15 s per call at
    1000 images (9 of the 10 s of ``--auto``'s 60 reference clusterings).
    """
    n = len(tree) + 1
    wanted = {min(int(k), n) for k in ks}
    label = np.arange(n)
    members: list = [[i] for i in range(n)] + [None] * (n - 1)
    cuts = {}
    for i, (a, b) in enumerate(np.asarray(tree[:, :2], dtype=np.int64).tolist()):
        if n - i in wanted:
            cuts[n - i] = relabel(label)
        big, small = (members[a], members[b]) if len(members[a]) >= len(members[b]) else (members[b], members[a])
        label[small] = label[big[0]]
        big.extend(small)
        members[n + i], members[a], members[b] = big, None, None
    cuts[1] = np.zeros(n, dtype=np.int64)
    return {int(k): cuts[min(int(k), n)] for k in ks}


#: Cosine distance at or below which a new row *is* a fitted row (the same image: its features are equal up to
#: float rounding; a quality-90 JPEG re-save of a 4-class dev image lies 5e-4 or farther, a resize 8e-3).
TWIN_DISTANCE = 1e-9


def mean_distance_assign(X: np.ndarray, X_fit: np.ndarray, labels: np.ndarray, metric: str = "cosine",
                         block: int = 2**25, keep_fitted: bool = False) -> np.ndarray:
    """Each row of ``X`` to the cluster of ``labels`` (over ``X_fit``) of lowest mean distance to its members.

    The rule of average linkage for new points; ``-1`` (set apart) is never assigned. Rows go in
    blocks of about ``block`` distances, so memory stays bounded for many new points. ``keep_fitted``: a row
    within :data:`TWIN_DISTANCE` of a fitted row (cosine) takes that row's cluster instead, so an image the
    model was fitted on keeps the cluster the fit gave it (the mean-distance rule is not the fit: it moves
    about one fitted image in ten).
    """
    X, X_fit = np.asarray(X, dtype=np.float64), np.asarray(X_fit, dtype=np.float64)
    ids = np.unique(labels[labels >= 0])
    out = np.empty(len(X), dtype=np.int64)
    step = max(1, block // max(len(X_fit), 1))
    for s in range(0, len(X), step):
        if metric == "cosine":
            D = cosine_cdist(X[s:s + step], X_fit)
        else:
            from scipy.spatial.distance import cdist

            D = cdist(X[s:s + step], X_fit, metric=metric)
        out[s:s + step] = ids[np.argmin(np.stack([D[:, labels == c].mean(axis=1) for c in ids], axis=1), axis=1)]
        if keep_fitted:
            out[s:s + step] = _keep_fitted(out[s:s + step], D, X[s:s + step], X_fit, labels, metric)
    return out


def _keep_fitted(assigned: np.ndarray, D: np.ndarray, X: np.ndarray, X_fit: np.ndarray, labels: np.ndarray,
                 metric: str) -> np.ndarray:
    """``assigned`` with each row that is a fitted row (its nearest clustered fitted row by ``D`` within cosine
    distance :data:`TWIN_DISTANCE`, and, for a metric that sees the scale, of the same norm to 1e-6) given that
    row's label. ``D`` is overwritten (the block is done with it)."""
    D[:, labels < 0] = np.inf  # rows set apart are never assigned
    near = np.argmin(D, axis=1)
    if metric == "cosine":  # D is the cosine distance already
        twin = D[np.arange(len(D)), near] <= TWIN_DISTANCE
    else:
        B = X_fit[near]
        na, nb = np.linalg.norm(X, axis=1), np.linalg.norm(B, axis=1)
        twin = (1.0 - (X * B).sum(axis=1) / np.maximum(na * nb, 1e-300) <= TWIN_DISTANCE) & (
            np.abs(na - nb) <= 1e-6 * np.maximum(na, nb))
    return np.where(twin, labels[near], assigned)


def tree_leaf_labels(labels: np.ndarray, micro_of: np.ndarray | None = None) -> np.ndarray:
    """The flat cluster of each leaf of a saved tree, from the saved ``labels`` (``-1`` = set apart).

    The leaves are the images clustered (outliers excluded), or the micro-clusters of a
    two-stage tree (``micro_of`` maps those images to their micro-cluster).
    """
    inliers = np.asarray(labels)[np.asarray(labels) != -1]
    if micro_of is None:
        return inliers
    out = np.empty(int(micro_of.max()) + 1, dtype=np.int64)
    out[micro_of] = inliers
    return out


class HierarchicalClusterer(BaseClusterer):
    """Agglomerative clustering with the top ten levels of the tree (see the module docstring).

    Parameters
    ----------
    n_clusters : int, default 4
    random_state : int, None, numpy Generator or RandomState, default None
        Seed of the two-stage tree's micro-clusters (the exact tree has no randomness); a generator gives one
        seed per ``fit`` (``seed_``).
    linkage : {"average", "complete", "single", "ward"}, default "average"
    metric : {"cosine", "euclidean"}, default "cosine"
        The distance of the tree and of :meth:`predict`; ``ward`` needs ``euclidean``.
    exact_max : int, default 20000
        Largest n clustered exactly; above it average/cosine builds the two-stage tree.
    n_micro : int, default 4000
        Micro-clusters of the two-stage tree (calibrated in docs/performance.md, "Scale").

    Attributes
    ----------
    labels_, n_clusters_, X_fit_
        As every clusterer (:class:`~brainclust.cluster.base.BaseClusterer`).
    levels_ : ndarray of shape (n_samples, 10)
        The cut into L clusters in column L-1.
    tree_ : ndarray of shape (n_samples - 1, 4)
        The scipy linkage matrix (over the micro-clusters for the two-stage tree).
    micro_centers_, micro_of_ : ndarray or None
        Two-stage tree only: the micro-cluster centres (unit-row space) and each point's micro-cluster.
    """

    method = "hierarchical"
    allows_minus_one = True
    _parameter_constraints = {"n_clusters": N_CLUSTERS, "random_state": RANDOM_STATE,
                              "linkage": param(OneOf(LINKAGES), option="linkage"),
                              "metric": param(OneOf(METRICS), option="metric"),
                              "exact_max": param(Integer(1), option="exact_max"),
                              "n_micro": param(Integer(1), option="n_micro")}
    micro_centers_ = micro_of_ = None

    def __init__(self, n_clusters: int = 4, random_state: int | None = None, linkage: str = "average",
                 metric: str = "cosine", exact_max: int = EXACT_MAX, n_micro: int = N_MICRO):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.linkage = linkage
        self.metric = metric
        self.exact_max = exact_max
        self.n_micro = n_micro

    def check_params(self):
        super().check_params()
        if self.linkage == "ward" and self.metric != "euclidean":
            raise ParameterError(f"linkage: 'ward' is defined for metric='euclidean' only, got metric={self.metric!r}")
        return self

    def _check_size(self, n: int) -> None:
        super()._check_size(n)
        if n > self.exact_max and (self.linkage, self.metric) != ("average", "cosine"):
            raise ParameterError(f"linkage: {self.linkage}/{self.metric} is exact only, at most exact_max="
                                 f"{self.exact_max} images (the n^2 distance matrix), got {n}; use --method "
                                 "hierarchical (average/cosine: two-stage tree) or kmeans, or cluster a sample")

    def fit(self, X, y=None, assign_all=None):
        """Cluster ``X``. ``assign_all(centres, U)``, if given, runs the two-stage tree's pass that
        assigns every row to its nearest micro-cluster (e.g. on Ray); the result is the same."""
        self._assign_all = assign_all
        try:
            return super().fit(X)
        finally:
            del self._assign_all

    def _fit(self, X: np.ndarray) -> np.ndarray:
        k = int(self.n_clusters)
        ks = [*range(1, N_LEVELS + 1), k]
        self.micro_centers_ = self.micro_of_ = None
        if len(X) <= self.exact_max:
            self.tree_ = hierarchical_tree(X, self.linkage, self.metric)
            cuts = cut_levels(self.tree_, ks)
        else:
            self.tree_, self.micro_centers_, self.micro_of_ = two_stage_tree(X, self.n_micro, self.seed_,
                                                                             self._assign_all)
            m = len(self.micro_centers_)
            if k > m:
                raise ParameterError(f"{N_CLUSTERS.label('n_clusters')}: {k} clusters requested but the two-stage "
                                     f"tree has {m} micro-clusters (n_micro={self.n_micro})")
            cuts = {L: relabel(c[self.micro_of_]) for L, c in cut_levels(self.tree_, ks).items()}
        self.levels_ = np.stack([cuts[L] for L in range(1, N_LEVELS + 1)], axis=1)
        return cuts[k]

    # -- prediction --------------------------------------------------------------------
    def _mean_distance(self, X: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
        return mean_distance_assign(X, self.X_fit_, train_labels, self.metric, keep_fitted=True)

    def _micro_lookup(self, per_point: np.ndarray) -> np.ndarray:
        """Two-stage tree: the label (row) of each micro-cluster, from its members' labels (rows)."""
        out = np.empty((len(self.micro_centers_), *per_point.shape[1:]), dtype=np.int64)
        out[self.micro_of_] = per_point
        return out

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.micro_centers_ is not None:
            return self._micro_lookup(self.labels_)[nearest(self.micro_centers_, unit_rows(X))]
        return self._mean_distance(X, self.labels_)

    def predict_levels(self, X) -> np.ndarray:
        X = self._check_new(X)
        if self.micro_centers_ is not None:
            return self._micro_lookup(self.levels_)[nearest(self.micro_centers_, unit_rows(X))]
        return np.stack([self._mean_distance(X, self.levels_[:, L]) for L in range(N_LEVELS)], axis=1)

    def leaf_labels(self) -> np.ndarray:
        """The flat cluster of each leaf of ``tree_`` (images, or micro-clusters at scale)."""
        self.check_is_fitted()
        return tree_leaf_labels(self.labels_, self.micro_of_)

    # -- persistence -------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"levels": self.levels_, "tree": self.tree_}
        if self.micro_centers_ is not None:
            arrays.update(micro_centers=self.micro_centers_, micro_of=self.micro_of_)
        return arrays

    @classmethod
    def check_arrays(cls, data: dict, path):
        n, d, lab = super().check_arrays(data, path)
        out = lab == -1
        levels = need_array(data, path, "levels", "iu", (n, N_LEVELS))
        inl = levels[~out]
        if (np.any(levels[out] != -1) or (inl.size and inl.min() < 0)
                or np.any(levels.max(axis=0) >= np.arange(1, N_LEVELS + 1))):
            raise ModelFileError(f"cluster model '{path}': field 'levels' has ids out of range (column L-1 "
                                 f"holds ids 0..L-1; -1 exactly on the outliers)")
        n_in = n - int(out.sum())  # the tree is over the images that are not set apart
        if "micro_centers" in data:
            mc = need_array(data, path, "micro_centers", "f", (None, d))
            of = need_array(data, path, "micro_of", "iu", (n_in,))
            if of.min() < 0 or of.max() >= len(mc):
                raise ModelFileError(f"cluster model '{path}': field 'micro_of' has ids outside 0..{len(mc) - 1}")
            need_array(data, path, "tree", "f", (len(mc) - 1, 4))
        else:
            need_array(data, path, "tree", "f", (n_in - 1, 4))
        return n, d, lab

    def _restore(self, data: dict) -> None:
        self.levels_, self.tree_ = data["levels"], data["tree"]
        self.micro_centers_, self.micro_of_ = data.get("micro_centers"), data.get("micro_of")
