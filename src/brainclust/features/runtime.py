"""Where the network of a backbone runs: ONNX Runtime on CPU, or PyTorch.

``runtime="onnx"`` exports the backbone's whole feature module (pooling and,
for ``efficientnet_lite0_multi``, the per-layer normalisation and concat
included) once per backbone + weights hash + input size to an ``.onnx`` file
in the cache folder, and runs it with ONNX Runtime's CPU execution provider
(``ORT_ENABLE_ALL``, ``intra_op_num_threads`` = ``torch.get_num_threads()``).
The file is written atomically (temporary file, then ``os.replace``) next to
a sidecar JSON that records its SHA-256 and the export settings; both are
checked on load, and a damaged or stale file is re-exported.

``runtime="torch"`` is the eager PyTorch path (GPUs, bf16 autocast, and the
backbone fine-tuning of ``--ssl-mode finetune``, which trains the network).
``runtime="auto"`` is ONNX Runtime on CPU in fp32 and torch on CUDA or with
bf16 (ONNX Runtime's CPU provider has no bf16 autocast).

The runtime is **not** part of the feature-cache key: ``tests/test_runtime.py``
checks that ONNX Runtime and torch fp32 features agree to 1e-5 relative max
error (efficientnet_lite0 with its packaged weights, inception_v3 with random
weights), so caches written by either runtime stay valid for the other.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from brainclust.errors import ParameterError
from brainclust.io.atomic import atomic_write_json, file_sha256

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "torch")
#: Bump when the export recipe changes (invalidates exported files, not features).
EXPORT_VERSION = 1
OPSET = 17


def onnx_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ParameterError(f"--runtime: must be one of {', '.join(RUNTIMES)}, got '{runtime}'")


def resolve_runtime(runtime: str, device: str, precision: str, has_network: bool) -> str:
    """The runtime actually used: ``"onnx"``, ``"torch"`` or ``"none"`` (array backbones).

    Raises
    ------
    ParameterError
        ``runtime="onnx"`` where onnxruntime cannot be imported, or on CUDA; a runtime named for a
        backbone that runs no network, or ``onnx`` with bf16 (settings that would be ignored).
    """
    check_runtime(runtime)
    if not has_network:
        if runtime != "auto":
            raise ParameterError(f"--runtime: would be ignored (got '{runtime}'); the backbone runs no network "
                                 "(pixels, hog): leave it at auto")
        return "none"
    if runtime == "torch":
        return "torch"
    if runtime == "onnx":
        if device.startswith("cuda"):
            raise ParameterError("--runtime onnx: runs on the CPU only; use --runtime torch (or auto) on CUDA")
        if not onnx_available():
            raise ParameterError("--runtime onnx: package 'onnxruntime' cannot be imported; "
                                 "pip install onnxruntime, or use --runtime torch")
        if precision == "bf16":
            raise ParameterError("--runtime onnx: would be ignored with --precision bf16 (ONNX Runtime has no "
                                 "bf16 autocast: torch runs); use --runtime torch or auto")
        return "onnx"
    if device.startswith("cuda") or precision == "bf16":
        return "torch"
    if not onnx_available():
        log.warning("--runtime auto: onnxruntime cannot be imported; running the network with torch")
        return "torch"
    return "onnx"


def export_settings(name: str, weights_sha256: str, input_size: int) -> dict:
    """What an exported file depends on (recorded in its sidecar JSON)."""
    import torch

    return {"export_version": EXPORT_VERSION, "backbone": name, "weights_sha256": weights_sha256,
            "input_size": int(input_size), "opset": OPSET, "torch": torch.__version__}


def onnx_path(folder: str | os.PathLike, settings: dict) -> Path:
    """``<folder>/onnx/<backbone>-<key>.onnx`` for these export settings."""
    from brainclust.features.cache import config_key

    return Path(folder) / "onnx" / f"{settings['backbone']}-{config_key(settings)}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def is_valid_export(path: Path, settings: dict) -> bool:
    """The file exists, its sidecar records these settings, and its SHA-256 matches."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        return meta.get("settings") == settings and meta.get("sha256") == file_sha256(path)
    except (OSError, ValueError, AttributeError):
        return False


def export(model, path: Path, settings: dict) -> Path:
    """Export ``model`` (a ``(B, 3, S, S) -> (B, D)`` module) to ``path`` atomically, with its sidecar."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    size = settings["input_size"]
    x = torch.zeros(1, 3, size, size)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's constant-folding chatter
            torch.onnx.export(model.float().eval(), x, tmp, opset_version=OPSET, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
        digest = file_sha256(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(_sidecar(path), {"settings": settings, "sha256": digest})
    return path


class OnnxBackbone:
    """An ONNX Runtime CPU session of an exported backbone: ``(B, 3, S, S)`` float32 -> ``(B, D)``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or _default_threads())
        opts.inter_op_num_threads = 1
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(["y"], {"x": x})[0]


def _default_threads() -> int:
    import torch

    return torch.get_num_threads() or os.cpu_count() or 1


def load_onnx_backbone(build_model, folder: str | os.PathLike | None, settings: dict) -> OnnxBackbone:
    """Load (exporting first if missing, damaged or stale) the backbone's ONNX file.

    ``build_model`` is called only when an export is needed. ``folder=None``
    exports into a temporary folder that lives as long as the process.
    """
    if folder is None:
        folder = temp_folder()
    path = onnx_path(folder, settings)
    if not is_valid_export(path, settings):
        if path.exists():
            log.warning("%s: exported ONNX file is damaged or stale; exporting again", path)
        export(build_model(), path, settings)
    return OnnxBackbone(path)


_TEMP: list[tempfile.TemporaryDirectory] = []


def temp_folder(fresh: bool = False) -> Path:
    """A temporary export folder removed at exit: one per process, or a new one with ``fresh=True``.

    Random-weights backbones use a fresh folder: every build draws new weights,
    so their export must not be reused by another extractor.
    """
    if fresh or not _TEMP:
        _TEMP.append(tempfile.TemporaryDirectory(prefix="brainclust-onnx-"))
    return Path(_TEMP[-1 if fresh else 0].name)


_DONE = object()
#: Whether :class:`~brainclust.features.extractor.FeatureExtractor` decodes the next batch in a
#: background thread while the current one runs (with ``num_workers=0``); ``make bench`` measures both.
PREFETCH = True


def prefetch(items: Iterable, depth: int = 1) -> Iterator:
    """Iterate ``items`` with one background thread producing up to ``depth`` items ahead.

    Decoding the next batch overlaps the current forward pass (ONNX Runtime and
    torch release the GIL while they compute). An exception in the producer is
    re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((False, exc))
            return
        q.put((True, _DONE))

    thread = threading.Thread(target=produce, name="brainclust-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
