"""What a steered run checks and records: the settings (:func:`check_steering`), ``manifest.json["steer"]``
(:func:`steer_record`), ``metrics.json["within"]`` (of a prediction too: :func:`predicted_within`), ``--auto``'s
factor record (:func:`factor_record`) and ``--k auto``'s prediction strength (:func:`record_steering`, called by
``pipeline.run``). See docs/steering.md.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from brainclust.cluster.scores import label_scores
from brainclust.cluster.steer import DOMINANT_AMI, REMOVE_RULES, as_strata, listed, rank_factors, suggestion_for
from brainclust.errors import ParameterError
from brainclust.model.kevidence import prediction_strength
from brainclust.model.steercolumns import LEVELS, PLANE, label_evidence, meta_values
from brainclust.model.steering import RemoveStep, WithinStep, plane_columns
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

__all__ = ["check_steering", "factor_record", "predicted_within", "record_steering", "steer_record",
           "stratum_scores"]


def check_steering(cfg, comps) -> None:
    """``--within`` / ``--remove``: a column name, not a run-made one that is also the labels' (labels only score;
    a metadata column is checked against the labels by its values, :func:`~brainclust.model.steercolumns.
    check_steer_labels`), not both the same, and only with settings they combine with (one line each)."""
    from brainclust.model.enrich import label_column

    labels = label_column(cfg)
    for flag, value in (("--within", cfg.within), ("--remove", cfg.remove)):
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ParameterError(f"{flag}: expected a column name, got {value!r}")
        if value == labels and value in (PLANE, *LEVELS):  # made by the run; a metadata column: by its values
            raise ParameterError(f"{flag}: '{value}' is the column the clusters are scored against (--labels "
                                 f"{labels}); labels only score: drop the labels or steer by another column")
        if cfg.auto:
            raise ParameterError(f"{flag}: not supported with --auto (its portfolio clusters every image "
                                 "together); --auto's factor record suggests it")
        if cfg.consensus:
            raise ParameterError(f"{flag}: not supported with --consensus (it clusters every image together)")
        if cfg.exclude:
            raise ParameterError(f"{flag}: not supported with --exclude; leave the images out with "
                                 "--exclude-files, or drop --exclude")
    if cfg.within is not None and cfg.within == cfg.remove:
        raise ParameterError(f"--remove {cfg.remove}: the --within column too; each stratum is clustered on its own "
                             "PCA, which centres it already: use --within alone")
    if cfg.remove_rule not in REMOVE_RULES:
        raise ParameterError(f"--remove-rule: must be one of {', '.join(REMOVE_RULES)}, got {cfg.remove_rule!r}")
    if cfg.remove is not None and comps:
        raise ParameterError("--remove: not supported with --self-supervised (the SSL head is trained on the "
                             "features before the factor is removed); drop one")
    if cfg.within is None:
        return
    if comps:
        raise ParameterError("--within: not supported with --self-supervised (the SSL head learns k clusters of "
                             "every image together, not of each stratum); drop one")
    if cfg.method == "dbscan":
        raise ParameterError("--within: needs a method with a k (hierarchical, kmeans, gmm, spectral), got "
                             "'dbscan'")
    if cfg.reduce != "pca":
        raise ParameterError(f"--within: each stratum has its own PCA; --reduce {cfg.reduce} is not supported "
                             "with it (use --reduce pca)")
    if cfg.outliers != "off":
        raise ParameterError("--within: not supported with --outliers auto; drop one")


def steer_record(model) -> dict:
    """``manifest.json["steer"]`` of a fitted model: ``remove`` and ``within`` (column, source, rule, strata)."""
    steps = dict(getattr(model, "steps_", None) or [])
    out = {}
    if isinstance(steps.get("remove"), RemoveStep):
        out["remove"] = steps["remove"].info()
    if isinstance(steps.get("clusterer"), WithinStep):
        out["within"] = steps["clusterer"].info()
    return out


#: A column is a factor of the record when it has this many distinct values at most (and 2 at least).
FACTOR_MAX_VALUES = 50


def factor_record(rows, labels, random_state: int = 0, cache_dir=None, with_plane: bool = True,
                  exclude=()) -> dict:
    """``manifest.json["auto"]["factors"]``: which known or detected factor the clusters follow.

    Every metadata column of the rows with 2..:data:`FACTOR_MAX_VALUES` distinct values, and the plane
    (read from NIfTI, else estimated when ``with_plane``), ranked by adjusted mutual information with the
    clusters (:func:`brainclust.analysis.autoselect.rank_factors`); ``suggestion`` names ``--remove`` /
    ``--within`` when the first factor's AMI reaches the threshold. Never applied automatically.
    ``exclude``: the label column (``--labels``, ``folder`` for ``--labels-from-folders``): labels only score.
    """
    labels = np.asarray(labels)
    cols: dict[str, list] = {}
    for name in sorted({k for r in rows for k in (getattr(r, "meta", None) or {})}):
        values = meta_values(rows, name)
        distinct = set(as_strata(values).tolist())
        if name not in exclude and 2 <= len(distinct) <= FACTOR_MAX_VALUES:
            cols[name] = values
    if with_plane and PLANE not in cols:
        cols[PLANE] = plane_columns(rows, random_state, cache_dir)[PLANE]
    keep = labels >= 0
    ranked = rank_factors(labels[keep], {k: [v for v, ok in zip(vals, keep) if ok] for k, vals in cols.items()})
    return {"factors": ranked[:10], "suggestion": suggestion_for(ranked), "threshold_ami": DOMINANT_AMI,
            "rule": "metadata columns with 2-50 values and the plane, ranked by AMI with the clusters; a "
                    f"suggestion when the first reaches AMI {DOMINANT_AMI}; never applied automatically"}


def stratum_scores(strata, clusters, labels) -> dict:
    """``metrics.json["within"]["scores"]``: NMI and ARI of the clusters against the labels inside each stratum
    (its rows with a label; ``n``), and their means weighted by those rows; a stratum whose labelled rows hold
    fewer than two labels is ``not_scored`` (there is nothing to recover). The run's own scores are over the
    global ids, about k x strata clusters; a stratum's compare with a run on that stratum's images alone.
    ``strata``: NMI and ARI of the strata themselves as clusters, what the run's own scores get for free (a walk,
    2026-12-07: ``--labels sequence --within suffix`` printed NMI 0.679, 0.000 inside the strata and without
    ``--within``: the strata alone score 0.679; not refused, as the T1w stratum holds two sequences)."""
    strata, clusters, labels = np.asarray(strata), np.asarray(clusters), np.asarray(labels, dtype=object)
    per, unscored = {}, {}
    for v in sorted(set(strata.tolist())):
        rows = strata == v
        kinds = len(set(labels[rows].tolist()) - {""})
        if kinds < 2:  # nothing to recover: any split of one class scores 0
            labelled = count_text(sum(map(bool, labels[rows])), "labelled image")
            unscored[str(v)] = f"{labelled} of {count_text(kinds, 'label')}"
            continue
        got = label_scores(clusters[rows], labels[rows])
        per[str(v)] = {"n": got["n_labelled"], "nmi": got["nmi"], "ari": got["ari"]}
    n = sum(p["n"] for p in per.values())
    mean = {key: sum(p["n"] * p[key] for p in per.values()) / n for key in ("nmi", "ari")} if n else {}
    alone = label_scores(np.unique(strata.astype(str), return_inverse=True)[1], labels)  # the strata as ids
    return {"per_stratum": per, **{f"mean_{key}": value for key, value in mean.items()},
            **({"not_scored": unscored} if unscored else {}),
            **({"strata": {"nmi": alone["nmi"], "ari": alone["ari"]}} if "nmi" in alone else {})}


def predicted_within(step, rows, labels, labels_true=None) -> dict | None:
    """A prediction's ``metrics.json["within"]`` by a ``--within`` model (``None`` for another ``step``), as a run
    records it: the model's ``k`` and the new rows per stratum (``strata``), and with labels the scores inside each
    stratum (``scores``, :func:`stratum_scores`); one log line counts the rows per stratum."""
    if not isinstance(step, WithinStep):
        return None
    strata = [str((r.meta or {}).get("stratum", "")) for r in rows]  # each row's, as predict_batch wrote it
    counts = dict(sorted(Counter(strata).items()))
    unit = "units" if rows and getattr(rows[0], "members", None) is not None else "images"  # --unit: not slices
    log.info("--within %s: new %s per stratum %s", step.column, unit, listed([f"{k}: {v}" for k, v in counts.items()]))
    out = {"k": {str(v): int(n) for v, n in step.model_.k_.items()}, "strata": counts}
    if labels_true is not None:
        out["scores"] = stratum_scores(strata, labels, labels_true)
    return out


def record_steering(cfg, model, rows, metrics: dict, manifest: dict, label_column=None, y=None) -> None:
    """Add to a run's metrics and manifest what steering, ``--auto`` and ``--k auto`` record (module docstring);
    ``y``: the labels scored against (``None`` without)."""
    if isinstance(metrics.get("k_selection"), dict) and cfg.method != "dbscan":  # the evidence beside the vote
        metrics["k_selection"]["prediction_strength"] = prediction_strength(model.embedding_, model.labels_,
                                                                             cfg.method, cfg.seed)
    if cfg.auto and "auto" in manifest:  # which factor the clusters follow; a suggestion, never applied
        manifest["auto"]["factors"] = factor_record(rows, model.labels_, cfg.seed, cfg.cache_dir,
                                                    exclude=(label_column,))
        if manifest["auto"]["factors"]["suggestion"]:  # steering is refused with --auto: say what to pin instead
            chosen = (manifest["auto"].get("chosen") or {}).get("backbone", "")
            log.warning("--auto: %s, without --auto%s", manifest["auto"]["factors"]["suggestion"],
                        f" and with --backbone {chosen}, the backbone it chose" if chosen else "")
    steer = steer_record(model)
    if steer:
        manifest["steer"] = steer
        within = steer.get("within")
        if within:
            metrics["within"] = {k: within[k] for k in ("k", "strata", "k_selection") if k in within}
            if y is not None:
                strata = model.clusterer_.model_.stratum_
                scores = metrics["within"]["scores"] = stratum_scores(strata, model.labels_, y)
                # plane or level_N: known only now; strata of fewer than 2 labelled images tell nothing
                if not scores["per_stratum"] and len(set(y) - {""}) > 1 and label_evidence(strata, y):
                    log.warning("--within %s: each stratum's labelled images share one label: the run's scores "
                                "measure the strata, not the clusters", within["column"])
            within.pop("k_selection", None)  # the curves are metrics.json's; the manifest keeps the k
