"""The summary lines the commands print after a run (``brainclust run``, ``predict``, ``demo``): text only."""

from __future__ import annotations

from brainclust.io.walk import skipped_text
from brainclust.model.scorespace import gate_figures, silhouette_space
from brainclust.terminal import count_text

__all__ = ["auto_line", "distinct_line", "run_summary", "strata_k_line", "strata_named", "within_line"]


def run_summary(result, report: bool = True) -> str:
    """The lines a run, a prediction or the demo prints: counts, scores, what the checks found, the cache, what the
    clusters follow, the outputs; ``report``: whether a report was written (``--no-report`` and predict: none, so
    no line points at one)."""
    from brainclust.io.outputs import escape_name

    m = result.metrics
    units = result.manifest.get("units") or {}
    unit = units.get("unit", "slice")
    rows = count_text(m["n_images"], "image" if unit == "slice" else unit)
    if unit != "slice":
        rows += f" from {count_text(units.get('n_images'), 'image')}"
    noise = m.get("n_noise") or 0  # --outliers auto or dbscan: cluster -1
    aside = count_text(noise, "outlier" if "outliers" in m else "noise image")
    parts = [rows, count_text(m["n_clusters"], "cluster") + (f" (+ {aside} as cluster -1)" if noise else ""),
             f"silhouette={m['silhouette']:.3f}" if m.get("silhouette") is not None else "silhouette=n/a"]
    parts += [f"{key.upper()}={m[key]:.3f}" for key in ("ari", "nmi", "fmi", "acc") if key in m]
    n_lab = m.get("n_labelled")
    if "ari" in m and isinstance(n_lab, int) and n_lab < m["n_images"]:  # scores over a part only: say how small
        parts.append(f"label scores over the {n_lab} labelled of {m['n_images']}"
                     + (" (too few to mean much)" if n_lab < 10 else ""))
    lines = [", ".join(parts)]
    if line := distinct_line(m):
        lines.append(line)
    if line := within_line((m.get("within") or {}).get("scores") or {}, unit):
        lines.append(line)
    if note := silhouette_space(result.manifest)["note"]:  # UMAP or a kept SSL embedding (model.scorespace)
        lines.append(note)
    if "k_selection" in m:
        sel = m["k_selection"]
        votes = ", ".join(f"{name} {v['vote']}" for name, v in sel["indices"].items())
        evidence = " and prediction strength" if sel.get("prediction_strength") else ""
        panel = ", the report's k panel" if report else ""  # the report only when one was written
        lines.append(f"--k auto: k = {sel['chosen_k']} (votes: {votes}; curves{evidence} in metrics.json{panel})")
    if (m.get("within") or {}).get("k_selection"):  # --within: each stratum chose its own k
        lines.append(strata_k_line(m["within"], getattr(result.config, "within", None) or "stratum", report=report))
    if isinstance(gate := (result.manifest.get("ssl") or {}).get("gate"), dict) and "kept" in gate:
        figures = gate_figures(gate)
        lines.append("--ssl-gate: " + ("kept the self-supervised embedding" if gate["kept"] else "set the self-"
                     "supervised embedding aside: the frozen features are clustered")
                     + f" ({figures + '; ' if figures else ''}manifest.json ssl.gate)")
    if "agreement" in m:
        a = m["agreement"]
        lines.append(f"agreement with fp32: feature cosine {a['cosine_mean']:.4f} (min {a['cosine_min']:.4f}), "
                     f"clusters ARI {a['ari']:.3f} (metrics.json)")
    if result.skipped:
        lines.append(f"{skipped_text(result.skipped)} skipped (see manifest.json)")
    if getattr(result, "checks", None) is not None:
        lines.append(result.checks.summary() + " (quality.csv, leakage.csv)")
        if result.config.exclude:
            n_aside, told = m.get("n_set_aside"), f"--exclude {','.join(result.config.exclude)}"
            if "model_dir" in result.manifest:  # predict: the model's setting; new images are all assigned
                if n := sum(bool(f & set(result.config.exclude)) for f in result.checks.flags):
                    lines.append(f"{told} (the model's): predict sets no image aside; {count_text(n, 'new image')} "
                                 "with these flags assigned a cluster (quality.csv)")
            else:
                lines.append(f"{told}: " + (f"{count_text(n_aside, 'image')} left out of the clustering (cluster -1; "
                             "scores over the others)" if n_aside else "no image carries these flags; every image was "
                             "clustered"))
    cache = result.manifest.get("cache", {})
    views = cache.get("views") if isinstance(cache.get("views"), dict) else {}
    lines.append(f"feature cache: {hits_text(cache)}"
                 + (f" (of which {copies} repeat an earlier image: computed once)" if (copies := cache.get("copies"))
                    else "")
                 + (f" ({count_text(failed, 'image')} could not be decoded)" if (failed := cache.get("failed", 0))
                    else "")
                 + (f"; augmented views for --self-supervised ({views.get('views', 0)} of each image): "
                    f"{hits_text(views)}" if views else ""))
    if result.out_dir is not None and getattr(result, "associations", None) is not None:  # empty: says why
        from brainclust.cluster.follows import headline

        within = result.config.within  # not ranked: every cluster lies inside one of its values
        text = headline(result.associations, groups=m["n_clusters"], within=within)
        lines.append(text + " (associations.csv" + (f"; within each {within}, which is not ranked)"
                                                    if within and not strata_named(text, within) else ")"))
    if result.out_dir is not None:
        lines.append(f"outputs: {escape_name(str(result.out_dir))}/assignments.csv, embeddings.parquet, metrics.json, "
                     "associations.csv, manifest.json")
    return "\n".join(lines)


def strata_named(text: str, within: str) -> bool:
    """Whether ``text`` (a :func:`~brainclust.cluster.follows.headline`) names the ``--within`` strata already: it
    does when no column could be ranked within them, so a line adds them only when it does not."""
    return f"within each {within}" in text


def hits_text(cache: dict) -> str:
    """``12 hits, 1 miss`` of a cache record (``manifest.json`` ``cache``)."""
    return f"{count_text(cache.get('hits', 0), 'hit')}, {count_text(cache.get('misses', 0), 'miss', 'misses')}"


def distinct_line(m: dict) -> str | None:
    """The scores over distinct images (``metrics.json`` ``distinct``) when exact copies were dropped from them,
    so that copies cannot inflate the scores unseen; ``None`` when every clustered image is distinct."""
    d = m.get("distinct")
    clustered = m.get("n_images", 0) - (m.get("n_set_aside") or 0)
    if not isinstance(d, dict) or not isinstance(d.get("n_images"), int) or d["n_images"] >= clustered:
        return None
    if d["n_images"] == 0:  # predict: every new image is a copy of one the model was fitted on
        return (f"none of the {clustered} clustered images is distinct (each is an exact copy of an image the model "
                "was fitted on, or of another): no scores over distinct images (metrics.json distinct)")
    scores = [f"{key if key == 'silhouette' else key.upper()} {d[key]:.3f}" for key in ("silhouette", "ari", "nmi")
              if isinstance(d.get(key), float)]
    return (f"over the {d['n_images']} distinct of {clustered} clustered images (exact copies dropped): "
            f"{', '.join(scores) or 'silhouette n/a'} (metrics.json distinct)")


def within_line(within: dict, unit: str) -> str | None:
    """A ``--within`` run's scores inside the strata (``metrics.json`` ``within.scores``) and the strata's own, or
    ``None``: the run's own scores are over about k x strata global ids, so inside them compares."""
    if "mean_nmi" not in within:
        return None
    alone = within.get("strata") or {}
    return (f"within the strata: NMI {within['mean_nmi']:.3f}, ARI {within['mean_ari']:.3f} (mean over "
            f"{count_text(len(within['per_stratum']), 'scored stratum', 'scored strata')}, weighted by "
            f"{'images' if unit == 'slice' else 'units'}; "
            + (f"the strata alone score NMI {alone['nmi']:.3f}, ARI {alone['ari']:.3f}; " if alone else "")
            + "metrics.json within.scores)")


def strata_k_line(within: dict, column: str, most: int = 12, report: bool = True) -> str:
    """``--k auto`` with ``--within``: each stratum's k, the first ``most`` named (``metrics.json`` ``within``), and
    where the votes are (the report only when one was written: until 2026-12-07 ``--no-report`` named it too)."""
    voted = within["k_selection"]
    named = [f"{name}: k = {k}" + ("" if name in voted else " (no vote: too few images or too alike)")
             for name, k in (within.get("k") or {}).items()]
    more = f", … {len(named) - most} more" if len(named) > most else ""
    return (f"--k auto within each {column} ({', '.join(named[:most])}{more}; votes and curves in metrics.json "
            f"within.k_selection{', the report' if report else ''})")


def auto_line(result, report: bool = True) -> str | None:
    """``--auto``'s or ``--consensus``' choice (``None`` for other runs): the rule's outcome (``manifest.json``
    ``auto.outcome``; the choice alone in a run recorded before it) and every candidate's criteria, two lines
    (naming the report's section only when ``report``)."""
    auto = result.manifest.get("auto")
    if auto is None:
        return None
    flag = "--consensus" if result.config.consensus else "--auto"
    if auto.get("outcome"):
        first = f"{flag}: {auto['outcome']}"
    elif result.config.consensus:
        first = f"{flag}: the consensus of " + ", ".join(result.manifest["clustering"]["consensus_of"])
    else:
        first = f"{flag}: chose backbone {auto['chosen']['backbone']}, --reduce {auto['chosen']['reduce']}"
    rows = [f"{r['backbone']}{'' if r['reduce'] == 'pca' else ' ' + r['reduce']} {r['stability']:.2f}/{r['xsil']:.3f}/"
            f"{r['agreement']:.2f}" for r in auto.get("candidates") or ()]
    where = "auto.csv, the report's section" if report else "auto.csv"
    return first + "\n" + f"{flag} criteria (stability/xsil/agreement; PCA unless named): {', '.join(rows)} ({where})"
