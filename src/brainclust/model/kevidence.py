"""``--k auto``: the prediction-strength evidence beside the vote (``metrics.json["k_selection"]``).

The vote of :class:`~brainclust.cluster.kselect.KSelector` still chooses k (measured: nothing beats it
everywhere, ``docs/results.md``). :class:`~brainclust.cluster.kchoice.StableK` adds, for each k, how well
the clustering of one random half predicts the clustering of the other (prediction strength): the finest
level that reproduces. The run records it as ``k_selection.prediction_strength``, the report draws it
beside the vote's curves, and the run warns when no level finer than 2 reproduces.
"""

from __future__ import annotations

import logging

import numpy as np

from brainclust.cluster.kchoice import StableK
from brainclust.errors import ParameterError

log = logging.getLogger(__name__)

__all__ = ["prediction_strength"]


def prediction_strength(embedding, labels, method: str, seed: int) -> dict | None:
    """``StableK(method).fit(embedding of the clustered rows).as_dict()``; ``None`` when too few rows."""
    X = np.asarray(embedding, dtype=np.float64)[np.asarray(labels) >= 0]
    try:
        record = StableK(method=method, random_state=seed).fit(X).as_dict()
    except ParameterError as exc:  # too few images for two halves of k_min clusters each
        log.info("--k auto: no prediction strength (%s)", exc)
        return None
    finest = max([k for k, s in zip(record["ks"], record["strength"]) if s >= record["threshold"]], default=None)
    if finest is None:
        log.warning("--k auto: no number of clusters reproduces across random halves, not even 2 (prediction "
                    "strength < %.2f at every k); the clusters may not be stable", record["threshold"])
    elif finest <= 2:
        log.warning("--k auto: no level finer than 2 clusters reproduces across random halves (prediction "
                    "strength >= %.2f only at k = 2); the finer clusters may not be stable", record["threshold"])
    record["finest_reproducible_k"] = finest
    log.info("--k auto: the four-index vote chose k; prediction strength is recorded beside it as evidence "
             "(metrics.json k_selection.prediction_strength)")  # the run's summary names the report when it has one
    return record
