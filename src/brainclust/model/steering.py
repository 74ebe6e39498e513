"""``--within COLUMN`` and ``--remove COLUMN`` as steps of a run's model (see ``docs/steering.md``).

::

    records -extractor-> features -[checks]-> -[ssl]-> -[units]-> -[remove]-> -reducer-> ... -clusterer->
                                                                  RemoveStep                 WithinStep
                                                                  (FactorRemover)            (StratifiedClusterer,
                                                                                              no reducer before it)

The strata come from one column of the rows (:func:`strata_for`):

* a **metadata column**: the rows' ``meta`` (BIDS entities, participants.tsv, DICOM header fields, the
  ``--metadata`` table, the intensity descriptors; a unit's shared value or ``mixed``);
* ``plane``: the ``plane`` a NIfTI slice records in its ``meta``, else the label-free estimate of
  :func:`brainclust.features.plane.estimate_planes` (columns ``plane``, ``plane_source``,
  ``plane_confidence`` are added to the rows);
* ``level_N`` (N = 1..10): level N of a first pass over the step's input: PCA (the run's ``--pca``) and
  average-linkage cosine tree (the default method, so the levels are those a default run writes), cut into
  the run's ``--k`` leaves (:func:`brainclust.cluster.steer.level_columns`).

A column that is none of these is refused with one line listing the others, before extraction
(:mod:`brainclust.model.steercolumns`). ``predict``: metadata strata are read from the new rows (a missing or
unseen value: the nearest stratum mean; a column none of them has: refused); ``plane`` is read or estimated
again; ``level_N`` strata are the nearest stratum mean (cosine).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace

import numpy as np

from brainclust.cluster.methods import make_clusterer, load_clusterer
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.steer import (MISSING, FactorRemover, StratifiedClusterer, as_strata, check_categories,
                                      level_columns, listed)
from brainclust.core.params import Step, entry_params
from brainclust.errors import InputError, ModelFileError
from brainclust.features.cache import default_cache_dir
from brainclust.io.atomic import atomic_write_npz, read_npz
from brainclust.io.outputs import META_PREFIX, N_LEVELS, RUN_MADE
from brainclust.io.scan import SCAN_TYPES
from brainclust.model.steercolumns import PLANE, PLANE_COLUMNS, check_column, meta_values
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

__all__ = ["RemoveStep", "WithinStep", "plane_columns", "predict_strata", "strata_for"]

REMOVE_FILE, WITHIN_FILE, WITHIN_MAP_FILE = "remove.npz", "within.npz", "within_map_pca.npz"
#: ``--remove level_N``: each row's first-pass cluster at level N (a metadata column, a plane: in the rows already).
REMOVED_COLUMN = "removed_stratum"


def _members(r) -> tuple:
    return getattr(r, "members", None) or (r,)


def plane_columns(records, random_state: int = 0, cache_dir=None) -> dict[str, list]:
    """``plane``, ``plane_source`` (``header`` | ``estimate`` | ``unreadable``) and ``plane_confidence`` of each
    row; a unit's plane is its slices' shared plane, else ``mixed`` (confidence: their mean)."""
    from brainclust.features.plane import estimate_planes

    flat, owner = [], []
    for i, r in enumerate(records):
        for m in _members(r):
            flat.append(m)
            owner.append(i)
    plane = np.empty(len(flat), dtype=object)
    source = np.empty(len(flat), dtype=object)
    conf = np.ones(len(flat))
    todo = []
    for j, m in enumerate(flat):
        known = (getattr(m, "meta", None) or {}).get(PLANE)
        if known:
            plane[j], source[j] = str(known), "header"
        else:
            todo.append(j)
    if todo:
        t0 = time.perf_counter()
        where = str(cache_dir if cache_dir is not None else default_cache_dir())  # the fitted estimator is kept there
        p, s, c = estimate_planes([flat[j] for j in todo], random_state, where)
        log.warning("plane estimated for %s in %.1f s from the MNI template: often wrong on full-head slices; "
                    "plane_confidence is not an accuracy", count_text(len(todo), "image"), time.perf_counter() - t0)
        plane[todo], source[todo], conf[todo] = p, s, c
    out: dict[str, list] = {c: [] for c in PLANE_COLUMNS}
    ids = np.arange(len(records))
    for lo, hi in zip(np.searchsorted(owner, ids), np.searchsorted(owner, ids, "right")):  # owner ascends
        rows = slice(lo, hi)
        ps, ss = set(plane[rows].tolist()), set(source[rows].tolist())
        out["plane"].append(ps.pop() if len(ps) == 1 else "mixed")
        out["plane_source"].append(ss.pop() if len(ss) == 1 else "mixed")
        out["plane_confidence"].append(round(float(conf[rows].mean()), 4))
    return out


def first_pass_levels(X, pca, k: int, random_state) -> dict[str, np.ndarray]:
    """``level_1..10`` of the default tree (PCA ``pca``, average-linkage cosine, ``k`` leaves) over ``X``."""
    X = np.asarray(X, dtype=np.float64)
    Z = PCAReducer(pca, random_state=random_state).fit_transform(X) if pca else X
    tree = make_clusterer("hierarchical", n_clusters=int(min(k, len(Z))), random_state=random_state).fit(Z)
    return level_columns(tree.levels_)


#: Where a fit's strata came from: a metadata column (a table's, BIDS'...), the planes the slices' headers record
#: (NIfTI or DICOM slices, every one), the planes read where known and else estimated, a first pass's levels.
SOURCES = ("metadata", "header", "plane", "levels")


def strata_for(column: str, records, X, *, pca=50, k: int = 4, random_state=0, cache_dir=None,
               option: str = "--within") -> tuple[np.ndarray, dict[str, list], str]:
    """``(strata, columns to add to the rows, source)`` of ``column`` for a fit (see the module docstring);
    ``source`` is one of :data:`SOURCES`."""
    check_column(option, column, records)
    has_meta = any(column in (getattr(r, "meta", None) or {}) for r in records)
    if column == PLANE and not (has_meta and all(meta_values(records, PLANE))):
        cols = plane_columns(records, random_state, cache_dir)
        return as_strata(cols[PLANE]), cols, "plane"
    if has_meta:
        header = column == PLANE and all(getattr(r, "type", "") in SCAN_TYPES for r in records)
        return as_strata(meta_values(records, column)), {}, "header" if header else "metadata"
    levels = first_pass_levels(X, pca, k, random_state)
    return as_strata(levels[column]), {}, "levels"


def predict_strata(source: str, column: str, records, random_state=0, cache_dir=None):
    """``(strata or None, columns)`` of new rows: metadata read, plane read or estimated, levels ``None``
    (the step then takes the nearest stratum mean)."""
    if source == "plane" or (source == "header" and not all(meta_values(records, PLANE))):
        cols = plane_columns(records, random_state, cache_dir)  # as strata_for: the header's where known, else
        return as_strata(cols[PLANE]), cols  # estimated (a table's plane, source metadata, never is)
    if source in ("metadata", "header"):
        if records and not any(column in (getattr(r, "meta", None) or {}) for r in records):
            raise InputError(f"'{column}': the model's --within/--remove column is in none of the new images' "
                             "metadata (if it came from a table, pass it again: --metadata FILE, or metadata=FILE in "
                             "brainclust.predict)")
        return as_strata(meta_values(records, column)), {}
    return None, {}


def with_columns(records, cols: dict[str, list]) -> list:
    """The rows with ``cols`` (name -> one value per row) added to their ``meta``. A run-made column
    (:data:`~brainclust.io.outputs.RUN_MADE`) that the rows' metadata already holds (a BIDS or header
    field of that name) moves to its ``meta_`` name first, so neither overwrites the other."""
    if not cols:
        return records
    clash = sorted(c for c in cols if c in RUN_MADE and any(c in (r.meta or {}) for r in records))
    for c in clash:
        log.warning("metadata column '%s' is written as '%s%s': the run writes its own '%s'", c, META_PREFIX, c, c)

    def meta(r, i):
        m = {(META_PREFIX + k if k in clash else k): v for k, v in (r.meta or {}).items()}
        return {**m, **{c: v[i] for c, v in cols.items()}}

    return [replace(r, meta=meta(r, i)) for i, r in enumerate(records)]


def _known_or_nearest(strata, known: np.ndarray, nearest, option: str):
    """Strata of new rows: values not seen in the fit (or missing) become the nearest stratum (``nearest()``)."""
    if strata is None:
        return nearest()
    s = np.asarray(strata, dtype=object).copy()
    seen = set(np.asarray(known).tolist())
    bad = np.asarray([v not in seen for v in s.tolist()], dtype=bool)
    if bad.any():
        empty = int((s[bad] == MISSING).sum())
        log.warning("%s: %s with a value not seen in the fit (%d empty); each gets the nearest stratum",
                    option, count_text(int(bad.sum()), "new row"), empty)
        s[bad] = nearest()[bad]
    return s


def _text(a) -> np.ndarray:
    return np.asarray([str(v) for v in a], dtype=str)


class RemoveStep(Step):
    """``--remove COLUMN``: :class:`~brainclust.cluster.steer.FactorRemover` as a middle step (before PCA).

    Parameters
    ----------
    column : str
    rule : {"center", "project"}
    n_components, n_clusters : the first pass's PCA and leaves (``level_N`` columns only)
    random_state : int
    cache_dir : str or None
        Where the fitted plane estimator is kept (``plane`` only).

    Attributes
    ----------
    remover_ : FactorRemover
    source_ : str  (one of :data:`SOURCES`)
    counts_ : dict  stratum -> rows of the fit
    """

    _fitted_attribute = "remover_"

    def __init__(self, column: str = PLANE, rule: str = "center", n_components=50, n_clusters: int = 4,
                 random_state: int = 0, cache_dir: str | None = None):
        self.column = column
        self.rule = rule
        self.n_components = n_components
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.cache_dir = cache_dir

    def fit_batch(self, batch):
        strata, cols, self.source_ = strata_for(self.column, batch.records, batch.X, pca=self.n_components,
                                                k=self.n_clusters, random_state=self.random_state,
                                                cache_dir=self.cache_dir, option="--remove")
        self.counts_ = dict(sorted(Counter(strata.tolist()).items()))
        check_categories(strata, "--remove", self.column, min_rows=2)
        self.remover_ = FactorRemover(self.rule).fit(batch.X, strata)
        rows = "units" if getattr(batch.records[0], "members", None) is not None else "images"  # --unit: not slices
        log.info("--remove %s (%s, rule %s): %s, %s per stratum %s", self.column, self.source_, self.rule,
                 count_text(len(self.counts_), "stratum", "strata"), rows,
                 listed([f"{k}: {v}" for k, v in self.counts_.items()]))
        one_stratum(self.counts_, "--remove", self.column)
        cols = {REMOVED_COLUMN: strata.tolist()} if self.source_ == "levels" else cols  # no other column holds it
        return replace(batch, records=with_columns(batch.records, cols), X=self.remover_.transform(batch.X, strata))

    def transform_batch(self, batch):
        self.check_is_fitted()
        rm, strata, cols = self.remover_, None, {}
        if self.rule == "center":  # the projection needs no stratum: none is read, nor a plane estimated
            strata, cols = predict_strata(self.source_, self.column, batch.records, self.random_state, self.cache_dir)
            strata = _known_or_nearest(strata, rm.strata_, lambda: rm.predict_strata(batch.X), "--remove")
            cols = {REMOVED_COLUMN: strata.tolist()} if self.source_ == "levels" else cols
        return replace(batch, records=with_columns(batch.records, cols), X=rm.transform(batch.X, strata))

    def info(self) -> dict:
        return {"option": "--remove", "column": self.column, "source": self.source_, "rule": self.rule,
                "strata": {str(k): int(v) for k, v in self.counts_.items()}}

    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        rm = self.remover_
        atomic_write_npz(folder / REMOVE_FILE, strata=_text(rm.strata_), means=rm.means_, grand_mean=rm.grand_mean_,
                         directions=rm.directions_, source=np.asarray(self.source_), passthrough=rm.passthrough_,
                         space=np.asarray(rm.space_), counts=np.asarray([self.counts_[s] for s in rm.strata_]))
        return {**self.entry(), "files": [REMOVE_FILE]}

    @classmethod
    def load_step(cls, folder, entry) -> "RemoveStep":
        path = folder / REMOVE_FILE
        d = read_npz(path, "remove model")
        step = cls(**entry_params(cls, entry))
        try:
            rm = FactorRemover(step.rule)
            rm.strata_ = np.asarray(d["strata"].tolist(), dtype=object)
            rm.means_, rm.grand_mean_, rm.directions_ = (np.asarray(d[k], np.float64)
                                                         for k in ("means", "grand_mean", "directions"))
            rm.n_features_in_ = int(rm.means_.shape[1])
            ok = (rm.means_.ndim == 2 and len(rm.means_) == len(rm.strata_) and rm.grand_mean_.shape ==
                  (rm.n_features_in_,) and rm.directions_.ndim == 2 and rm.directions_.shape[1] == rm.n_features_in_
                  and str(d["source"]) in SOURCES and len(d["counts"]) == len(rm.strata_))
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise ModelFileError(f"remove model '{path}' is damaged ({exc})") from None
        if not ok:
            raise ModelFileError(f"remove model '{path}': fields 'means', 'grand_mean', 'directions', 'strata' do "
                                 "not fit together")
        step.remover_, step.source_ = rm, str(d["source"])
        rm.passthrough_ = bool(d["passthrough"]) if "passthrough" in d else False  # older models rescaled the rows
        rm.space_ = str(d["space"]) if "space" in d else "unit"  # saved before 2026-12-07: means of unit rows
        if rm.space_ not in ("features", "unit"):
            raise ModelFileError(f"remove model '{path}': field 'space' is {rm.space_!r}")
        step.counts_ = {s: int(c) for s, c in zip(rm.strata_.tolist(), d["counts"])}
        return step


def one_stratum(strata, flag: str, column: str) -> None:
    """Warn when every row has the same value of the column: the option then changes nothing."""
    if len(strata) == 1:
        log.warning("%s %s: every row has the same value (%s); one stratum, as without %s", flag, column,
                    next(iter(strata)), flag)


class WithinStep(Step):
    """``--within COLUMN``: :class:`~brainclust.cluster.steer.StratifiedClusterer` as the clustering step.

    It replaces PCA + clusterer (each stratum has its own PCA), so no reducer step comes before it.
    ``fit_batch`` / ``predict_batch`` see the rows (the strata come from them); the rows gain the columns
    ``stratum`` and ``cluster_in_stratum`` (and the plane's, for ``plane``). ``pca_given``: whether the user set
    ``--pca`` (a stratum's cap is then a warning; ``StratifiedClusterer.warn_cap``).

    Attributes
    ----------
    model_ : StratifiedClusterer
    labels_, levels_, n_clusters_, n_features_in_
    X_fit_ : ndarray (n, <= 50)
        The rows through one global PCA (``--pca``; the features themselves with ``--pca 0``): what the report maps
        and the silhouette is taken in; the clustering never sees it.
    map_ : PCAReducer or None
        That PCA (``None``: ``--pca 0``, or a model saved before 2026-12-07), for new rows' silhouette
        (:meth:`score_space`).
    source_ : str
    level_offsets_ : ndarray (n_strata, 10) or None
        The global id of each stratum's first cluster at each tree level (hierarchical).
    """

    _fitted_attribute = "model_"
    eps_ = tree_ = None  #: what the run's records read of any clustering (no DBSCAN radius, no single tree)

    def __init__(self, column: str = PLANE, method: str = "hierarchical", k=4, pca=50, random_state: int = 0,
                 cache_dir: str | None = None, pca_given: bool | None = None):
        self.column = column
        self.method = method
        self.k = k
        self.pca = pca
        self.pca_given = pca_given
        self.random_state = random_state
        self.cache_dir = cache_dir

    def _first_k(self) -> int:
        return self.k if isinstance(self.k, int) else 4

    def fit_batch(self, batch):
        strata, cols, self.source_ = strata_for(self.column, batch.records, batch.X, pca=self.pca,
                                                k=self._first_k(), random_state=self.random_state,
                                                cache_dir=self.cache_dir, option="--within")
        m = StratifiedClusterer(self.method, self.k, self.pca or None, self.random_state,
                                self.pca_given).fit(batch.X, strata)
        self.model_, self.labels_, self.levels_, self.n_clusters_ = m, m.labels_, m.levels_, m.n_clusters_
        self.map_, self.X_fit_ = None, np.asarray(batch.X)  # --pca 0: the features themselves, as without --within
        if self.pca:  # the report's map (within.npz X_fit): capped quietly (each stratum's cap is warned)
            n_map = min(self.pca, *batch.X.shape) if isinstance(self.pca, int) else self.pca
            self.map_ = PCAReducer(n_map, random_state=self.random_state).fit(batch.X)
            self.X_fit_ = self.map_.transform(batch.X)
        self.n_features_in_ = m.n_features_in_
        self.level_offsets_ = None
        if m.levels_ is not None:
            self.level_offsets_ = np.stack([m.levels_[m.stratum_ == v].min(0) for v in m.strata_])
        log.info("--within %s (%s): clusters per stratum %s", self.column, self.source_,
                 {str(k): v for k, v in m.k_.items()})
        one_stratum(m.k_, "--within", self.column)
        cols = {**cols, "stratum": m.stratum_.tolist(), "cluster_in_stratum": m.local_labels_.tolist()}
        return replace(batch, records=with_columns(batch.records, cols))

    def _strata(self, batch):
        strata, cols = predict_strata(self.source_, self.column, batch.records, self.random_state, self.cache_dir)
        m = self.model_
        return _known_or_nearest(strata, m.strata_, lambda: m.predict_strata(batch.X), "--within"), cols

    def score_space(self, X=None) -> np.ndarray | None:
        """Rows in the space the silhouette is taken in, the map's PCA (as without ``--within``): new rows ``X``,
        else the fitted rows (``X_fit_``). ``None`` with ``--pca 0`` (the features themselves) and for new rows of
        a model saved without its map (before 2026-12-07)."""
        self.check_is_fitted()
        if not self.pca:
            return None
        if X is None:
            return self.X_fit_
        return None if getattr(self, "map_", None) is None else self.map_.transform(X)

    def predict_batch(self, batch):
        """``(rows with their columns, labels, levels)`` of new rows."""
        self.check_is_fitted()
        X = np.asarray(batch.X, dtype=np.float64)
        strata, cols = self._strata(batch)
        m = self.model_
        labels = m.predict(X, strata)
        local = labels - np.asarray([m.offsets_[s] for s in strata], np.int64)
        levels = None
        if self.level_offsets_ is not None:
            levels = np.zeros((len(X), N_LEVELS), np.int64)
            index = {v: i for i, v in enumerate(m.strata_.tolist())}
            for v in set(strata.tolist()):
                rows = np.flatnonzero(strata == v)
                reducer, model = m.models_[v]
                part = np.zeros((len(rows), N_LEVELS), np.int64)
                if model is not None:
                    Z = X[rows] if reducer is None else reducer.transform(X[rows])
                    part = model.predict_levels(Z)
                levels[rows] = self.level_offsets_[index[v]] + part
        cols = {**cols, "stratum": strata.tolist(), "cluster_in_stratum": local.tolist()}
        return replace(batch, records=with_columns(batch.records, cols)), labels, levels

    def info(self) -> dict:
        m = self.model_
        out = {"option": "--within", "column": self.column, "source": self.source_,
               "strata": {str(v): int((m.stratum_ == v).sum()) for v in m.strata_} if hasattr(m, "stratum_") else {},
               "k": {str(k): int(v) for k, v in m.k_.items()},
               "pca": {str(v): (int(r.n_components_) if r is not None else None) for v, (r, _) in m.models_.items()}}
        if getattr(m, "k_selection_", None):
            out["k_selection"] = {str(k): v for k, v in m.k_selection_.items()}
        return out

    # -- persistence: within.npz + each stratum's within_<i>_pca.npz / within_<i>_cluster.npz -------------
    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        m = self.model_
        files = [WITHIN_FILE]
        has = np.zeros((len(m.strata_), 2), bool)
        for i, v in enumerate(m.strata_):
            reducer, model = m.models_[v]
            if reducer is not None:
                reducer.save(folder / f"within_{i}_pca.npz")
                files.append(f"within_{i}_pca.npz")
                has[i, 0] = True
            if model is not None:
                model.save(folder / f"within_{i}_cluster.npz")
                files.append(f"within_{i}_cluster.npz")
                has[i, 1] = True
        if self.map_ is not None:  # None: loaded from a model saved without it
            self.map_.save(folder / WITHIN_MAP_FILE)
            files.append(WITHIN_MAP_FILE)
        arrays = dict(strata=_text(m.strata_), offsets=np.asarray([m.offsets_[v] for v in m.strata_], np.int64),
                      k=np.asarray([m.k_[v] for v in m.strata_], np.int64), centroids=m.centroids_, has=has,
                      counts=np.asarray([int((m.stratum_ == v).sum()) for v in m.strata_], np.int64),
                      source=np.asarray(self.source_), labels=self.labels_,
                      X_fit=np.asarray(self.X_fit_, np.float32), method=np.asarray(self.method))
        if self.level_offsets_ is not None:
            arrays.update(level_offsets=self.level_offsets_, levels=self.levels_)
        atomic_write_npz(folder / WITHIN_FILE, **arrays)
        return {**self.entry(), "files": files}

    @classmethod
    def load_step(cls, folder, entry) -> "WithinStep":
        path = folder / WITHIN_FILE
        d = read_npz(path, "within model")
        step = cls(**entry_params(cls, entry))
        try:
            strata = d["strata"].tolist()
            S = len(strata)
            offsets, k, has, counts = d["offsets"], d["k"], d["has"], d["counts"]
            m = StratifiedClusterer(step.method, step.k, step.pca or None, step.random_state)
            m.strata_ = np.asarray(strata, dtype=object)
            m.centroids_ = np.asarray(d["centroids"], np.float64)
            ok = (offsets.shape == (S,) and k.shape == (S,) and has.shape == (S, 2) and counts.shape == (S,)
                  and m.centroids_.ndim == 2 and len(m.centroids_) == S and str(d["source"]) in SOURCES)
            if not ok:
                raise ValueError("fields 'offsets', 'k', 'has', 'centroids', 'strata' do not fit together")
            m.n_features_in_ = int(m.centroids_.shape[1])
            m.offsets_ = {v: int(o) for v, o in zip(strata, offsets)}
            m.k_ = {v: int(n) for v, n in zip(strata, k)}
            m.stratum_ = np.repeat(m.strata_, counts)
            m.models_ = {}
            for i, v in enumerate(strata):
                reducer = PCAReducer.load(folder / f"within_{i}_pca.npz") if has[i, 0] else None
                model = load_clusterer(folder / f"within_{i}_cluster.npz") if has[i, 1] else None
                if model is not None and (model.method != step.method or model.X_fit_.shape[1] !=
                                          (reducer.n_components_ if reducer is not None else m.n_features_in_)):
                    raise ValueError(f"stratum {i}'s clustering does not fit its reduction or the method")
                m.models_[v] = (reducer, model)
            step.X_fit_, step.labels_ = np.asarray(d["X_fit"], np.float64), np.asarray(d["labels"])
            listed = WITHIN_MAP_FILE in (entry.get("files") or ())  # by the step's list: a stray file is not its
            step.map_ = PCAReducer.load(folder / WITHIN_MAP_FILE) if listed else None
            if step.map_ is not None and step.map_.n_features_in_ != m.n_features_in_:
                raise ValueError(f"'{WITHIN_MAP_FILE}' was fitted on {step.map_.n_features_in_} dimensions")
            step.level_offsets_ = np.asarray(d["level_offsets"]) if "level_offsets" in d else None
            step.levels_ = np.asarray(d["levels"]) if "levels" in d else None
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise ModelFileError(f"within model '{path}' is damaged ({exc})") from None
        step.model_, step.source_, step.n_clusters_ = m, str(d["source"]), int(sum(m.k_.values()))
        step.n_features_in_ = m.n_features_in_
        return step

