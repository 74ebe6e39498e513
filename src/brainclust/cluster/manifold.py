"""Stage 4 (alternative): a UMAP manifold step after (or instead of) PCA (``--reduce``).

``--reduce pca`` (the default) is :class:`~brainclust.cluster.reduce.PCAReducer` alone.
:class:`UMAPReducer` is the "zero-shot clustering" recipe of Lowe et al. (2024):
PCA first, then UMAP to ``n_components`` (10) dimensions with ``n_neighbors=30``,
``min_dist=0`` and the cosine metric; the clustering then runs on the UMAP output.

* ``pca+umap``: PCA to ``--pca`` components (50 by default), then UMAP.
* ``umap``: UMAP "on the features"; above :data:`UMAP_PRE_PCA` (100) dimensions
  the features are still PCA'd to 100 first (a 16k-dim pixel vector makes the
  nearest-neighbour search slow and adds nothing the first 100 components do not).

The UMAP output is **centred** (its training mean is subtracted), so the cosine
distance of the reference clustering measures directions from the centre of
the embedding rather than from an arbitrary origin.

Determinism and scale: UMAP runs with ``random_state=seed`` (umap-learn then
runs single-threaded). It is fitted on at most ``fit_max`` (20,000) rows,
a seeded sample; the other rows are embedded with UMAP's ``transform`` in chunks.

In a model the two parts are two steps: the reducer (:class:`~brainclust.cluster.reduce.PCAReducer`,
:func:`pre_pca_reducer`) and the manifold (:class:`UMAPManifold`, the one UMAP code path).
:class:`UMAPReducer` is the two together, for code that wants one estimator.

Persistence without pickle: a fitted UMAP cannot be saved as arrays, so
:meth:`UMAPManifold.save` writes the UMAP's *training input* (the PCA output of the
fitted rows), its settings and its embedding to ``.npz``; the PCA is saved
separately as the run's ``pca.npz``. :meth:`UMAPManifold.load` re-fits UMAP on
that input with the same seed (deterministic: the same embedding comes back on
the same software versions) and then sets the saved embedding as the model's,
so ``transform`` of new images (``brainclust predict``) places them against the
run's own embedding. Re-fitting costs as much as the run's UMAP fit.

umap-learn is an optional extra: ``pip install brainclust[umap]``.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
from sklearn.base import TransformerMixin

from brainclust.cluster.base import SEED
from brainclust.cluster.reduce import PCAReducer
from brainclust.core.arrays import cosine_knn, seeded_sample
from brainclust.core.choices import REDUCTIONS
from brainclust.core.params import ArrayStep, Integer, OneOf, Real, param
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz, read_npz

__all__ = ["REDUCTIONS", "UMAP_PRE_PCA", "UMAPManifold", "UMAPReducer", "build_reducer", "check_reduce",
           "cosine_knn", "pre_pca_reducer", "reduction_record"]

log = logging.getLogger(__name__)

#: ``--reduce umap``: features wider than this are PCA'd to this many components first.
UMAP_PRE_PCA = 100


def check_reduce(value) -> str:
    """``--reduce``: one of :data:`REDUCTIONS`; a UMAP reduction needs umap-learn installed."""
    if value not in REDUCTIONS:
        raise ParameterError(f"--reduce: must be one of {', '.join(REDUCTIONS)}, got {value!r}")
    if value != "pca":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise ParameterError(f"--reduce {value}: needs the optional package umap-learn "
                                 "(pip install 'brainclust[umap]')") from None
    return value


def pre_pca_reducer(reduce: str, pca, random_state: int | None, pca_given: bool | None = None) -> PCAReducer:
    """The model's PCA step for ``--reduce``: ``--pca`` (pca, pca+umap), or 100 components for wider
    features (umap: :data:`UMAP_PRE_PCA`; narrower ones pass unchanged, and a cap is never the user's).
    ``pca_given``: whether the user set ``--pca`` (its cap is then a warning; see ``PCAReducer.warn_cap``)."""
    check_reduce(reduce)
    if reduce == "umap":
        return PCAReducer(UMAP_PRE_PCA, random_state=random_state, only_if_wider=True, warn_cap=False)
    return PCAReducer(pca, random_state=random_state, warn_cap=pca_given)


def build_reducer(reduce: str, pca, random_state: int | None):
    """One estimator for ``--reduce``: a PCAReducer for ``pca``, else a :class:`UMAPReducer`."""
    check_reduce(reduce)
    if reduce == "pca":
        return PCAReducer(pca, random_state=random_state)
    return UMAPReducer(pre_pca=pca if reduce == "pca+umap" else "auto", random_state=random_state)


class UMAPManifold(TransformerMixin, ArrayStep):
    """UMAP to ``n_components`` dimensions, centred (the manifold step; see the module docstring).

    Parameters
    ----------
    n_components, n_neighbors, min_dist, metric
        UMAP's settings (capped for tiny data sets: ``n_neighbors <= n - 1``).
    fit_max : int, default 20000
        UMAP is fitted on a seeded sample of at most this many rows.
    chunk : int, default 10000
        Rows per ``transform`` call for the rest.
    random_state : int or None

    Attributes
    ----------
    umap_ : umap.UMAP
    fit_index_ : ndarray of the rows UMAP was fitted on
    train_input_ : ndarray, those rows of the input
    center_ : ndarray (n_components,)
    """

    _parameter_constraints = {**{name: param(Integer(1), option=f"umap {name}")
                                 for name in ("n_components", "n_neighbors", "fit_max", "chunk")},
                              "min_dist": param(Real(0.0, None), option="umap min_dist"),
                              "metric": param(OneOf(("cosine", "euclidean")), option="umap metric"),
                              "random_state": SEED}
    _fitted_attribute = "center_"

    def __init__(self, n_components: int = 10, n_neighbors: int = 30, min_dist: float = 0.0,
                 metric: str = "cosine", fit_max: int = 20000, chunk: int = 10000, random_state: int | None = None):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.fit_max = fit_max
        self.chunk = chunk
        self.random_state = random_state

    def check_params(self):
        super().check_params()
        check_reduce("umap")
        return self

    def _umap(self, n: int, **extra):
        import umap

        if n < self.n_components + 2:
            raise ParameterError(f"--reduce: UMAP to {self.n_components} dimensions needs at least "
                                 f"{self.n_components + 2} images, got {n}")
        return umap.UMAP(n_components=self.n_components, n_neighbors=max(2, min(self.n_neighbors, n - 1)),
                         min_dist=self.min_dist, metric=self.metric, random_state=self.random_state,
                         transform_seed=0 if self.random_state is None else int(self.random_state) % (2**31),
                         n_jobs=1, **extra)

    def _layout(self, Z: np.ndarray, keep_model: bool) -> tuple[object, np.ndarray]:
        """The one UMAP path: ``(model, embedding)`` of ``Z``. Without ``keep_model`` the exact cosine
        neighbours are handed to UMAP (``precomputed_knn``), which is faster below 4096 rows
        (umap-learn computes every distance through a Python-level loop there) but leaves a model
        that cannot ``transform``."""
        model = self._umap(len(Z))
        if keep_model:
            return model.fit(Z), None
        if self.metric != "cosine":
            raise ParameterError(f"embed_only: computes cosine neighbours; metric is {self.metric!r}")
        model.set_params(precomputed_knn=(*cosine_knn(Z, model.n_neighbors), None))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # no transform is wanted
            return None, model.fit_transform(Z)

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        self.check_params()
        Z = np.asarray(X, dtype=np.float64)
        n = len(Z)
        idx = seeded_sample(n, self.fit_max, self.random_state) if n > self.fit_max else np.arange(n)
        self.fit_index_ = idx
        self.train_input_ = Z[idx]
        self.umap_, _ = self._layout(self.train_input_, keep_model=True)
        emb = np.empty((n, self.n_components))
        emb[idx] = self.umap_.embedding_
        rest = np.setdiff1d(np.arange(n), idx)
        if len(rest):
            emb[rest] = self._raw_transform(Z[rest])
        self.center_ = self.umap_.embedding_.mean(axis=0)
        self.n_features_in_ = Z.shape[1]
        return emb - self.center_

    def embed_only(self, X) -> np.ndarray:
        """The centred UMAP embedding of ``X`` (at most ``fit_max`` rows), with no model kept.

        For the label-free criteria of ``--auto``, which need the embedding alone. A different
        floating-point path from :meth:`fit_transform` (the neighbours are exact): the layout is
        not bit-identical to it (two clusterings of the 4-class dev set's embeddings agreed at ARI 0.985).
        """
        self.check_params()
        Z = np.asarray(X, dtype=np.float64)
        if len(Z) > self.fit_max:
            raise ParameterError(f"embed_only: at most fit_max = {self.fit_max} rows, got {len(Z)}")
        _, emb = self._layout(Z, keep_model=False)
        return emb - emb.mean(axis=0)

    def _raw_transform(self, Z: np.ndarray) -> np.ndarray:
        parts = [self.umap_.transform(Z[i:i + self.chunk]) for i in range(0, len(Z), self.chunk)]
        return np.concatenate(parts, axis=0).astype(np.float64)

    def transform(self, X):
        self.check_is_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ParameterError(f"features have {X.shape[-1]} dimensions; the reducer was fitted on "
                                 f"{self.n_features_in_}")
        return self._raw_transform(self._input(X)) - self.center_

    def _input(self, X: np.ndarray) -> np.ndarray:
        """What UMAP sees of ``X`` (a subclass puts its PCA here)."""
        return X

    # -- persistence (npz, no pickle; see the module docstring) ---------------------
    def save(self, path, params: dict | None = None) -> None:
        self.check_is_fitted()
        atomic_write_npz(path, params=np.asarray(json.dumps(params or self.get_params())),
                         train_input=self.train_input_, embedding=self.umap_.embedding_, center=self.center_,
                         n_features_in=np.asarray(self.n_features_in_))

    def save_step(self, folder) -> dict:
        from brainclust.io.outputs import MODEL_FILES

        self.save(folder / MODEL_FILES["umap"])
        return {**self.entry(), "files": [MODEL_FILES["umap"]]}

    @classmethod
    def load_step(cls, folder, entry) -> "UMAPManifold":
        from brainclust.io.outputs import MODEL_FILES

        return cls.load(folder / MODEL_FILES["umap"])

    @classmethod
    def load(cls, path) -> "UMAPManifold":
        """Rebuild a fitted manifold from ``path`` (re-fits UMAP deterministically, see the module docstring)."""
        data = read_npz(path, "UMAP model")
        try:
            params = json.loads(str(data["params"]))
            self = cls(**{k: v for k, v in params.items() if k in cls._get_param_names()})
            train, saved = data["train_input"], data["embedding"]
            center, width = data["center"], int(data["n_features_in"])
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"UMAP model '{path}' is missing or damaged ({exc})") from None
        try:
            self.check_params()
        except ParameterError as exc:
            raise ModelFileError(f"UMAP model '{path}': field 'params' is invalid ({exc})") from None
        self.train_input_ = train
        self.umap_, _ = self._layout(train, keep_model=True)
        if saved.shape != self.umap_.embedding_.shape:
            raise ModelFileError(f"UMAP model '{path}' is damaged (embedding shape {saved.shape})")
        drift = float(np.abs(saved - self.umap_.embedding_).max())
        if drift > 1e-3:
            log.warning("UMAP re-fitted from '%s' differs from the saved embedding (max %.3g; other software "
                        "versions?); new images are placed against the saved embedding", path, drift)
        self.umap_.embedding_ = saved
        self.center_, self.n_features_in_ = center, width
        self.fit_index_ = np.arange(len(saved))
        return self


def reduction_record(pca: PCAReducer, manifold: UMAPManifold | None) -> tuple[dict, dict | None]:
    """What ``manifest.json`` records of the reduction: its ``pca`` section, and ``reduce`` with a manifold."""
    if manifold is None:
        evr = pca.explained_variance_ratio_
        return ({"n_components": pca.n_components_, "solver": pca.solver_, "fit_rows": pca.fit_rows_,
                 "explained_variance": float(evr.sum()) if evr is not None else None}, None)
    pre = int(pca.n_components_) if pca.components_ is not None else 0
    pre_pca = "auto" if pca.only_if_wider else pca.n_components
    return ({"n_components": int(manifold.n_components), "solver": f"{pca.solver_}+umap",
             "fit_rows": len(manifold.train_input_), "explained_variance": None},
            {"method": "umap", "pre_pca_components": pre, "pre_pca": pre_pca, **manifold.get_params(),
             "n_fit": int(len(manifold.fit_index_)), "centred": True})


class UMAPReducer(UMAPManifold):
    """PCA, then UMAP, as one estimator (a model keeps them as two steps: the reducer and the manifold).

    Parameters
    ----------
    pre_pca : int, float, 0 or "auto", default "auto"
        The PCA before UMAP (as ``--pca``); ``"auto"``: :data:`UMAP_PRE_PCA` components when the
        features are wider than that, else none.
    n_components, n_neighbors, min_dist, metric, fit_max, chunk, random_state
        As :class:`UMAPManifold`.

    Attributes
    ----------
    pca_ : PCAReducer
    umap_, fit_index_, train_input_, center_
        As :class:`UMAPManifold` (of the PCA output).
    n_components_, solver_, fit_rows_, n_distinct_, explained_variance_ratio_ (None)
        What a run records of a reducer, as :class:`PCAReducer` has them.
    """

    _fitted_attribute = "pca_"

    def __init__(self, pre_pca="auto", n_components: int = 10, n_neighbors: int = 30, min_dist: float = 0.0,
                 metric: str = "cosine", fit_max: int = 20000, chunk: int = 10000, random_state: int | None = None):
        super().__init__(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                         fit_max=fit_max, chunk=chunk, random_state=random_state)
        self.pre_pca = pre_pca

    def _pre(self) -> PCAReducer:
        if self.pre_pca == "auto":
            return PCAReducer(UMAP_PRE_PCA, random_state=self.random_state, only_if_wider=True)
        return PCAReducer(self.pre_pca, random_state=self.random_state)

    def check_params(self):
        self._pre().check_params()
        return super().check_params()

    def fit_transform(self, X, y=None):
        self.check_params()
        X = np.asarray(X, dtype=np.float64)
        self.pca_ = self._pre().fit(X)
        emb = super().fit_transform(self.pca_.transform(X))
        self._pca_attributes()
        return emb

    def _pca_attributes(self) -> None:
        self.n_features_in_ = self.pca_.n_features_in_
        self.n_components_ = int(self.n_components)
        self.explained_variance_ratio_ = None
        self.n_distinct_ = getattr(self.pca_, "n_distinct_", len(self.train_input_))
        self.solver_ = f"{getattr(self.pca_, 'solver_', 'pca')}+umap"
        self.fit_rows_ = len(self.train_input_)

    def embed_only(self, X) -> np.ndarray:
        """The centred UMAP embedding of ``X`` after the PCA, with no model kept
        (see :meth:`UMAPManifold.embed_only`)."""
        self.check_params()
        X = np.asarray(X, dtype=np.float64)
        if len(X) > self.fit_max:
            raise ParameterError(f"embed_only: at most fit_max = {self.fit_max} rows, got {len(X)}")
        return super().embed_only(self._pre().fit_transform(X))

    def _input(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X)

    def as_dict(self) -> dict:
        """The settings recorded in the manifest."""
        self.check_is_fitted()
        return reduction_record(self.pca_, self)[1]

    def save(self, path, params: dict | None = None) -> None:
        """The UMAP part only (the PCA is saved by the caller, as ``pca.npz``)."""
        super().save(path, params=params or self.get_params())

    @classmethod
    def load(cls, path, pca: PCAReducer) -> "UMAPReducer":
        """Rebuild a fitted reducer from ``path`` and the run's PCA (re-fits UMAP deterministically)."""
        self = super().load(path)  # a UMAPReducer of the file's settings, its UMAP re-fitted
        self.pca_ = pca
        self._pca_attributes()
        return self
