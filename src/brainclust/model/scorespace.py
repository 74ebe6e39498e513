"""Which space a run's silhouette was taken in: one rule for the terminal summary, ``metrics.json``
(``silhouette_space``) and the report's Scores section.

The silhouette (:mod:`brainclust.cluster.scores`) is measured where the clustering ran. Two spaces raise it
whatever the clusters follow, so their silhouette is not comparable with that of a run on the frozen features:

* a UMAP embedding (``--reduce umap`` or ``pca+umap``, or ``--auto`` choosing one): its clumps tend to raise it
  (0.87 with NMI 0.001 on a yes/no set);
* a self-supervised embedding that the run kept (``--self-supervised``): it is trained to separate the clusters
  (``all`` on 200 test images of the 4-class set: 0.586 against 0.280 on the frozen features, while NMI fell from
  0.259 to 0.245; ``temi``, whose embedding is cluster probabilities: 0.943).

An embedding the ``--ssl-gate`` set aside is not used: the run records the components it requested in its
settings and ``kept: false`` in its ``ssl`` record (a prediction too, from the model's ``ssl`` step), and its
silhouette is the frozen features' (a run before that recorded no components instead). What the gate
measured on both sides (label-free: stability and kNN agreement, :mod:`brainclust.selfsup.gate`) is shown with the
caveat when ``manifest.json`` records it (:func:`gate_figures`); labels play no part in either.
"""

from __future__ import annotations

__all__ = ["SPACE_NAMES", "gate_figures", "set_aside", "silhouette_space", "ssl_comparison", "ssl_embedding"]

#: The silhouette's name where it is not comparable with a run's on the frozen features (report and view).
SPACE_NAMES = {"umap": " (UMAP)", "ssl": " (SSL embedding)", "ssl+umap": " (UMAP of the SSL embedding)"}

TEMI = "temi"  #: brainclust.selfsup.common.TEMI (not imported: a text rule need not load the selfsup package)


def _settings(manifest: dict) -> dict:
    """The settings the run clustered with: ``--auto``'s choice, else the recorded settings."""
    chosen = (manifest.get("auto") or {}).get("chosen") if isinstance(manifest.get("auto"), dict) else None
    settings = chosen if isinstance(chosen, dict) else manifest.get("settings")
    return settings if isinstance(settings, dict) else {}


def set_aside(manifest: dict) -> bool:
    """Whether the ``--ssl-gate`` set the run's self-supervised embedding aside (``ssl.kept`` or ``ssl.gate.kept``
    false): the run (or prediction) clustered the frozen features."""
    ssl = manifest.get("ssl") if isinstance(manifest.get("ssl"), dict) else {}
    gate = ssl.get("gate") if isinstance(ssl.get("gate"), dict) else {}
    return ssl.get("kept") is False or gate.get("kept") is False


def _ssl_components(manifest: dict) -> list[str]:
    """The self-supervised components of the embedding the run clustered (none when the gate set it aside)."""
    comps = (manifest.get("settings") or {}).get("ssl") if isinstance(manifest.get("settings"), dict) else None
    return [str(c) for c in comps] if isinstance(comps, (list, tuple)) and not set_aside(manifest) else []


def ssl_embedding(manifest: dict, dims: bool = False) -> str:
    """The self-supervised embedding the run (or prediction) clustered, in words: ``the self-supervised embedding
    (contrastive)``, ``TEMI's embedding (cluster probabilities)``; ``""`` when it clustered the frozen features.
    ``dims``: with its width when the ``ssl`` record has it (``(contrastive; 96 dimensions)``)."""
    comps = _ssl_components(manifest)
    if not comps:
        return ""
    ssl = manifest.get("ssl") if isinstance(manifest.get("ssl"), dict) else {}
    dim = ssl.get("embedding_dim") if dims else None
    width = f"; {dim} dimensions" if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else ""
    if comps == [TEMI]:
        return f"TEMI's embedding (cluster probabilities{width})"
    return f"the self-supervised embedding ({','.join(comps)}{width})"


def silhouette_space(manifest: dict) -> dict:
    """Where the silhouette of the run (or prediction) of ``manifest`` was taken.

    Returns ``{"space", "on", "note"}``: ``space`` one of ``features``, ``umap``, ``ssl``, ``ssl+umap``; ``on``
    the space in words; ``note`` the one line that says it is not comparable with a run on the frozen features'
    PCA (``None`` for ``features``), as the terminal prints it.
    """
    settings = _settings(manifest)
    umap = "umap" in str(settings.get("reduce") or "")
    comps, ssl_on = _ssl_components(manifest), ssl_embedding(manifest)
    if not (umap or comps):
        on = "the frozen backbone features" if settings.get("pca") == 0 else "the PCA of the frozen backbone features"
        return {"space": "features", "on": on, "note": None}
    if not comps:
        on, why, other = "the UMAP embedding", "whose clumps tend to raise it", "a PCA run's"
    elif not umap:
        on, why, other = (ssl_on, "trained to separate the clusters, which tends to raise it",
                          "that of a run without --self-supervised")
    else:
        on, why, other = (f"the UMAP embedding of {ssl_on}", "whose training and clumps tend to raise it",
                          "that of a PCA run without --self-supervised")
    return {"space": "ssl+umap" if comps and umap else ("ssl" if comps else "umap"), "on": on,
            "note": f"silhouette on {on}, {why}: not comparable with {other}"}


def _number(value) -> str | None:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gate_figures(gate) -> str:
    """The ``--ssl-gate`` record's criteria on both sides, briefly: ``"SSL vs frozen: stability 0.891 vs 0.965,
    kNN agreement 0.941 vs 0.943"`` (the SSL stability of a several-headed model is the smaller of the subsample
    stability and the heads' agreement: named first, the other given); ``""`` when the record has none."""
    if not isinstance(gate, dict) or not isinstance(gate.get("ssl"), dict) or not isinstance(gate.get("frozen"), dict):
        return ""
    ssl, frozen, parts = gate["ssl"], gate["frozen"], []
    for key, name in (("stability", "stability"), ("knn_agreement", "kNN agreement")):
        a, b = _number(ssl.get(key)), _number(frozen.get(key))
        if a is None or b is None:
            continue
        heads, sub = _number(ssl.get("head_agreement")), _number(ssl.get("subsample_stability"))
        if key == "stability" and heads is not None and sub is not None:  # the smaller of the two, named
            a += f" (heads' agreement; subsamples {sub})" if heads == a else f" (subsamples; heads' agreement {heads})"
        parts.append(f"{name} {a} vs {b}")
    return "SSL vs frozen: " + ", ".join(parts) if parts else ""


def ssl_comparison(manifest: dict) -> str | None:
    """What a run's record compares, label-free, between the frozen features and its self-supervised embedding
    (the ``--ssl-gate`` figures), or that it compares nothing; ``None`` for a run without ``--self-supervised``."""
    ssl = manifest.get("ssl")
    gate = ssl.get("gate") if isinstance(ssl, dict) else None
    if figures := gate_figures(gate):
        did = "kept the embedding" if gate.get("kept") is True else "set it aside"
        return (f"Label-free comparison with the frozen features (--ssl-gate, which {did}): {figures} "
                "(manifest.json ssl.gate).")
    if not (isinstance(ssl, dict) or _ssl_components(manifest)):
        return None
    return ("No label-free comparison with the frozen features is recorded: --ssl-gate measures one (the "
            "stability and kNN agreement of both) and keeps the embedding only when it is at least as good.")
