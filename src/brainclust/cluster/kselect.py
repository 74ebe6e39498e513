"""Choose the number of clusters from the data: several internal indices, one vote each.

Following NbClust (Charrad et al., 2014; the method's reference for choosing
k), :class:`KSelector` clusters the data for every ``k`` in a range with the
run's own method and scores each partition with four internal indices:

``silhouette``
    Mean silhouette with the **cosine** distance (the method's score), on the
    features the clustering used. Votes for its maximum.
``calinski_harabasz``
    Between- over within-cluster dispersion (Calinski & Harabasz, 1974).
    Votes for its maximum.
``davies_bouldin``
    Mean worst-case ratio of within-cluster scatter to centre separation
    (Davies & Bouldin, 1979). Votes for its minimum.
``gap``
    The gap statistic (Tibshirani, Walther & Hastie, 2001):
    ``Gap(k) = E*[log W_k] - log W_k`` where ``W_k`` is the pooled
    within-cluster sum of squares and ``E*`` the mean over ``n_references``
    structureless reference sets drawn uniformly in the box aligned with the
    data's principal axes (the paper's variant b), each clustered with the
    same method. Votes for the smallest ``k`` with
    ``Gap(k) >= Gap(k+1) - s(k+1)`` (the paper's one-standard-error rule),
    or for the largest gap when no ``k`` passes.

**Geometry.** Calinski-Harabasz, Davies-Bouldin and ``W_k`` are Euclidean
quantities. For methods that cluster by cosine distance (``hierarchical``
with ``metric="cosine"``, ``spectral``) they are computed on the
L2-normalised rows, where squared Euclidean distance is twice the cosine
distance, so every index sees the geometry the clustering used; for
``kmeans``, ``gmm`` and euclidean hierarchical, on the features as they are.

**Vote.** Each index votes for one ``k``; the ``k`` with the most votes wins.
Ties go to the tied ``k`` with the highest cosine silhouette (the method's own
internal score), then to the smallest ``k``. Indices that are undefined for a
partition (one cluster found) are left out of its vote.

``hierarchical`` builds one linkage tree for the data (and one per reference
set) and cuts it at every ``k``. Above ``sample_max`` images (default 10000;
the data and each reference set get an exact tree) the whole selection runs
on a seeded random sample of ``sample_max`` of them (``sample_size`` in
:meth:`KSelector.as_dict`). ``dbscan`` chooses its own number of clusters
and has no ``k`` to select.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import warnings

import numpy as np
from sklearn import metrics
from sklearn.base import BaseEstimator

from brainclust.cluster.methods import METHODS, cut_levels, hierarchical_tree, make_clusterer
from brainclust.core.arrays import mean_silhouette, seeded_sample, unit_rows
from brainclust.core.cellinfo import cell_info
from brainclust.core.params import Integer, Step, drawn_seed, param
from brainclust.errors import ParameterError
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

INDICES = ("silhouette", "calinski_harabasz", "davies_bouldin", "gap")
#: Which extreme of each curve is best ("gap" uses the one-standard-error rule).
BEST = {"silhouette": "max", "calinski_harabasz": "max", "davies_bouldin": "min", "gap": "1-SE rule"}
TIE_BREAK = "most votes; ties -> highest cosine silhouette among the tied k, then the smallest k"
#: The k ``--k auto`` compares (:class:`KSelector`'s defaults; the range is capped at one less than the rows).
K_MIN, K_MAX = 2, 15


@contextlib.contextmanager
def _quiet_clusterer():
    """Scan many k quietly and on one thread.

    Silences per-fit warnings (degenerate clusters, disconnected spectral
    graphs), and runs the many small fits single-threaded: BLAS/OpenMP thread
    start-up dominates fits this small, and on a busy machine spinning threads
    make them many times slower. Results do not depend on the machine's cores.
    """
    from threadpoolctl import threadpool_limits

    lg = logging.getLogger("brainclust.cluster.base")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        lg.setLevel(old)


def _log_wk(Z: np.ndarray, labels: np.ndarray) -> float:
    """log of the pooled within-cluster sum of squares (Tibshirani's W_k)."""
    w = 0.0
    for c in np.unique(labels):
        P = Z[labels == c]
        w += float(((P - P.mean(axis=0)) ** 2).sum())
    return float(np.log(max(w, 1e-300)))


def _gap_choice(ks: list[int], gap: np.ndarray, sd: np.ndarray) -> int:
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - sd[i + 1]:
            return ks[i]
    return ks[int(np.nanargmax(gap))]


def _too_few(n: int, k_min: int, k_max: int, noun: str = "image") -> str:
    """The start of ``--k auto``'s refusal when ``n`` rows (``noun``: images, or the units) cannot compare
    k = k_min..k_max (the range is capped at ``n - 1``), else ``""``."""
    if min(int(k_max), n - 1) >= k_min:
        return ""
    return f"--k auto: needs at least {count_text(k_min + 1, noun)} to compare k = {k_min}..{k_max}"


def vote(ks: list[int], votes: dict[str, int | None], silhouette: list[float | None]) -> int:
    """The majority ``k`` of ``votes`` (index -> k); see the module docstring for ties."""
    counts = {k: sum(1 for v in votes.values() if v == k) for k in ks}
    top = max(counts.values())
    if top == 0:
        return ks[0]
    tied = [k for k in ks if counts[k] == top]
    sil = {k: (s if s is not None and np.isfinite(s) else -np.inf) for k, s in zip(ks, silhouette)}
    return max(tied, key=lambda k: (sil[k], -k))


class KSelector(BaseEstimator):
    """Choose ``k`` by majority vote of silhouette, Calinski-Harabasz, Davies-Bouldin and gap.

    Parameters
    ----------
    method : str, default "hierarchical"
        The clustering method of the run (not ``dbscan``).
    k_min, k_max : int, default 2, 15
        Range of ``k`` tried; ``k_max`` is capped at ``n_samples - 1``.
    n_references : int, default 10
        Reference sets of the gap statistic (``B`` in the paper).
    random_state : int or None, default None
        Seed of the clusterings and of the reference sets.
    linkage, metric : str, default "average", "cosine"
        Passed to :class:`~brainclust.cluster.methods.Clusterer` (hierarchical only).
    sample_max : int, default 10000
        Above this many images, select ``k`` on a seeded sample of this size.
    context : str, default ""
        Named in the log lines (``--within``: the stratum).
    record : str, default "k_selection"
        Where ``metrics.json`` records the curves, named in the warning (``--within``: ``within.k_selection``).

    Attributes
    ----------
    k_ : int
        The chosen number of clusters.
    ks_ : list of int
        The ``k`` tried.
    curves_ : dict of str to list of float or None
        Each index's value for every ``k`` (``None`` where undefined).
    gap_sd_ : list of float
        ``s_k`` of the gap statistic (standard deviation times sqrt(1 + 1/B)).
    votes_ : dict of str to int or None
        The ``k`` each index votes for.
    labels_ : dict of int to ndarray
        The partition for every ``k`` tried (of the sample's rows when sampled).
    sample_ : ndarray of int or None
        The rows of ``X`` used when ``n > sample_max``.
    """

    def __init__(self, method: str = "hierarchical", k_min: int = K_MIN, k_max: int = K_MAX,
                 n_references: int = 10, random_state: int | None = None, linkage: str = "average",
                 metric: str = "cosine", sample_max: int = 10000, context: str = "", record: str = "k_selection"):
        self.method = method
        self.k_min = k_min
        self.k_max = k_max
        self.n_references = n_references
        self.random_state = random_state
        self.linkage = linkage
        self.metric = metric
        self.sample_max = sample_max
        self.context = context
        self.record = record

    def _check(self, n: int) -> list[int]:
        if self.method not in METHODS or self.method == "dbscan":
            raise ParameterError(f"--k auto: needs a method with a k "
                                 f"({', '.join(m for m in METHODS if m != 'dbscan')}), got '{self.method}'")
        for name in ("k_min", "k_max", "n_references", "sample_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ParameterError(f"{name}: must be a positive integer, got {v!r}")
        if self.k_min < 2:
            raise ParameterError(f"k_min: must be >= 2 (the indices need two clusters), got {self.k_min}")
        if short := _too_few(n, self.k_min, self.k_max):
            raise ParameterError(f"{short}, got {n}")
        top = min(int(self.k_max), n - 2 if self.method == "spectral" else n - 1)  # spectral: k + 2 images at least
        if top < self.k_min:
            raise ParameterError(f"--k auto: --method spectral needs at least k + 2 = {self.k_min + 2} images to try "
                                 f"k = {self.k_min}, got {n}")
        return list(range(int(self.k_min), top + 1))

    def _cosine_geometry(self) -> bool:
        return self.method == "spectral" or (self.method == "hierarchical" and self.metric == "cosine")

    def _partitions(self, X: np.ndarray, ks: list[int], seed) -> dict[int, np.ndarray]:
        if self.method == "hierarchical":
            return cut_levels(hierarchical_tree(X, self.linkage, self.metric), ks)
        out = {}
        for k in ks:
            out[k] = make_clusterer(self.method, n_clusters=k, random_state=seed, linkage=self.linkage,
                                    metric=self.metric).fit(X).labels_
        return out

    def fit(self, X, y=None):
        """Cluster ``X`` for every ``k`` in range, score, vote. Returns ``self``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise ParameterError("features must be a finite 2-D array")
        ks = self._check(len(X))
        rng = np.random.default_rng(self.random_state)
        self.sample_ = None
        if len(X) > self.sample_max:
            self.sample_ = seeded_sample(len(X), int(self.sample_max), rng)
            X = X[self.sample_]
        seed = None if self.random_state is None else int(self.random_state)
        geom = unit_rows if self._cosine_geometry() else (lambda A: A)
        Z = geom(X)
        with _quiet_clusterer():
            parts = self._partitions(X, ks, seed)
            curves: dict[str, list] = {name: [] for name in INDICES}
            log_w = []
            for k in ks:
                lab = parts[k]
                ok = len(np.unique(lab)) >= 2
                curves["silhouette"].append(mean_silhouette(X, lab, budget=None)[0] if ok else None)
                curves["calinski_harabasz"].append(float(metrics.calinski_harabasz_score(Z, lab)) if ok else None)
                curves["davies_bouldin"].append(float(metrics.davies_bouldin_score(Z, lab)) if ok else None)
                log_w.append(_log_wk(Z, lab))
            # reference sets: uniform in the box of the principal axes of X (Tibshirani's variant b)
            mean = X.mean(axis=0)
            _, _, Vt = np.linalg.svd(X - mean, full_matrices=False)
            P = (X - mean) @ Vt.T
            lo, hi = P.min(axis=0), P.max(axis=0)
            ref = np.empty((self.n_references, len(ks)))
            for b in range(self.n_references):
                R = rng.uniform(lo, hi, size=P.shape) @ Vt + mean
                rparts = self._partitions(R, ks, seed)
                RZ = geom(R)
                ref[b] = [_log_wk(RZ, rparts[k]) for k in ks]
        gap = ref.mean(axis=0) - np.asarray(log_w)
        sd = ref.std(axis=0) * np.sqrt(1 + 1 / self.n_references)
        curves["gap"] = [float(g) for g in gap]

        def best(name):
            vals = np.array([np.nan if v is None else v for v in curves[name]], dtype=float)
            if np.all(np.isnan(vals)):
                return None
            i = np.nanargmax(vals) if BEST[name] == "max" else np.nanargmin(vals)
            return ks[int(i)]

        votes = {name: best(name) for name in ("silhouette", "calinski_harabasz", "davies_bouldin")}
        votes["gap"] = _gap_choice(ks, gap, sd)
        self.ks_, self.curves_, self.gap_sd_, self.votes_ = ks, curves, [float(s) for s in sd], votes
        self.labels_ = parts
        self.k_ = vote(ks, votes, curves["silhouette"])
        where = f", {self.context}" if self.context else ""
        cell_info(log, "--k auto (%s%s): votes %s -> k = %d", self.method, where, votes, self.k_)
        if len(ks) == 1 and len(X) - 1 < int(self.k_max):  # 3 rows: a vote with nothing to choose between
            log.warning("--k auto%s: only k = %d is possible with %d rows: nothing was chosen", where, ks[0], len(X))
        if self.k_ == ks[-1] and len(ks) > 2:
            log.warning("--k auto%s: k = %d is the largest k tried (%d..%d): the indices may still improve beyond "
                        "it; look at their curves (metrics.json %s, the report) and give --k if you know more",
                        where, self.k_, ks[0], ks[-1], self.record)
        return self

    def as_dict(self) -> dict:
        """JSON-ready record of the curves, votes and choice (``metrics.json``'s ``k_selection``)."""
        counts = {str(k): sum(1 for v in self.votes_.values() if v == k) for k in self.ks_}
        return {"method": self.method, "ks": list(self.ks_), "chosen_k": int(self.k_),
                "indices": {name: {"curve": self.curves_[name], "best": BEST[name], "vote": self.votes_[name]}
                            for name in INDICES},
                "gap_sd": self.gap_sd_, "n_references": int(self.n_references),
                **({} if getattr(self, "sample_", None) is None else {"sample_size": int(len(self.sample_))}),
                "vote_counts": counts, "tie_break": TIE_BREAK,
                "geometry": "cosine (L2-normalised rows)" if self._cosine_geometry() else "euclidean"}


def check_k_fits(k: int | str, method: str, n: int, where: str, unit: str = "slice", final: bool = True,
                 distinct: int | None = None) -> None:
    """One line (ParameterError) as soon as the number of rows clustered is known, when ``k`` cannot be formed
    from ``n`` of them (``where``: the folder, for the message): ``--k N`` above it, ``--k auto`` below what
    :class:`KSelector` needs to compare k = K_MIN..K_MAX (3 rows). The rows are images, or the units of a
    ``--unit`` other than ``slice`` (``n`` counts those), as the scan found them: the extraction refuses again
    with the images it could decode. ``dbscan`` has no k. ``final``: no row will be set aside
    (``--exclude``), so ``--k`` equal to ``n`` is a warning here (with ``--exclude``, once the rows left are known).
    ``distinct``: how many of the ``n`` images have distinct contents (``None``: not known, or a step may tell
    identical files apart): identical files get identical features, which the fit counts as one point, so ``--k N``
    above it is refused here, before the extraction, rather than warned about and refused after it (one content:
    the fit's InputError says that every image is the same), and ``--k`` equal to it is a warning as for ``n``."""
    if method == "dbscan":
        return
    refused = isinstance(k, int) and distinct is not None and distinct < k <= n  # by the fit, if not here
    if refused and distinct > 1:
        raise ParameterError(f"--k: {k} clusters requested but only {distinct} of the {count_text(n, 'image')} in "
                             f"{where} have distinct contents (identical files share one point); use --k {distinct} "
                             "or fewer")
    noun = "image" if unit == "slice" else unit  # counted from the scan: an image that cannot be decoded counts
    has = f"{count_text(n, 'image')} (found by the scan, decodable or not)" if unit == "slice" else \
        f"{count_text(n, unit)} (--unit {unit})"
    if k == "auto":
        if short := _too_few(n, K_MIN, K_MAX, noun):
            raise ParameterError(f"{short}, but {where} has only {has}")
    elif k > n:
        raise ParameterError(f"--k: {k} clusters requested but {where} has only {has}")
    elif k == n and final and not refused:
        log.warning("--k %d: %s has %s: every %s is a cluster of its own (no silhouette)", k, where, has, noun)
    elif k == distinct and final:  # fewer contents than images: each content is a cluster, its copies together
        log.warning("--k %d: only %d of the %s in %s have distinct contents (identical files share one point): "
                    "every distinct image is a cluster of its own", k, distinct, count_text(n, "image"), where)


def warn_k_decoded(k: int | str | None, n_found: int, n_rows: int, unit: str = "slice") -> None:
    """:func:`check_k_fits`' warning once the rows are known: ``k`` equal to the ``n_rows`` that the images which
    could be decoded make, fewer than the ``n_found`` rows the scan counted (decode failures took the others)."""
    if k == n_rows < n_found:
        noun = "image" if unit == "slice" else unit
        log.warning("--k %d: only %s could be decoded: every %s is a cluster of its own (no silhouette)", k,
                    count_text(n_rows, noun), noun)


def select_k(X, method: str = "hierarchical", random_state: int | None = None, **kwargs) -> KSelector:
    """Shortcut for ``KSelector(method, random_state=..., **kwargs).fit(X)``."""
    return KSelector(method=method, random_state=random_state, **kwargs).fit(X)


def with_k(estimator, k: int):
    """A clone of ``estimator`` with ``n_clusters = k`` (set on the clustering a rule wraps, if any)."""
    from sklearn.base import clone

    if "n_clusters" in estimator.get_params(deep=False):
        return clone(estimator).set_params(n_clusters=int(k))
    return clone(estimator).set_params(estimator=with_k(estimator.estimator, k))


def base_method(estimator) -> tuple[str, int | None]:
    """``(method, random_state)`` of the clustering inside ``estimator`` (itself, or what a rule wraps)."""
    while not hasattr(estimator, "random_state") and hasattr(estimator, "estimator"):
        estimator = estimator.estimator
    return estimator.method, getattr(estimator, "random_state", None)


class AutoK(Step):
    """``--k auto`` as a meta-estimator: choose k on ``X`` (:class:`KSelector`, the run's method and
    seed), then fit a clone of ``estimator`` with that k. Everything else is the fitted clone's.

    Parameters
    ----------
    estimator : a clustering (or an :class:`~brainclust.cluster.outliers.OutlierRule` around one)
        Its ``n_clusters`` is replaced by the chosen k.
    k_min, k_max, n_references, sample_max
        As :class:`KSelector`.

    Attributes
    ----------
    estimator_ : the fitted clone
    selector_ : KSelector
    k_ : int
    """

    _parameter_constraints = {name: param(Integer(1), option=name)
                              for name in ("k_min", "k_max", "n_references", "sample_max")}
    _fitted_attribute = "estimator_"

    def __init__(self, estimator=None, k_min: int = K_MIN, k_max: int = K_MAX, n_references: int = 10,
                 sample_max: int = 10000):
        self.estimator = estimator
        self.k_min = k_min
        self.k_max = k_max
        self.n_references = n_references
        self.sample_max = sample_max

    def fit(self, X, y=None, **fit_params):
        self.check_params()
        method, seed = base_method(self.estimator)
        self.selector_ = KSelector(method=method, k_min=self.k_min, k_max=self.k_max,
                                   n_references=self.n_references, random_state=drawn_seed(seed),
                                   sample_max=self.sample_max).fit(X)
        self.k_ = int(self.selector_.k_)
        self.estimator_ = with_k(self.estimator, self.k_).fit(X, **fit_params)
        return self

    def _fitted(self, name: str):
        self.check_is_fitted()
        return getattr(self.estimator_, name)

    labels_ = property(lambda self: self._fitted("labels_"))
    levels_ = property(lambda self: self._fitted("levels_"))
    tree_ = property(lambda self: self._fitted("tree_"))
    eps_ = property(lambda self: self._fitted("eps_"))
    X_fit_ = property(lambda self: self._fitted("X_fit_"))
    n_clusters_ = property(lambda self: self._fitted("n_clusters_"))

    @property
    def method(self) -> str:
        return base_method(self.estimator)[0]

    def predict(self, X):
        self.check_is_fitted()
        return self.estimator_.predict(X)

    def predict_levels(self, X):
        self.check_is_fitted()
        return self.estimator_.predict_levels(X)

    def leaf_labels(self):
        self.check_is_fitted()
        return self.estimator_.leaf_labels()

    def selection(self) -> dict | None:
        """What ``metrics.json`` records under ``k_selection`` (``None`` for a loaded model)."""
        self.check_is_fitted()
        return self.selector_.as_dict() if self.selector_ is not None else None

    def save_step(self, folder) -> dict:
        """The fitted clustering's file; the entry records this rule, the k chosen and the clustering."""
        self.check_is_fitted()
        inner = self.estimator_.save_step(folder)
        entry = self.entry()
        entry["params"].pop("estimator")
        return {**entry, "k": self.k_, "estimator": {k: v for k, v in inner.items() if k != "files"},
                "files": inner["files"]}

    @classmethod
    def fitted(cls, estimator_, **params) -> "AutoK":
        """The rule around a clustering loaded from a model folder (its k was chosen when it was fitted)."""
        from sklearn.base import clone

        self = cls(estimator=clone(estimator_), **params)
        self.estimator_, self.selector_ = estimator_, None
        self.k_ = int(estimator_.n_clusters_)
        return self


def resolve_k(k: int | str, method: str, emb: np.ndarray, seed: int | None) -> tuple[int, dict | None]:
    """``k`` as an int; ``"auto"`` runs :class:`KSelector` and returns its record.

    ``dbscan`` has no ``k``: ``"auto"`` resolves to 0 (unused) with no selection.
    """
    if k != "auto":
        return k, None
    if method == "dbscan":
        return 0, None
    sel = KSelector(method=method, random_state=seed).fit(emb)
    return sel.k_, sel.as_dict()
