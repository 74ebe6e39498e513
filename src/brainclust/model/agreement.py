"""``--agreement``: how far a run's faster path moved its features and clusters from fp32.

A run with ``--precision bf16|int8`` (or ``--runtime`` other than the default) is fitted a second
time on the same images with fp32 features of the default runtime on the run's device (ONNX Runtime
on a CPU, torch on CUDA), every other setting the same, as a second run would be.
``metrics.json["agreement"]`` then holds the cosine similarity of each row's two feature vectors (mean and
minimum) and the adjusted Rand index between the two runs' clusters (and between their 10 tree levels' finest
cut, for a hierarchical run). No label is used. It costs a second extraction (cached like any other: a rerun reads it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.metrics import adjusted_rand_score

from brainclust.core.arrays import row_cosine
from brainclust.errors import ParameterError
from brainclust.features.backbones import runs_network

#: The reference: fp32 on the default runtime.
REFERENCE = {"precision": "fp32", "runtime": "auto"}


def check_agreement(cfg) -> None:
    """``--agreement`` needs bf16 or int8 (fp32 features are the same on every runtime, to about 1e-6, and share
    one cache entry: an fp32 OpenVINO run compared with the entry it had just written), and one model."""
    if not cfg.agreement:
        return
    if not any(runs_network(part) for part in str(cfg.backbone).split("+")):
        raise ParameterError(f"--agreement: --backbone {cfg.backbone} runs no network, so no precision or runtime "
                             "changes its features")
    if cfg.precision == "fp32" or (cfg.precision == "auto" and cfg.device == "cpu"):
        raise ParameterError("--agreement: would compare fp32 with itself (fp32 features agree on every runtime to "
                             "about 1e-6 and are cached as one); it needs --precision bf16|int8")
    if cfg.auto or cfg.consensus:
        raise ParameterError("--agreement: not with --auto or --consensus (their portfolio runs fp32)")


def fp32_agreement(model, cfg, records, build_model, source: str) -> dict:
    """Fit the run's model again with fp32 features (:data:`REFERENCE`) on ``records``; compare with ``model``."""
    ref_cfg = replace(cfg, **REFERENCE, calibration_size=type(cfg)().calibration_size, agreement=False)
    ref = build_model(ref_cfg).fit(records, None, source=source)
    a, b = np.asarray(model.features_, np.float64), np.asarray(ref.features_, np.float64)
    if a.shape != b.shape:  # another row count: the same images did not decode in both (never expected)
        raise ParameterError(f"--agreement: the fp32 run has {len(b)} rows, this run {len(a)}")
    cos = row_cosine(a, b)
    out = {"reference": "fp32, --runtime auto", "n": int(len(a)), "cosine_mean": float(cos.mean()),
           "cosine_min": float(cos.min()), "ari": float(adjusted_rand_score(model.labels_, ref.labels_))}
    if model.levels_ is not None and ref.levels_ is not None:
        out["ari_level_10"] = float(adjusted_rand_score(model.levels_[:, -1], ref.levels_[:, -1]))
    return out
