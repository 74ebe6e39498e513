"""The data checks as a step of a run's model: :class:`DataChecks`.

It sits right after the extractor (``model.config.build_steps``), so it sees every image that
decoded and the backbone's features, before any reduction or clustering::

    extractor -> checks -> [ssl] -> reducer -> [manifold] -> clusterer

``fit_batch`` flags every row (:func:`brainclust.checks.stage.run_checks`; descriptors from one
colour decode per image, cached by content in the feature store, :mod:`brainclust.checks.store`;
``outlier`` scored in a PCA of the features with the run's ``--pca`` and seed, the space the
clustering will use) and, when ``exclude`` names flags, **sets the rows that carry one aside**:
it returns the other rows, in their order, and lists the set-aside ones in ``aside_`` (indices into
the batch it was given). The model leaves them out of every later fit (SSL, PCA, clustering), passes
them through the fitted steps for their embedding and gives them cluster ``-1``
(:class:`brainclust.cluster.setaside.SetAside`). With no ``exclude`` (the default) nothing changes
downstream: the clusters are those of a run without checks.

``transform_batch`` (``predict``) passes new images through, none set aside. :meth:`DataChecks.check_new`
checks them (``predict`` calls it: the new folder's own flags, and copies of the fitted images from
:class:`~brainclust.checks.fitted.FittedContents`, the one thing the step keeps from its fit, saved as
``model/checks.npz``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import numpy as np

from brainclust.checks.fitted import FILE as CONTENTS_FILE, FittedContents, mark_fitted_copies
from brainclust.checks.flags import Thresholds, parse_flags
from brainclust.checks.likeness import PRECISIONS as LIKENESS_PRECISIONS
from brainclust.checks.splits import match_table
from brainclust.checks.stage import checks_record, read_split_table, run_checks
from brainclust.checks.store import cached_descriptors, default_workers
from brainclust.checks.tables import exclude_mask
from brainclust.cluster.reduce import PCAReducer
from brainclust.core.params import BOOL, NONE, TEXT, Integer, Kind, OneOf, Step, entry_params, param
from brainclust.errors import ModelFileError
from brainclust.features.extraction import take_rows
from brainclust.features.extractor import WORKERS_PARAM
from brainclust.features.runtime import RUNTIMES

log = logging.getLogger(__name__)


def likeness_extraction(run) -> dict:
    """``DataChecks``' ``likeness_precision`` and ``likeness_runtime`` for a run's ``precision``, ``runtime`` and
    ``device`` (the likeness rule's features, :mod:`brainclust.checks.likeness`): a bf16 run on the CPU gives
    its own precision and runtime (a Lite0 run then shares its features through the store instead of
    extracting them again in fp32); an int8 run gets bf16 where the CPU runs it natively (int8 features move
    the scores too much); anything else fp32 (``{}``: the defaults)."""
    if run.device != "cpu":
        return {}
    if run.precision == "bf16":
        return {"likeness_precision": "bf16", "likeness_runtime": run.runtime}
    if run.precision == "int8":
        from brainclust.features import openvino_runtime as ovr

        if ovr.openvino_available() and ovr.native_bf16():
            return {"likeness_precision": "bf16", "likeness_runtime": "openvino"}
    return {}


class DataChecks(Step):
    """Flag every image of a run; optionally set the flagged ones aside (see the module docstring).

    Parameters
    ----------
    exclude : tuple of str, default ()
        Flags whose images the model leaves out of the reduction and the clustering (``--exclude``).
    thresholds : str or None, default None
        ``NAME=VALUE,...`` over :class:`~brainclust.checks.flags.Thresholds`' defaults (``--check-thresholds``).
    split_table : str or None, default None
        CSV/TSV with a ``path`` column (relative to the data folder, as in ``assignments.csv``) and
        ``split_column`` (``--split-table``); ``None`` reads splits from folder and file names.
    split_column : str, default "split"
    n_components : int or float, default 50
        PCA of the features in which ``outlier`` is scored (the run's ``--pca``; 0 = the features).
    random_state : int, default 0
    workers : int or None
        Decoding processes for the descriptors (``None``: every core, see ``checks.store.default_workers``).
    cache_dir : str, None or False
        Feature-store folder the descriptors are cached in (``None``: the default; ``False``: none).
    progress : bool or None
    likeness_precision : {"fp32", "bf16"}, default "fp32"
    likeness_runtime : str, default "auto"
        How the ``not_mri`` likeness rule extracts its EfficientNet-Lite0 features
        (:mod:`brainclust.checks.likeness`): a run with ``--precision bf16`` on the CPU passes its own
        precision and runtime, so that the checks share its features (``model.config`` sets them).

    Attributes
    ----------
    result_ : CheckResult or None
        What the checks found, one entry per row the step was fitted on (``None`` for a loaded model).
        Its thumbnails are dropped after the checks (memory).
    keep_ : ndarray of bool
        Rows passed on; ``aside_``: indices of the rows set aside.
    info_ : dict
        What ``manifest.json`` records under ``checks``.
    contents_ : FittedContents or None
        The distinct decoded contents of the fit (``None`` for a model saved before they were kept).
    """

    _parameter_constraints = {
        "exclude": param(Kind((tuple, list), "a list of flags"), option="--exclude"),
        "thresholds": param(NONE, TEXT, option="--check-thresholds"),
        "split_table": param(NONE, TEXT, option="--split-table"),
        "split_column": param(TEXT, option="--split-column"),
        "random_state": param(Integer(0), option="--seed"),
        "workers": WORKERS_PARAM,
        "cache_dir": param(NONE, OneOf((False,)), Kind((str, os.PathLike), "a folder"), option="--cache-dir"),
        "progress": param(NONE, BOOL, option="progress"),
        "likeness_precision": param(OneOf(LIKENESS_PRECISIONS), option="--precision"),
        "likeness_runtime": param(OneOf(RUNTIMES), option="--runtime"),
    }
    _fitted_attribute = "keep_"

    def __init__(self, exclude=(), thresholds: str | None = None, split_table: str | None = None,
                 split_column: str = "split", n_components: int | float = 50, random_state: int = 0,
                 workers: int | None = None, cache_dir=None, progress: bool | None = None,
                 likeness_precision: str = "fp32", likeness_runtime: str = "auto"):
        self.exclude = exclude
        self.thresholds = thresholds
        self.split_table = split_table
        self.split_column = split_column
        self.n_components = n_components
        self.random_state = random_state
        self.workers = workers
        self.cache_dir = cache_dir
        self.progress = progress
        self.likeness_precision = likeness_precision
        self.likeness_runtime = likeness_runtime

    def check_params(self):
        """The declared rules, the flags of ``exclude``, the thresholds' text and the split table's columns."""
        super().check_params()
        parse_flags(",".join(self.exclude), "--exclude")
        Thresholds.from_text(self.thresholds or "")
        PCAReducer(self.n_components).check_params()
        if self.split_table is not None:
            read_split_table(self.split_table, self.split_column)
        return self

    # -- fit / transform ------------------------------------------------------------------------
    def _space(self, X: np.ndarray) -> np.ndarray:
        """The rows in which ``outlier`` is scored: a PCA with the run's settings (the features when 0)."""
        n = self.n_components
        if n == 0 or len(X) < 3:
            return X
        if isinstance(n, (int, np.integer)) or float(n).is_integer():
            n = int(min(n, len(X) - 1, X.shape[1]))  # the cap the reducer would warn about, silently
        try:
            return PCAReducer(n, random_state=self.random_state).fit_transform(X)
        except Exception as exc:  # noqa: BLE001 - a degenerate matrix: the reducer reports it later
            log.debug("checks: no PCA for the outlier scores (%s); using the features", exc)
            return X

    def fit_batch(self, batch):
        """Check every row of ``batch``; return the rows not set aside (see the module docstring)."""
        self.check_params()
        t0 = time.perf_counter()
        records, X = list(batch.records), np.asarray(batch.X)
        split = read_split_table(self.split_table, self.split_column) if self.split_table is not None else None
        res, cache, t_desc = self._check(records, X, split, len(batch.skipped))
        aside = exclude_mask(res.flags, self.exclude)
        self.result_, self.keep_, self.aside_ = res, ~aside, np.flatnonzero(aside)
        self.contents_ = FittedContents.of(res.paths, res.descriptors.pixel_sha256, res.descriptors.failed)
        self.info_ = checks_record(res, self.exclude, int(aside.sum()), self.split_table, cache,
                                   {"describe": t_desc, "total": time.perf_counter() - t0})
        log.debug("%s", res.summary())
        if aside.any():
            log.info("--exclude %s: %d of %d images set aside (cluster -1)", ",".join(self.exclude),
                     int(aside.sum()), len(records))
            return replace(batch, records=[r for r, k in zip(records, self.keep_) if k], X=take_rows(X, self.keep_))
        return batch

    def transform_batch(self, batch):
        """New images pass through, none set aside (``predict``; :meth:`check_new` flags them)."""
        self.check_is_fitted()
        return batch

    def check_new(self, batch):
        """The checks of new images (``predict``): their folder's own flags, as ``brainclust check`` would give
        them (``outlier`` among the new images), and each copy of an image of the fit flagged ``duplicate``
        of it (:func:`~brainclust.checks.fitted.mark_fitted_copies`). Returns a ``CheckResult``."""
        self.check_is_fitted()
        res, _, _ = self._check(list(batch.records), np.asarray(batch.X), None, len(batch.skipped))
        return mark_fitted_copies(res, getattr(self, "contents_", None))

    def _check(self, records: list, X: np.ndarray, split, undecoded: int = 0) -> tuple:
        """``(CheckResult, descriptor-cache counts, seconds describing)`` of ``records`` with features ``X`` and
        ``undecoded`` images the extraction could not decode (not checked); the thumbnails are dropped after the
        checks (memory)."""
        t0 = time.perf_counter()
        desc, cache = cached_descriptors(records, self.cache_dir, default_workers(self.workers), self.progress)
        t_desc = time.perf_counter() - t0
        if split:  # a user's table, keyed by the run's own paths
            split = match_table([r.path for r in records], [r.abspath for r in records], split)
        res = run_checks(records, descriptors=desc, features=self._space(X),
                         thresholds=Thresholds.from_text(self.thresholds or ""), split_table=split,
                         random_state=self.random_state, progress=self.progress, cache_dir=self.cache_dir,
                         likeness_precision=self.likeness_precision, likeness_runtime=self.likeness_runtime)
        res.descriptors = replace(desc, thumbs=np.zeros((0,) + desc.thumbs.shape[1:], np.uint8))
        res.n_undecoded = undecoded
        return res, cache, t_desc

    # -- persistence: parameters and the fit's contents ----------------------------------------
    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        if getattr(self, "contents_", None) is None:
            return super().save_step(folder)
        self.contents_.save(folder / CONTENTS_FILE)
        return {**self.entry(), "files": [CONTENTS_FILE]}

    @classmethod
    def load_step(cls, folder, entry) -> "DataChecks":
        step = cls(**entry_params(cls, entry))
        step.keep_, step.aside_, step.result_, step.info_ = np.ones(0, bool), np.zeros(0, int), None, None
        files = entry.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ModelFileError(f"model config '{folder / 'config.json'}': step 'checks': field 'files' must be a "
                                 "list of file names")
        step.contents_ = FittedContents.load(folder / CONTENTS_FILE) if CONTENTS_FILE in files else None
        return step
