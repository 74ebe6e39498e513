"""``--auto`` and ``--consensus`` as meta-estimators over the model of a run, and :func:`build_model`.

* :class:`AutoSelect` scores the portfolio (:data:`~brainclust.model.criteria.PORTFOLIO` x
  reductions) with the label-free criteria of :mod:`brainclust.model.criteria`, then fits the
  chosen configuration's :class:`~brainclust.model.composite.BrainClusterModel` on every image;
  it predicts, scores and saves as that model.
* :class:`ConsensusModel` clusters the co-association of the portfolio's partitions; the default
  backbone's model gives the features, the PCA space (the report's map and silhouette) and the
  extractor. It cannot place new images (``predict`` refuses a ``--consensus`` run).

Both score the portfolio on a seeded sample of :data:`~brainclust.model.criteria.AUTO_MAX` images
when there are more (the portfolio's features are held in memory together), so a run of any size
is accepted: the chosen configuration is then fitted on every image, and each member's partition
and the consensus are extended to every image by their own ``predict``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace

import numpy as np

from brainclust import __version__
from brainclust.cluster.hierarchical import mean_distance_assign
from brainclust.cluster.kselect import resolve_k
from brainclust.cluster.reduce import PCAReducer
from brainclust.core.arrays import seeded_sample
from brainclust.core.params import Step
from brainclust.errors import InputError
from brainclust.io.atomic import atomic_write_npz
from brainclust.io.modelconfig import write_model_manifest
from brainclust.io.outputs import MODEL_FILES, RunFolder, escape_name, write_table
from brainclust.model import criteria
from brainclust.model.composite import BrainClusterModel
from brainclust.model.config import RunConfig, build_steps
from brainclust.terminal import count_text

log = logging.getLogger(__name__)


def build_model(cfg: RunConfig, portfolio=criteria.PORTFOLIO):
    """The model of ``cfg``: a :class:`BrainClusterModel`, or :class:`AutoSelect` / :class:`ConsensusModel`."""
    if cfg.consensus:
        return ConsensusModel(cfg, portfolio)
    if cfg.auto:
        return AutoSelect(cfg, portfolio)
    return BrainClusterModel(build_steps(cfg))


class _Portfolio(Step):
    """What the two meta-estimators share: the portfolio's features of (a sample of) the images."""

    _fitted_attribute = "result_"

    def __init__(self, config: RunConfig | None = None, portfolio=criteria.PORTFOLIO):
        self.config = config
        self.portfolio = portfolio

    def _cfg(self) -> RunConfig:
        return replace(self.config or RunConfig(), auto=False, consensus=False)

    def _features(self, records) -> tuple[dict, list]:
        """Each backbone's features of the records every backbone decoded (at most AUTO_MAX, a seeded sample)."""
        cfg = self._cfg()
        rows = (seeded_sample(len(records), criteria.AUTO_MAX, cfg.seed) if len(records) > criteria.AUTO_MAX
                else np.arange(len(records)))
        sample = [records[i] for i in rows]
        feats, keep = {}, None
        self.portfolio_cache_: Counter = Counter()  # every backbone's hits and misses, so the run reports them
        quiet = logging.getLogger("brainclust.features.fusion")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # the block scales are said once, by the chosen model's own fit
        try:
            for b in self.portfolio:
                got = replace(cfg, backbone=b).extractor().fit_extract(sample)
                self.portfolio_cache_.update(got.cache_info())
                ok, X, _ = got.split(sample)
                feats[b] = dict(zip((r.path for r in ok), X))
                keep = {r.path for r in ok} if keep is None else keep & {r.path for r in ok}
        finally:
            quiet.setLevel(level)
        kept = [r for r in sample if r.path in keep]
        return {b: np.stack([f[r.path] for r in kept]) for b, f in feats.items()}, kept

    def _k(self, feats: dict) -> int:
        cfg = self._cfg()
        if cfg.k != "auto":
            return int(cfg.k)
        return int(resolve_k("auto", "hierarchical", PCAReducer(cfg.pca, random_state=cfg.seed).fit_transform(
            feats[criteria.DEFAULT[0]]), cfg.seed)[0])

    def _select(self, records, y, consensus: bool):
        t0 = time.perf_counter()
        feats, kept = self._features(records)
        k = self._k(feats)
        labels = None
        if y is not None:
            by_path = dict(zip((r.path for r in records), y))
            labels = [by_path[r.path] or "" for r in kept]
        res = criteria.select(feats, k, self._cfg().seed, labels_true=labels, pca=self._cfg().pca,
                              with_consensus=consensus,
                              reductions=("pca",) if consensus else criteria.installed_reductions())
        self.result_, self.k_, self.sample_ = res, k, kept
        self.sampled_ = len(records) > criteria.AUTO_MAX
        self.seconds_ = time.perf_counter() - t0
        return feats, kept

    # -- what a run records ----------------------------------------------------------------
    def auto_record(self) -> dict:
        """``manifest.json``'s ``auto`` section."""
        self.check_is_fitted()
        return {**self.result_.as_dict(), "wall_s": self.seconds_,
                **({"sample_size": len(self.sample_)} if self.sampled_ else {})}

    def _cache_with(self, final: dict) -> dict:
        """The run's feature-cache counts: the portfolio's extractions and the final model's, summed."""
        keys = {"hits", "misses", *self.portfolio_cache_, *final}  # a zero count stays a key (Counter drops it)
        return {k: self.portfolio_cache_.get(k, 0) + final.get(k, 0) for k in sorted(keys)}

    def write_extras(self, folder) -> None:
        """``auto.csv``: every candidate's criteria (and ``--auto``'s margins: the consensus applies none)."""
        consensus = self.result_.consensus is not None
        write_table(RunFolder(folder).auto, [c for c in criteria.COLUMNS if not (consensus and c == "margins")],
                    self.result_.rows)


class AutoSelect(_Portfolio):
    """``--auto``: the label-free choice of backbone and reduction, then the chosen model (see the module docstring).

    Parameters
    ----------
    config : RunConfig
        The run's settings (its backbone and reduction are the defaults; the choice replaces them).
    portfolio : tuple of str
        The backbones scored.

    Attributes
    ----------
    result_ : brainclust.model.criteria.AutoResult
    best_ : BrainClusterModel
        The chosen configuration, fitted on every image; everything else delegates to it.
    config_ : RunConfig
        The settings the run recorded (the chosen backbone and reduction, ``auto=True``).
    """

    def fit(self, records, y=None, **fit_params):
        self._select(records, y, consensus=False)
        backbone, reduce = self.result_.chosen
        chosen = replace(self._cfg(), backbone=backbone, reduce=reduce, k=self.k_)
        self.best_ = BrainClusterModel(build_steps(chosen)).fit(records, **fit_params)
        self.config_ = replace(chosen, auto=True)
        return self

    def _best(self):
        self.check_is_fitted()
        return self.best_

    records_ = property(lambda self: self._best().records_)
    skipped_ = property(lambda self: self._best().skipped_)
    features_ = property(lambda self: self._best().features_)
    embedding_ = property(lambda self: self._best().embedding_)
    labels_ = property(lambda self: self._best().labels_)
    levels_ = property(lambda self: self._best().levels_)
    cache_ = property(lambda self: self._cache_with(self._best().cache_))
    steps_ = property(lambda self: self._best().steps_)
    extractor_ = property(lambda self: self._best().extractor_)
    clusterer_ = property(lambda self: self._best().clusterer_)

    def step(self, name: str):
        return self._best().step(name)

    def clustering_extras(self) -> dict:
        return self._best().clustering_extras()

    def scores(self, labels_true=None) -> dict:
        return self._best().scores(labels_true)

    def score_space(self):
        return self._best().score_space()

    def predict(self, records):
        return self._best().predict(records)

    def save(self, folder, settings: dict | None = None) -> None:
        self._best().save(folder, settings)

    @property
    def timings_(self) -> dict:
        return {**self.best_.timings_, "auto": self.seconds_}


class ConsensusModel(_Portfolio):
    """``--consensus``: the consensus of the portfolio's partitions (see the module docstring).

    Attributes
    ----------
    result_ : brainclust.model.criteria.AutoResult
        With ``consensus``, the consensus clustering of the rows scored.
    default_ : BrainClusterModel
        The default backbone's model on every image (features, PCA space, extractor).
    labels_, levels_ : the consensus partition of every image and its tree's ten levels
    config_ : RunConfig
    """

    def fit(self, records, y=None, **fit_params):
        feats, kept = self._select(records, y, consensus=True)
        cfg = replace(self._cfg(), backbone=criteria.DEFAULT[0], k=self.k_)
        self.default_ = BrainClusterModel(build_steps(cfg)).fit(records, **fit_params)
        fitted = self.result_.consensus
        if len(records) <= criteria.AUTO_MAX:  # the criteria saw every image
            if [r.path for r in self.default_.records_] != [r.path for r in kept]:
                lost = sorted({r.path for r in self.default_.records_} - {r.path for r in kept})
                raise InputError(f"--consensus: {count_text(len(lost), 'image')} could be read by "
                                 f"{criteria.DEFAULT[0]} but not by every backbone of the portfolio (first: "
                                 f"'{lost[0] if lost else '?'}'); remove them or use --auto")
            self.labels_, self.levels_ = fitted.labels_, fitted.levels_
        else:
            self.labels_, self.levels_ = self._extend(feats, kept)
        self.config_ = replace(cfg, consensus=True)
        log.info("--consensus: the clusters are %s; %s gives the features, the PCA map and the silhouette",
                 self.result_.outcome, criteria.DEFAULT[0])
        return self

    def _extend(self, feats: dict, kept: list) -> tuple[np.ndarray, np.ndarray]:
        """The consensus of every image: each member's partition extended to every image by the
        hierarchical rule (lowest mean cosine distance to a cluster's members, in the member's PCA
        space fitted on the sample), then the consensus tree's ``predict``; the sample keeps its own."""
        cfg, records = self._cfg(), self.default_.records_
        members, sizes = [], []
        for b, X in feats.items():
            part = self.result_.labels[(b, "pca")]
            pca = PCAReducer(cfg.pca, random_state=cfg.seed).fit(X)
            got = replace(cfg, backbone=b).extractor().fit_extract(records)
            self.portfolio_cache_.update(got.cache_info())
            ok, F, failed = got.split(records)
            if failed:
                raise InputError(f"--consensus: {count_text(len(failed), 'image')} could not be read by {b} (first: "
                                 f"{escape_name(failed[0]['path'])}: {failed[0]['reason']}); remove them or use --auto")
            members.append(mean_distance_assign(pca.transform(F), pca.transform(X), part, "cosine"))
            sizes.append(int(part.max()) + 1)
        H = criteria.coassociation_rows(members, sizes)
        fitted = self.result_.consensus
        labels, levels = fitted.predict(H), fitted.predict_levels(H)
        at = {r.path: i for i, r in enumerate(records)}
        rows = np.array([at[r.path] for r in kept])
        labels[rows], levels[rows] = fitted.labels_, fitted.levels_
        return labels, levels

    # the run's rows, features and space are the default model's
    records_ = property(lambda self: self.default_.records_)
    skipped_ = property(lambda self: self.default_.skipped_)
    features_ = property(lambda self: self.default_.features_)
    embedding_ = property(lambda self: self.default_.embedding_)
    cache_ = property(lambda self: self._cache_with(self.default_.cache_))
    extractor_ = property(lambda self: self.default_.extractor_)
    steps_ = property(lambda self: self.default_.steps_)

    def step(self, name: str):
        return self.default_.step(name)

    @property
    def timings_(self) -> dict:
        return {**self.default_.timings_, "auto": self.seconds_}

    @property
    def clusterer_(self):
        return self.result_.consensus

    def clustering_extras(self) -> dict:
        return {"consensus_of": [b for b, red in self.result_.labels if red == "pca"]}

    def scores(self, labels_true=None) -> dict:
        from brainclust.cluster.scores import score

        return score(self.score_space(), self.labels_, labels_true)

    def score_space(self):
        return self.embedding_

    def predict(self, records):
        raise InputError("a --consensus model has no single model to place new images")

    def save(self, folder, settings: dict | None = None) -> None:
        """The default model's extractor and PCA, and ``cluster.npz`` with the consensus tree over every
        image drawn in the default's PCA space (what the report reads); ``predict`` refuses it."""
        self.check_is_fitted()
        folder = RunFolder(folder).model
        folder.mkdir(parents=True, exist_ok=True)
        fitted = self.result_.consensus
        arrays = {**fitted.state_arrays(), "X_fit": self.embedding_, "labels": self.labels_, "levels": self.levels_}
        atomic_write_npz(folder / MODEL_FILES["cluster"], params=np.asarray(fitted.params_json()), **arrays)
        entries = [{"name": "extractor", **self.extractor_.save_step(folder)},
                   {"name": "reducer", **self.default_.step("reducer").save_step(folder)},
                   {"name": "clusterer", "class": "ConsensusModel", "params": {"portfolio": list(self.portfolio)},
                    "files": [MODEL_FILES["cluster"]]}]
        for e in entries:
            e.pop("state", None)
        write_model_manifest(folder, settings or {}, self.extractor_.describe(), entries, __version__)
