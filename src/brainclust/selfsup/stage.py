"""The self-supervised stage as :func:`brainclust.pipeline.run` and ``predict`` call it.

It sits between feature extraction and PCA: features (and, in ``head`` mode,
the cached features of the augmented views) in, learned embedding out. The
pipeline's PCA then runs on that embedding as it would on plain features, and
the clustering on the PCA output. (PCA is also used *inside* the stage, as the
input map of the head; see :mod:`brainclust.selfsup.head`.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.errors import ModelFileError, ParameterError
from brainclust.selfsup.common import TEMI, parse_components
from brainclust.selfsup.head import SelfSupervisedHead
from brainclust.selfsup.temi import TEMIHead

log = logging.getLogger(__name__)

SSL_MODES = ("head", "finetune")
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


@dataclass
class SSLOutcome:
    """What the stage produced: the embedding of the training images, the model and its manifest entry."""

    embedding: np.ndarray
    model: object
    info: dict = field(default_factory=dict)


def head_estimator(components, k: int, epochs: int | None, seed: int, **params) -> SelfSupervisedHead:
    """The ``head``-mode estimator with the defaults of ``brainclust run``."""
    return SelfSupervisedHead(components=components, n_clusters=k,
                              epochs=epochs or DEFAULT_EPOCHS["head"], random_state=seed, **params)


def fit(cfg, extractor, records, feats) -> SSLOutcome:
    """Train the SSL model of ``cfg`` (a RunConfig) on ``records`` and embed them."""
    from brainclust.selfsup import views as views_mod

    comps = validate(cfg.ssl, cfg.ssl_mode, cfg.ssl_epochs, cfg.ssl_views)
    k = min(cfg.k, len(records))
    t0 = time.perf_counter()
    info: dict = {"mode": cfg.ssl_mode, "components": list(comps)}
    if comps == (TEMI,):
        est = TEMIHead(n_clusters=k, epochs=cfg.ssl_epochs or DEFAULT_EPOCHS[TEMI], random_state=cfg.seed)
        est.fit(feats)
        info["timings_s"] = {"train": time.perf_counter() - t0}
        info["views"] = ["identity"]
        info["head_agreement"] = est.head_agreement_
    elif cfg.ssl_mode == "head":
        est = head_estimator(comps, k, cfg.ssl_epochs, cfg.seed,
                             appearance_views=views_mod.appearance(cfg.ssl_views))
        names = views_mod.needed(comps, est.tta, est.appearance_views)
        views = views_mod.extract(extractor, records, names, identity=feats)
        info["timings_s"] = {"views": time.perf_counter() - t0}
        t1 = time.perf_counter()
        est.fit(views)
        info["timings_s"]["train"] = time.perf_counter() - t1
        info["views"] = names
    else:
        from brainclust.selfsup.finetune import FinetuneSSL

        est = FinetuneSSL(components=comps, n_clusters=k, epochs=cfg.ssl_epochs or DEFAULT_EPOCHS["finetune"],
                          backbone=extractor.spec_.name, weights=extractor.weights_.path
                          if extractor.weights_.sha256 != "random" else "random",
                          device=extractor.device_, clip_percentiles=cfg.clip_percentiles,
                          batch_size=min(cfg.batch_size, 64), random_state=cfg.seed)
        est.fit(records)
        info["timings_s"] = {"train": time.perf_counter() - t0}
    info["params"] = est.params()
    info["loss_curves"] = est.history_["loss"]
    info["refine_rounds"] = est.history_["refine"]
    if "rotation_train_accuracy" in est.history_:
        info["rotation_train_accuracy"] = est.history_["rotation_train_accuracy"]
    info["embedding_dim"] = int(est.embedding_.shape[1])
    return SSLOutcome(est.embedding_, est, info)


def save(model, folder) -> None:
    """Save the stage's model into a run's ``model/`` folder."""
    model.save(Path(folder))


def load(folder, settings: dict):
    """Load the model saved by :func:`save`, given the run's recorded settings."""
    folder = Path(folder)
    if tuple(settings.get("ssl") or ()) == (TEMI,):
        return TEMIHead.load(folder)
    if settings.get("ssl_mode", "head") == "finetune":
        from brainclust.selfsup.finetune import FinetuneSSL

        return FinetuneSSL.load(folder)
    if not (folder / "ssl_head.json").is_file():
        raise ModelFileError(f"'{folder}' has no self-supervised head (ssl_head.json is missing)")
    return SelfSupervisedHead.load(folder)


def embed(model, extractor, records, feats) -> np.ndarray:
    """Embed new images the way the saved model embedded its training images."""
    from brainclust.selfsup import views as views_mod

    if isinstance(model, TEMIHead):
        return model.transform(feats)
    if isinstance(model, SelfSupervisedHead) and type(model) is SelfSupervisedHead:
        views = views_mod.extract(extractor, records, model.views_, identity=feats)
        return model.transform(views)
    return model.transform(records)
