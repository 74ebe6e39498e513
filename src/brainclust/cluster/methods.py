"""Stage 5: clustering.

:class:`Clusterer` wraps five methods behind one scikit-learn style estimator:

``hierarchical`` (the reference)
    Agglomerative, **average linkage on cosine distance** (scipy) by default;
    ``linkage`` (average / complete / single / ward) and ``metric`` (cosine /
    euclidean) change it, and ward requires euclidean. Besides the
    flat cut at ``n_clusters`` it keeps the top of the tree: ``levels_[:, L-1]``
    is the cut into ``L`` clusters for ``L = 1..10`` (level 1 = one cluster).
``kmeans``
    scikit-learn K-Means (Euclidean, ``n_init=10``).
``gmm``
    Gaussian mixture, full covariances.
``dbscan``
    Cosine DBSCAN with ``min_samples`` (default 5). ``eps`` comes from the data:
    the knee of the sorted distances to each point's ``min_samples``-th
    neighbour (the point of the curve farthest below the chord joining its
    ends). Noise is labelled ``-1``.
``spectral``
    Spectral clustering on a symmetric ``n_neighbors``-NN graph (cosine).

Cluster ids are renumbered ``0..k-1`` in order of first appearance, so equal
partitions get equal ids. Fitted models save to ``.npz`` + JSON (no pickle),
and :meth:`Clusterer.predict` assigns new points: nearest centroid (K-Means),
highest posterior (GMM), lowest mean distance (the run's ``metric``) to a
cluster's members (hierarchical, consistent with average linkage), nearest core point within
``eps`` (DBSCAN), distance-weighted vote of the ``n_neighbors`` cosine nearest
training points (spectral).
"""

from __future__ import annotations

import functools
import json
import logging

import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, ClusterMixin

from brainclust.cluster.twostage import N_MICRO, nearest, two_stage_tree, unit_rows
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz, json_default, read_npz
from brainclust.io.outputs import N_LEVELS

log = logging.getLogger(__name__)

METHODS = ("hierarchical", "kmeans", "gmm", "dbscan", "spectral")
LINKAGES = ("average", "complete", "single", "ward")
METRICS = ("cosine", "euclidean")


def check_seed(seed) -> None:
    """``--seed``: an integer in [0, 2**32 - 1] (what NumPy and scikit-learn accept), or ``None``."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed <= 2**32 - 1):
        raise ParameterError(f"--seed: must be an integer from 0 to 4294967295, got {seed!r}")


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster ids 0..k-1 by first appearance; -1 (noise) stays -1."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, -1, dtype=np.int64)
    keep = labels != -1
    if not keep.any():
        return out
    ids, first, inv = np.unique(labels[keep], return_index=True, return_inverse=True)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(ids))
    out[keep] = rank[inv.ravel()]
    return out


def _safe_for_cosine(X: np.ndarray) -> np.ndarray:
    """Cosine distance is undefined for zero vectors; nudge them off the origin."""
    X = np.asarray(X, dtype=np.float64)
    zero = np.linalg.norm(X, axis=1) < 1e-12
    if zero.any():
        X = X.copy()
        X[zero] = 1e-12
    return X


def hierarchical_tree(X: np.ndarray, linkage: str = "average", metric: str = "cosine") -> np.ndarray:
    """The scipy linkage matrix of ``X`` (cosine rows are nudged off the origin)."""
    X = np.asarray(X, dtype=np.float64)
    return scipy_linkage(_safe_for_cosine(X) if metric == "cosine" else X, method=linkage, metric=metric)


def cut_levels(tree: np.ndarray, ks) -> dict[int, np.ndarray]:
    """Flat cuts of a linkage tree: ``{k: labels}`` for every ``k`` in ``ks`` (capped at n).

    Labels are renumbered with :func:`relabel`. One tree serves every ``k``.
    The k-cluster cut is the partition after the tree's first ``n - k`` merges (the
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


def knee_eps(X: np.ndarray, min_samples: int) -> float:
    """DBSCAN ``eps`` from the knee of the sorted k-distance curve (cosine)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(min_samples, len(X) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X)
    d = np.sort(nn.kneighbors(X)[0][:, -1])
    if d[-1] - d[0] < 1e-12:
        return float(max(d[-1], 1e-6))
    x = np.linspace(0.0, 1.0, len(d))
    y = (d - d[0]) / (d[-1] - d[0])
    return float(max(d[int(np.argmax(x - y))], 1e-6))


class Clusterer(ClusterMixin, BaseEstimator):
    """Cluster feature vectors with one of :data:`METHODS`.

    Parameters
    ----------
    method : str, default "hierarchical"
    n_clusters : int, default 4
        Ignored by ``dbscan``.
    random_state : int or None, default None
    min_samples : int, default 5
        DBSCAN neighbourhood size.
    n_neighbors : int, default 10
        Graph size of ``spectral`` and voters of its :meth:`predict`.
    linkage : {"average", "complete", "single", "ward"}, default "average"
        Hierarchical only. ``ward`` needs ``metric="euclidean"``.
    metric : {"cosine", "euclidean"}, default "cosine"
        Hierarchical only: the distance of the tree and of :meth:`predict`.
    exact_max : int, default 20000
        Largest n clustered exactly. Above it: ``hierarchical`` (average/cosine only) builds the
        two-stage tree of :mod:`brainclust.cluster.twostage`; ``gmm`` fits on a seeded sample of
        ``exact_max`` points and assigns the rest; ``dbscan`` and ``spectral`` refuse
        (:class:`~brainclust.errors.ParameterError`), as do the other linkages.
    n_micro : int, default 4000
        Micro-clusters of the two-stage tree (calibrated in docs/performance.md, "Scale").
    kmeans_max : int, default 100000
        Largest n for full K-Means (``n_init=10``); above it MiniBatchKMeans.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    levels_ : ndarray of shape (n_samples, 10) or None
        Hierarchical only: the cut into L clusters in column L-1.
    tree_ : ndarray of shape (n_samples - 1, 4) or None
        Hierarchical only: the scipy linkage matrix (over the micro-clusters for the two-stage
        tree: shape ``(n_micro - 1, 4)``).
    micro_centers_, micro_of_ : ndarray or None
        Two-stage tree only: the micro-cluster centres (unit-row space) and each point's micro-cluster.
    eps_ : float or None
        DBSCAN only.
    n_clusters_ : int
        Clusters found (noise excluded).
    """

    def __init__(self, method: str = "hierarchical", n_clusters: int = 4, random_state: int | None = None,
                 min_samples: int = 5, n_neighbors: int = 10, linkage: str = "average", metric: str = "cosine",
                 exact_max: int = 20000, n_micro: int = N_MICRO, kmeans_max: int = 100000):
        self.method = method
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.min_samples = min_samples
        self.n_neighbors = n_neighbors
        self.linkage = linkage
        self.metric = metric
        self.exact_max = exact_max
        self.n_micro = n_micro
        self.kmeans_max = kmeans_max

    def check_params(self) -> None:
        """The rules of every parameter (no data needed); ``fit`` calls it, and so does ``RunConfig``.

        ``n_clusters`` is checked here unless it is ``"auto"`` (``RunConfig`` resolves that first).
        """
        if self.method not in METHODS:
            raise ParameterError(f"--method: unknown method '{self.method}'; choose one of {', '.join(METHODS)}")
        if self.linkage not in LINKAGES:
            raise ParameterError(f"linkage: must be one of {', '.join(LINKAGES)}, got {self.linkage!r}")
        if self.metric not in METRICS:
            raise ParameterError(f"metric: must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.linkage == "ward" and self.metric != "euclidean":
            raise ParameterError(f"linkage: 'ward' is defined for metric='euclidean' only, got metric={self.metric!r}")
        k = self.n_clusters
        if self.method != "dbscan" and k != "auto" and (
                isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ParameterError(f"--k: must be a positive integer or 'auto', got {k!r}")
        for name in ("min_samples", "n_neighbors", "exact_max", "n_micro", "kmeans_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{name}: must be a positive integer, got {v!r}")

    def _validate(self, n: int) -> None:
        self.check_params()
        if n < 2:
            raise ParameterError(f"clustering needs at least 2 images, got {n}")
        if self.method != "dbscan":
            if self.n_clusters == "auto":
                raise ParameterError("--k: 'auto' must be resolved before fitting (see brainclust.pipeline.resolve_k)")
            if self.n_clusters > n:
                raise ParameterError(f"--k: {self.n_clusters} clusters requested but there are only {n} images")

    def fit(self, X, y=None, assign_all=None):
        """Cluster ``X``. ``assign_all(centres, U)``, if given, runs the two-stage tree's pass that
        assigns every row to its nearest micro-cluster (e.g. on Ray); the result is the same."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise ParameterError("features must be a finite 2-D array")
        n = len(X)
        self._validate(n)
        self._refuse_at_scale(n)
        self.levels_ = self.tree_ = self.eps_ = self.micro_centers_ = self.micro_of_ = None
        self.X_fit_ = X
        k = int(self.n_clusters) if self.method != "dbscan" else 0
        fit_method = {"hierarchical": functools.partial(self._fit_hierarchical, assign_all=assign_all),
                      "kmeans": self._fit_kmeans, "gmm": self._fit_gmm,
                      "dbscan": self._fit_dbscan, "spectral": self._fit_spectral}[self.method]
        self.labels_ = relabel(fit_method(X, k))
        self.n_clusters_ = int(len(np.unique(self.labels_[self.labels_ >= 0])))
        self._warn_degenerate()
        return self

    def _refuse_at_scale(self, n: int) -> None:
        """Above ``exact_max``: what does not scale says so (one line: the limit and the alternative)."""
        if n <= self.exact_max:
            return
        alt = ("use --method hierarchical (average/cosine: two-stage tree) or kmeans, or cluster a sample")
        if self.method in ("dbscan", "spectral"):
            raise ParameterError(f"--method {self.method}: at most exact_max={self.exact_max} images "
                                 f"(its neighbour graph and memory grow with n), got {n}; {alt}")
        if self.method == "hierarchical" and (self.linkage, self.metric) != ("average", "cosine"):
            raise ParameterError(f"linkage: {self.linkage}/{self.metric} is exact only, at most exact_max="
                                 f"{self.exact_max} images (the n^2 distance matrix), got {n}; {alt}")

    def _fit_hierarchical(self, X: np.ndarray, k: int, assign_all=None) -> np.ndarray:
        ks = [*range(1, N_LEVELS + 1), k]
        if len(X) <= self.exact_max:
            self.tree_ = hierarchical_tree(X, self.linkage, self.metric)
            cuts = cut_levels(self.tree_, ks)
        else:
            self.tree_, self.micro_centers_, self.micro_of_ = two_stage_tree(X, self.n_micro, self.random_state,
                                                                             assign_all)
            m = len(self.micro_centers_)
            if k > m:
                raise ParameterError(f"--k: {k} clusters requested but the two-stage tree has {m} micro-clusters "
                                     f"(n_micro={self.n_micro})")
            cuts = {L: relabel(c[self.micro_of_]) for L, c in cut_levels(self.tree_, ks).items()}
        self.levels_ = np.stack([cuts[L] for L in range(1, N_LEVELS + 1)], axis=1)
        return cuts[k]

    def _fit_kmeans(self, X: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if len(X) <= self.kmeans_max:
            km = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit(X)
        else:
            km = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=self.random_state).fit(X)
        labels = km.labels_
        # centres in the canonical order of relabel()
        ids, first = np.unique(labels, return_index=True)
        self.centers_ = km.cluster_centers_[ids[np.argsort(first)]]
        return labels

    def _fit_gmm(self, X: np.ndarray, k: int) -> np.ndarray:
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-4, random_state=self.random_state)
        if len(X) <= self.exact_max:
            self.model_ = gm.fit(X)
        else:  # fit on a seeded sample, assign every point
            idx = np.random.default_rng(self.random_state).choice(len(X), self.exact_max, replace=False)
            self.model_ = gm.fit(X[np.sort(idx)])
        return self.model_.predict(X)

    def _fit_dbscan(self, X: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        self.eps_ = knee_eps(X, self.min_samples)
        db = DBSCAN(eps=self.eps_, min_samples=self.min_samples, metric="cosine").fit(X)
        self.core_ = np.zeros(len(X), bool)
        self.core_[db.core_sample_indices_] = True
        return db.labels_

    def _fit_spectral(self, X: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import SpectralClustering

        if len(X) <= k + 1:  # the sparse eigensolver needs more images than eigenvectors
            raise ParameterError(f"--method spectral: needs at least k + 2 = {k + 2} images, got {len(X)}; "
                                 "use --method hierarchical or a smaller --k")
        nn = min(self.n_neighbors, len(X) - 1)
        sc = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=nn,
                                random_state=self.random_state, assign_labels="kmeans")
        return sc.fit(_safe_for_cosine(X) / np.linalg.norm(_safe_for_cosine(X), axis=1, keepdims=True)).labels_

    def _warn_degenerate(self) -> None:
        lab = self.labels_
        n = len(lab)
        if self.n_clusters_ <= 1:
            if self.method != "dbscan" and self.n_clusters == 1:  # one cluster was asked for
                return
            log.warning("%s found a single cluster for %d images: the features do not separate", self.method, n)
            return
        biggest = np.bincount(lab[lab >= 0]).max()
        if biggest > 0.9 * n:
            log.warning("%s put %d of %d images (%.0f%%) in one cluster; the other clusters are tiny "
                        "(average-cosine linkage does this on weakly structured features)",
                        self.method, biggest, n, 100 * biggest / n)
        if self.method == "dbscan":
            log.info("dbscan: eps=%.4g, %d noise points", self.eps_, int((lab == -1).sum()))

    # -- prediction ------------------------------------------------------------
    def _mean_dist_assign(self, X: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            D = cdist(_safe_for_cosine(X), _safe_for_cosine(self.X_fit_), metric="cosine")
        else:
            D = cdist(X, self.X_fit_, metric=self.metric)
        ids = np.unique(train_labels[train_labels >= 0])  # -1 (outliers set apart) is never assigned
        means = np.stack([D[:, train_labels == c].mean(axis=1) for c in ids], axis=1)
        return ids[np.argmin(means, axis=1)]

    def predict(self, X) -> np.ndarray:
        """Cluster ids of new points (see the module docstring for the rule per method)."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != self.X_fit_.shape[1]:
            raise ParameterError(f"features have {X.shape[1]} dimensions; the model was fitted on {self.X_fit_.shape[1]}")
        m = self.method
        if m == "hierarchical":
            if self.micro_centers_ is not None:
                return self._micro_lookup(self.labels_)[nearest(self.micro_centers_, unit_rows(X))]
            return self._mean_dist_assign(X, self.labels_)
        if m == "kmeans":
            return np.argmin(cdist(X, self.centers_), axis=1)
        if m == "gmm":
            return relabel_like(self.model_.predict(X), self.model_.predict(self.X_fit_), self.labels_)
        if m == "dbscan":
            core = self.X_fit_[self.core_]
            if len(core) == 0:
                return np.full(len(X), -1)
            D = cdist(_safe_for_cosine(X), _safe_for_cosine(core), metric="cosine")
            j = np.argmin(D, axis=1)
            return np.where(D[np.arange(len(X)), j] <= self.eps_, self.labels_[self.core_][j], -1)
        from sklearn.neighbors import KNeighborsClassifier

        knn = KNeighborsClassifier(n_neighbors=min(self.n_neighbors, len(self.X_fit_)), weights="distance",
                                   metric="cosine").fit(_safe_for_cosine(self.X_fit_), self.labels_)
        return knn.predict(_safe_for_cosine(X))

    def predict_levels(self, X) -> np.ndarray | None:
        """Hierarchical only: ``(n, 10)`` level assignments of new points."""
        if self.levels_ is None:
            return None
        X = np.asarray(X, dtype=np.float64)
        if self.micro_centers_ is not None:
            return self._micro_lookup(self.levels_)[nearest(self.micro_centers_, unit_rows(X))]
        return np.stack([self._mean_dist_assign(X, self.levels_[:, L]) for L in range(N_LEVELS)], axis=1)

    def _micro_lookup(self, per_point: np.ndarray) -> np.ndarray:
        """Two-stage tree: the label (row) of each micro-cluster, from its members' labels (rows)."""
        out = np.empty((len(self.micro_centers_), *per_point.shape[1:]), dtype=np.int64)
        out[self.micro_of_] = per_point
        return out

    # -- persistence (npz + JSON, no pickle) -------------------------------------
    def save(self, path) -> None:
        params = self.get_params()
        arrays: dict[str, np.ndarray] = {"params": np.asarray(json.dumps(params, default=json_default)),
                                         "X_fit": self.X_fit_, "labels": self.labels_}
        if self.levels_ is not None:
            arrays["levels"] = self.levels_
            arrays["tree"] = self.tree_
        if getattr(self, "micro_centers_", None) is not None:  # two-stage tree
            arrays.update(micro_centers=self.micro_centers_, micro_of=self.micro_of_)
        if self.method == "kmeans":
            arrays["centers"] = self.centers_
        elif self.method == "gmm":
            g = self.model_
            arrays.update(weights=g.weights_, means=g.means_, covariances=g.covariances_,
                          precisions_cholesky=g.precisions_cholesky_)
        elif self.method == "dbscan":
            arrays.update(eps=np.asarray(self.eps_), core=self.core_)
        atomic_write_npz(path, **arrays)

    @classmethod
    def load(cls, path) -> "Clusterer":
        data = read_npz(path, "cluster model")
        self = cls(**model_params(data, path))
        check_model_arrays(data, self, path)
        self.X_fit_, self.labels_ = data["X_fit"], data["labels"]
        self.levels_, self.tree_ = data.get("levels"), data.get("tree")
        self.eps_ = float(data["eps"]) if "eps" in data else None
        self.micro_centers_, self.micro_of_ = data.get("micro_centers"), data.get("micro_of")
        self.n_clusters_ = int(len(set(self.labels_.tolist()) - {-1}))
        if self.method == "kmeans":
            self.centers_ = data["centers"]
        elif self.method == "gmm":
            from sklearn.mixture import GaussianMixture

            g = GaussianMixture(n_components=len(data["weights"]), covariance_type="full")
            g.weights_, g.means_ = data["weights"], data["means"]
            g.covariances_, g.precisions_cholesky_ = data["covariances"], data["precisions_cholesky"]
            g.n_features_in_ = data["means"].shape[1]
            self.model_ = g
        elif self.method == "dbscan":
            self.core_ = data["core"]
        return self


def model_params(data: dict, path) -> dict:
    """The ``params`` field of a saved cluster model, checked like untrusted input (ModelFileError)."""
    try:
        params = json.loads(str(data["params"]))
    except KeyError:
        raise ModelFileError(f"cluster model '{path}': field 'params' is missing") from None
    except ValueError as exc:
        raise ModelFileError(f"cluster model '{path}': field 'params' is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ModelFileError(f"cluster model '{path}': field 'params' must be a JSON object, got {params!r:.60}")
    known = set(Clusterer().get_params())
    unknown = sorted(set(params) - known)
    if unknown or "method" not in params:
        raise ModelFileError(f"cluster model '{path}': field 'params' has unknown keys {unknown} or no 'method'")
    try:
        Clusterer(**params).check_params()
    except ParameterError as exc:
        raise ModelFileError(f"cluster model '{path}': field 'params' is invalid ({exc})") from None
    if params["method"] != "dbscan" and params.get("n_clusters") == "auto":
        raise ModelFileError(f"cluster model '{path}': field 'params' has n_clusters 'auto' (never saved by a run)")
    return params


def _need(data: dict, path, field: str, kind: str, shape: tuple) -> np.ndarray:
    """``data[field]``: present, of dtype kind in ``kind``, finite, of ``shape`` (``None`` = any size)."""
    where = f"cluster model '{path}': field '{field}'"
    if field not in data:
        raise ModelFileError(f"{where} is missing")
    a = data[field]
    if a.dtype.kind not in kind:
        raise ModelFileError(f"{where} has dtype {a.dtype}; expected {'integers' if kind == 'iu' else 'numbers'}")
    if a.ndim != len(shape) or any(w is not None and w != v for w, v in zip(shape, a.shape)):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        raise ModelFileError(f"{where} has shape {a.shape}; expected {want}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelFileError(f"{where} holds NaN or infinite values")
    return a


def check_model_arrays(data: dict, model: "Clusterer", path) -> None:
    """Every array a saved ``model.method`` needs, with consistent dtypes and shapes (ModelFileError)."""
    X = _need(data, path, "X_fit", "fiu", (None, None))
    n, d = X.shape
    lab = _need(data, path, "labels", "iu", (n,))
    if n < 1 or d < 1 or (lab.size and (lab.min() < -1)):
        raise ModelFileError(f"cluster model '{path}': field 'labels' holds ids below -1 or the model is empty")
    k = int(lab.max()) + 1 if lab.size else 0
    m = model.method
    out = lab == -1  # dbscan noise, or the images --outliers auto set apart (hierarchical, kmeans)
    if (m == "gmm" and out.any()) or (m != "dbscan" and k != len(np.unique(lab[~out]))):
        raise ModelFileError(f"cluster model '{path}': field 'labels' must be ids 0..k-1 for method '{m}'")
    if m == "hierarchical":
        levels = _need(data, path, "levels", "iu", (n, N_LEVELS))
        inl = levels[~out]
        if (np.any(levels[out] != -1) or (inl.size and inl.min() < 0)
                or np.any(levels.max(axis=0) >= np.arange(1, N_LEVELS + 1))):
            raise ModelFileError(f"cluster model '{path}': field 'levels' has ids out of range (column L-1 "
                                 f"holds ids 0..L-1; -1 exactly on the outliers)")
        n = n - int(out.sum())  # the tree is over the images that are not outliers
        if "micro_centers" in data:
            mc = _need(data, path, "micro_centers", "f", (None, d))
            of = _need(data, path, "micro_of", "iu", (n,))
            if of.min() < 0 or of.max() >= len(mc):
                raise ModelFileError(f"cluster model '{path}': field 'micro_of' has ids outside 0..{len(mc) - 1}")
            _need(data, path, "tree", "f", (len(mc) - 1, 4))
        else:
            _need(data, path, "tree", "f", (n - 1, 4))
    elif m == "kmeans":
        _need(data, path, "centers", "f", (k, d))
    elif m == "gmm":
        w = _need(data, path, "weights", "f", (None,))
        _need(data, path, "means", "f", (len(w), d))
        for f in ("covariances", "precisions_cholesky"):
            _need(data, path, f, "f", (len(w), d, d))
    elif m == "dbscan":
        eps = _need(data, path, "eps", "f", ())
        if not float(eps) > 0:
            raise ModelFileError(f"cluster model '{path}': field 'eps' must be > 0, got {float(eps)}")
        _need(data, path, "core", "b", (n,))


def relabel_like(pred: np.ndarray, model_train: np.ndarray, canonical_train: np.ndarray) -> np.ndarray:
    """Map a model's raw cluster ids to the canonical ids of :func:`relabel` via the training labels."""
    mapping = {int(a): int(b) for a, b in zip(model_train.tolist(), canonical_train.tolist())}
    return np.array([mapping.get(int(p), -1) for p in pred], dtype=np.int64)
