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

Persistence without pickle: a fitted UMAP cannot be saved as arrays, so
:meth:`UMAPReducer.save` writes the UMAP's *training input* (the PCA output of the
fitted rows), its settings and its embedding to ``.npz``; the PCA is saved
separately as the run's ``pca.npz``. :meth:`UMAPReducer.load` re-fits UMAP on
that input with the same seed (deterministic: the same embedding comes back on
the same software versions) and then sets the saved embedding as the model's,
so ``transform`` of new images (``brainclust predict``) places them against the
run's own embedding. Re-fitting costs as much as the run's UMAP fit.

umap-learn is an optional extra: ``pip install brainclust[umap]``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from brainclust.cluster.reduce import PCAReducer
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz, read_npz

log = logging.getLogger(__name__)

REDUCTIONS = ("pca", "umap", "pca+umap")
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


def cosine_knn(Z: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine nearest neighbours in UMAP's layout: ``(indices, distances)`` of shape ``(n, k)``,
    each row's own index first at distance 0."""
    U = np.asarray(Z, dtype=np.float64)
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    idx = np.empty((len(U), k), dtype=np.int32)
    dist = np.empty((len(U), k), dtype=np.float32)
    for s in range(0, len(U), chunk):
        D = 1.0 - U[s:s + chunk] @ U.T
        rows = np.arange(s, min(s + chunk, len(U)))
        D[rows - s, rows] = -1.0  # self first
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(D, part, 1), axis=1, kind="stable")
        idx[rows] = np.take_along_axis(part, order, 1)
        dist[rows] = np.maximum(np.take_along_axis(D, idx[rows], 1), 0.0)
    return idx, dist


def build_reducer(reduce: str, pca, random_state: int | None):
    """The reducer of ``--reduce``: a PCAReducer for ``pca``, else a :class:`UMAPReducer`."""
    check_reduce(reduce)
    if reduce == "pca":
        return PCAReducer(pca, random_state=random_state)
    return UMAPReducer(pre_pca=pca if reduce == "pca+umap" else "auto", random_state=random_state)


class UMAPReducer(TransformerMixin, BaseEstimator):
    """PCA, then UMAP (see the module docstring).

    Parameters
    ----------
    pre_pca : int, float, 0 or "auto", default "auto"
        The PCA before UMAP (as ``--pca``); ``"auto"``: :data:`UMAP_PRE_PCA` components
        when the features are wider than that, else none.
    n_components, n_neighbors, min_dist, metric
        UMAP's settings (capped for tiny data sets: ``n_neighbors <= n - 1``).
    fit_max : int, default 20000
        UMAP is fitted on a seeded sample of at most this many rows.
    chunk : int, default 10000
        Rows per ``transform`` call for the rest.
    random_state : int or None

    Attributes
    ----------
    pca_ : PCAReducer
    umap_ : umap.UMAP
    fit_index_ : ndarray of the rows UMAP was fitted on
    center_ : ndarray (n_components,)
    n_components_ : int
    explained_variance_ratio_ : None (kept for the manifest's ``pca`` record)
    """

    def __init__(self, pre_pca="auto", n_components: int = 10, n_neighbors: int = 30, min_dist: float = 0.0,
                 metric: str = "cosine", fit_max: int = 20000, chunk: int = 10000, random_state: int | None = None):
        self.pre_pca = pre_pca
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.fit_max = fit_max
        self.chunk = chunk
        self.random_state = random_state

    def check_params(self) -> None:
        if self.pre_pca != "auto":
            PCAReducer(self.pre_pca).check_params()
        for name in ("n_components", "n_neighbors", "fit_max", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"umap {name}: must be a positive integer, got {v!r}")
        check_reduce("umap")

    def _umap(self, n: int, **extra):
        import umap

        if n < self.n_components + 2:
            raise ParameterError(f"--reduce: UMAP to {self.n_components} dimensions needs at least "
                                 f"{self.n_components + 2} images, got {n}")
        return umap.UMAP(n_components=self.n_components, n_neighbors=max(2, min(self.n_neighbors, n - 1)),
                         min_dist=self.min_dist, metric=self.metric, random_state=self.random_state,
                         transform_seed=0 if self.random_state is None else int(self.random_state) % (2**31),
                         n_jobs=1, **extra)

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.check_params()
        pre = self.pre_pca
        if pre == "auto":
            pre = UMAP_PRE_PCA if X.shape[1] > UMAP_PRE_PCA else 0
        self.pca_ = PCAReducer(pre, random_state=self.random_state).fit(X)
        Z = self.pca_.transform(X)
        n = len(Z)
        if n > self.fit_max:
            idx = np.sort(np.random.default_rng(self.random_state).choice(n, self.fit_max, replace=False))
        else:
            idx = np.arange(n)
        self.fit_index_ = idx
        self.train_input_ = Z[idx]
        self.umap_ = self._umap(len(idx)).fit(self.train_input_)
        emb = np.empty((n, self.n_components))
        emb[idx] = self.umap_.embedding_
        rest = np.setdiff1d(np.arange(n), idx)
        if len(rest):
            emb[rest] = self._raw_transform(Z[rest])
        self.center_ = self.umap_.embedding_.mean(axis=0)
        self.n_features_in_ = X.shape[1]
        self._pca_attributes()
        return emb - self.center_

    def embed_only(self, X) -> np.ndarray:
        """The centred UMAP embedding of ``X`` (at most ``fit_max`` rows), with no model kept for ``transform``.

        The cosine nearest neighbours are computed exactly in NumPy and handed to UMAP
        (``precomputed_knn``): below 4096 rows umap-learn otherwise computes every pairwise
        distance through a Python-level loop (3.6 s of a 5.7 s fit at 1000 rows). For the
        label-free criteria of ``--auto``, which need the embedding alone. A different
        floating-point path from :meth:`fit_transform`: the layout is not bit-identical to
        it (two clusterings of the 4-class dev set's embeddings agreed at ARI 0.985).
        """
        import warnings

        X = np.asarray(X, dtype=np.float64)
        self.check_params()
        if self.metric != "cosine":
            raise ParameterError(f"embed_only: computes cosine neighbours; metric is {self.metric!r}")
        if len(X) > self.fit_max:
            raise ParameterError(f"embed_only: at most fit_max = {self.fit_max} rows, got {len(X)}")
        pre = self.pre_pca
        if pre == "auto":
            pre = UMAP_PRE_PCA if X.shape[1] > UMAP_PRE_PCA else 0
        Z = PCAReducer(pre, random_state=self.random_state).fit_transform(X)
        model = self._umap(len(Z))
        model.set_params(precomputed_knn=(*cosine_knn(Z, model.n_neighbors), None))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # no transform is wanted
            emb = model.fit_transform(Z)
        return emb - emb.mean(axis=0)

    def _pca_attributes(self) -> None:
        """What the pipeline reads from a reducer besides ``transform`` (as :class:`PCAReducer` has them)."""
        self.n_components_ = int(self.n_components)
        self.explained_variance_ratio_ = None
        self.n_distinct_ = getattr(self.pca_, "n_distinct_", len(self.train_input_))
        self.solver_ = f"{getattr(self.pca_, 'solver_', 'pca')}+umap"
        self.fit_rows_ = len(self.train_input_)

    def _raw_transform(self, Z: np.ndarray) -> np.ndarray:
        parts = [self.umap_.transform(Z[i:i + self.chunk]) for i in range(0, len(Z), self.chunk)]
        return np.concatenate(parts, axis=0).astype(np.float64)

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ParameterError(f"features have {X.shape[1]} dimensions; the reducer was fitted on "
                                 f"{self.n_features_in_}")
        return self._raw_transform(self.pca_.transform(X)) - self.center_

    def as_dict(self) -> dict:
        """The settings recorded in the manifest."""
        pre = int(self.pca_.n_components_) if self.pca_.components_ is not None else 0
        return {"method": "umap", "pre_pca_components": pre, **self.get_params(),
                "n_fit": int(len(self.fit_index_)), "centred": True}

    # -- persistence (npz, no pickle; see the module docstring) ---------------------
    def save(self, path) -> None:
        """The UMAP part only (the PCA is saved by the caller, as ``pca.npz``)."""
        atomic_write_npz(path, params=np.asarray(json.dumps(self.get_params())), train_input=self.train_input_,
                         embedding=self.umap_.embedding_, center=self.center_,
                         n_features_in=np.asarray(self.n_features_in_))

    @classmethod
    def load(cls, path, pca: PCAReducer) -> "UMAPReducer":
        """Rebuild a fitted reducer from ``path`` and the run's PCA (re-fits UMAP deterministically)."""
        data = read_npz(path, "UMAP model")
        try:
            self = cls(**json.loads(str(data["params"])))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"UMAP model '{path}' is missing or damaged ({exc})") from None
        self.check_params()
        self.pca_ = pca
        self.train_input_ = data["train_input"]
        self.umap_ = self._umap(len(self.train_input_)).fit(self.train_input_)
        saved = data["embedding"]
        if saved.shape != self.umap_.embedding_.shape:
            raise ModelFileError(f"UMAP model '{path}' is damaged (embedding shape {saved.shape})")
        drift = float(np.abs(saved - self.umap_.embedding_).max())
        if drift > 1e-3:
            log.warning("UMAP re-fitted from '%s' differs from the saved embedding (max %.3g; other software "
                        "versions?); new images are placed against the saved embedding", path, drift)
        self.umap_.embedding_ = saved
        self.center_ = data["center"]
        self.n_features_in_ = int(data["n_features_in"])
        self.fit_index_ = np.arange(len(saved))
        self._pca_attributes()
        return self
