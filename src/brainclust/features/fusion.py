"""Feature fusion: several backbones side by side, balanced so that none dominates.

``--backbone efficientnet_lite0+pixels`` (any ``+``-joined backbone names, each
optionally followed by ``*WEIGHT``) extracts every block with its own
:class:`~brainclust.features.extractor.FeatureExtractor` (and its own feature cache),
then fuses them:

1. every block is **L2-normalised per image**: ``x_b <- x_b / ||x_b||``. Cosine
   geometry inside a block is kept; the block's number of dimensions and its
   raw scale no longer matter (repeating a block's columns ``r`` times gives
   the same normalised distances);
2. every block is **scaled to the same total variance**:
   ``x_b <- w_b * x_b / sqrt(V_b)``, where ``V_b = mean_i ||x_bi - mean(x_b)||^2``
   is the block's total variance (the trace of its covariance, which is what
   PCA spreads over its components) measured on the images being clustered,
   and ``w_b`` is the user weight (default 1). Each block then contributes
   exactly ``w_b ** 2`` of total variance to the PCA, whatever its dimension or
   how tightly its images cluster;
3. the blocks are concatenated, in the order given.

``norm="block"`` (``--fusion-norm block``) skips step 1: each block keeps its
own geometry, including each image's norm, and step 2 alone balances the
blocks (``V_b`` is then the raw block's total variance). Use it when a block's
norm is signal: for ``pixels`` with ``--intensity-window`` the norm of an
image's pixel vector is its brightness, which step 1 would remove.

The scales ``s_b = w_b / sqrt(V_b)`` are learned in :meth:`FusedExtractor.fit`
(or :meth:`~FusedExtractor.fit_extract`) from the images being clustered and are kept in
``block_scales_``; ``transform`` only applies them (an extractor fitted without images
and without fixed ``block_scales`` cannot transform: NotFittedError).
``brainclust predict`` reuses the saved scales so that new images land in the same space.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import TransformerMixin

from brainclust.core.arrays import unit_rows
from brainclust.core.choices import NORMS, SEPARATOR, is_fused  # noqa: F401 (is_fused: re-exported)
from brainclust.core.params import NONE, Kind, OneOf, Step, param
from brainclust.errors import NotFittedError, ParameterError
from brainclust.features import backbones
from brainclust.features.extraction import Extraction, as_records, check_fitted_as_saved
from brainclust.features.extractor import SHARED_CONSTRAINTS, FeatureExtractor

log = logging.getLogger(__name__)

#: Smallest and largest fusion weight: blocks then differ in variance by at most 10^12.
WEIGHT_RANGE = (1e-6, 1e6)
_BLOCK = re.compile(r"^(?P<name>[A-Za-z0-9_@.-]+?)(?:\*(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?$")


def check_norm(norm: str) -> None:
    """``--fusion-norm``: one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ParameterError(f"--fusion-norm: must be one of {', '.join(NORMS)}, got '{norm}'")


def parse_blocks(name: str) -> list[tuple[str, float]]:
    """``"efficientnet_lite0*2+pixels"`` -> ``[("efficientnet_lite0", 2.0), ("pixels", 1.0)]``.

    Raises
    ------
    ParameterError
        Fewer than two blocks, an empty block, ``auto`` as a block, or a
        weight outside :data:`WEIGHT_RANGE` (a weight of 1e308 would overflow the
        fused features; its block's total variance is the weight squared).
    """
    parts = str(name).split(SEPARATOR)
    if len(parts) < 2:
        raise ParameterError(f"--backbone: fusion needs at least two '+'-joined backbones, got '{name}'")
    out = []
    for part in parts:
        m = _BLOCK.match(part.strip())
        if not m:
            raise ParameterError(f"--backbone: cannot read fusion block '{part}' in '{name}'; "
                                 "expected NAME or NAME*WEIGHT, e.g. efficientnet_lite0+pixels*0.5")
        block, w = m.group("name"), float(m.group("w") or 1.0)
        if block == "auto":
            raise ParameterError(f"--backbone: name fusion blocks explicitly ('auto' is not allowed), got '{name}'")
        if not w > 0:
            raise ParameterError(f"--backbone: fusion weight of '{block}' must be > 0, got {w}")
        if not (math.isfinite(w) and WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1]):
            raise ParameterError(f"--backbone: fusion weight of '{block}' must be a number from {WEIGHT_RANGE[0]:g} "
                                 f"to {WEIGHT_RANGE[1]:g}, got {m.group('w') or w} (in '{name}')")
        out.append((block, w))
    return out


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows divided by their Euclidean norm, in float64 (zero rows stay zero:
    :func:`~brainclust.core.arrays.unit_rows`)."""
    return unit_rows(np.asarray(X, dtype=np.float64))


def _normalized(X: np.ndarray, norm: str) -> np.ndarray:
    return l2_normalize(X) if norm == "image" else np.asarray(X, dtype=np.float64)


def block_scales(blocks: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                 norm: str = "image") -> np.ndarray:
    """Scale of each block (L2-normalised per image if ``norm="image"``) that gives it total variance ``weight ** 2``.

    Parameters
    ----------
    blocks : sequence of arrays of shape (n, d_b)
        Features of the same ``n`` images; finite rows only.
    weights : sequence of float or None
        User weight of each block (default 1).

    Returns
    -------
    ndarray of shape (n_blocks,)
        ``w_b / sqrt(V_b)`` with ``V_b`` the total variance of the normalised
        block; a block with (numerically) no variance gets scale 0 and a warning.
    """
    weights = np.ones(len(blocks)) if weights is None else np.asarray(weights, dtype=np.float64)
    scales = np.zeros(len(blocks))
    for b, X in enumerate(blocks):
        Z = _normalized(X, norm)
        var = float(((Z - Z.mean(axis=0)) ** 2).sum(axis=1).mean()) if len(Z) else 0.0
        if var < 1e-12:
            log.warning("fusion block %d has no variance over these images; it is left out (scale 0)", b)
        else:
            scales[b] = weights[b] / np.sqrt(var)
    return scales


def fuse(blocks: Sequence[np.ndarray], scales: Sequence[float], norm: str = "image") -> np.ndarray:
    """L2-normalise each block per row (``norm="image"``), multiply by its scale, concatenate: ``(n, sum d_b)``."""
    if len(blocks) != len(scales):
        raise ParameterError(f"fusion: {len(blocks)} blocks but {len(scales)} scales")
    return np.concatenate([_normalized(X, norm) * float(s) for X, s in zip(blocks, scales)], axis=1)


@dataclass(frozen=True)
class FusedPreprocess:
    """Pre-processing of each block (blocks may differ in image size)."""

    blocks: tuple[tuple[str, object], ...]

    def as_dict(self) -> dict:
        return {"fused": {name: cfg.as_dict() for name, cfg in self.blocks}}


class FusedExtractor(TransformerMixin, Step):
    """Features of several backbones, L2-normalised and variance-balanced, side by side.

    Parameters
    ----------
    backbone : str
        ``+``-joined backbone names, each optionally ``NAME*WEIGHT``
        (e.g. ``"efficientnet_lite0+pixels"``).
    weights : {None, "random"}, default None
        ``"random"`` gives the network blocks random weights (tests only); a
        weights file is ambiguous for several blocks and is refused.
    block_scales : sequence of float or None, default None
        Fixed scales (as saved in a run's model); ``None`` learns them.
    norm : {"image", "block"}, default "image"
        ``image``: L2-normalise every block per image before balancing;
        ``block``: balance the raw blocks (see the module docstring).
    precision, batch_size, num_workers, clip_percentiles, cache_dir, device, progress, view, view_seed,
    intensity_window, runtime
        As in :class:`~brainclust.features.extractor.FeatureExtractor`, passed to every block.

    Attributes
    ----------
    blocks_ : list of (FeatureExtractor, float)
        One fitted extractor per block and its user weight.
    spec_ : BackboneSpec
        A summary spec: the fused name and the total dimension.
    weights_ : ResolvedWeights
        ``sha256`` combines the blocks' weights hashes (``"random"`` if any block is random).
    precision_, device_ : str
        Of the network blocks (``fp32`` if there are none).
    preprocess_ : FusedPreprocess
    block_scales_ : ndarray of shape (n_blocks,) or None
        ``w_b / sqrt(V_b)``; ``None`` until learned by :meth:`fit` with images.

    :meth:`extract` returns an :class:`~brainclust.features.extraction.Extraction` whose cache
    counts are summed over the blocks and whose failures are the rows that failed in any block.
    """

    def __init__(self, backbone: str = "efficientnet_lite0+pixels", weights: str | None = None,
                 precision: str = "auto", batch_size: int = 32, num_workers: int | None = None,
                 clip_percentiles: tuple[float, float] | None = (0.5, 99.5), cache_dir=None, device: str = "cpu",
                 progress: bool | None = None, view: str | None = None, view_seed: int = 0,
                 block_scales: Sequence[float] | None = None, intensity_window: tuple[float, float] | None = None,
                 norm: str = "image", runtime: str = "auto"):
        self.backbone = backbone
        self.weights = weights
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.clip_percentiles = clip_percentiles
        self.cache_dir = cache_dir
        self.device = device
        self.progress = progress
        self.view = view
        self.view_seed = view_seed
        self.block_scales = block_scales
        self.intensity_window = intensity_window
        self.norm = norm
        self.runtime = runtime

    _parameter_constraints = {"backbone": param(Kind((str,), "a string"), option="--backbone"),
                              "weights": param(NONE, OneOf((backbones.RANDOM_WEIGHTS,)), option="--weights"),
                              "norm": param(OneOf(NORMS), option="--fusion-norm"), **SHARED_CONSTRAINTS}
    _fitted_attribute = "blocks_"

    def check_params(self):
        """The rules of the parameters (no images needed), the blocks' names and the shared settings."""
        if self.weights not in (None, backbones.RANDOM_WEIGHTS):
            raise ParameterError(f"--weights: cannot apply one weights file to the fused backbone "
                                 f"'{self.backbone}'; fuse backbones that need no --weights")
        super().check_params()
        for block, _ in parse_blocks(self.backbone):  # every block: its own size and batch-memory bounds
            network = backbones.runs_network(block)
            FeatureExtractor(backbone=block, precision=self.precision if network else "auto",
                             batch_size=self.batch_size, num_workers=self.num_workers,
                             clip_percentiles=self.clip_percentiles, view=self.view,
                             intensity_window=self.intensity_window, runtime=self.runtime if network else "auto",
                             device=self.device).check_params()
        return self

    def _block(self, name: str) -> FeatureExtractor:
        network = backbones.runs_network(name)
        ex = FeatureExtractor(backbone=name, precision=self.precision if network else "auto",
                              batch_size=self.batch_size,
                              num_workers=self.num_workers, clip_percentiles=self.clip_percentiles,
                              cache_dir=self.cache_dir, device=self.device, progress=self.progress,
                              view=self.view, view_seed=self.view_seed, intensity_window=self.intensity_window,
                              runtime=self.runtime if network else "auto")
        if self.weights == backbones.RANDOM_WEIGHTS and network:
            ex.set_params(weights=backbones.RANDOM_WEIGHTS)
        return ex.fit()

    def _resolve(self) -> None:
        """Resolve every block (nothing is learned from images here)."""
        self.check_params()
        self.blocks_ = [(self._block(name), w) for name, w in parse_blocks(self.backbone)]
        specs = [ex.spec_ for ex, _ in self.blocks_]
        name = SEPARATOR.join(ex.spec_.name if w == 1.0 else f"{ex.spec_.name}*{w:g}" for ex, w in self.blocks_)
        self.spec_ = backbones.BackboneSpec(name, max(s.input_size for s in specs), (0.0, 0.0, 0.0),
                                            (1.0, 1.0, 1.0), sum(s.dim for s in specs), None, lambda: None)
        shas = [ex.weights_.sha256 for ex, _ in self.blocks_]
        sha = (backbones.RANDOM_WEIGHTS if backbones.RANDOM_WEIGHTS in shas
               else hashlib.sha256("|".join(shas).encode()).hexdigest())
        self.weights_ = backbones.ResolvedWeights(None, sha)
        nets = [ex for ex, _ in self.blocks_ if ex.spec_.array_fn is None]
        self.precision_ = nets[0].precision_ if nets else "fp32"
        self.runtime_ = nets[0].runtime_ if nets else "none"
        self.device_ = self.blocks_[0][0].device_
        self.preprocess_ = FusedPreprocess(tuple((ex.spec_.name, ex.preprocess_) for ex, _ in self.blocks_))
        self.block_scales_ = None
        if self.block_scales is not None:
            scales = np.asarray(self.block_scales, dtype=np.float64).ravel()
            if len(scales) != len(self.blocks_) or not np.all(np.isfinite(scales)) or np.any(scales < 0):
                raise ParameterError(f"block_scales: need {len(self.blocks_)} finite values >= 0 for "
                                     f"'{self.backbone}', got {list(self.block_scales)!r}")
            self.block_scales_ = scales

    def fit(self, X=None, y=None):
        """Resolve every block; with images ``X``, also learn the block scales (unless fixed)."""
        if X is None:
            self._resolve()
        else:
            self.fit_extract(X)
        return self

    def fit_extract(self, X, prefill=None) -> Extraction:
        """Resolve the blocks, extract them (``prefill(self, records)`` first, as for a single
        backbone), learn the block scales from the images that every block decoded (unless fixed)
        and return the fused features."""
        self._resolve()
        records = as_records(X)
        if prefill is not None:
            prefill(self, records)
        parts = [ex.extract(records) for ex, _ in self.blocks_]
        if self.block_scales is None:
            good = ~self._bad_rows(parts)
            if good.sum() < 2:
                raise ParameterError(f"fusion '{self.backbone}': block scales need at least 2 decodable images, "
                                     f"got {int(good.sum())}")
            self.block_scales_ = block_scales([p.features[good] for p in parts], [w for _, w in self.blocks_],
                                              self.norm)
            log.info("fusion %s: block scales %s (equal total variance per block)", self.spec_.name,
                     ", ".join(f"{s:.3g}" for s in self.block_scales_))
        return self._fused(parts)

    @staticmethod
    def _bad_rows(parts: list[Extraction]) -> np.ndarray:
        return np.any([~np.all(np.isfinite(p.features), axis=1) for p in parts], axis=0)

    def _fused(self, parts: list[Extraction]) -> Extraction:
        bad = self._bad_rows(parts)
        good = ~bad
        out = np.full((len(bad), self.spec_.dim), np.nan, dtype=np.float32)
        out[good] = fuse([p.features[good] for p in parts], self.block_scales_, self.norm)
        failed: dict[int, str] = {}
        for p in parts:
            for i, reason in p.failed.items():
                failed.setdefault(i, reason)
        return Extraction(out, failed, sum(p.cache_hits for p in parts), sum(p.cache_misses for p in parts),
                          sum(p.seconds for p in parts), sum(p.copies for p in parts))

    def extract(self, X) -> Extraction:
        """Fused features ``(n_images, sum of block dims)`` (NaN rows for failed images) and what happened."""
        self.check_is_fitted()
        if self.block_scales_ is None:
            raise NotFittedError(f"FusedExtractor: the block scales of '{self.backbone}' are learned by fit(images) "
                                 "(or given as block_scales); call fit with the images first")
        return self._fused([ex.extract(X) for ex, _ in self.blocks_])

    def transform(self, X) -> np.ndarray:
        return self.extract(X).features

    def describe(self) -> dict:
        """The fitted backbone as the manifest records it (``backbone``), with the block scales."""
        self.check_is_fitted()
        net = next((ex for ex, _ in self.blocks_ if ex.spec_.array_fn is None), None)
        info = {"name": self.spec_.name, "requested": self.backbone, "dim": self.spec_.dim,
                "input_size": self.spec_.input_size, "weights_path": None, "weights_sha256": self.weights_.sha256,
                "precision": self.precision_, "device": self.device_,
                "runtime": net.describe()["runtime"] if net is not None else self.runtime_}
        if self.block_scales_ is not None:
            info.update(block_scales=[float(v) for v in self.block_scales_], fusion_norm=self.norm)
        return info

    def save_step(self, folder) -> dict:
        self.check_is_fitted()
        if self.block_scales_ is None:
            raise NotFittedError(f"FusedExtractor: the block scales of '{self.backbone}' are not learned yet")
        entry = self.entry()
        entry["params"].update(block_scales=[float(v) for v in self.block_scales_])
        return {**entry, "state": self.describe(), "files": []}

    @classmethod
    def load_step(cls, folder, entry, runtime: dict | None = None) -> "FusedExtractor":
        given = {"weights": entry["weights_given"]} if entry.get("weights_given") is not None else {}  # refused
        ex = cls(**{**entry["params"], **given, **(runtime or {})}).fit()
        check_fitted_as_saved(ex, entry.get("state") or {}, entry.get("source", "model config"))
        return ex
