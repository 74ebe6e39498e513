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
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from brainclust.features import backbones, runtime as rt
from brainclust.features.cache import FeatureCache, default_cache_dir
from brainclust.errors import ImageReadError, ModelFileError, ParameterError
from brainclust.features import augment
from brainclust.io.scan import ImageRecord, load_record
from brainclust.io.atomic import file_sha256
from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input
from brainclust.progress import bar

log = logging.getLogger(__name__)

#: Bump when a change to the code alters the features of unchanged settings.
FEATURE_VERSION = 1
PRECISIONS = rt.PRECISIONS  # auto, fp32, bf16, int8


def bf16_supported(device: str = "cpu") -> bool:
    """Whether bf16 autocast is fast on this device."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_workers() -> int:
    """Decoding workers: half the cores (at most 4), none on machines with 2 cores or fewer.

    On 2 cores a worker process takes a core from the network: ``make bench``
    measured efficientnet_lite0 bf16 at 84 img/s with decoding in the main
    process against 44 img/s with one worker.
    """
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores // 2)


class _ImageDataset:
    """Map-style dataset: index -> (index, model input or feature vector, error or "").

    Runs in DataLoader workers: decoding, pre-processing, the optional
    augmentation ``view`` and, for array backbones (pixels, HOG...), the
    feature computation itself.
    """

    def __init__(self, records: Sequence[ImageRecord], config: PreprocessConfig, spec, view: str | None,
                 view_seed: int):
        self.records, self.config, self.spec = list(records), config, spec
        self.view, self.view_seed = view, view_seed

    def __len__(self) -> int:
        return len(self.records)

    def _item(self, rec: ImageRecord) -> np.ndarray:
        img = preprocess(load_record(rec), self.config)
        if self.view:
            img = augment.apply(self.view, img, rec.key, self.view_seed)
        if self.spec.array_fn is not None:
            return np.asarray(self.spec.array_fn(img), dtype=np.float32)
        return to_model_input(img, self.spec.mean, self.spec.std)

    def __getitem__(self, i: int):
        try:
            return i, self._item(self.records[i]), ""
        except ImageReadError as exc:
            err = exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd file must not end the run
            err = f"cannot pre-process image: {type(exc).__name__}: {exc}"
        shape = (self.spec.dim,) if self.spec.array_fn is not None else (3, self.config.size, self.config.size)
        return i, np.zeros(shape, np.float32), err


def _collate(items):
    import torch

    idx = [it[0] for it in items]
    x = torch.from_numpy(np.stack([it[1] for it in items]))
    errs = [it[2] for it in items]
    return idx, x, errs


#: Above this many values (1 GiB of float32) the feature matrix is a memory-mapped temporary file.
MEMMAP_VALUES = 2**28


def result_array(n: int, dim: int) -> np.ndarray:
    """``(n, dim)`` float32 filled with NaN: in memory, or above :data:`MEMMAP_VALUES` values a
    memory-mapped file in the temporary folder, unlinked at once (the space is freed with the array),
    so a million-image run pages its features instead of holding them all in RAM."""
    if n * dim <= MEMMAP_VALUES:
        return np.full((n, dim), np.nan, dtype=np.float32)
    fd, path = tempfile.mkstemp(prefix="brainclust-features-", suffix=".npy")
    os.close(fd)
    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    finally:
        os.unlink(path)
    for s in range(0, n, 65536):
        arr[s:s + 65536] = np.nan
    return arr


def _as_record(item) -> ImageRecord:
    return item if isinstance(item, ImageRecord) else _record_of(item)


def _record_of(path: str | os.PathLike) -> ImageRecord:
    """A minimal record for a bare path (meta-attributes unknown)."""
    p = Path(path)
    try:
        digest = file_sha256(p)
    except OSError as exc:
        digest = f"unreadable:{p}:{exc}"
    return ImageRecord(path=p.as_posix(), abspath=str(p), name=p.name, type="", size=0, width=0, height=0,
                       sha256=digest)


class FeatureExtractor(TransformerMixin, BaseEstimator):
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
        ``docs/performance.md``). int8 is calibrated on a seeded sample of the
        images given to :meth:`fit` (or to the first :meth:`transform`).
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
        ``calibration_records_`` holds its images.
    cache_hits_, cache_misses_ : int
        Of the last :meth:`transform`, counted per image.
    failed_ : dict of int to str
        Row index -> reason, for images that could not be decoded in the last
        :meth:`transform`; their rows are NaN.
    """

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
    def check_params(self) -> None:
        """The rules of the parameters that need no backbone; ``fit`` calls it, and so does ``RunConfig``."""
        if self.precision not in PRECISIONS:
            raise ParameterError(f"--precision: must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        rt.check_runtime(self.runtime)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ParameterError(f"--batch-size: must be a positive integer, got {self.batch_size!r}")
        if self.num_workers is not None and (isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int)
                                             or self.num_workers < 0):
            raise ParameterError(f"--workers: must be an integer >= 0, got {self.num_workers!r}")
        for option, name in (("--clip", "clip_percentiles"), ("--intensity-window", "intensity_window")):
            if getattr(self, name) is not None:
                try:
                    PreprocessConfig(**{name: tuple(getattr(self, name))}).validate()
                except (ParameterError, TypeError, ValueError) as exc:
                    raise ParameterError(f"{option}: {exc}") from None
        if self.view is not None:
            augment.check(self.view)
        rt.check_calibration(self.calibration_size, self.calibration)

    def fit(self, X=None, y=None):
        """Resolve the backbone, its weights and the precision; with int8, draw the calibration sample from ``X``."""
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
            prec = "fp32"  # array backbones do not run a network
        elif prec == "auto":  # bf16 on CPU moves the clusters: opt-in only
            prec = "bf16" if device.startswith("cuda") and bf16_supported(device) else "fp32"
        self.precision_ = prec
        self.runtime_ = rt.resolve_runtime(self.runtime, device, prec, self.spec_.array_fn is None)
        self.model_ = None
        self.calibration_, self.calibration_records_ = rt.plan_calibration(
            prec, self.calibration, self.calibration_size, X, _as_record)
        return self

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

    def _onnx_model(self):
        """The ONNX Runtime session; under ``runtime="auto"`` an export failure falls back to torch."""
        settings = rt.export_settings(self.spec_.name, self.weights_.sha256, self.spec_.input_size)
        try:
            return rt.load_onnx_backbone(lambda: backbones.build(self.spec_, self.weights_), self._model_folder(),
                                         settings)
        except (ParameterError, ImageReadError):
            raise
        except Exception as exc:  # noqa: BLE001 - exporter and runtime fail in many ways
            if self.runtime != "auto":
                raise ModelFileError(f"--runtime onnx: cannot export or load {self.spec_.name} for ONNX Runtime "
                                     f"({type(exc).__name__}: {exc}); use --runtime torch") from None
            log.warning("%s: ONNX export failed (%s: %s); running the network with torch",
                        self.spec_.name, type(exc).__name__, exc)
            self.runtime_ = "torch"
            return None

    def _model_folder(self):
        """Where exported / converted networks are cached (``None``: a temporary folder)."""
        if self.weights_.sha256 == backbones.RANDOM_WEIGHTS:
            return rt.temp_folder(fresh=True)  # every build draws new weights: never reuse an export
        return None if self.cache_dir is False else (self.cache_dir or default_cache_dir())

    def _model(self):
        import torch

        if self.model_ is None and self.runtime_ == "onnx":
            self.model_ = self._onnx_model()
        if self.model_ is None and self.runtime_ == "openvino":
            self.model_ = rt.load_openvino_backbone(
                lambda: backbones.build(self.spec_, self.weights_), self._model_folder(),
                rt.export_settings(self.spec_.name, self.weights_.sha256, self.spec_.input_size), self.precision_,
                self.calibration_, rt.calibration_inputs(self.calibration_records_, self.preprocess_, self.spec_))
        if self.model_ is None:
            model = backbones.build(self.spec_, self.weights_).to(self.device_)
            if self.device_ == "cpu":
                model = model.to(memory_format=torch.channels_last)
            self.model_ = model
        return self.model_

    def _forward(self, x):
        import torch

        model = self._model()
        if self.runtime_ in ("onnx", "openvino"):
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
        """Features of each image, ``(n_images, dim)`` float32; rows of failed images are NaN."""
        if not hasattr(self, "spec_"):
            self.fit()
        import torch
        from torch.utils.data import DataLoader

        records = [_as_record(item) for item in X]
        if self.precision_ == "int8" and self.calibration_ is None:  # fitted without images: calibrate on these
            self.calibration_, self.calibration_records_ = rt.plan_calibration("int8", None, self.calibration_size,
                                                                               records, _as_record)
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
        self.cache_misses_ = sum(1 for k in keys if k in todo)
        self.cache_hits_ = n - self.cache_misses_
        self.failed_: dict[int, str] = {}
        failed_keys: dict[str, str] = {}
        t0 = time.perf_counter()
        if todo:
            order = list(todo.values())
            ds = _ImageDataset([records[i] for i in order], self.preprocess_, self.spec_, self.view,
                               self.view_seed)
            workers = default_workers() if self.num_workers is None else self.num_workers
            loader = DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=workers,
                                collate_fn=_collate, pin_memory=self.device_.startswith("cuda"))
            prev_threads = torch.get_num_threads()
            pbar = bar(len(order), f"features ({self.spec_.name}, {self.precision_})", self.progress)
            try:
                for idx, x, errs in (rt.prefetch(loader) if rt.PREFETCH and workers == 0 else loader):
                    ok = [j for j, e in enumerate(errs) if not e]
                    if not ok:
                        feats = np.zeros((0, dim), np.float32)
                    elif self.spec_.array_fn is not None:
                        feats = x[ok].numpy()
                    else:
                        feats = self._forward(x[ok])
                    if not np.all(np.isfinite(feats)):
                        raise FloatingPointError(f"{self.spec_.name} produced non-finite features")
                    batch_keys = [keys[order[idx[j]]] for j in ok]
                    for j, e in enumerate(errs):
                        if e:
                            failed_keys[keys[order[idx[j]]]] = e
                    if cache is not None:
                        cache.put_many(batch_keys, feats)
                    out[[order[idx[j]] for j in ok]] = feats  # written once, into the result itself
                    pbar.update(len(idx))
            finally:
                pbar.close()
                torch.set_num_threads(prev_threads)
        self.extract_seconds_ = time.perf_counter() - t0
        for i, k in enumerate(keys):
            if hit[i]:
                continue
            if k in failed_keys:
                self.failed_[i] = failed_keys[k]
            elif todo[k] != i:  # a repeated image: computed once, at its first row
                out[i] = out[todo[k]]
        if cache is not None:
            cache.close()
        return out

    # -- the pieces of transform, for engines that run them elsewhere (brainclust.engines) ------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state["model_"] = None  # a loaded network or ONNX session is rebuilt where the copy runs
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
        ds = _ImageDataset(records, self.preprocess_, self.spec_, self.view, self.view_seed)
        items = [ds[i] for i in range(len(ds))]
        return np.stack([it[1] for it in items]), [it[2] for it in items]

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Features of decoded inputs (see :meth:`decode`), checked like those of :meth:`transform`."""
        import torch

        feats = (np.asarray(inputs, np.float32) if self.spec_.array_fn is not None
                 else self._forward(torch.from_numpy(np.ascontiguousarray(inputs, np.float32))))
        if not np.all(np.isfinite(feats)):
            raise FloatingPointError(f"{self.spec_.name} produced non-finite features")
        return feats

