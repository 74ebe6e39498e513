"""Engines: who runs the feature extraction of a run.

* ``local`` (the default): :class:`~brainclust.features.extractor.FeatureExtractor`
  in this process;
* ``ray``: :mod:`.ray_data`, the same stages on a Ray cluster (``pip install
  'brainclust[ray]'``). It fills the feature store; the rest of the run then
  reads every feature from the store exactly as the local engine does, so the
  outputs are the same.

Nothing here imports ray unless the ray engine is asked for.
"""

ENGINES = ("local", "ray")


def check_engine(engine: str, address: str | None = None) -> None:
    """``--engine`` is one of :data:`ENGINES`; ``--ray-address`` only goes with ``ray``."""
    from brainclust.errors import ParameterError

    if engine not in ENGINES:
        raise ParameterError(f"--engine: must be one of {', '.join(ENGINES)}, got '{engine}'")
    if address is not None and engine != "ray":
        raise ParameterError("--ray-address: only with --engine ray")
