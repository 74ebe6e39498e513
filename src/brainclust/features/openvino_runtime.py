"""OpenVINO on the CPU: the network in fp32, bf16 (native only) or int8 (NNCF).

The backbone is converted once from its cached ONNX export
(:func:`brainclust.features.runtime.ensure_onnx_export`; ``openvino.Core.read_model``
of the ONNX file, then ``openvino.save_model`` without fp16 compression) into an
OpenVINO IR pair ``<cache>/openvino/<backbone>-<key>.xml`` + ``.bin``, keyed by
backbone, weights SHA-256, input size, precision and, for int8, the calibration
sample (:mod:`brainclust.features.quantize`). Both files are written to
temporary names and ``os.replace``d, then a JSON sidecar records their SHA-256;
every load reads the two files into memory, checks them against the sidecar
and builds the network from those bytes, so what was checked is what runs. A
damaged or stale pair is converted again.

Compiling (``openvino.Core.compile_model``) took 0.14 s (fp32) and 0.28 s (int8) of
EfficientNet-Lite0's 1.2 s extraction of 160 images, so the compiled model is cached
too (:func:`compile_cached`): ``CompiledModel.export_model``'s bytes in
``<cache>/openvino/compiled/<IR stem>-<key>.blob`` with a JSON sidecar of their
SHA-256, keyed by the compile configuration, OpenVINO's version and the CPU (its
name, OpenVINO's capabilities and the kernel's CPU flags: a blob compiled for one
instruction set must not run on another). A checked blob is imported from the
bytes that were checked (``Core.import_model``, 0.05-0.07 s); a missing, damaged or
foreign one is compiled again and rewritten; a cache that cannot be written only
costs the compile. OpenVINO's own ``CACHE_DIR`` is not used: it would import files
nobody checked. The settings (measured, see ``docs/performance.md``):

* ``INFERENCE_PRECISION_HINT`` is always set: ``f32`` for fp32 (OpenVINO's own
  default on CPUs with AMX is bf16, which would silently change the features),
  ``bf16`` for bf16; for the layers an int8 model leaves in floating point,
  ``bf16`` where the CPU has native bf16, else ``f32`` (:func:`rest_precision`,
  part of the int8 feature-cache key);
* ``PERFORMANCE_HINT`` (:data:`MODE`): ``THROUGHPUT`` with the batch split over
  OpenVINO's streams and run by an ``AsyncInferQueue`` (``THROUGHPUT`` with one
  synchronous request ran at about half speed in the issue's measurement), or
  ``LATENCY`` with one synchronous request;
* ``INFERENCE_NUM_THREADS`` = the cores this process may use
  (``os.sched_getaffinity``).

bf16 needs native bf16 in the CPU (AMX or AVX512-BF16): :func:`native_bf16`
reads OpenVINO's ``OPTIMIZATION_CAPABILITIES`` and :func:`check_bf16` refuses
with one line elsewhere (emulated bf16 would be slower than fp32 and still
move the features).

Nothing here imports ``openvino`` at module import time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_json
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: Bump when the conversion recipe changes (invalidates converted files, not features).
CONVERT_VERSION = 1
#: The compiled forms kept per IR (other OpenVINO versions, configurations, CPUs of a shared cache), most recently used.
KEEP_BLOBS = 4
#: OpenVINO's name of each precision's ``INFERENCE_PRECISION_HINT``.
INFERENCE_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_available() -> bool:
    """Whether ``openvino`` can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def core():
    """One ``openvino.Core`` per process."""
    import openvino as ov

    return ov.Core()


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``FP32``, ``BF16``, ``INT8``);
    empty without openvino."""
    if not openvino_available():
        return ()
    try:
        return tuple(str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - a plugin that cannot answer has no capability we rely on
        return ()


def native_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (AMX or AVX512-BF16): ``BF16`` in its capabilities."""
    return "BF16" in cpu_capabilities()


def check_bf16() -> None:
    """Raise a one-line :class:`ParameterError` unless OpenVINO can run bf16 natively here."""
    if not openvino_available():
        raise ParameterError("--precision bf16 with --runtime openvino: package 'openvino' cannot be imported; "
                             "pip install 'brainclust[openvino]', or use --precision fp32")
    if not native_bf16():
        caps = ",".join(cpu_capabilities()) or "none reported"
        raise ParameterError("--precision bf16: this CPU has no native bf16 (needs AMX or AVX512-BF16; OpenVINO "
                             f"reports capabilities {caps}); use --precision fp32")


def ir_settings(onnx_settings: dict, precision: str, calibration: dict | None = None) -> dict:
    """What a converted IR depends on (recorded in its sidecar and hashed into its file name).

    fp32 and bf16 share one IR (bf16 is a compile-time hint); int8 adds the calibration's settings.
    """
    import openvino as ov

    settings = {"convert_version": CONVERT_VERSION, "onnx": dict(onnx_settings),
                "weights": "int8" if precision == "int8" else "fp32", "openvino": ov.get_version().split("-")[0]}
    if precision == "int8":
        if not calibration or not calibration.get("sha256"):
            raise ParameterError("--precision int8: the calibration sample is unknown (fit the extractor on the "
                                 "images first)")
        settings["calibration"] = dict(calibration)
    return settings


def ir_path(folder: str | os.PathLike, settings: dict) -> Path:
    """``<folder>/openvino/<backbone>-<key>.xml`` for these settings (the weights are beside it in ``.bin``)."""
    from brainclust.features.cache import config_key

    return Path(folder) / "openvino" / f"{settings['onnx']['backbone']}-{config_key(settings)}.xml"


def sidecar_of(xml: Path) -> Path:
    return xml.with_suffix(".json")


def read_checked(xml: Path, settings: dict) -> tuple[bytes, bytes] | None:
    """The IR's XML and weights bytes when both match the sidecar written with these settings; else ``None``."""
    try:
        meta = json.loads(sidecar_of(xml).read_text())
        if meta.get("settings") != settings:
            return None
        xml_bytes, bin_bytes = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    if (hashlib.sha256(xml_bytes).hexdigest() != meta.get("xml_sha256")
            or hashlib.sha256(bin_bytes).hexdigest() != meta.get("bin_sha256")):
        return None
    return xml_bytes, bin_bytes


def save_ir(model, xml: Path, settings: dict) -> None:
    """Write ``model`` (an ``openvino.Model``) as ``xml`` + ``.bin`` atomically, then its sidecar."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{xml.stem}.", dir=xml.parent))
    try:
        tmp_xml = tmp_dir / xml.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        digests = {}
        for suffix in (".bin", ".xml"):  # weights first: a reader checks both against the sidecar anyway
            src = tmp_xml.with_suffix(suffix)
            digests[suffix] = hashlib.sha256(src.read_bytes()).hexdigest()
            os.chmod(src, 0o644)
            os.replace(src, xml.with_suffix(suffix))
    finally:
        for p in tmp_dir.glob("*"):
            p.unlink()
        tmp_dir.rmdir()
    atomic_write_json(sidecar_of(xml), {"settings": settings, "xml_sha256": digests[".xml"],
                                        "bin_sha256": digests[".bin"]})


def model_from_bytes(xml_bytes: bytes, bin_bytes: bytes):
    """An ``openvino.Model`` built from the bytes of an IR pair."""
    import openvino as ov

    weights = ov.Tensor(np.frombuffer(bin_bytes, dtype=np.uint8).copy())
    return core().read_model(model=xml_bytes.decode("utf-8"), weights=weights)


#: How a batch runs: ``"latency"`` (``PERFORMANCE_HINT=LATENCY``, one synchronous request, all threads on
#: each layer) or ``"throughput"`` (``THROUGHPUT``: the batch split over OpenVINO's streams, run by an
#: ``AsyncInferQueue``). Chosen by ``benchmarks/bench_extract.py`` (docs/performance.md).
MODE = "throughput"


def compile_config(precision: str, threads: int | None = None, mode: str | None = None) -> dict:
    """The ``compile_model`` configuration of a precision (see the module's docstring).

    int8 leaves some layers in floating point: they run in bf16 where the CPU has native bf16, else f32.
    """
    if precision not in INFERENCE_HINT:
        raise ParameterError(f"--precision: OpenVINO runs fp32, bf16 or int8, got '{precision}'")
    mode = mode or MODE
    if mode not in ("latency", "throughput"):
        raise ParameterError(f"OpenVINO mode: must be 'latency' or 'throughput', got '{mode}'")
    return {"PERFORMANCE_HINT": mode.upper(), "INFERENCE_PRECISION_HINT": rest_precision(precision),
            "INFERENCE_NUM_THREADS": int(threads or available_cores())}


def rest_precision(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a precision (int8: of the layers left in floating point)."""
    if precision == "int8":
        return "bf16" if native_bf16() else "f32"
    return INFERENCE_HINT[precision]


class OpenVinoBackbone:
    """A compiled OpenVINO CPU model of a backbone: ``(B, 3, S, S)`` float32 -> ``(B, D)`` float32.

    Parameters
    ----------
    model : openvino.Model
    precision : {"fp32", "bf16", "int8"}
        bf16 is refused (:func:`check_bf16`) on CPUs without native bf16.
    threads : int or None
        ``INFERENCE_NUM_THREADS``; ``None`` = :func:`available_cores`.
    mode : {"latency", "throughput"} or None
        ``None`` = :data:`MODE`.
    cache_xml : Path or None
        The IR the model was read from: its compiled form is cached beside it (:func:`compile_cached`), and
        ``model`` may then be a function that returns the model, called only when nothing checked is cached.
        ``None``: compiled, not cached.
    """

    def __init__(self, model, precision: str = "fp32", threads: int | None = None, mode: str | None = None,
                 cache_xml: Path | None = None):
        import openvino as ov

        if precision == "bf16":
            check_bf16()
        self.precision = precision
        self._source = model
        self.config = compile_config(precision, threads, mode)
        self.compiled = compile_cached(self.source, self.config, cache_xml)
        self.mode = self.config["PERFORMANCE_HINT"].lower()
        self.n_requests = 1
        if self.mode == "throughput":
            self.n_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        if self.n_requests == 1:
            self.request = self.compiled.create_infer_request()
        else:
            self.queue = ov.AsyncInferQueue(self.compiled, self.n_requests)
            self._parts: dict[int, np.ndarray] = {}
            self.queue.set_callback(self._done)

    def source(self):
        """The ``openvino.Model`` this was compiled from (read now when the compiled model came from the cache)."""
        if callable(self._source):
            self._source = self._source()
        return self._source

    def _done(self, request, index: int) -> None:
        self._parts[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.n_requests == 1 or len(x) < 2:
            if self.n_requests == 1:
                out = self.request.infer({0: x})[0]
            else:
                out = self.compiled({0: x})[0]
            return np.array(out, dtype=np.float32, copy=True)  # the request's buffer is reused by the next call
        parts = np.array_split(x, min(self.n_requests, len(x)))
        self._parts.clear()
        for i, part in enumerate(parts):
            self.queue.start_async({0: np.ascontiguousarray(part)}, i)
        self.queue.wait_all()
        return np.concatenate([self._parts[i] for i in range(len(parts))])


def cpu_identity() -> dict:
    """What a compiled model depends on in the CPU: its name, OpenVINO's capabilities, the kernel's CPU flags."""
    from brainclust.features.cpu import cpu_flags

    flags = " ".join(sorted(cpu_flags() or ()))
    try:
        name = str(core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - a plugin that cannot answer
        name = ""
    return {"name": name, "capabilities": list(cpu_capabilities()),
            "flags": hashlib.sha256(flags.encode()).hexdigest()[:16]}


def compiled_settings(config: dict) -> dict:
    """What a compiled model depends on besides its IR: the configuration, OpenVINO's version, the CPU."""
    import openvino as ov

    return {"config": {k: str(v) for k, v in config.items()}, "openvino": ov.get_version(), "cpu": cpu_identity()}


def compile_cached(model, config: dict, xml: Path | None):
    """``compile_model`` of ``model`` (or of ``model()``) with ``config``, its compiled form cached beside ``xml``.

    The blob is imported only from bytes that match its sidecar's SHA-256 and settings
    (:func:`compiled_settings`); otherwise the model is compiled and the blob written
    again. Writing is best effort: a read-only cache logs and goes on.
    """
    from brainclust.features.cache import config_key

    get = model if callable(model) else (lambda: model)
    if xml is None:
        return core().compile_model(get(), "CPU", config)

    def where() -> tuple[Path, dict]:  # keyed by the IR's content too (its sidecar's digests), not its name only
        settings = {"ir": Path(xml).name, "ir_sha256": _ir_digests(Path(xml)), **compiled_settings(config)}
        return Path(xml).parent / "compiled" / f"{Path(xml).stem}-{config_key(settings)}.blob", settings

    blob, settings = where()
    data = read_blob(blob, settings)
    if data is not None:
        try:
            compiled = core().import_model(data, "CPU", config)
            _touch(blob)
            return compiled
        except Exception as exc:  # noqa: BLE001 - a blob OpenVINO refuses is compiled again
            log.warning("%s: cached compiled model cannot be imported (%s); compiling again", blob, exc)
    compiled = core().compile_model(get(), "CPU", config)
    blob, settings = where()  # get() may have written the IR just now
    try:
        import io

        stream = io.BytesIO()
        compiled.export_model(stream)
        data = stream.getvalue()
        atomic_write_bytes(blob, data)
        atomic_write_json(blob.with_suffix(".json"), {"settings": settings,
                                                      "sha256": hashlib.sha256(data).hexdigest()})
        prune_blobs(blob)
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation; the compiled model is good
        log.info("%s: compiled model not cached (%s)", blob, exc)
    return compiled


def _touch(path: Path) -> None:
    """Mark a blob as used now (:func:`prune_blobs` keeps the most recently used); best effort."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_blobs(blob: Path, keep: int = KEEP_BLOBS) -> list[Path]:
    """Delete all but the ``keep`` most recently used compiled forms of ``blob``'s IR (another OpenVINO version,
    configuration or CPU made the others), with their sidecars; ``blob`` itself is always kept. Returns the
    blobs deleted. A blob another process is reading at that moment fails its check there and is compiled again.
    """
    stem = blob.name[: blob.name.rfind("-")]
    others = []
    for p in blob.parent.glob(f"{stem}-*.blob"):
        try:
            if p != blob and p.name.rfind("-") == len(stem) and p.is_file():
                others.append((p.stat().st_mtime, p))
        except OSError:
            continue
    gone = [p for _, p in sorted(others, reverse=True)[max(keep - 1, 0):]]
    for p in gone:
        for f in (p, p.with_suffix(".json")):
            try:
                f.unlink()
            except OSError:
                pass
    if gone:
        log.info("%s: %s of this model removed", blob.parent, count_text(len(gone), "older compiled form"))
    return gone


def _ir_digests(xml: Path) -> list | None:
    """The SHA-256 of an IR's two files as its sidecar records them (``None`` without a readable sidecar)."""
    try:
        meta = json.loads(sidecar_of(xml).read_text())
        return [str(meta["xml_sha256"]), str(meta["bin_sha256"])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def read_blob(blob: Path, settings: dict) -> bytes | None:
    """The compiled model's bytes when they match the sidecar written with these settings; else ``None``."""
    try:
        meta = json.loads(blob.with_suffix(".json").read_text())
        if meta.get("settings") != json.loads(json.dumps(settings)):
            return None
        data = blob.read_bytes()
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: a sidecar of 10^5 '['
        return None
    return data if hashlib.sha256(data).hexdigest() == meta.get("sha256") else None


def convert(onnx_file: str | os.PathLike):
    """The ``openvino.Model`` of an ONNX file (the backbone's export)."""
    return core().read_model(str(onnx_file))


def load_ir(folder: str | os.PathLike, settings: dict, make_model) -> tuple[object, Path]:
    """The checked IR of ``settings`` as an ``openvino.Model``, made by ``make_model()`` and saved first if needed.

    Returns the model and the path of its XML file.
    """
    xml = ir_path(folder, settings)
    data = read_checked(xml, settings)
    if data is None:
        if xml.exists():
            log.warning("%s: converted OpenVINO model is damaged or stale; converting again", xml)
        save_ir(make_model(), xml, settings)
        data = read_checked(xml, settings)
        if data is None:
            raise ModelFileError(f"{xml}: the OpenVINO model just written does not match its checksum "
                                 "(is another process writing the cache folder?)")
    return model_from_bytes(*data), xml
