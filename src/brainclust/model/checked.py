"""What a run does with its data checks once the model is fitted (one place for ``pipeline.run``).

The checks are a step of the model (:class:`brainclust.checks.step.DataChecks`, rows = the images
that decoded, ``model.records_``). Here: the ``flags`` cell of each row of ``assignments.csv``, the
rows of ``quality.csv`` (the images the extractor could not decode are added with their reason)
and ``leakage.csv``, and the scores over distinct images (``metrics.json["distinct"]``: one image
per group of byte-identical contents, among the images clustered), so duplicates cannot inflate
the scores.

``predict``: the new images are checked when the model has a checks step (:func:`predict_checks`), and
``model.record.predict_manifest`` records how many are copies of the run's own images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from brainclust.checks.fitted import FITTED_PREFIX
from brainclust.checks.flags import join_flags
from brainclust.checks.stage import CheckResult
from brainclust.checks.tables import distinct_index, quality_rows
from brainclust.cluster.scores import score
from brainclust.errors import ParameterError
from brainclust.io.outputs import QUALITY_COLUMNS, escape_name
from brainclust.model.steerrecord import predicted_within

log = logging.getLogger(__name__)


def check_result(model) -> CheckResult | None:
    """The fitted checks of a run's model (``None`` with ``--checks off`` or for a loaded model)."""
    step = model.step("checks")
    return getattr(step, "result_", None) if step is not None else None


def flag_cells(result: CheckResult, records: Sequence) -> list[str]:
    """The ``flags`` cell of each record (``;``-joined, empty when clean); a unit's (``--unit``): every flag
    of any of its slices."""
    at = {p: i for i, p in enumerate(result.paths)}

    def flags(r) -> frozenset:
        members = getattr(r, "members", None)
        if members:
            return frozenset().union(*(flags(m) for m in members))
        return result.flags[at[r.path]] if r.path in at else frozenset()

    return [join_flags(flags(r)) for r in records]


def quality_table(result: CheckResult, skipped: Sequence[dict] = ()) -> list[dict]:
    """``quality.csv``: the checked images in scan order, then the images that did not decode (``error``)."""
    rows = quality_rows(result)
    for s in skipped:
        rows.append({**{c: "" for c in QUALITY_COLUMNS}, "path": escape_name(s["path"]), "error": s["reason"]})
    return rows


def distinct_scores(model, result: CheckResult, labels_true=None) -> dict:
    """The scores over distinct images (``metrics.json["distinct"]``): of every group of identical decoded
    contents only its first image in scan order, among the images clustered.

    ``n_images`` is the number of those images; the rest is :func:`brainclust.cluster.scores.score`'s.
    ``None`` for a unit run (``--unit``: its rows are not images).
    """
    aside = getattr(model, "aside_", None)
    return _scores_over(result, model.records_, model.score_space(), model.labels_, labels_true, aside,
                        "one image per group of identical decoded contents (duplicates dropped), clustered images only")


def predicted_scores(got, labels_true=None, clusterer=None) -> dict:
    """A prediction's ``metrics.json``: the scores of every new image, and, when the new images were checked,
    ``distinct``: the scores over those that are new, one per group of identical decoded contents and none
    that is a copy of an image of the fit (it is not new: its cluster is the fit's); by a ``--within`` model
    (``clusterer``: the model's clustering step), ``within``: the new images per stratum (and their scores)."""
    space = got.embedding if got.space is None else got.space
    metrics = score(space, got.labels, labels_true)
    if (within := predicted_within(clusterer, got.records, got.labels, labels_true)) is not None:
        metrics["within"] = within
    if got.checks is not None:
        fit_copy = np.array([d.startswith(FITTED_PREFIX) for d in got.checks.duplicate_of], bool)
        distinct = _scores_over(got.checks, got.records, space, got.labels, labels_true, None,
                                "new images only: one per group of identical decoded contents, none that is a copy "
                                "of an image of the fit", drop=fit_copy)
        if distinct is not None:
            metrics["distinct"] = distinct
    return metrics


def _scores_over(result: CheckResult, records, embedding, labels, labels_true, aside, rule: str,
                 drop: np.ndarray | None = None) -> dict | None:
    """:func:`~brainclust.cluster.scores.score` over one image per decoded content among the ``records`` used
    (not ``aside``, not ``drop``: masks over the rows and the checked images; :func:`distinct_index`); ``None``
    for units."""
    if records and getattr(records[0], "members", None) is not None:
        return None
    at = {p: i for i, p in enumerate(result.paths)}
    rows = np.array([at[r.path] for r in records], dtype=np.int64)
    use = np.ones(len(rows), bool) if aside is None else ~np.asarray(aside, bool)
    if drop is not None:
        use &= ~drop[rows]
    used = np.zeros(len(result.paths), bool)
    used[rows[use]] = True
    keep = np.zeros(len(result.paths), bool)
    keep[distinct_index(result.paths, result.flags, result.duplicate_of, used)] = True
    idx = np.flatnonzero(keep[rows])
    y = None if labels_true is None else [labels_true[i] for i in idx]
    out = score(np.asarray(embedding)[idx], np.asarray(labels)[idx], y)
    out.pop("cluster_sizes", None)
    out["rule"] = rule
    return out


def predict_checks(model, checks: str | None) -> bool:
    """Whether ``predict`` checks the new images: ``checks`` (``on``/``off``; ``None``: the run's setting)
    where the run's model has a checks step (a run with ``--checks off`` has none: a warning for ``on``)."""
    if checks not in (None, "on", "off"):
        raise ParameterError(f"--checks: must be on or off, got {checks!r}")
    has = model.step("checks") is not None
    if checks == "on" and not has:
        log.warning("--checks on: the run was made with --checks off; its model has no checks, so the new images "
                    "are not checked (run 'brainclust check' on their folder)")
    return has and checks != "off"
