"""``brainclust run DATA --auto`` / ``--consensus``: the criteria (:mod:`brainclust.model.criteria`)
and the meta-estimators (:mod:`brainclust.model.auto`) under their former names, and :func:`run_auto`.

``run --auto`` and ``run --consensus`` are ordinary runs (:func:`brainclust.pipeline.run` fits the
meta-estimator of the settings); :func:`run_auto` is such a run over another portfolio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from brainclust.model.auto import AutoSelect, ConsensusModel, build_model
from brainclust.model.criteria import (AUTO_MAX, AUTO_REDUCTIONS, COLUMNS, CONSENSUS, CONSENSUS_RULE, DEFAULT,
                                       MARGINS, PORTFOLIO, RULE, SIL_SAMPLE, AutoResult, choose, coassociation_rows,
                                       consensus, consensus_row, evaluate, labelled_nmi, pca_space, select)
from brainclust.pipeline import run

__all__ = ["AUTO_MAX", "AUTO_REDUCTIONS", "AutoResult", "AutoSelect", "COLUMNS", "CONSENSUS", "CONSENSUS_RULE",
           "ConsensusModel", "DEFAULT", "MARGINS", "PORTFOLIO", "RULE", "SIL_SAMPLE", "choose", "coassociation_rows",
           "consensus", "consensus_row", "evaluate", "labelled_nmi", "pca_space", "run_auto", "select"]


def run_auto(data, out=None, config=None, *, finish=None, backbones: Sequence[str] = PORTFOLIO):
    """``brainclust run --auto`` / ``--consensus`` over the portfolio ``backbones``; returns ``(result, choice)``.

    ``choice`` is the :class:`~brainclust.model.criteria.AutoResult` (every candidate's criteria and the choice).
    """
    cfg = replace(config, auto=not config.consensus) if not (config.auto or config.consensus) else config
    result = run(data, out, cfg, finish=finish, model=build_model(cfg.normalized(), backbones))
    return result, result.model.result_
