"""The fitted model of a run: :class:`BrainClusterModel`, a list of named steps.

::

    records --extractor--> features --[ssl]--> --reducer--> --[manifold]--> embedding --clusterer--> labels

* ``extractor`` (first): :class:`~brainclust.features.extractor.FeatureExtractor` or
  :class:`~brainclust.features.fusion.FusedExtractor`: images to features, failures set aside;
* middle steps, each optional (``None`` = absent): ``ssl``
  (:class:`~brainclust.selfsup.stage.SelfSupervisedStep`), ``reducer``
  (:class:`~brainclust.cluster.reduce.PCAReducer`), ``manifold``
  (:class:`~brainclust.cluster.manifold.UMAPManifold`). A middle step takes a :class:`Batch`
  (the records and their current matrix ``X``) and returns one (``fit_batch`` /
  ``transform_batch``), so new kinds of step (pooling slices into volumes, projecting out a
  nuisance factor, checks that set images aside) go into the list without changing this class. A step
  may set rows aside (fewer rows out, their indices in its ``aside_``): :class:`AsideRows` fits the
  later steps without them and :class:`~brainclust.cluster.setaside.SetAside` gives them label ``-1``;
* ``clusterer`` (last): a clustering estimator of :mod:`brainclust.cluster.methods`, possibly
  inside :class:`~brainclust.cluster.outliers.OutlierRule` (``--outliers auto``) and
  :class:`~brainclust.cluster.kselect.AutoK` (``--k auto``).

``fit(records)`` learns every step in order and returns ``self``; ``predict(records)`` runs the
fitted steps on new images and returns an :class:`Assignment`; :meth:`~BrainClusterModel.scores`
gives the metrics of the fit. :meth:`~BrainClusterModel.save` and
:meth:`~BrainClusterModel.load` go through the one step protocol
(:class:`brainclust.core.params.Step`) and the versioned manifest of :mod:`brainclust.io.outputs`
(:mod:`brainclust.model.persist` reads it, including model folders written before it existed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.base import clone

from brainclust.cluster.kselect import AutoK, warn_k_decoded
from brainclust.cluster.scores import score
from brainclust.cluster.setaside import SetAside
from brainclust.core.arrays import read_only
from brainclust.core.params import NamedSteps, Step, named_pairs
from brainclust.errors import InputError, NotFittedError, ParameterError
from brainclust.features.extraction import as_records
from brainclust.features.units import count_units
from brainclust.io.outputs import RunFolder, escape_name
from brainclust.model.persist import default_settings, load_steps, save_steps
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: Where each step's time goes in ``manifest.json``'s ``timings_s`` (other steps: their own name).
TIMING_KEYS = {"extractor": "extract", "ssl": "ssl", "reducer": "reduce", "manifold": "reduce",
               "clusterer": "cluster"}
#: How the log names the reduction steps (as ``--reduce`` does).
LOG_NAMES = {"reducer": "pca", "manifold": "umap"}


def clustering_text(clusterer) -> str:
    """The clustering step as the fit's log line names it; ``--within`` (a step that reads the rows) reduces each
    stratum by its own PCA, which the dims before it do not show."""
    if not hasattr(clusterer, "fit_batch"):
        return clusterer.method
    pca = getattr(clusterer, "pca", None)
    if isinstance(pca, bool) or not isinstance(pca, (int, float)) or pca <= 0:
        return f"{clusterer.method} within each stratum (no PCA)"
    own = f"keeping {pca:g} of its variance" if isinstance(pca, float) and pca < 1 else f"to at most {int(pca)} dims"
    return f"{clusterer.method} within each stratum (each its own PCA {own})"


def why_not(skipped: list[dict]) -> str:
    """The first image that failed to decode and why (`` (a.png: truncated; and 3 more)``), for an error."""
    if not skipped:
        return ""
    more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f" ({escape_name(skipped[0]['path'])}: {skipped[0]['reason']}{more})"


@dataclass
class Batch:
    """What flows between the middle steps: the records (rows) and their current feature matrix.

    ``extractor`` is the fitted extractor the features came from (the self-supervised step
    extracts augmented views with it); ``cache`` what the steps' own extractions cost, for the manifest's
    ``cache`` (``views``: the self-supervised step's augmented views of new images); ``skipped`` the images the
    extractor could not decode (``path``, ``reason``; no row: the data checks count them as not checked).
    """

    records: list
    X: np.ndarray
    extractor: object = None
    cache: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def with_features(self, X: np.ndarray) -> "Batch":
        return replace(self, X=X)

    def counted(self, key: str, counts: dict) -> "Batch":
        """The batch with what a step's own extraction cost (``counts``; none: unchanged) under ``cache[key]``."""
        return replace(self, cache={**self.cache, key: dict(counts)}) if counts else self


@dataclass
class Assignment:
    """What :meth:`BrainClusterModel.predict` returns (rows follow ``records``, the images that decoded)."""

    records: list
    skipped: list[dict]
    features: np.ndarray
    embedding: np.ndarray
    labels: np.ndarray
    levels: np.ndarray | None
    cache: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    #: the images that decoded (``records`` are units when the model pools slices; else the same list)
    slices: list | None = None
    #: the new images' data checks (``CheckResult`` over ``slices``; ``None``: the model has no checks step)
    checks: object | None = None
    #: the rows where their silhouette is taken, when not ``embedding`` (``--within``: the fit's map PCA)
    space: np.ndarray | None = None

    def __repr__(self) -> str:  # a notebook shows this: counts, not every array
        return result_repr(self)


def result_repr(result, metrics: dict | None = None, where: str = "") -> str:
    """A run's or a prediction's result in one line (``RunResult(40 images, 4 clusters, 0 skipped; silhouette=0.31,
    ...)``): what a notebook shows of it, rather than every array and every check."""
    scores = ", ".join(f"{k}={v:.3f}" for k, v in (metrics or {}).items() if isinstance(v, float))
    parts = [f"{len(result.records)} images, {len(set(np.asarray(result.labels).tolist()))} clusters, "
             f"{len(result.skipped)} skipped", scores, where]
    return f"{type(result).__name__}({'; '.join(p for p in parts if p)})"


@dataclass
class AsideRows:
    """The rows a middle step set aside during a fit (``aside_`` of the step: indices into its input batch).

    Later steps are fitted without them; the rows follow through those steps' ``transform_batch`` (their
    embedding), and :meth:`merge` puts them back among the others in input order.
    """

    pos: np.ndarray  #: the input row behind each row of the current batch
    batch: Batch | None = None  #: the rows set aside so far, as far as the fit has gone
    at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  #: their input rows
    said_k: int = -1  #: the rows left when ``--k`` equal to them was said (said once per count)

    @classmethod
    def start(cls, n: int) -> "AsideRows":
        return cls(np.arange(n))

    @property
    def rows(self) -> int:
        return len(self.at)

    def follow(self, step, before: Batch) -> None:
        """After ``step.fit_batch(before)``: every row set aside so far, and the rows this step set aside
        (taken from its input), move through the fitted step."""
        out = getattr(step, "aside_", None)
        out = np.zeros(0, np.int64) if out is None else np.asarray(out, np.int64)
        if self.batch is not None:
            self.batch = step.transform_batch(self.batch)
        if not len(out):
            return
        part = step.transform_batch(Batch([before.records[i] for i in out], np.asarray(before.X)[out],
                                          before.extractor))
        if self.batch is not None:
            part = Batch(self.batch.records + part.records, np.concatenate([self.batch.X, part.X]), part.extractor)
        self.batch, self.at = part, np.concatenate([self.at, self.pos[out]])
        self.pos = np.delete(self.pos, out)

    def check_left(self, n_left: int, k: int | None, name: str) -> None:
        if n_left < 2:
            raise InputError(f"--exclude: the {name} step set {count_text(self.rows, 'image')} aside and left "
                             f"{n_left}; clustering needs 2")
        if k is not None and k > n_left:
            raise ParameterError(f"--k: {k} clusters requested but only {n_left} images are left after the "
                                 f"{name} step set {self.rows} aside (--exclude); use --k {n_left} or fewer")
        if k == n_left and self.said_k != n_left:
            self.said_k = n_left
            log.warning("--k %d: %d images are left after the %s step set %d aside (--exclude): every image is a "
                        "cluster of its own (no silhouette)", k, n_left, name, self.rows)

    def mask(self) -> np.ndarray:
        out = np.zeros(len(self.pos) + self.rows, bool)
        out[self.at] = True
        return out

    def merge(self, X: np.ndarray) -> np.ndarray:
        """The rows kept (``X``) and the rows set aside, in input order."""
        out = np.empty((len(X) + self.rows, X.shape[1]), np.result_type(X.dtype, self.batch.X.dtype))
        out[self.pos], out[self.at] = X, self.batch.X
        return out


def requested_k(clusterer) -> int | None:
    """The fixed k of a clustering step (through an outlier rule), or ``None`` (``--k auto``, DBSCAN)."""
    if isinstance(clusterer, AutoK):
        return None
    params = clusterer.get_params(deep=False)
    if "n_clusters" in params:
        return params["n_clusters"]
    inner = params.get("estimator")
    return requested_k(inner) if inner is not None else None


class BrainClusterModel(NamedSteps, Step):
    """A run's model: named steps, fitted in order (see the module docstring).

    Parameters
    ----------
    steps : list of (str, step or None)
        The extractor first, the clustering last; ``None`` marks an absent optional step. As in scikit-learn's
        ``Pipeline``, ``get_params()`` also gives each step and its parameters (``reducer__n_components``).

    Attributes
    ----------
    steps_ : list of (str, step)
        The fitted steps (clones of ``steps``; absent ones left out).
    records_ : list of ImageRecord or UnitRecord
        The rows of everything below: the images that decoded, in input order, or the units a
        ``units`` step made of them (``slice_records_``: the images that decoded, always).
    skipped_ : list of dict
        ``{"path", "reason"}`` of the images that did not decode.
    features_ : ndarray (n, d)
        The extractor's features of the rows (a ``units`` step's pooled features for unit rows);
        ``embedding_``: the clustering's input.
    labels_, levels_ : the clustering of the rows (``-1`` for rows a step set aside)
    aside_ : ndarray of bool or None
        The rows a step set aside (``--exclude``), left out of every later fit; ``None`` when none.
    cache_ : dict
        Feature-cache hits and misses of the fit.
    timings_ : dict
        Seconds per stage (``extract``, ``ssl``, ``reduce``, ``cluster``).
    """

    _fitted_attribute = "steps_"

    def __init__(self, steps: Sequence = ()):
        self.steps = steps

    # -- access ----------------------------------------------------------------------
    @property
    def named_steps_(self) -> dict:
        self.check_is_fitted()
        return dict(self.steps_)

    @property
    def extractor_(self):
        return self.named_steps_["extractor"]

    @property
    def clusterer_(self):
        self.check_is_fitted()
        return self.steps_[-1][1]

    @property
    def middle_(self) -> list:
        self.check_is_fitted()
        return self.steps_[1:-1]

    def step(self, name: str):
        """The fitted step ``name``, or ``None`` when the model has none."""
        return self.named_steps_.get(name)

    def check_params(self):
        if named_pairs(self.steps) is None:
            raise ParameterError(f"model steps: must be a list of (name, step) pairs, got {self.steps!r:.80}")
        for name, step in self.steps:  # a scikit-learn estimator has no batch protocol: Clusterer(method=...) has
            if step is not None and not isinstance(step, Step):
                raise ParameterError(f"model steps: step '{name}' must be a brainclust step (FeatureExtractor, "
                                     f"PCAReducer, Clusterer(method=...)...) or None, got {type(step).__name__}")
        names = [n for n, s in self.steps if s is not None]
        if len(names) < 2 or names[0] != "extractor" or names[-1] != "clusterer" or len(set(names)) != len(names):
            raise ParameterError(f"model steps: need 'extractor' first and 'clusterer' last, each name once; "
                                 f"got {names}")
        for _, s in self.steps:
            if s is not None:
                s.check_params()
        return self

    # -- fit / predict ------------------------------------------------------------------
    def fit(self, records, y=None, *, source: str = "the input", prefill=None, assign_all=None):
        """Learn every step on ``records`` (ImageRecords or paths); returns ``self``.

        ``source`` names the input in messages; ``prefill`` (an engine filling the feature store)
        and ``assign_all`` (the two-stage tree's assignment pass) run the same stages elsewhere.
        """
        self.check_params()
        records = as_records(records)
        steps = [(n, clone(s)) for n, s in self.steps if s is not None]
        t: dict = {}
        extractor, clusterer = steps[0][1], steps[-1][1]
        t0 = time.perf_counter()
        got = extractor.fit_extract(records, prefill=prefill)
        kept, feats, skipped = got.split(records)
        t["extract"] = time.perf_counter() - t0
        if len(kept) < 2:
            raise InputError(f"clustering needs 2 decodable images; {source} has {len(kept)}{why_not(skipped)}")
        k = requested_k(clusterer)
        if k is not None and k > len(kept):
            raise ParameterError(f"--k: {k} clusters requested but only {len(kept)} images could be decoded")
        batch = Batch(kept, feats, extractor, skipped=skipped)
        aside = AsideRows.start(len(kept))
        rows, rows_feats = kept, feats
        for name, step in steps[1:-1]:
            t0 = time.perf_counter()
            before = batch
            batch = step.fit_batch(batch)
            aside.follow(step, before)
            key = TIMING_KEYS.get(name, name)
            t[key] = t.get(key, 0.0) + time.perf_counter() - t0
            if aside.rows:
                aside.check_left(len(batch.records), k, name)
            if name != "units" and batch.records is not before.records and len(batch.records) == len(rows) \
                    and not aside.rows:  # the same rows with new columns (--within/--remove: plane)
                rows = batch.records
            if name == "units" and batch.records is not before.records:  # the step made new rows: their features
                rows, rows_feats = batch.records, batch.X
                if k is not None and k > len(rows):
                    raise ParameterError(f"--k: {k} clusters requested but the {len(kept)} images make only "
                                         f"{count_text(len(rows), 'row')} of --unit {step.unit}; use --k "
                                         f"{len(rows)} or fewer")
            distinct = getattr(step, "n_distinct_", None)
            if k is not None and distinct is not None and k > distinct:
                raise ParameterError(f"--k: {k} clusters requested but only {distinct} of the {len(kept)} images "
                                     f"have distinct features (duplicates share one); use --k {distinct} or fewer")
        if not aside.rows:  # check_k_fits counted the scan's rows, those whose images failed to decode included
            unit = getattr(dict(steps).get("units"), "unit", "slice")
            warn_k_decoded(k, count_units(records, unit), len(batch.records), unit)
        t0 = time.perf_counter()
        fit_params = {"assign_all": assign_all} if assign_all is not None and clusterer.method == "hierarchical" else {}
        if hasattr(clusterer, "fit_batch"):  # a clustering that reads the rows (--within: their strata)
            rows = clusterer.fit_batch(batch).records
        else:
            clusterer.fit(read_only(batch.X), **fit_params)  # the clusterer keeps it, no copy (1M x 50: 400 MB)
        embedding = batch.X
        if aside.rows:  # one label per image: the rows set aside get -1 (cluster.setaside)
            embedding = aside.merge(batch.X)
            steps[-1] = ("clusterer", SetAside.fitted(clusterer, aside.mask(), embedding))
            clusterer = steps[-1][1]
        t["cluster"] = time.perf_counter() - t0
        self.steps_, self.records_, self.skipped_, self.features_ = steps, rows, skipped, rows_feats
        self.slice_records_ = kept
        self.embedding_, self.labels_, self.levels_ = embedding, clusterer.labels_, clusterer.levels_
        self.aside_ = aside.mask() if aside.rows else None
        self.cache_, self.timings_ = got.cache_info(), t
        log.info("%d %s: %s %d -> %d dims in %.1f s, %s -> %s in %.1f s", len(batch.records),
                 "images" if "units" not in dict(steps) else f"units from {len(kept)} images",
                 "+".join(LOG_NAMES.get(n, n) for n, s in steps[1:-1] if n != "reducer" or s.solver_ != "none")
                 or "none", feats.shape[1], batch.X.shape[1],  # --pca 0 fitted no PCA: not named
                 sum(v for key, v in t.items() if key not in ("extract", "cluster")),
                 clustering_text(clusterer), count_text(clusterer.n_clusters_, "cluster"), t["cluster"])
        return self

    def predict(self, records, *, source: str = "the input", checks: bool = True) -> Assignment:
        """Assign new images to the fitted clusters (each step's own rule; see :mod:`brainclust.cluster.methods`);
        ``checks``: the data checks of a model that has them flag the new images (``Assignment.checks``)."""
        self.check_is_fitted()
        records = as_records(records)
        t0 = time.perf_counter()
        got = self.extractor_.extract(records)
        kept, feats, skipped = got.split(records)
        t = {"extract": time.perf_counter() - t0}
        if not kept:
            raise InputError(f"{source} has no decodable image{why_not(skipped)}")
        batch = Batch(kept, feats, self.extractor_, skipped=skipped)
        found = None
        for name, step in self.middle_:
            t0 = time.perf_counter()
            before = batch.records
            if name == "checks" and checks:
                found = step.check_new(batch)
            batch = step.transform_batch(batch)
            key = TIMING_KEYS.get(name, name)
            t[key] = t.get(key, 0.0) + time.perf_counter() - t0
            if name == "units" and batch.records is not before:  # new rows (units): their features
                feats = batch.X
        t0 = time.perf_counter()
        space = None
        if hasattr(self.clusterer_, "predict_batch"):  # a clustering that reads the rows (--within)
            batch, labels, levels = self.clusterer_.predict_batch(batch)
            space = self.clusterer_.score_space(batch.X)
        else:
            labels = self.clusterer_.predict(batch.X)
            levels = self.clusterer_.predict_levels(batch.X)
        t["assign"] = time.perf_counter() - t0
        return Assignment(batch.records, skipped, feats, batch.X, labels, levels, {**got.cache_info(), **batch.cache},
                          t, kept, found, space)

    def scores(self, labels_true=None) -> dict:
        """The metrics of the fit (:func:`~brainclust.cluster.scores.score`), with ``k_selection`` and
        ``outliers`` when the clustering recorded them."""
        space = self.score_space()
        aside = getattr(self, "aside_", None)
        if aside is None:
            metrics = score(space, self.labels_, labels_true)
        else:  # the images set aside were not clustered: the scores are the clustered images'
            keep = ~aside
            metrics = score(space[keep], self.labels_[keep],
                            None if labels_true is None else [y for y, k in zip(labels_true, keep) if k])
            metrics["n_set_aside"] = int(aside.sum())
        extra = self.clustering_extras()
        metrics.update({k: extra[k] for k in ("k_selection", "outliers") if extra.get(k) is not None})
        return metrics

    def score_space(self) -> np.ndarray:
        """The fit's rows where the silhouette is taken: ``embedding_``; with ``--within`` (each stratum clustered
        in its own space, never with rows set aside) the map's PCA of them, as without ``--within`` (``--pca 0``:
        the features)."""
        self.check_is_fitted()
        if not hasattr(self, "embedding_"):
            raise NotFittedError("BrainClusterModel: a model read by load() keeps no rows of its fit (embedding_, "
                                 "labels_), so it has no scores: its run's are in the run folder's metrics.json")
        space = self.clusterer_.score_space() if hasattr(self.clusterer_, "predict_batch") else None
        return self.embedding_ if space is None else space

    def clustering_extras(self) -> dict:
        """``k_selection`` (``--k auto``), ``outliers`` (``--outliers auto``) of the fitted clustering."""
        out: dict = {}
        c = self.clusterer_
        if isinstance(c, SetAside):
            c = c.estimator_
        if hasattr(c, "selection"):
            out["k_selection"] = c.selection()
            c = c.estimator_
        out["outliers"] = getattr(c, "info_", None)
        return out

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder, settings: dict | None = None) -> None:
        """Write every step's files and the versioned manifest into the run folder ``folder``'s ``model/``;
        ``settings`` (the run's) are recorded beside the steps (by default, what the steps say). ``folder`` must be
        new, empty or hold only the ``model/`` of an earlier save: a run folder's other files (``assignments.csv``,
        ``manifest.json``...) belong to its own model, and ``brainclust.run(..., out)`` writes them all."""
        self.check_is_fitted()
        root = Path(folder)
        other = sorted(p.name for p in root.iterdir() if p.name != "model" and not p.name.startswith(".")) \
            if root.is_dir() else []
        if root.exists() and not root.is_dir() or other:
            raise ParameterError(f"save: '{escape_name(str(root))}' " + (f"holds '{escape_name(other[0])}', not only "
                                 "the model/ of an earlier save: the model would not match the files beside it; save "
                                 "into a new or empty folder" if other else "is a file; give a folder (the model "
                                 "goes into its model/)"))
        save_steps(self.steps_, RunFolder(folder).model, settings or default_settings(self.steps_))

    @classmethod
    def load(cls, model_dir, runtime: dict | None = None) -> "BrainClusterModel":
        """The fitted model of the run folder ``model_dir``; ``runtime`` changes how features are
        computed (``batch_size``, ``num_workers``, ``cache_dir``, ``progress``), never what they are.
        The model's manifest (the run's settings) is ``manifest_``. It predicts; the rows of the fit
        (``records_``, ``labels_``, ``embedding_``...) are not saved, so :meth:`scores` is refused (the run's
        ``metrics.json`` holds them)."""
        steps, info = load_steps(model_dir, runtime)
        model = cls(steps)
        model.steps_, model.manifest_ = list(steps), info
        return model
