"""Images to feature vectors: pre-processing (:mod:`.preprocess`), augmented views (:mod:`.augment`),
the backbone registry (:mod:`.backbones`), the cached extractor (:mod:`.extractor`, :mod:`.cache`)
and fusion of several backbones (:mod:`.fusion`).

``brainclust.features.FeatureExtractor`` still works; it loads torch on first use.
"""


def __getattr__(name):
    if name in ("FeatureExtractor", "PRECISIONS"):
        from brainclust.features import extractor

        return getattr(extractor, name)
    raise AttributeError(f"module 'brainclust.features' has no attribute {name!r}")
