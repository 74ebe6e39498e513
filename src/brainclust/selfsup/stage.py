"""The self-supervised stage of a model (:class:`SelfSupervisedStep`).

It sits between feature extraction and PCA: features (and, in ``head`` mode,
the cached features of the augmented views) in, learned embedding out. The
model's PCA then runs on that embedding as it would on plain features, and
the clustering on the PCA output. (PCA is also used *inside* the stage, as the
input map of the head; see :mod:`brainclust.selfsup.head`.) With ``gate=True``
(``--ssl-gate``) the step keeps the embedding only when
:func:`brainclust.selfsup.gate.check` says it beats the frozen features; otherwise it
passes the features through, saves nothing, and ``predict`` does not embed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.core.choices import SSL_MODES
from brainclust.core.params import BOOL, NONE, Integer, OneOf, Step, param
from brainclust.errors import ModelFileError, ParameterError
from brainclust.selfsup import gate as ssl_gate
from brainclust.selfsup.common import TEMI, parse_components
from brainclust.selfsup.head import SelfSupervisedHead
from brainclust.selfsup.temi import TEMIHead

log = logging.getLogger(__name__)

#: Fewer images per cluster than this: too few for the heads to learn from (a warning; a walk trained on 3 images).
MIN_IMAGES_PER_CLUSTER = 10
#: Default epochs per mode (``--ssl-epochs``).
DEFAULT_EPOCHS = {"head": 30, "finetune": 10, TEMI: 200}


def validate(components, mode: str, epochs, appearance_views=None) -> tuple[str, ...]:
    """Check the SSL settings of a run without doing any work; return the parsed components."""
    from brainclust.selfsup.views import appearance

    comps = parse_components(components)
    if mode not in SSL_MODES:
        raise ParameterError(f"--ssl-mode: must be one of {', '.join(SSL_MODES)}, got '{mode}'")
    if comps == (TEMI,) and (mode != "head" or appearance_views is not None):
        raise ParameterError("--self-supervised temi: trains on the frozen features alone; it takes neither "
                             "--ssl-mode finetune nor --ssl-views")
    if appearance_views is not None:
        if mode != "head":
            raise ParameterError("--ssl-views: applies to --ssl-mode head only (finetune draws its own views)")
        appearance(appearance_views)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ParameterError(f"--ssl-epochs: must be a positive integer, got {epochs!r}")
    return comps


def check_k(components, k) -> None:
    """The k the heads of ``components`` (none: any k) are trained for: ``auto`` and 1 are refused, one rule for
    ``brainclust run`` and the studies (``benchmark --self-supervised``)."""
    if not parse_components(components):
        return
    if k == "auto":
        raise ParameterError("--k: 'auto' cannot be combined with --self-supervised (the SSL head is trained "
                             "for a given k); run with --k auto first, then pass the chosen k")
    if k == 1:
        raise ParameterError("--k: 1 cannot be combined with --self-supervised (a head that learns one "
                             "cluster learns nothing); give k >= 2")


@dataclass
class SSLOutcome:
    """What the stage produced: the embedding of the training images, the model, its manifest entry and what its
    augmented views cost (``views``, ``hits``, ``misses``: :func:`brainclust.selfsup.views.extract`; empty when
    it extracted none)."""

    embedding: np.ndarray
    model: object
    info: dict = field(default_factory=dict)
    view_cache: dict = field(default_factory=dict)


def head_estimator(components, k: int, epochs: int | None, seed: int, **params) -> SelfSupervisedHead:
    """The ``head``-mode estimator with the defaults of ``brainclust run``."""
    return SelfSupervisedHead(components=components, n_clusters=k,
                              epochs=epochs or DEFAULT_EPOCHS["head"], random_state=seed, **params)


def fit(cfg, extractor, records, feats) -> SSLOutcome:
    """Train the SSL model of ``cfg`` (a RunConfig) on ``records`` and embed them (no gate)."""
    return SelfSupervisedStep(components=cfg.ssl, mode=cfg.ssl_mode, epochs=cfg.ssl_epochs, views=cfg.ssl_views,
                              n_clusters=cfg.k, random_state=cfg.seed, clip_percentiles=cfg.clip_percentiles,
                              batch_size=cfg.batch_size).train(extractor, records, feats)


def _train(step: "SelfSupervisedStep", extractor, records, feats) -> SSLOutcome:
    from brainclust.selfsup import views as views_mod

    comps = validate(step.components, step.mode, step.epochs, step.views)
    k = min(step.n_clusters, len(records))
    t0 = time.perf_counter()
    info: dict = {"mode": step.mode, "components": list(comps)}
    view_cache: dict = {}
    if comps == (TEMI,):
        est = TEMIHead(n_clusters=k, epochs=step.epochs or DEFAULT_EPOCHS[TEMI], random_state=step.random_state)
        est.fit(feats)
        info["timings_s"] = {"train": time.perf_counter() - t0}
        info["views"] = ["identity"]
        info["head_agreement"] = est.head_agreement_
    elif step.mode == "head":
        est = head_estimator(comps, k, step.epochs, step.random_state,
                             appearance_views=views_mod.appearance(step.views))
        names = views_mod.needed(comps, est.tta, est.appearance_views)
        views = views_mod.extract(extractor, records, names, identity=feats, counts=view_cache)
        info["timings_s"] = {"views": time.perf_counter() - t0}
        t1 = time.perf_counter()
        est.fit(views)
        info["timings_s"]["train"] = time.perf_counter() - t1
        info["views"] = names
    else:
        from brainclust.selfsup.finetune import FinetuneSSL

        if str(extractor.device_) == "cpu":
            log.warning("--ssl-mode finetune on the CPU: every epoch runs the backbone forward and backward over "
                        "every image, so it takes minutes per epoch per thousand images (a GPU: --device cuda); "
                        "--ssl-mode head trains on the extracted features in seconds")
        est = FinetuneSSL(components=comps, n_clusters=k, epochs=step.epochs or DEFAULT_EPOCHS["finetune"],
                          backbone=extractor.spec_.name, weights=extractor.weights_.path
                          if extractor.weights_.sha256 != "random" else "random",
                          device=extractor.device_, clip_percentiles=step.clip_percentiles,
                          batch_size=min(step.batch_size, 64), random_state=step.random_state)
        est.fit(records)
        info["timings_s"] = {"train": time.perf_counter() - t0}
    info["params"] = est.params()
    info["loss_curves"] = est.history_["loss"]
    info["refine_rounds"] = est.history_["refine"]
    if "rotation_train_accuracy" in est.history_:
        info["rotation_train_accuracy"] = est.history_["rotation_train_accuracy"]
    info["embedding_dim"] = int(est.embedding_.shape[1])
    return SSLOutcome(est.embedding_, est, info, view_cache)


def load(folder, settings: dict):
    """Load the model a :class:`SelfSupervisedStep` saved, given its settings (``ssl``, ``ssl_mode``)."""
    folder = Path(folder)
    if tuple(settings.get("ssl") or ()) == (TEMI,):
        return TEMIHead.load(folder)
    if settings.get("ssl_mode", "head") == "finetune":
        from brainclust.selfsup.finetune import FinetuneSSL

        return FinetuneSSL.load(folder)
    if not (folder / "ssl_head.json").is_file():
        raise ModelFileError(f"'{folder}' has no self-supervised head (ssl_head.json is missing)")
    return SelfSupervisedHead.load(folder)


def embed(model, extractor, records, feats, counts: dict | None = None) -> np.ndarray:
    """Embed new images the way the saved model embedded its training images; ``counts``: where to add up what
    their augmented views cost (:func:`brainclust.selfsup.views.extract`)."""
    from brainclust.selfsup import views as views_mod

    if isinstance(model, TEMIHead):
        return model.transform(feats)
    if isinstance(model, SelfSupervisedHead) and type(model) is SelfSupervisedHead:
        views = views_mod.extract(extractor, records, model.views_, identity=feats, counts=counts)
        return model.transform(views)
    return model.transform(records)


class SelfSupervisedStep(Step):
    """The self-supervised stage as a step of a model (see the module docstring).

    Parameters
    ----------
    components : tuple of str
        ``--self-supervised`` (parsed: the components, or ``("temi",)``).
    mode : {"head", "finetune"}, default "head"
    epochs : int or None
        ``--ssl-epochs`` (None: the mode's default).
    views : tuple of str or None
        ``--ssl-views`` (head mode).
    n_clusters : int, default 4
        The run's k (capped at the number of images).
    gate : bool, default False
        ``--ssl-gate``: keep the embedding only when the label-free check passes.
    gate_pca : int or float, default 50
        The PCA of the gate's reference cell (the run's ``--pca``).
    random_state : int, default 0
    clip_percentiles, batch_size
        Of the finetune mode's image pipeline.

    Attributes
    ----------
    model_ : the trained head, or None when the gate set the embedding aside
    kept_ : bool
    info_ : dict
        What ``manifest.json`` records under ``ssl`` (``kept``: whether the run clustered the embedding).
    view_cache_ : dict
        What the augmented views cost (``manifest.json`` ``cache.views``; empty when none were extracted).
    """

    _parameter_constraints = {"mode": param(OneOf(SSL_MODES), option="--ssl-mode"),
                              "epochs": param(NONE, Integer(1), option="--ssl-epochs"),
                              "n_clusters": param(Integer(1), option="--k"),
                              "gate": param(BOOL, option="--ssl-gate"),
                              "random_state": param(Integer(0), option="--seed")}
    _fitted_attribute = "info_"

    def __init__(self, components=(), mode: str = "head", epochs: int | None = None, views=None,
                 n_clusters: int = 4, gate: bool = False, gate_pca=50, random_state: int = 0,
                 clip_percentiles=(0.5, 99.5), batch_size: int = 32):
        self.components = components
        self.mode = mode
        self.epochs = epochs
        self.views = views
        self.n_clusters = n_clusters
        self.gate = gate
        self.gate_pca = gate_pca
        self.random_state = random_state
        self.clip_percentiles = clip_percentiles
        self.batch_size = batch_size

    def check_params(self):
        super().check_params()
        if not validate(self.components, self.mode, self.epochs, self.views):
            raise ParameterError("--self-supervised: the self-supervised step needs components (got none)")
        return self

    def train(self, extractor, records, feats) -> SSLOutcome:
        """Train the head on ``records`` (their frozen features ``feats``) and embed them; no gate."""
        self.check_params()
        return _train(self, extractor, records, feats)

    def fit_batch(self, batch):
        """Train, gate, and return the batch with the embedding (or the frozen features, gated out)."""
        n, k = len(batch.X), self.n_clusters
        # what the heads learn is a k-way clustering: said, since --method dbscan clusters without --k afterwards
        log.info("self-supervised heads learn k = %d clusters of %d images (--k)", k, n)
        if n < MIN_IMAGES_PER_CLUSTER * k:
            log.warning("--self-supervised on %d images for k = %d: fewer than %d per cluster to learn from; the "
                        "embedding may only memorise them (--ssl-gate compares it with the frozen features)", n, k,
                        MIN_IMAGES_PER_CLUSTER)
        outcome = self.train(batch.extractor, batch.records, batch.X)
        self.model_, self.kept_, self.info_, self.view_cache_ = outcome.model, True, outcome.info, outcome.view_cache
        self.info_["kept"] = True  # the settings keep the components requested; this says whether they were used
        if self.gate:
            self.info_["gate"] = ssl_gate.check(batch.X, outcome.embedding, self.n_clusters, self.gate_pca,
                                                self.random_state,
                                                seed_stability=outcome.info.get("head_agreement")).as_dict()
            if not self.info_["gate"]["kept"]:  # step aside: frozen features, no model saved
                self.model_, self.kept_, self.info_["kept"] = None, False, False
                return batch
        return batch.with_features(outcome.embedding)

    def transform_batch(self, batch):
        self.check_is_fitted()
        if not self.kept_:
            return batch
        views: dict = {}  # the new images' augmented views: in the batch, for the prediction's manifest
        return batch.with_features(embed(self.model_, batch.extractor, batch.records, batch.X, views)).counted(
            "views", views)

    def settings(self) -> dict:
        """The ``ssl`` settings :func:`load` needs (what a run records)."""
        return {"ssl": list(parse_components(self.components)), "ssl_mode": self.mode}

    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        before = {p.name for p in Path(folder).iterdir()} if Path(folder).is_dir() else set()
        if self.kept_:
            self.model_.save(Path(folder))
        files = sorted({p.name for p in Path(folder).iterdir()} - before) if self.kept_ else []
        return {**self.entry(), "kept": bool(self.kept_), "files": files}

    @classmethod
    def load_step(cls, folder, entry) -> "SelfSupervisedStep":
        from brainclust.core.params import from_json

        step = cls(**{k: from_json(v) for k, v in entry["params"].items()})
        step.kept_ = bool(entry.get("kept", True))
        step.model_ = load(folder, step.settings()) if step.kept_ else None
        step.info_, step.view_cache_ = {}, {}
        return step
