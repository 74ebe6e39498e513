"""Stage 3: CNN feature extraction with an on-disk cache.

:class:`FeatureExtractor` decodes and pre-processes images in DataLoader
workers, runs the backbone in batches under ``torch.inference_mode()``, and
stores every batch in the :class:`~brainclust.features.cache.FeatureCache` as it goes,
so memory is bounded by the batch size and an interrupted run resumes.

``precision="auto"`` is fp32 on CPU (bf16 only on CUDA GPUs that support
it); bf16 on CPU is an explicit opt-in (``precision="bf16"``) because it moves
the clusters: on the 4-class set, fp32 vs bf16 partitions agree at ARI 0.68
(hierarchical) and 0.995 (k-means), see ``docs/performance.md``.

The network runs with ONNX Runtime on CPU (``runtime="auto"``/``"onnx"``) or
with PyTorch (see :mod:`brainclust.features.runtime`); features are float32
either way, and the runtime is not part of the cache key (the two agree to
1e-5 relative error in fp32).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import TransformerMixin

from brainclust.core.params import BOOL, NONE, TEXT, Integer, Kind, OneOf, Step, param
from brainclust.errors import ParameterError
from brainclust.features import augment, backbones, limits, runtime as rt
from brainclust.features.cache import FeatureCache, default_cache_dir
from brainclust.features.extraction import (Extraction, ImageDataset, as_records, check_finite, check_fitted_as_saved,
                                            collate, result_array)
from brainclust.features.preprocess import PreprocessConfig
from brainclust.features.weightsfile import saved_weights, weights_to_load
from brainclust.io.scan import ImageRecord
from brainclust.progress import bar

log = logging.getLogger(__name__)

#: Bump when a change to the code alters the features of unchanged settings.
FEATURE_VERSION = 1
PRECISIONS = rt.PRECISIONS  # auto, fp32, bf16, int8


def default_workers() -> int:
    """Decoding workers: half the cores (at most 4), none on machines with 2 cores or fewer.

    On 2 cores a worker process takes a core from the network: ``make bench``
    measured efficientnet_lite0 bf16 at 84 img/s with decoding in the main
    process against 44 img/s with one worker.
    """
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores // 2)


#: ``--workers``: decoding processes, for the extraction and the data checks alike (declared once). Bounded:
#: 500 workers on 2 cores spawned 250 processes for 4 images.
MAX_WORKERS = 64
WORKERS_PARAM = param(NONE, Integer(0, MAX_WORKERS), option="--workers")

#: The parameters every extractor shares (``FusedExtractor`` too), declared once.
SHARED_CONSTRAINTS = {
    "precision": param(OneOf(PRECISIONS), option="--precision"),
    "batch_size": param(Integer(1), option="--batch-size"),
    "num_workers": WORKERS_PARAM,
    "cache_dir": param(NONE, OneOf((False,)), Kind((str, os.PathLike), "a folder"), option="--cache-dir"),
    "device": param(TEXT, option="--device"),
    "progress": param(NONE, BOOL, option="progress"),
    "view": param(NONE, TEXT, option="view"),
    "view_seed": param(Integer(), option="view_seed"),
    "runtime": param(OneOf(rt.RUNTIMES), option="--runtime"),
}


def check_preprocessing(clip_percentiles, intensity_window) -> None:
    """``--clip`` and ``--intensity-window``: the rules of :class:`PreprocessConfig`, named by their option."""
    for option, name, value in (("--clip", "clip_percentiles", clip_percentiles),
                                ("--intensity-window", "intensity_window", intensity_window)):
        if value is not None:
            try:
                PreprocessConfig(**{name: tuple(value)}).validate()
            except (ParameterError, TypeError, ValueError) as exc:
                raise ParameterError(f"{option}: {exc}") from None


class FeatureExtractor(TransformerMixin, Step):
    """Image files -> pooled CNN features, cached on disk.

    Parameters
    ----------
    backbone : str, default "auto"
        A name from :func:`brainclust.features.backbones.available`.
    weights : str or None, default None
        Local state-dict file; ``None`` uses the backbone's pre-trained weights;
        ``"random"`` builds random weights (tests and speed benchmarks only).
    precision : {"auto", "fp32", "bf16", "int8"}, default "auto"
        ``auto`` is fp32 on CPU and bf16 on CUDA GPUs that support it. ``bf16``
        and ``int8`` on CPU are opt-in (they move the clusters a little; see
        ``docs/performance.md``); bf16 is refused on a CPU without native bf16.
        int8 is calibrated on a seeded sample of the images given to :meth:`fit`
        (``fit()`` without images: :meth:`transform` is refused, unless ``calibration`` is given).
    runtime : {"auto", "onnx", "openvino", "torch"}, default "auto"
        Where the network runs: ``onnx`` = ONNX Runtime (CPU), ``openvino`` =
        OpenVINO (CPU), ``torch`` = PyTorch eager; ``auto`` follows
        :func:`brainclust.features.runtime.resolve_runtime`. Ignored by array backbones.
    batch_size : int, default 32
    num_workers : int or None, default None
        DataLoader decoding processes; ``None`` picks :func:`default_workers`,
        0 decodes in the main process.
    clip_percentiles : tuple of float or None, default (0.5, 99.5)
        Robust intensity clip of the pre-processing (see :mod:`brainclust.features.preprocess`).
    intensity_window : tuple of float or None, default None
        Fixed input intensity range for every image instead of the per-image
        clip and min-max (see :mod:`brainclust.features.preprocess`).
    cache_dir : str or None, default None
        Feature cache folder (default :func:`~brainclust.features.cache.default_cache_dir`);
        ``False`` disables caching.
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    view : str or None, default None
        Name of an augmentation in :mod:`brainclust.features.augment` applied after
        pre-processing (for self-supervised learning); ``None`` = the image itself.
    view_seed : int, default 0
        Seed of the view's randomness (mixed with each image's content key).
    progress : bool or None, default None
        Progress bar: ``None`` shows it only on a terminal.
    calibration_size : int, default 128
        int8 only: number of calibration images (:mod:`brainclust.features.quantize`).
    calibration : dict or None, default None
        int8 only: the ``calibration_`` of an earlier fit, to reuse its quantised
        model from the cache (``predict``) instead of drawing a sample.

    Attributes
    ----------
    spec_ : BackboneSpec
        The backbone actually used (``auto`` resolved).
    weights_ : ResolvedWeights
        Weights file and its SHA-256.
    precision_ : str
        ``fp32``, ``bf16`` or ``int8``.
    runtime_ : str
        ``onnx``, ``openvino``, ``torch``, or ``none`` for array backbones.
    calibration_ : dict or None
        int8 only: the identity of the calibration sample (part of the cache key);
        ``calibration_records_`` holds its images (``None`` when the calibration was given).
    device_ : str
    preprocess_ : PreprocessConfig

    :meth:`extract` returns an :class:`~brainclust.features.extraction.Extraction` (the features,
    the images that failed and why, the cache hits and misses); :meth:`transform` returns its
    features. Neither changes the extractor: the network is loaded on first use into a private
    cache (a failed ONNX export under ``runtime="auto"`` falls back to torch there, and
    :meth:`describe` reports the runtime that ran).
    """

    _parameter_constraints = {"backbone": param(TEXT, option="--backbone"),
                              "weights": param(NONE, TEXT, option="--weights"),
                              "calibration_size": param(Integer(1), option="--calibration-size"),
                              "calibration": param(NONE, Kind((dict,), "the calibration_ of an int8 fit"),
                                                   option="calibration"),
                              **SHARED_CONSTRAINTS}
    _fitted_attribute = "spec_"

    def __init__(self, backbone: str = "auto", weights: str | None = None, precision: str = "auto",
                 batch_size: int = 32, num_workers: int | None = None,
                 clip_percentiles: tuple[float, float] | None = (0.5, 99.5),
                 cache_dir: str | None | bool = None, device: str = "cpu", progress: bool | None = None,
                 view: str | None = None, view_seed: int = 0,
                 intensity_window: tuple[float, float] | None = None, runtime: str = "auto",
                 calibration_size: int = 128, calibration: dict | None = None):
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
        self.intensity_window = intensity_window
        self.runtime = runtime
        self.calibration_size = calibration_size
        self.calibration = calibration

    # -- fitting: choose backbone, weights and precision ----------------------
    def check_params(self):
        """The declared rules and the pre-processing's (no backbone needed); ``fit`` and ``RunConfig`` call it."""
        super().check_params()
        rt.check_runtime(self.runtime)
        limits.check_batch_size(self.batch_size)  # bounds and availability: brainclust.features.limits
        limits.check_device(self.device)
        limits.check_batch_memory(self.backbone, self.batch_size)
        check_preprocessing(self.clip_percentiles, self.intensity_window)
        if self.view is not None:
            augment.check(self.view)
        rt.check_calibration(self.calibration_size, self.calibration)
        if self.precision in ("bf16", "int8") and self.device == "cpu" and backbones.runs_network(self.backbone):
            rt.resolve_runtime(self.runtime, "cpu", self.precision, True)  # refused here, before any image is read
        return self

    def fit(self, X=None, y=None):
        """Resolve the backbone, its weights and the precision; with int8, draw the calibration sample
        from the images ``X`` (nothing else is learned from images)."""
        self.check_params()
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device_ = device
        self.spec_, self.weights_ = backbones.resolve(self.backbone, self.weights)
        self.preprocess_ = PreprocessConfig(size=self.spec_.input_size, clip_percentiles=self.clip_percentiles,
                                            intensity_window=self.intensity_window)
        self.preprocess_.validate()
        prec = self.precision
        if self.spec_.array_fn is not None:
            if prec == "bf16":
                raise ParameterError(f"--precision: would be ignored (got 'bf16'); backbone '{self.spec_.name}' "
                                     "runs no network: leave it at auto")
            prec = "fp32"  # array backbones do not run a network
        elif prec == "auto":  # bf16 on CPU moves the clusters: opt-in only
            prec = "bf16" if device.startswith("cuda") and rt.bf16_supported(device) else "fp32"
        self.precision_ = prec
        self.runtime_ = rt.resolve_runtime(self.runtime, device, prec, self.spec_.array_fn is None)
        self._net = None
        self.calibration_, self.calibration_records_ = rt.plan_calibration(
            prec, self.calibration, self.calibration_size, None if X is None else as_records(X), lambda r: r)
        return self

    def fit_extract(self, X: Sequence, prefill: Callable | None = None) -> Extraction:
        """:meth:`fit`, then :meth:`extract`; ``prefill(self, records)`` (an engine filling the feature
        store elsewhere, e.g. on Ray) runs in between."""
        records = as_records(X)
        self.fit(records)
        if prefill is not None:
            prefill(self, records)
        return self.extract(records)

    @property
    def cache_settings_(self) -> dict:
        settings = {"feature_version": FEATURE_VERSION, "backbone": self.spec_.name,
                    "weights_sha256": self.weights_.sha256, "precision": self.precision_,
                    "preprocess": self.preprocess_.as_dict()}
        if self.spec_.params:
            settings["backbone_params"] = dict(self.spec_.params)
        if self.view is not None:
            settings.update(view=self.view, view_seed=self.view_seed)
        settings.update(rt.feature_key(self.runtime_, self.precision_, getattr(self, "calibration_", None)))
        return settings

    def describe(self) -> dict:
        """The fitted backbone as ``manifest.json`` and the model record it (``backbone``)."""
        self.check_is_fitted()
        net = getattr(self, "_net", None)
        return {"name": self.spec_.name, "requested": self.backbone, "dim": self.spec_.dim,
                "input_size": self.spec_.input_size, "weights_path": self.weights_.path,
                "weights_sha256": self.weights_.sha256, "precision": self.precision_, "device": self.device_,
                "runtime": net[0] if net is not None else self.runtime_,
                **({"calibration": self.calibration_} if self.calibration_ else {})}

    def _model(self):
        """The network, loaded on first use into a private cache: ``(runtime that runs it, model)``."""
        if getattr(self, "_net", None) is None:
            folder = (rt.temp_folder(fresh=True) if self.weights_.sha256 == backbones.RANDOM_WEIGHTS  # new weights
                      else None if self.cache_dir is False else (self.cache_dir or default_cache_dir()))
            self._net = rt.load_network(
                lambda: backbones.build(self.spec_, self.weights_), self.spec_.name,
                rt.export_settings(self.spec_.name, self.weights_.sha256, self.spec_.input_size),
                runtime=self.runtime_, requested=self.runtime, device=self.device_, precision=self.precision_,
                folder=folder, calibration=self.calibration_,
                calibration_inputs=rt.calibration_inputs(self.calibration_records_, self.preprocess_, self.spec_))
        return self._net

    def _forward(self, x):
        import torch

        runtime, model = self._model()
        if runtime in ("onnx", "openvino"):
            return model(x.numpy())
        x = x.to(self.device_, non_blocking=True)
        if self.device_ == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        dev_type = "cuda" if self.device_.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(dev_type, dtype=torch.bfloat16,
                                                    enabled=self.precision_ == "bf16"):
            return model(x).float().cpu().numpy()

    # -- transforming ----------------------------------------------------------
    def transform(self, X: Sequence[str | os.PathLike | ImageRecord]) -> np.ndarray:
        """Features of each image, ``(n_images, dim)`` float32; rows of failed images are NaN (a warning names
        the first; :meth:`extract` gives every reason)."""
        records = as_records(X)
        got = self.extract(records)
        if got.failed:
            i = min(got.failed)
            log.warning("%d of %d images could not be read, their rows are NaN: '%s': %s%s", len(got.failed),
                        len(records), records[i].path, got.failed[i], " (and others: extract() gives every reason)"
                        if len(got.failed) > 1 else "")
        return got.features

    def extract(self, X: Sequence[str | os.PathLike | ImageRecord]) -> Extraction:
        """Features of each image and what happened to each (see :class:`Extraction`)."""
        self.check_is_fitted()
        if self.precision_ == "int8" and self.calibration_ is None:
            raise ParameterError("--precision int8: the extractor was fitted without images to calibrate on; "
                                 "call fit(images) first")
        records = as_records(X)
        keys = [r.key for r in records]
        n, dim = len(records), self.spec_.dim
        out = result_array(n, dim)
        cache, hit = None, np.zeros(n, dtype=bool)
        if self.cache_dir is not False:  # stored vectors are checked like computed ones; bad ones are misses
            cache = FeatureCache(self.cache_dir or default_cache_dir(), self.cache_settings_)
            hit = cache.fill(keys, out)
            cache.close()  # no open database across the DataLoader's fork; put_many reopens it
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if not hit[i] and k not in todo:
                todo[k] = i
        t0 = time.perf_counter()
        failed_keys = self._compute(records, keys, todo, out, cache) if todo else {}
        seconds = time.perf_counter() - t0
        failed: dict[int, str] = {}
        copies = 0
        for i, k in enumerate(keys):
            if hit[i]:
                continue
            if k in failed_keys:
                failed[i] = failed_keys[k]
            elif todo[k] != i:  # a repeated image: computed once, at its first row
                out[i] = out[todo[k]]
                copies += 1
        if cache is not None:
            cache.close()
        hits = int(hit.sum())  # each row is a hit, a miss (computed now) or failed: hits + misses = decoded
        return Extraction(out, failed, hits, n - hits - len(failed), seconds, copies)

    def _compute(self, records, keys, todo: dict[str, int], out: np.ndarray, cache) -> dict[str, str]:
        """Decode and embed the first record of every key in ``todo`` into ``out`` (and the cache);
        returns the reason of each key that failed."""
        import torch
        from torch.utils.data import DataLoader

        order = list(todo.values())
        failed_keys: dict[str, str] = {}
        ds = ImageDataset([records[i] for i in order], self.preprocess_, self.spec_, self.view, self.view_seed)
        workers = default_workers() if self.num_workers is None else self.num_workers
        loader = DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate, pin_memory=self.device_.startswith("cuda"))
        prev_threads = torch.get_num_threads()
        pbar = bar(len(order), f"features ({self.spec_.name}, {self.precision_})", self.progress)
        try:
            for idx, x, errs in (rt.prefetch(loader) if rt.PREFETCH and workers == 0 else loader):
                ok = [j for j, e in enumerate(errs) if not e]
                if not ok:
                    feats = np.zeros((0, self.spec_.dim), np.float32)
                elif self.spec_.array_fn is not None:
                    feats = x[ok].numpy()
                else:
                    feats = self._forward(x[ok])
                check_finite(feats, self.spec_.name)
                for j, e in enumerate(errs):
                    if e:
                        failed_keys[keys[order[idx[j]]]] = e
                if cache is not None:
                    cache.put_many([keys[order[idx[j]]] for j in ok], feats)
                out[[order[idx[j]] for j in ok]] = feats  # written once, into the result itself
                pbar.update(len(idx))
        finally:
            pbar.close()
            torch.set_num_threads(prev_threads)
        return failed_keys

    # -- the step protocol -----------------------------------------------------
    def save_step(self, folder) -> dict:
        """The manifest entry: parameters with the backbone as resolved and the weights by name (never a path:
        :func:`~brainclust.features.weightsfile.saved_weights`), and :meth:`describe`."""
        self.check_is_fitted()
        entry = self.entry()
        entry["params"].update(backbone=self.spec_.name, weights=saved_weights(self.weights, self.weights_),
                               calibration=self.calibration_)  # int8: predict uses the same calibrated network
        return {**entry, "state": self.describe(), "files": []}

    @classmethod
    def load_step(cls, folder, entry, runtime: dict | None = None) -> "FeatureExtractor":
        """The fitted extractor of a saved model; ``runtime`` (batch size, workers, cache...) may change.

        The weights are found on this machine by name and SHA-256, or are ``entry["weights_given"]``
        (``predict --weights``), by :func:`~brainclust.features.weightsfile.weights_to_load`; weights other
        than those the model was saved with are one line (WeightsUnavailableError, ModelFileError).
        """
        params, source = dict(entry["params"]), entry.get("source", "model config")
        params["weights"] = weights_to_load(params.get("weights"), entry.get("state") or {},
                                            entry.get("weights_given"), source, legacy=entry.get("legacy", False),
                                            beside=entry.get("weights_beside"))
        ex = cls(**{**params, **(runtime or {})}).fit()
        check_fitted_as_saved(ex, entry.get("state") or {}, source)
        return ex

    # -- the pieces of extract, for engines that run them elsewhere (brainclust.engines) ------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_net"] = None  # a loaded network or ONNX session is rebuilt where the copy runs
        return state

    def open_store(self) -> FeatureCache:
        """The feature store of this configuration (the caller closes it)."""
        if self.cache_dir is False:
            raise ParameterError("--engine ray needs the feature store; do not disable the cache")
        return FeatureCache(self.cache_dir or default_cache_dir(), self.cache_settings_)

    def missing(self, records: Sequence[ImageRecord], chunk: int = 8192) -> list[int]:
        """Indices of the first record of each image whose features are not in the store yet.

        Stored vectors are read and checked ``chunk`` rows at a time (a damaged one counts as
        missing), so the memory does not grow with the number of images.
        """
        store = self.open_store()
        keys = [r.key for r in records]
        hit = np.zeros(len(keys), dtype=bool)
        buf = np.empty((min(len(keys), chunk), self.spec_.dim), np.float32)
        try:
            for s in range(0, len(keys), chunk):
                part = keys[s:s + chunk]
                hit[s:s + len(part)] = store.fill(part, buf[:len(part)])
        finally:
            store.close()
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if not hit[i]:
                first.setdefault(k, i)
        return list(first.values())

    def decode(self, records: Sequence[ImageRecord]) -> tuple[np.ndarray, list[str]]:
        """Decoded, pre-processed model inputs (features for array backbones) and a reason per failed image."""
        ds = ImageDataset(records, self.preprocess_, self.spec_, self.view, self.view_seed)
        items = [ds[i] for i in range(len(ds))]
        return np.stack([it[1] for it in items]), [it[2] for it in items]

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Features of decoded inputs (see :meth:`decode`), checked like those of :meth:`extract`."""
        import torch

        feats = (np.asarray(inputs, np.float32) if self.spec_.array_fn is not None
                 else self._forward(torch.from_numpy(np.ascontiguousarray(inputs, np.float32))))
        return check_finite(feats, self.spec_.name)
