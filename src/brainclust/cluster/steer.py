"""``--within COLUMN`` and ``--remove COLUMN``: clusters that answer the user's question.

Frozen features group brain MRI by whatever dominates the picture (the slice plane, the
source), not by what a researcher asks. Two ways to steer the clustering by a known or
detected factor (a metadata column, an estimated plane, ``level_N`` of a first pass):

:class:`StratifiedClusterer` (``--within``)
    One clustering per value of the column (a *stratum*): "which groups exist within my
    axial slices, within my coronal slices...?". Each stratum is reduced by its own PCA
    (``pca``; its own main axes, not those of the whole set, which the factor dominates) and
    clustered with the run's method into its own ``k`` (an int, a mapping stratum -> k, or
    ``"auto"``: the ``--k auto`` vote, :class:`~brainclust.cluster.kselect.KSelector`, within
    the stratum). Every
    image gets one **global** cluster id (the strata's clusters numbered one stratum after
    the other, in sorted stratum order) and keeps its stratum.

:class:`FactorRemover` (``--remove``)
    Factor the column out of the features, then cluster the residual as usual: "what is
    left once plane and scanner are accounted for?". The features stay as they are (until
    2026-12-07 rows were L2-normalised first, which alone moved the clusters: a random
    two-valued column changed a walk's NMI from 0.461 to 0.340; on the features a column
    that says nothing changes almost nothing, and one stratum changes nothing). Two rules:

    * ``"center"``: subtract each stratum's mean and add back the grand mean: every stratum
      gets the same centre, its internal structure is untouched.
    * ``"project"``: remove the *directions* that separate the strata: the span of the
      strata's mean deviations from the grand mean (at most ``S - 1`` directions,
      orthonormalised) is projected out of every row. It needs no stratum at predict time,
      but also removes the within-stratum variance along those directions.

Predicting new images: a stratum must be known or predicted. ``predict(X, strata)`` /
``transform(X, strata)`` take the new images' strata (metadata, a plane estimate, the
first pass's ``predict``); with ``strata=None`` each image gets the stratum whose mean
is nearest (cosine), as :meth:`predict_strata` does (``"project"`` needs none).

Where the strata come from (metadata, the plane, a first pass's levels) is
:mod:`brainclust.model.steering`'s.
"""

from __future__ import annotations

import logging
import numbers
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.metrics import adjusted_mutual_info_score

from brainclust.cluster.kselect import KSelector
from brainclust.cluster.methods import METHODS, Clusterer
from brainclust.cluster.reduce import PCAReducer, distinct_rows, warns_on_cap
from brainclust.cluster.twostage import unit_rows
from brainclust.core.choices import REMOVE_RULES
from brainclust.errors import ParameterError
from brainclust.io.outputs import N_LEVELS
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: The stratum of an image whose column value is missing (empty, None or NaN).
MISSING = "(missing)"
#: Strata smaller than this are not clustered: their images form one cluster.
MIN_STRATUM = 4
#: Columns of categories a refused stratum column's message proposes (those other than the column given).
CATEGORY_EXAMPLES = {"site": "a site", "plane": "a plane", "sequence": "a sequence", "level_": "level_N"}


def listed(names: list[str]) -> str:
    """The first 10 of ``names``, comma-separated (``...`` when there are more)."""
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def check_categories(strata, option: str, column: str = "", min_rows: int = MIN_STRATUM, warn: bool = True) -> None:
    """Refuse a stratum column with fewer than ``min_rows`` rows per value on average (rows with no value, the
    :data:`MISSING` stratum, left out of the count): a measurement or an identifier, whose strata of one or two
    rows hold nothing to cluster (``--within``, 4) or are centred onto their own mean, a point (``--remove``,
    2); ``--remove`` also warns when some values hold a single row."""
    values = [v for v in np.asarray(strata, dtype=object).tolist() if v != MISSING]
    counts = Counter(values)
    name = f"{option}{' ' + column if column else ''}"
    if len(counts) > max(1, len(values) // min_rows):
        others = ", ".join(text for key, text in CATEGORY_EXAMPLES.items()
                           if column.lower() != key and not (key == "level_" and column.startswith(key)))
        raise ParameterError(f"{name}: {len(counts)} values for {len(values)} rows with a value (fewer than "
                             f"{min_rows} rows per value on average): choose a column of categories with fewer values "
                             f"({others}), not a measurement or an identifier, or cluster more images or units")
    single = sorted(str(v) for v, n in counts.items() if n == 1)
    if warn and min_rows < MIN_STRATUM and single:
        log.warning("%s: %s with a single image, which centring puts at the origin (those images then "
                    "cluster together): %s", name, count_text(len(single), "value"), listed(single))


def _warn_small(small: list[str], capped: list[str], same: list[str]) -> None:
    """One warning for all strata below :data:`MIN_STRATUM` images, one for those with no more images (or distinct
    feature vectors) than k, one for those whose images all have the same features."""
    if small:
        log.warning("--within: %s with fewer than %d images, each one cluster: %s",
                    count_text(len(small), "stratum", "strata"), MIN_STRATUM, listed(small))
    if same:
        log.warning("--within: in %s every image has the same features (copies, or blank images), "
                    "each one cluster: %s", count_text(len(same), "stratum", "strata"), listed(same))
    if capped:
        log.warning("--within: --k is at least the number of (distinct) images of %s, so each of "
                    "their images is its own cluster: %s", count_text(len(capped), "stratum", "strata"), listed(capped))
#: AMI above which a factor "explains" the clusters and a steering option is suggested.
DOMINANT_AMI = 0.5


def level_columns(levels: np.ndarray) -> dict[str, np.ndarray]:
    """``{"level_1": ..., "level_10": ...}`` from a fitted hierarchical ``Clusterer.levels_`` (n, 10)."""
    levels = np.asarray(levels)
    return {f"level_{i + 1}": levels[:, i] for i in range(min(levels.shape[1], N_LEVELS))}


def as_strata(values: Sequence) -> np.ndarray:
    """Column values as strings; empty, None and NaN become :data:`MISSING`."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
            out.append(MISSING)
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return np.asarray(out, dtype=object)


def _check_strata(strata, n: int, option: str) -> np.ndarray:
    if strata is None:
        raise ParameterError(f"{option}: fit needs the strata (one value per image)")
    s = as_strata(strata)
    if len(s) != n:
        raise ParameterError(f"{option}: {len(s)} strata for {n} images")
    return s


def _nearest_stratum(U: np.ndarray, means: np.ndarray, names: np.ndarray) -> np.ndarray:
    M = unit_rows(means)
    return names[np.argmax(U @ M.T, axis=1)]


class FactorRemover(TransformerMixin, BaseEstimator):
    """Factor a nuisance column out of the features (``--remove``); see the module docstring.

    Parameters
    ----------
    rule : {"center", "project"}, default "center"

    Attributes
    ----------
    strata_ : ndarray of str
        The strata seen in ``fit`` (sorted).
    means_ : ndarray of shape (n_strata, n_features)
        Mean row of each stratum.
    grand_mean_ : ndarray of shape (n_features,)
    directions_ : ndarray of shape (n_directions, n_features)
        ``"project"``: the orthonormal directions removed.
    passthrough_ : bool
        One stratum: nothing to remove, ``transform`` returns the features unchanged.
    space_ : {"features", "unit"}
        What the means are of: the features (since 2026-12-07), or their unit rows (a model saved before).
    """

    def __init__(self, rule: str = "center"):
        self.rule = rule

    def fit(self, X, strata=None) -> "FactorRemover":
        if self.rule not in REMOVE_RULES:
            raise ParameterError(f"--remove rule: must be one of {', '.join(REMOVE_RULES)}, got {self.rule!r}")
        Z = np.asarray(X, dtype=np.float64)
        if Z.ndim != 2 or not np.all(np.isfinite(Z)):
            raise ParameterError("--remove: features must be a finite 2-D array")
        s = _check_strata(strata, len(Z), "--remove")
        self.strata_ = np.asarray(sorted(set(s.tolist())), dtype=object)
        check_categories(s, "--remove", min_rows=2, warn=False)  # model.steering warns, naming the column
        self.space_ = "features"
        self.means_ = np.stack([Z[s == v].mean(0) for v in self.strata_])
        self.grand_mean_ = Z.mean(0)
        D = self.means_ - self.grand_mean_
        _, sv, Vt = np.linalg.svd(D, full_matrices=False)
        keep = sv > 1e-9 * max(1.0, float(sv.max()) if sv.size else 1.0)
        self.directions_ = Vt[keep]
        self.n_features_in_ = Z.shape[1]
        self.passthrough_ = len(self.strata_) < 2  # (a model saved before 2026-12-06 has none: rows were rescaled)
        return self

    def _rows(self, X) -> np.ndarray:
        """The rows in the space the means are of (:attr:`space_`)."""
        return unit_rows(X) if getattr(self, "space_", "unit") == "unit" else np.asarray(X, dtype=np.float64)

    def predict_strata(self, X) -> np.ndarray:
        """The stratum of each row: the nearest stratum mean (cosine)."""
        return _nearest_stratum(unit_rows(X), self.means_, self.strata_)

    def transform(self, X, strata=None) -> np.ndarray:
        U = self._rows(X)
        if U.ndim != 2 or U.shape[1] != self.n_features_in_:
            raise ParameterError(f"--remove: features have shape {U.shape}; fitted on {self.n_features_in_} dimensions")
        if getattr(self, "passthrough_", False):  # one stratum: nothing to remove, the features pass as they are
            return np.asarray(X)
        if self.rule == "project":
            C = U - self.grand_mean_
            return U - C @ self.directions_.T @ self.directions_
        s = self.predict_strata(U) if strata is None else as_strata(strata)
        if len(s) != len(U):
            raise ParameterError(f"--remove: {len(s)} strata for {len(U)} images")
        unseen = sorted(set(s.tolist()) - set(self.strata_.tolist()))
        if unseen:
            log.warning("--remove: %s of %s unseen in the fit (%s); using the nearest stratum mean",
                        count_text(int(np.isin(s, unseen).sum()), "image"),
                        count_text(len(unseen), "stratum", "strata"), unseen[:3])
            s = s.copy()
            miss = np.isin(s, unseen)
            s[miss] = self.predict_strata(U[miss])
        index = {v: i for i, v in enumerate(self.strata_.tolist())}
        return U - self.means_[[index[v] for v in s]] + self.grand_mean_

    def fit_transform(self, X, strata=None, **_) -> np.ndarray:
        return self.fit(X, strata).transform(X, strata)


def _say_pca_capped(pca: int, shapes: list[tuple[int, int]], warn: bool) -> None:
    """One line for the strata whose ``(images, features)`` allow fewer than ``--pca`` components, naming what
    limits each: the features (the same for every stratum) or the stratum's images."""
    d = shapes[0][1]
    few = sorted(n for n, _ in shapes if n < d)  # strata with fewer images than features
    by_features = len(shapes) - len(few)
    limits = []
    if by_features:
        limits.append(f"the {d} features" + (f" ({count_text(by_features, 'stratum', 'strata')})" if few else ""))
    if few:
        counts = str(few[0]) if few[0] == few[-1] else f"{few[0]} to {few[-1]}"
        limits.append(f"the images of {count_text(len(few), 'stratum', 'strata')} ({counts} images)")
    used = sorted(min(s) for s in shapes)
    (log.warning if warn else log.debug)(
        "--within: --pca %d is more than %s allow; using %s in %s", pca, " and ".join(limits),
        used[0] if used[0] == used[-1] else f"{used[0]} to {used[-1]}", count_text(len(shapes), "stratum", "strata"))


class StratifiedClusterer(ClusterMixin, BaseEstimator):
    """One clustering per stratum, one global id per image (``--within``); see the module docstring.

    Parameters
    ----------
    method : str, default "hierarchical"
    n_clusters : int, "auto" or mapping stratum -> int, default 4
        Clusters per stratum (capped at the stratum's size).
    pca : int, float or None, default 50
        Each stratum's own PCA (a :class:`~brainclust.cluster.reduce.PCAReducer` argument);
        ``None`` clusters the rows as given.
    random_state : int or None, default 0
    warn_cap : bool or None, default None
        Whether capping ``pca`` at what a stratum allows is a warning (the user chose it) or a debug line;
        ``None``: a warning unless ``pca`` is the default 50 (``PCAReducer.warn_cap``).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Global cluster ids, ``0..n_clusters_ - 1``.
    strata_ : ndarray of str
        The strata, sorted.
    stratum_ : ndarray of str of shape (n_samples,)
        Each image's stratum.
    local_labels_ : ndarray of shape (n_samples,)
        The cluster within its stratum.
    k_ : dict
        Stratum -> clusters formed there.
    offsets_ : dict
        Stratum -> its first global id.
    cluster_stratum_ : list of str
        The stratum of each global id.
    k_selection_ : dict
        ``n_clusters="auto"``: stratum -> :meth:`KSelector.as_dict` (its curves and votes).
    levels_ : ndarray of shape (n_samples, 10) or None
        Hierarchical only: column ``L - 1`` cuts every stratum's own tree into (at most) ``L``
        clusters, numbered globally stratum after stratum (the run's ``level_L`` columns).
    n_clusters_ : int
    """

    def __init__(self, method: str = "hierarchical", n_clusters=4, pca=50, random_state: int | None = 0,
                 warn_cap: bool | None = None):
        self.method = method
        self.n_clusters = n_clusters
        self.pca = pca
        self.random_state = random_state
        self.warn_cap = warn_cap

    def _k_for(self, stratum: str):
        k = self.n_clusters
        if isinstance(k, Mapping):
            if stratum not in k:
                raise ParameterError(f"--within: no k given for stratum '{stratum}' (given: {', '.join(map(str, k))})")
            k = k[stratum]
        if k == "auto":
            return k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ParameterError(f"--k: must be a positive integer or 'auto', got {k!r} (stratum '{stratum}')")
        return int(k)

    def fit(self, X, strata=None) -> "StratifiedClusterer":
        if self.method not in METHODS or self.method == "dbscan":
            raise ParameterError(f"--within: needs a method with a k, got '{self.method}'")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise ParameterError("--within: features must be a finite 2-D array")
        s = _check_strata(strata, len(X), "--within")
        self.strata_ = np.asarray(sorted(set(s.tolist())), dtype=object)
        check_categories(s, "--within")
        self.stratum_ = s
        self.labels_ = np.zeros(len(X), dtype=np.int64)
        self.local_labels_ = np.zeros(len(X), dtype=np.int64)
        self.models_, self.k_, self.offsets_, self.k_selection_ = {}, {}, {}, {}
        self.cluster_stratum_: list[str] = []
        U = unit_rows(X)
        self.centroids_ = np.stack([U[s == v].mean(0) for v in self.strata_])
        offset, small, capped, pca_capped, same = 0, [], [], [], []
        for v in self.strata_:
            rows = np.flatnonzero(s == v)
            k = self._k_for(v)
            reducer = None
            Z = X[rows]
            distinct = distinct_rows(Z) if len(rows) >= MIN_STRATUM else 0
            if len(rows) < MIN_STRATUM or distinct < 2:  # one stratum of copies must not end the whole run
                local, model = np.zeros(len(rows), dtype=np.int64), None
                (small if len(rows) < MIN_STRATUM else same).append(str(v))
            else:
                if self.pca is not None:
                    n_pca = self.pca
                    if isinstance(n_pca, int) and n_pca > min(Z.shape):  # said once for all strata, below
                        n_pca, pca_capped = min(Z.shape), pca_capped + [Z.shape]
                    reducer = PCAReducer(n_pca, random_state=self.random_state).fit(Z)
                    Z = reducer.transform(Z)
                if k == "auto":  # as a run without --within: k = 2..rows-1 (strata of MIN_STRATUM rows or more)
                    sel = KSelector(method=self.method, random_state=self.random_state, context=f"stratum {v}",
                                    record="within.k_selection").fit(Z)
                    k, self.k_selection_[v] = sel.k_, sel.as_dict()
                capped += [str(v)] if int(k) >= distinct else []
                model = Clusterer(method=self.method, n_clusters=int(min(k, len(rows), distinct)),
                                  random_state=self.random_state).fit(Z)
                local = model.labels_
            n_local = int(local.max()) + 1
            self.models_[v] = (reducer, model)
            self.k_[v], self.offsets_[v] = n_local, offset
            self.local_labels_[rows] = local
            self.labels_[rows] = offset + local
            self.cluster_stratum_ += [v] * n_local
            offset += n_local
        _warn_small(small, capped, same)
        if pca_capped:
            _say_pca_capped(self.pca, pca_capped, warns_on_cap(self.pca, self.warn_cap))
        self.n_clusters_ = offset
        self.n_features_in_ = X.shape[1]
        self.levels_ = self._global_levels(s) if self.method == "hierarchical" else None
        return self

    def _global_levels(self, s: np.ndarray) -> np.ndarray:
        levels = np.zeros((len(s), N_LEVELS), dtype=np.int64)
        for L in range(N_LEVELS):
            offset = 0
            for v in self.strata_:
                rows = np.flatnonzero(s == v)
                model = self.models_[v][1]
                local = np.zeros(len(rows), dtype=np.int64) if model is None or model.levels_ is None \
                    else model.levels_[:, L]
                levels[rows, L] = offset + local
                offset += int(local.max()) + 1
        return levels

    def predict_strata(self, X) -> np.ndarray:
        """The stratum of each row: the nearest stratum centroid (cosine)."""
        return _nearest_stratum(unit_rows(X), self.centroids_, self.strata_)

    def predict(self, X, strata=None) -> np.ndarray:
        """Global cluster ids of new rows; ``strata`` known or (``None``) predicted by :meth:`predict_strata`."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ParameterError(f"--within: features have shape {X.shape}; fitted on {self.n_features_in_} dimensions")
        s = self.predict_strata(X) if strata is None else as_strata(strata)
        if len(s) != len(X):
            raise ParameterError(f"--within: {len(s)} strata for {len(X)} images")
        unseen = sorted(set(s.tolist()) - set(self.strata_.tolist()))
        if unseen:
            raise ParameterError(f"--within: stratum '{unseen[0]}' was not in the fitted images "
                                 f"(known: {', '.join(self.strata_.tolist())})")
        out = np.empty(len(X), dtype=np.int64)
        for v in set(s.tolist()):
            rows = np.flatnonzero(s == v)
            reducer, model = self.models_[v]
            if model is None:
                out[rows] = self.offsets_[v]
                continue
            Z = X[rows] if reducer is None else reducer.transform(X[rows])
            out[rows] = self.offsets_[v] + model.predict(Z)
        return out


def rank_factors(labels: np.ndarray, columns: Mapping[str, object]) -> list[dict]:
    """Every factor column ranked by its adjusted mutual information with ``labels`` (missing values skipped)."""
    out = []
    for name, values in columns.items():
        s = as_strata(values)
        ok = s != MISSING
        if ok.sum() < 2 or len(set(s[ok].tolist())) < 2:
            continue
        out.append({"column": name, "ami": float(adjusted_mutual_info_score(s[ok], labels[ok])),
                    "n_values": int(len(set(s[ok].tolist())))})
    return sorted(out, key=lambda r: -r["ami"])


def suggestion_for(factors: list[dict]) -> str | None:
    if not factors or factors[0]["ami"] < DOMINANT_AMI:
        return None
    c = factors[0]
    return (f"the clusters follow '{c['column']}' (AMI {c['ami']:.2f}); to look past it, rerun with "
            f"--remove {c['column']} (factor it out) or --within {c['column']} (cluster inside each value)")
