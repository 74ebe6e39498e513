"""Where the network of a backbone runs: ONNX Runtime, OpenVINO (CPU), or PyTorch.

``runtime="onnx"`` exports the backbone's whole feature module (pooling and,
for ``efficientnet_lite0_multi``, the per-layer normalisation and concat
included) once per backbone + weights hash + input size to an ``.onnx`` file
in the cache folder (atomically, beside a sidecar JSON of its SHA-256 and export settings,
both checked on load; a damaged or stale file is re-exported), and runs it with ONNX
Runtime's CPU execution provider (``ORT_ENABLE_ALL``, ``torch.get_num_threads()`` threads).

``runtime="openvino"`` converts that ONNX export once into an OpenVINO IR and runs it on the CPU in fp32,
bf16 (native bf16 only) or int8 (NNCF, calibrated on the run's images): :mod:`.openvino_runtime`, :mod:`.quantize`.

``runtime="torch"``: eager PyTorch (GPUs, bf16 autocast, the network trained by ``--ssl-mode finetune``).

``runtime="auto"`` (:func:`resolve_runtime`): in fp32 on the CPU, the fastest fp32 runtime measured
(ONNX Runtime, :data:`AUTO_FP32`, ``docs/performance.md``), else torch; bf16 on the CPU runs with
OpenVINO where installed, else torch autocast, on CPUs with native bf16 only (:mod:`.cpu`); int8
runs with OpenVINO; CUDA runs torch.

The runtime of an fp32 run is **not** part of the feature-cache key: ONNX Runtime, OpenVINO (with
``INFERENCE_PRECISION_HINT=f32``) and torch fp32 features agree to about 1e-5 relative error
(``tests/features/test_runtime.py``, ``test_openvino_runtime.py``). bf16 and int8 features depend on
the runtime (and int8 on its calibration): :func:`feature_key` adds them to the key.
"""

from __future__ import annotations

import functools
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
from brainclust.features.cpu import is_x86, x86_native_bf16
from brainclust.io.atomic import atomic_write_json, file_sha256

log = logging.getLogger(__name__)
warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)  # torch.onnx's, from any thread

RUNTIMES = ("auto", "onnx", "openvino", "torch")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: The fp32 CPU runtime ``auto`` prefers when it is installed (measured: docs/performance.md, "Choosing the runtime").
AUTO_FP32 = "onnx"
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


def bf16_supported(device: str = "cpu") -> bool:
    """Whether torch runs bf16 natively on this device (autocast is fast there)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if (native := x86_native_bf16()) is not None:  # torch's probe below also says yes where AVX-512 emulates bf16
        return native
    if is_x86():  # no flags to read (Windows, macOS): OpenVINO's probe where installed (False without), not torch's
        from brainclust.features.openvino_runtime import native_bf16

        return native_bf16()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_torch_bf16() -> None:
    """Raise a one-line :class:`ParameterError` unless torch runs bf16 natively on this CPU (emulated bf16 ran at
    0.09x of torch fp32 on an AVX2 CPU: ``benchmarks/bench_bf16_emulated.py``)."""
    if not bf16_supported("cpu"):
        raise ParameterError("--precision bf16: this CPU has no native bf16, or none that could be confirmed (needs "
                             "AMX or AVX512-BF16; without /proc/cpuinfo, OpenVINO's probe: pip install 'brainclust"
                             "[openvino]'); torch would emulate it at 0.09x of fp32; use --precision fp32")


def resolve_runtime(runtime: str, device: str, precision: str, has_network: bool) -> str:
    """The runtime actually used: ``"onnx"``, ``"openvino"``, ``"torch"`` or ``"none"`` (array backbones).

    ``precision`` is the resolved one (``fp32``, ``bf16`` or ``int8``). The rules:

    ========  =====================================  ==========================================
    runtime   fp32 on CPU                            bf16 on CPU / int8 on CPU
    ========  =====================================  ==========================================
    auto      :data:`AUTO_FP32` (onnx) if installed,  openvino (native bf16) else torch autocast (*) /
              else onnx, else torch                   openvino (refused without openvino + nncf)
    onnx      onnx                                   refused / refused
    openvino  openvino                               openvino, refused without native bf16 / openvino
    torch     torch                                  torch autocast (*) / refused
    ========  =====================================  ==========================================

    (*) Refused on a CPU where torch has no native bf16 (:func:`check_torch_bf16`).
    On CUDA only torch runs (``onnx``, ``openvino`` and int8 are refused).

    Raises
    ------
    ParameterError
        A runtime that cannot be imported, that does not run on the device, or
        a precision the runtime cannot run here; a runtime named for a backbone
        that runs no network, or ``onnx`` with bf16 (settings that would be
        ignored); one line naming the option.
    """
    from brainclust.features import openvino_runtime as ovr, quantize

    check_runtime(runtime)
    if precision not in PRECISIONS:
        raise ParameterError(f"--precision: must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if not has_network:
        if runtime != "auto":
            raise ParameterError(f"--runtime: would be ignored (got '{runtime}'); the backbone runs no network "
                                 "(a traditional baseline): leave it at auto")
        return "none"
    cuda = device.startswith("cuda")
    if precision == "int8":
        if cuda:
            raise ParameterError("--precision int8: runs on the CPU (OpenVINO); use fp32 or bf16 on CUDA")
        if runtime in ("onnx", "torch"):
            raise ParameterError(f"--precision int8: runs with --runtime openvino (or auto), got '{runtime}'")
        quantize.check_available()
        return "openvino"
    if runtime == "torch":
        if precision == "bf16" and not cuda:
            check_torch_bf16()
        return "torch"
    if runtime in ("onnx", "openvino") and cuda:
        raise ParameterError(f"--runtime {runtime}: runs on the CPU only; use --runtime torch (or auto) on CUDA")
    if runtime == "onnx":
        if not onnx_available():
            raise ParameterError("--runtime onnx: package 'onnxruntime' cannot be imported; "
                                 "pip install onnxruntime, or use --runtime torch")
        if precision == "bf16":
            raise ParameterError("--runtime onnx: would be ignored with --precision bf16 (ONNX Runtime has no "
                                 "bf16 autocast: torch runs); use --runtime openvino (native bf16), torch or auto")
        return "onnx"
    if runtime == "openvino":
        if not ovr.openvino_available():
            raise ParameterError("--runtime openvino: package 'openvino' cannot be imported; "
                                 "pip install 'brainclust[openvino]', or use --runtime onnx")
        if precision == "bf16":
            ovr.check_bf16()
        return "openvino"
    if cuda:
        return "torch"
    if precision == "bf16":
        if ovr.openvino_available() and ovr.native_bf16():
            return "openvino"
        check_torch_bf16()
        return "torch"
    installed = {"onnx": onnx_available, "openvino": ovr.openvino_available}
    if installed[AUTO_FP32]():
        return AUTO_FP32
    if installed["onnx"]():  # the portable fp32 path (a core dependency)
        return "onnx"
    log.warning("--runtime auto: onnxruntime cannot be imported; running the network with torch"
                "%s", " (--runtime openvino is installed)" if installed["openvino"]() else "")
    return "torch"


def feature_key(runtime: str, precision: str, calibration: dict | None = None) -> dict:
    """Fields of the feature-cache key beyond the precision: none for fp32 and torch bf16 (the keys of
    earlier versions), the runtime for OpenVINO bf16, the runtime and the calibration for int8."""
    if precision == "fp32" or runtime in ("torch", "none"):
        return {}
    key = {"runtime": runtime}
    if precision == "int8":
        from brainclust.features import openvino_runtime as ovr

        key["calibration"] = dict(calibration or {})
        key["float_layers"] = ovr.rest_precision("int8")  # bf16 on CPUs with native bf16, else f32
    return key


def check_calibration(size, calibration) -> None:
    """The int8 calibration parameters: a positive size; a given calibration is a dict with a ``sha256``."""
    from brainclust.features import quantize

    quantize.check_size(size)
    if calibration is not None and not (isinstance(calibration, dict) and isinstance(calibration.get("sha256"), str)):
        raise ParameterError(f"calibration: must be the calibration_ dict of an int8 fit, got {calibration!r}")


def plan_calibration(precision: str, given: dict | None, size: int, items,
                     to_record) -> tuple[dict | None, list | None]:
    """``(calibration_, calibration_records_)`` of an extractor: ``(None, None)`` unless int8; ``given`` as is
    (its images are not at hand); else the seeded sample of ``items`` (records, or what ``to_record`` turns
    into one); ``(None, None)`` without items: the first ``transform`` calibrates on its images."""
    from brainclust.features import quantize

    if precision != "int8":
        return None, None
    if given is not None:
        return dict(given), None
    if items is None:
        return None, None
    return quantize.plan([to_record(x) for x in items], size)


def calibration_inputs(records, config, spec):
    """A callable giving the model inputs of the calibration records, or ``None`` without records."""
    from brainclust.features import quantize

    if not records:
        return None
    return lambda: quantize.decode_inputs(records, config, spec)


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


_EXPORTING = threading.Lock()  #: one ONNX export at a time: torch's exporter has global state (two threads failed)


def export(model, path: Path, settings: dict) -> Path:
    """Export ``model`` (a ``(B, 3, S, S) -> (B, D)`` module) to ``path`` atomically, with its sidecar."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    size = settings["input_size"]
    x = torch.zeros(1, 3, size, size)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with _EXPORTING, torch.no_grad(), warnings.catch_warnings():
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

        ort.disable_telemetry_events()  # as brainclust.TELEMETRY_OFF, should onnxruntime have loaded before brainclust
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


def ensure_onnx_export(build_model, folder: str | os.PathLike | None, settings: dict) -> Path:
    """The path of the backbone's checked ONNX file, exporting it first if missing, damaged or stale.

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
    return path


def load_onnx_backbone(build_model, folder: str | os.PathLike | None, settings: dict) -> OnnxBackbone:
    """Load (exporting first if missing, damaged or stale) the backbone's ONNX file."""
    return OnnxBackbone(ensure_onnx_export(build_model, folder, settings))


def load_openvino_backbone(build_model, folder: str | os.PathLike | None, settings: dict, precision: str,
                           calibration: dict | None = None, calibration_inputs=None):
    """An :class:`~brainclust.features.openvino_runtime.OpenVinoBackbone` of the backbone at ``precision``.

    The fp32 IR is converted from the ONNX export (:func:`ensure_onnx_export`) and cached; for int8 the
    quantised IR of ``calibration`` is cached too, made from the fp32 IR and ``calibration_inputs()``
    (``(n, 3, S, S)`` float32; ``None`` when the calibration images are not at hand, e.g. in ``predict``).

    Raises
    ------
    ModelFileError
        int8 whose quantised model is not in the cache and cannot be made (no calibration images).
    """
    from brainclust.errors import BrainclustError, ModelFileError
    from brainclust.features import openvino_runtime as ovr, quantize

    if folder is None:
        folder = temp_folder()
    fp32_settings = ovr.ir_settings(settings, "fp32")

    @functools.cache
    def fp32_model():
        return ovr.load_ir(folder, fp32_settings, lambda: ovr.convert(ensure_onnx_export(build_model, folder,
                                                                                          settings)))[0]

    def int8_model():
        if calibration_inputs is None:
            raise ModelFileError(f"--precision int8: the model quantised for calibration "
                                 f"{calibration.get('sha256', '?')[:12]} is not in the cache folder '{folder}' "
                                 "and its calibration images are not at hand; run with --precision fp32, or "
                                 "use the cache folder of the run that made it")
        return quantize.quantize(fp32_model(), calibration_inputs())

    try:
        if precision != "int8":
            return ovr.OpenVinoBackbone(fp32_model, precision, cache_xml=ovr.ir_path(folder, fp32_settings))
        int8_settings = ovr.ir_settings(settings, "int8", calibration)
        return ovr.OpenVinoBackbone(lambda: ovr.load_ir(folder, int8_settings, int8_model)[0], "int8",
                                    cache_xml=ovr.ir_path(folder, int8_settings))
    except BrainclustError:
        raise
    except Exception as exc:  # noqa: BLE001 - converter, quantiser and plugin fail in many ways
        raise ModelFileError(f"--runtime openvino: cannot convert, quantise or compile {settings['backbone']} "
                             f"({type(exc).__name__}: {exc}); use --runtime onnx") from None


_TEMP: list[tempfile.TemporaryDirectory] = []


def load_network(build_model, name: str, settings: dict, *, runtime: str, requested: str, device: str,
                 precision: str, folder, calibration=None, calibration_inputs=None) -> tuple[str, object]:
    """``(runtime that runs it, model)`` for a resolved ``runtime`` (see :func:`resolve_runtime`).

    ``build_model()`` builds the torch network; exports and conversions are cached in ``folder``
    (``None``: a temporary folder). Under ``requested="auto"`` an ONNX export that fails falls back
    to torch with a warning; a runtime asked for by name fails with one line.
    """
    from brainclust.errors import ImageReadError, ModelFileError, WeightsUnavailableError

    if runtime == "onnx":
        try:
            return "onnx", load_onnx_backbone(build_model, folder, settings)
        except (ParameterError, ImageReadError, WeightsUnavailableError):  # torch would fail the same way
            raise
        except Exception as exc:  # noqa: BLE001 - exporter and runtime fail in many ways
            if requested != "auto":
                raise ModelFileError(f"--runtime onnx: cannot export or load {name} for ONNX Runtime "
                                     f"({type(exc).__name__}: {exc}); use --runtime torch") from None
            log.warning("%s: ONNX export failed (%s: %s); running the network with torch",
                        name, type(exc).__name__, exc)
    if runtime == "openvino":
        return "openvino", load_openvino_backbone(build_model, folder, settings, precision, calibration,
                                                  calibration_inputs)
    import torch

    model = build_model().to(device)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return ("torch" if runtime != "none" else "none"), model


def temp_folder(fresh: bool = False) -> Path:
    """A temporary export folder removed at exit: one per process, or a new one with ``fresh=True`` (random-weights
    backbones: every build draws new weights, so their export must not be reused by another extractor)."""
    if fresh or not _TEMP:
        _TEMP.append(tempfile.TemporaryDirectory(prefix="brainclust-onnx-"))
    return Path(_TEMP[-1 if fresh else 0].name)


_DONE = object()
#: Whether :class:`~brainclust.features.extractor.FeatureExtractor` decodes the next batch in a
#: background thread while the current one runs (with ``num_workers=0``); ``make bench`` measures both.
PREFETCH = True


def prefetch(items: Iterable, depth: int = 1) -> Iterator:
    """Iterate ``items`` with one background thread producing up to ``depth`` items ahead.

    Decoding the next batch overlaps the current forward pass (ONNX Runtime and torch release the GIL while they
    compute). An exception in the producer is re-raised in the consumer.
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
