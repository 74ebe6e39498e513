"""brainclust: unsupervised clustering of brain MRI images with deep CNN features.

Stage sub-packages, data flowing one way::

    io (scan, formats, run folder) -> features (preprocess, backbones, cache) -> cluster (reduce, methods, scores)
                                         selfsup (optional, between features and cluster)
    model (the fitted model of a run: its steps, save/load)  ->  pipeline (run, predict);
    analysis (benchmark, sensitivity, ablation) and report sit on top;  cli is last.

:func:`run` and :func:`predict` compose them; :class:`BrainClusterModel` is the fitted model. Heavy modules (torch) load
lazily, on first use.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

#: Third-party usage telemetry, turned off in brainclust's process before those libraries load (nothing is ever
#: uploaded): ONNX Runtime (from 1.29 it queues usage events for upload on Linux too, under ~/.cache/Microsoft),
#: NNCF (the int8 calibration; it reports to Google Analytics) and Ray (``--engine ray``: usage stats to
#: Anyscale). A value the user set stays as it is.
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1", "NNCF_CI": "1", "RAY_USAGE_STATS_ENABLED": "0"}
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)

__all__ = ["run", "predict", "RunConfig", "RunResult", "BrainClusterModel", "FeatureExtractor", "PCAReducer",
           "Clusterer", "score", "scan", "make_demo_dataset", "__version__"]

_LAZY = {
    "run": "pipeline", "predict": "pipeline", "RunConfig": "pipeline", "RunResult": "pipeline",
    "BrainClusterModel": "model.composite",
    "FeatureExtractor": "features.extractor", "PCAReducer": "cluster.reduce", "Clusterer": "cluster.methods",
    "score": "cluster.scores", "scan": "io.scan", "make_demo_dataset": "data.demo",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'brainclust' has no attribute {name!r}")
