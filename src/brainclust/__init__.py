"""brainclust: unsupervised clustering of brain MRI images with deep CNN features.

Stages (one module each, data flowing one way)::

    ingest -> preprocess -> features (backbones + cache) -> reduce -> cluster -> evaluate

:func:`run` and :func:`predict` compose them. Heavy modules (torch) load
lazily, on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["run", "predict", "RunConfig", "RunResult", "FeatureExtractor", "PCAReducer", "Clusterer",
           "score", "scan", "make_demo_dataset", "__version__"]

_LAZY = {
    "run": "pipeline", "predict": "pipeline", "RunConfig": "pipeline", "RunResult": "pipeline",
    "FeatureExtractor": "features", "PCAReducer": "reduce", "Clusterer": "cluster",
    "score": "evaluate", "scan": "ingest", "make_demo_dataset": "demo",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'brainclust' has no attribute {name!r}")
