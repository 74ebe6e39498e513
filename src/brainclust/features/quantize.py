"""int8 post-training quantisation of a backbone with NNCF, calibrated on the run's own images.

The calibration sample is a seeded choice among the distinct images (content
keys) of the run: the ``size`` keys with the smallest ``SHA-256(seed:key)``.
It does not depend on the order of the images, and adding images to a folder
keeps most of it. Its identity (:func:`calibration_info`: the SHA-256 of the
chosen keys, their number, the seed and the quantisation recipe) is part of
the feature-cache key and of the quantised model's file name, so features of
two calibrations never mix and a quantised model is made once per
(backbone, weights, calibration sample).

The recipe (:data:`RECIPE`): ``nncf.quantize`` of the fp32 OpenVINO model
with the ``PERFORMANCE`` preset (symmetric int8 weights and activations),
fast bias correction, calibration batches of :data:`CALIBRATION_BATCH`
pre-processed images (the same pre-processing as the features, without any
augmentation view). ``nncf`` is imported only here, only when int8 is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Sequence

import numpy as np

from brainclust.errors import ParameterError

log = logging.getLogger(__name__)

#: Default number of calibration images (fewer when the run has fewer).
CALIBRATION_SIZE = 128
#: Seed of the calibration sample; fixed, so that a run's seed does not change its features.
CALIBRATION_SEED = 0
#: Images per calibration batch.
CALIBRATION_BATCH = 16
#: What the quantised model depends on besides the sample (bump ``version`` when the recipe changes).
RECIPE = {"version": 1, "tool": "nncf.quantize", "preset": "performance", "fast_bias_correction": True}


def nncf_available() -> bool:
    """Whether ``nncf`` (and ``openvino``) can be imported."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def check_available() -> None:
    if not nncf_available():
        raise ParameterError("--precision int8: packages 'openvino' and 'nncf' are needed; "
                             "pip install 'brainclust[openvino]', or use --precision fp32")


def check_size(size) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ParameterError(f"--calibration-size: must be a positive integer, got {size!r}")


def calibration_sample(keys: Sequence[str], size: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED) -> list[str]:
    """The calibration keys: the ``size`` distinct keys with the smallest
    ``SHA-256(f"{seed}:{key}")``, in that order."""
    check_size(size)
    distinct = set(keys)
    ranked = sorted(distinct, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).digest())
    return ranked[:size]


def calibration_info(sample: Sequence[str], seed: int = CALIBRATION_SEED) -> dict:
    """The identity of a calibration: SHA-256 of its keys (in sample order), their number, the seed, the recipe."""
    digest = hashlib.sha256("\n".join(sample).encode()).hexdigest()
    return {"sha256": digest, "n": len(sample), "seed": int(seed), "recipe": dict(RECIPE)}


def quantize(model, inputs: np.ndarray, batch: int = CALIBRATION_BATCH):
    """``nncf.quantize`` an fp32 ``openvino.Model`` on ``inputs`` ((n, 3, S, S) float32); returns the int8 model."""
    check_available()
    if len(inputs) == 0:
        raise ParameterError("--precision int8: no calibration image could be decoded")
    nncf = import_nncf()
    batches = [np.ascontiguousarray(inputs[i:i + batch], np.float32) for i in range(0, len(inputs), batch)]
    log.info("int8: calibrating on %d images (%d batches)", len(inputs), len(batches))
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws its own progress bars on stdout
        return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                             preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True)


def import_nncf():
    """``nncf``, imported quietly: its INFO lines and torch's CUDA notice at import are not for our users."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(logging.WARNING)
    return nncf


def plan(records: Sequence, size: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED) -> tuple[dict, list]:
    """``(calibration_info, the records of the sample)`` for a run's records (``ImageRecord``: ``.key``)."""
    first = {}
    for rec in records:
        first.setdefault(rec.key, rec)
    sample = calibration_sample(list(first), size, seed)
    return calibration_info(sample, seed), [first[k] for k in sample]


def decode_inputs(records: Sequence, config, spec) -> np.ndarray:
    """Model inputs ``(n, 3, S, S)`` float32 of the records that decode (the feature pre-processing, no view)."""
    from brainclust.errors import ImageReadError
    from brainclust.features.preprocess import preprocess, to_model_input
    from brainclust.io.scan import load_record

    out = []
    for rec in records:
        try:
            out.append(to_model_input(preprocess(load_record(rec), config), spec.mean, spec.std))
        except ImageReadError as exc:
            log.warning("int8 calibration: skipping %s (%s)", rec.path, exc.reason)
        except Exception as exc:  # noqa: BLE001 - as in the extraction: one odd file must not end the run
            log.warning("int8 calibration: skipping %s (%s: %s)", rec.path, type(exc).__name__, exc)
    size = config.size
    return np.stack(out).astype(np.float32, copy=False) if out else np.zeros((0, 3, size, size), np.float32)
