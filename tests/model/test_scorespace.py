"""Which space the silhouette was taken in (brainclust.model.scorespace): one rule for the terminal summary,
metrics.json and the report. A walk's --self-supervised all printed silhouette 0.586 against 0.280 without it
while NMI fell; nothing said the 0.586 was measured in the learned embedding."""

from __future__ import annotations

from brainclust.model.scorespace import gate_figures, silhouette_space, ssl_comparison

ALL = ["contrastive", "rotation", "joint", "refine"]
GATE = {"kept": False, "rule": "keep iff ...", "frozen": {"stability": 0.9649, "knn_agreement": 0.943},
        "ssl": {"stability": 0.8906, "knn_agreement": 0.941}}


def test_each_space_is_named_and_only_the_frozen_features_need_no_caveat():
    plain = silhouette_space({"settings": {"reduce": "pca", "pca": 50, "ssl": []}})
    assert plain == {"space": "features", "on": "the PCA of the frozen backbone features", "note": None}
    umap = silhouette_space({"settings": {"reduce": "umap"}})
    assert umap["space"] == "umap" and umap["note"] == ("silhouette on the UMAP embedding, whose clumps tend to "
                                                        "raise it: not comparable with a PCA run's")
    auto = {"settings": {"reduce": "pca"}, "auto": {"chosen": {"reduce": "pca+umap"}}}  # --auto chose UMAP
    assert silhouette_space(auto)["space"] == "umap"
    ssl = silhouette_space({"settings": {"reduce": "pca", "ssl": ALL}})
    assert ssl["space"] == "ssl" and "contrastive,rotation,joint,refine" in ssl["on"]
    assert ssl["note"].startswith("silhouette on the self-supervised embedding")
    assert ssl["note"].endswith("not comparable with that of a run without --self-supervised")
    temi = silhouette_space({"settings": {"reduce": "pca+umap", "ssl": ["temi"]}})
    assert temi["space"] == "ssl+umap" and "TEMI's embedding (cluster probabilities)" in temi["note"]
    assert "PCA run without --self-supervised" in temi["note"]


def test_an_embedding_the_gate_set_aside_is_not_the_space():
    # a run before 2026-12-07 recorded no components when the gate set the stage aside
    assert silhouette_space({"settings": {"reduce": "pca", "ssl": []}, "ssl": {"gate": GATE}})["space"] == "features"
    # now the request stays in the settings, and the run's (or a prediction's) ssl record says it was not used
    for ssl in ({"components": ALL, "kept": False, "gate": GATE}, {"kept": False}, {"gate": GATE}):
        assert silhouette_space({"settings": {"reduce": "pca", "ssl": ALL}, "ssl": ssl})["space"] == "features"
    assert silhouette_space({"settings": {"reduce": "pca", "ssl": ALL}, "ssl": {"kept": True}})["space"] == "ssl"


def test_the_gates_figures_of_both_sides_briefly():
    assert gate_figures(GATE) == "SSL vs frozen: stability 0.891 vs 0.965, kNN agreement 0.941 vs 0.943"
    heads = {**GATE, "ssl": {"stability": 0.42, "subsample_stability": 0.998, "head_agreement": 0.42,
                             "knn_agreement": 0.98}}
    assert gate_figures(heads).startswith("SSL vs frozen: stability 0.420 (heads' agreement; subsamples 0.998) vs")
    for damaged in (None, {"kept": False}, {"ssl": "x", "frozen": {}}, {"ssl": {"stability": True}, "frozen": {}}):
        assert gate_figures(damaged) == ""


def test_the_label_free_comparison_is_shown_when_recorded_and_missed_when_not():
    kept = {"settings": {"ssl": ALL}, "ssl": {"gate": {**GATE, "kept": True}}}
    assert ssl_comparison(kept).startswith("Label-free comparison with the frozen features (--ssl-gate, which kept "
                                           "the embedding): SSL vs frozen: stability 0.891 vs 0.965")
    assert ssl_comparison({"settings": {"ssl": ALL}, "ssl": {"mode": "head"}}).startswith(
        "No label-free comparison with the frozen features is recorded: --ssl-gate measures one")
    assert ssl_comparison({"settings": {"ssl": []}}) is None
