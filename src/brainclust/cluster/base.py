"""What every clustering estimator shares; one estimator per method sits on it
(:mod:`.hierarchical`, :mod:`.kmeans`, :mod:`.gmm`, :mod:`.dbscan`, :mod:`.spectral`).

* **Canonical ids.** Cluster ids are renumbered ``0..k-1`` in order of first appearance
  (:func:`relabel`), so equal partitions get equal ids; ``-1`` is noise (DBSCAN) or an image set
  apart by :class:`~brainclust.cluster.outliers.OutlierRule`.
* **The fit contract.** Finite 2-D features, at least 2 rows, ``k <= n``; methods that do not
  scale refuse above ``exact_max`` rows with one line naming the alternative; a degenerate result
  (one cluster, or one cluster holding over 90% of the images) is logged as a warning.
* **The predict contract.** ``predict`` of an unfitted estimator raises
  :class:`~brainclust.errors.NotFittedError`; new points of another width are refused; the ids
  are the training's canonical ids. ``predict_levels`` gives the tree's ten levels (``None``
  for flat methods).
* **Persistence.** One ``.npz`` (no pickle): ``params`` (JSON: ``method`` and the parameters),
  ``X_fit``, ``labels`` and the method's own arrays. A loaded file is checked like untrusted
  input: any missing, mistyped or inconsistent field is a :class:`~brainclust.errors.ModelFileError`
  naming the file and the field.
"""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import numpy as np
from sklearn.base import ClusterMixin

from brainclust.core.arrays import as_numbers, check_finite_rows
from brainclust.core.params import GENERATOR, NONE, Integer, Step, drawn_seed, param
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz, json_default

log = logging.getLogger(__name__)

#: ``random_state`` of the steps that take a seed only (``--seed``), and the run's ``seed``: what NumPy and
#: scikit-learn accept as a seed.
SEED = param(NONE, Integer(0, 2**32 - 1), option="--seed")
#: ``random_state`` of the clusterers and the PCA: a seed, or a numpy Generator or RandomState that each ``fit`` draws
#: one seed from (:func:`~brainclust.core.params.drawn_seed`; the fit's ``seed_``, which a saved model records).
RANDOM_STATE = param(*SEED.rules, GENERATOR, option="--seed")
#: ``n_clusters`` (``--k``) of the methods that take one; ``auto`` is the run's (:mod:`brainclust.cluster.kselect`).
N_CLUSTERS = param(Integer(1), option="--k",
                   hints=(("auto", "'auto' chooses k only in brainclust.run(k='auto') / brainclust run --k auto"),))
#: Rows clustered exactly by the methods that do not scale (``exact_max``).
EXACT_MAX = 20000
#: The warning of a fit that found one cluster or none (method, what it found, images); a study's cells drop it
#: and say it once, counted (:func:`brainclust.analysis.common.warn_fewer_found`).
ONE_CLUSTER = "%s found %s for %d images: the features do not separate"
#: The warning of a fit that put more than :data:`BIG_SHARE` of the images in one cluster (method, its size, images,
#: percent); a study's cells drop it and say it once, counted from their ``largest_cluster`` (as :data:`ONE_CLUSTER`).
ONE_BIG = ("%s put %d of %d images (%.0f%%) in one cluster; the other clusters are tiny (weakly structured "
           "features, or a few images far from the rest)")
BIG_SHARE = 0.9


def check_seed(seed) -> None:
    """A run's ``seed`` (``--seed``): an integer in [0, 2**32 - 1], or ``None``."""
    SEED.check("seed", seed)


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


def relabel_like(pred: np.ndarray, model_train: np.ndarray, canonical_train: np.ndarray) -> np.ndarray:
    """Map a model's raw cluster ids to the canonical ids of :func:`relabel` via the training labels."""
    mapping = {int(a): int(b) for a, b in zip(model_train.tolist(), canonical_train.tolist())}
    return np.array([mapping.get(int(p), -1) for p in pred], dtype=np.int64)


def check_features(X) -> np.ndarray:
    """``X`` as a finite 2-D float64 array, else a ParameterError."""
    X = as_numbers(X)
    if X.ndim != 2:
        raise ParameterError(f"features must be a 2-D array (n, d), got shape {X.shape}")
    check_finite_rows(X)
    return X


def need_array(data: dict, path, field: str, kind: str, shape: tuple, what: str = "cluster model") -> np.ndarray:
    """``data[field]``: present, of a dtype kind in ``kind``, finite, of ``shape`` (``None`` = any size)."""
    where = f"{what} '{path}': field '{field}'"
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


class BaseClusterer(ClusterMixin, Step):
    """The shared part of the clustering estimators (see the module docstring).

    Fitted attributes of every method: ``labels_`` (canonical ids, ``-1`` noise), ``n_clusters_``
    (clusters found, noise excluded), ``X_fit_`` (the points clustered: a copy when ``fit`` was given a writeable
    array itself, so that editing it afterwards does not change ``predict``; a read-only array is kept as it is),
    ``n_features_in_``, ``seed_`` (the seed of the fit: ``random_state``, or the one drawn from a numpy
    generator); ``levels_``, ``tree_`` and ``eps_`` are ``None`` unless the method has them.
    """

    #: the ``--method`` name
    method: ClassVar[str] = ""
    #: whether ``-1`` may appear among the saved labels (noise, or outliers set apart)
    allows_minus_one: ClassVar[bool] = False
    _fitted_attribute = "labels_"
    levels_ = tree_ = eps_ = None

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Cluster ``X`` (n, d); returns ``self``."""
        given, X = X, check_features(X)
        self.check_params()
        self._check_size(len(X))
        self.seed_ = drawn_seed(getattr(self, "random_state", None))
        own = not np.may_share_memory(X, given) or not getattr(given, "flags", X.flags).writeable  # read-only: kept
        self.X_fit_, self.n_features_in_ = X if own else X.copy(), X.shape[1]
        self.labels_ = relabel(self._fit(X))
        self.n_clusters_ = int(len(np.unique(self.labels_[self.labels_ >= 0])))
        self._warn_degenerate()
        return self

    def _fit(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - each method defines it
        raise NotImplementedError

    def _check_size(self, n: int) -> None:
        if n < 2:
            raise ParameterError(f"clustering needs at least 2 images, got {n}")
        k = getattr(self, "n_clusters", None)
        if k is not None and k > n:
            raise ParameterError(f"{N_CLUSTERS.label('n_clusters')}: {k} clusters requested but there are only {n} "
                                 "images")

    def _refuse_above(self, n: int, why: str) -> None:
        """Above ``exact_max`` rows: one line with the limit, why, and the alternative."""
        if n > self.exact_max:
            raise ParameterError(f"--method {self.method}: at most exact_max={self.exact_max} images ({why}), "
                                 f"got {n}; use --method hierarchical (average/cosine: two-stage tree) or "
                                 "kmeans, or cluster a sample")

    def _warn_degenerate(self) -> None:
        lab, n = self.labels_, len(self.labels_)
        if self.n_clusters_ <= 1:
            if getattr(self, "n_clusters", None) == 1:  # one cluster was asked for
                return
            found = "no cluster (every image is noise)" if self.n_clusters_ == 0 else "a single cluster"
            log.warning(ONE_CLUSTER, self.method, found, n)
            return
        biggest = np.bincount(lab[lab >= 0]).max()
        if biggest > BIG_SHARE * n:
            log.warning(ONE_BIG, self.method, biggest, n, 100 * biggest / n)

    # -- prediction ----------------------------------------------------------------------
    def _check_new(self, X) -> np.ndarray:
        self.check_is_fitted()
        X, d = as_numbers(X), self.X_fit_.shape[1]
        if X.ndim != 2:  # one image's row: "30 dimensions; the model was fitted on 30" read as a contradiction
            raise ParameterError(f"features must be a 2-D array of shape (n, {d}), got shape {X.shape}"
                                 + (" (one image: X.reshape(1, -1))" if X.shape == (d,) else ""))
        if X.shape[1] != d:
            raise ParameterError(f"features have {X.shape[1]} dimensions; the model was fitted on {d} "
                                 f"(expected shape (n, {d}))")
        check_finite_rows(X)
        return X

    def predict(self, X) -> np.ndarray:
        """Cluster ids of new points (the rule of the method's module)."""
        return self._predict(self._check_new(X))

    def _predict(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - each method defines it
        raise NotImplementedError

    def predict_levels(self, X) -> np.ndarray | None:
        """The ten tree levels of new points, ``(n, 10)``; ``None`` for a method without a tree."""
        self._check_new(X)
        return None

    # -- persistence (npz + JSON, no pickle) -----------------------------------------------
    def params_json(self) -> str:
        return json.dumps({"method": self.method, **self.record_params()}, default=json_default)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything ``save`` writes besides ``params``: ``X_fit``, ``labels`` and the method's arrays."""
        self.check_is_fitted()
        return {"X_fit": self.X_fit_, "labels": self.labels_, **self._arrays()}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def save(self, path) -> None:
        atomic_write_npz(path, params=np.asarray(self.params_json()), **self.state_arrays())

    def save_step(self, folder) -> dict:
        from brainclust.io.outputs import MODEL_FILES

        self.save(folder / MODEL_FILES["cluster"])
        return {**self.entry(), "files": [MODEL_FILES["cluster"]]}

    @classmethod
    def check_arrays(cls, data: dict, path) -> tuple[int, int, np.ndarray]:
        """The arrays every method saves, checked; returns ``(n, d, labels)``. Each method adds its own."""
        X = need_array(data, path, "X_fit", "fiu", (None, None))
        n, d = X.shape
        lab = need_array(data, path, "labels", "iu", (n,))
        if n < 1 or d < 1 or (lab.size and lab.min() < -1):
            raise ModelFileError(f"cluster model '{path}': field 'labels' holds ids below -1 or the model is empty")
        out = lab == -1
        k = int(lab.max()) + 1 if lab.size else 0
        if (out.any() and not cls.allows_minus_one) or k != len(np.unique(lab[~out])):
            raise ModelFileError(f"cluster model '{path}': field 'labels' must be ids 0..k-1 for method "
                                 f"'{cls.method}'")
        return n, d, lab

    @classmethod
    def from_arrays(cls, params: dict, data: dict, path) -> "BaseClusterer":
        """A fitted estimator from a saved file's ``params`` and arrays (checked; ModelFileError)."""
        self = cls(**params)
        cls.check_arrays(data, path)
        self.X_fit_, self.labels_ = data["X_fit"], data["labels"]
        self.n_features_in_ = self.X_fit_.shape[1]
        self.n_clusters_ = int(len(set(self.labels_.tolist()) - {-1}))
        self._restore(data)
        return self

    def _restore(self, data: dict) -> None:
        """Set the method's own fitted attributes from checked arrays."""
