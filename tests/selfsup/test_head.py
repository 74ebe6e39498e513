"""`head` mode on synthetic view features: learning, determinism, persistence, refinement's stop rule."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from sklearn.metrics import normalized_mutual_info_score as nmi  # noqa: E402

from brainclust.errors import ModelFileError, ParameterError  # noqa: E402
from brainclust.selfsup import COMPONENTS, SelfSupervisedHead, parse_components  # noqa: E402
from brainclust.selfsup.refine import confident_targets, kmeans_labels  # noqa: E402
from brainclust.selfsup.views import needed  # noqa: E402


def blob_views(n=120, d=40, k=3, seed=0, sep=4.0):
    """Features of k well-separated groups; each view is the image's features plus small noise.

    The rotated views get a fixed offset per angle, so the rotation is predictable.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    base = rng.normal(size=(k, d))[y] * sep + rng.normal(size=(n, d))
    views = {v: base + 0.2 * rng.normal(size=(n, d)) for v in needed(COMPONENTS, True)}
    views["identity"] = base
    for r, v in enumerate(("rot90", "rot180", "rot270"), start=1):
        views[v] = base + r * 3.0 * rng.normal(size=(1, d)) + 0.2 * rng.normal(size=(n, d))
    return views, y


FAST = dict(epochs=8, n_heads=2, hidden=64, embed_dim=16, batch_size=64, max_rounds=3)


def test_parse_components():
    assert parse_components("all") == COMPONENTS
    assert parse_components("none") == () and parse_components(None) == ()
    assert parse_components("refine,contrastive") == ("contrastive", "refine")
    with pytest.raises(ParameterError, match="unknown component 'rotate'"):
        parse_components("contrastive,rotate")


@pytest.mark.parametrize("comps", [("contrastive",), ("rotation",), ("joint",), ("contrastive", "rotation"),
                                   COMPONENTS])
def test_each_component_alone_or_combined_keeps_the_groups(comps):
    views, y = blob_views()
    head = SelfSupervisedHead(components=comps, n_clusters=3, random_state=0, **FAST).fit(views)
    assert head.embedding_.shape == (120, FAST["n_heads"] * FAST["embed_dim"])
    assert np.all(np.isfinite(head.embedding_))
    assert nmi(y, kmeans_labels(head.embedding_, 3, 0)) > 0.9
    warm = FAST["epochs"] // 2 if {"contrastive", "rotation"} & set(comps) else 0  # joint starts after warm-up
    for key in [c for c in comps if c != "refine"]:
        assert len(head.history_["loss"][key]) == FAST["epochs"] - (warm if key == "joint" else 0)


def test_losses_go_down():
    views, _ = blob_views()
    head = SelfSupervisedHead(components=("contrastive", "rotation"), n_clusters=3, random_state=1,
                              **{**FAST, "epochs": 20}).fit(views)
    for key in ("contrastive", "rotation"):
        curve = head.history_["loss"][key]
        assert np.mean(curve[-3:]) < np.mean(curve[:3])
    assert head.history_["rotation_train_accuracy"] > 0.9


def test_same_seed_same_embedding_other_seed_differs():
    views, _ = blob_views()
    a = SelfSupervisedHead(components=COMPONENTS, n_clusters=3, random_state=7, **FAST).fit(views)
    b = SelfSupervisedHead(components=COMPONENTS, n_clusters=3, random_state=7, **FAST).fit(views)
    c = SelfSupervisedHead(components=COMPONENTS, n_clusters=3, random_state=8, **FAST).fit(views)
    assert np.array_equal(a.embedding_, b.embedding_)
    assert a.history_ == b.history_
    assert not np.allclose(a.embedding_, c.embedding_)


def test_save_load_round_trip(tmp_path):
    views, _ = blob_views()
    head = SelfSupervisedHead(components=COMPONENTS, n_clusters=3, random_state=0, **FAST).fit(views)
    head.save(tmp_path)
    assert (tmp_path / "ssl_head.safetensors").is_file() and (tmp_path / "ssl_head.json").is_file()
    loaded = SelfSupervisedHead.load(tmp_path)
    assert loaded.views_ == head.views_
    np.testing.assert_allclose(loaded.transform(views), head.embedding_, atol=1e-6)
    (tmp_path / "ssl_head.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="missing or damaged"):
        SelfSupervisedHead.load(tmp_path)


def test_refinement_converges_on_clear_groups_and_records_agreement():
    views, _ = blob_views(sep=6.0)
    head = SelfSupervisedHead(components=COMPONENTS, n_clusters=3, random_state=0, tol=0.95,
                              **{**FAST, "max_rounds": 5}).fit(views)
    rounds = head.history_["refine"]
    assert rounds[0]["round"] == 0 and rounds[0]["nmi_to_previous"] is None
    assert all(0 <= r["nmi_to_previous"] <= 1 for r in rounds[1:])
    assert rounds[-1]["nmi_to_previous"] >= 0.95
    assert rounds[-1]["stop"].startswith("converged")
    assert len(rounds) <= 6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_stops_by_its_rule(seed, caplog):
    """Either the last round reached tol (and earlier ones did not), or the cap was reached, which the log says
    (it was in the manifest only: a walk's refinement stopped at 5 rounds, NMI 0.945, without a word)."""
    rng = np.random.default_rng(seed)
    views = {v: rng.normal(size=(60, 12)) for v in needed(COMPONENTS, True)}  # no structure
    with caplog.at_level("WARNING", logger="brainclust"):
        head = SelfSupervisedHead(components=("contrastive", "refine"), n_clusters=4, random_state=seed, tol=0.999,
                                  **{**FAST, "max_rounds": 2}).fit(views)
    rounds = head.history_["refine"]
    agreements = [r["nmi_to_previous"] for r in rounds[1:]]
    assert all(a < 0.999 for a in agreements[:-1])
    said = "refinement stopped after 2 rounds without converging" in caplog.text
    if agreements[-1] >= 0.999:
        assert rounds[-1]["stop"].startswith("converged") and not said
    else:
        assert len(rounds) == 3 and rounds[-1]["stop"] == "max_rounds=2 reached" and said


def test_confident_targets_keep_the_nearest_fraction_per_cluster():
    E = np.array([[1, 0], [0.9, 0.1], [0.5, 0.5], [0, 1], [0.1, 0.9], [0.45, 0.55]], float)
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = confident_targets(E, labels, 2 / 3)
    assert t.tolist() == [0, 0, -1, 1, 1, -1]


def test_validation_errors():
    views, _ = blob_views(n=30)
    with pytest.raises(ParameterError, match="epochs"):
        SelfSupervisedHead(epochs=0).fit(views)
    with pytest.raises(ParameterError, match="view 'rot90'"):
        SelfSupervisedHead(components=("rotation",)).fit({k: v for k, v in views.items() if k != "rot90"})
    with pytest.raises(ParameterError, match="one row per image"):
        SelfSupervisedHead(components=("contrastive",)).fit({**views, "hflip": views["hflip"][:5]})


def test_input_pca_above_the_exact_limit_matches_the_exact_one(monkeypatch):
    from brainclust.selfsup import common as train

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 6)) * np.arange(6, 0, -1)) @ rng.normal(size=(6, 80)) + 0.01 * rng.normal(size=(300, 80))
    exact = train.input_pca(X, 5, whiten_power=0.5)
    monkeypatch.setattr(train, "EXACT_PCA_MAX_DIM", 10)
    approx = train.input_pca(X, 5, whiten_power=0.5)
    np.testing.assert_allclose(approx[0], exact[0])
    np.testing.assert_allclose(np.abs(approx[1] @ exact[1].T), np.eye(5), atol=1e-6)  # same components
    np.testing.assert_allclose(approx[1], exact[1], atol=1e-6)  # same signs
    np.testing.assert_allclose(approx[2], exact[2], rtol=1e-6)


def test_appearance_views_parse_and_refuse_rotations():
    from brainclust.selfsup.views import APPEARANCE_VIEWS, appearance

    assert appearance(None) == APPEARANCE_VIEWS
    assert appearance("hflip,intensity") == ("identity", "hflip", "intensity")
    assert appearance(["intensity", "identity", "intensity", "noise@2"]) == ("identity", "intensity", "noise@2")
    for bad, match in (("rot90", "rotation"), ("identity", "besides identity"), ("", "besides identity"),
                       ("blur", "blur"), ("noise@x", "integer")):
        with pytest.raises(ParameterError, match=match):
            appearance(bad)


def test_head_trains_on_the_chosen_appearance_views(tmp_path):
    views, y = blob_views(n=60)
    views["intensity"] = views["identity"] + 0.2 * np.random.default_rng(1).normal(size=views["identity"].shape)
    without_strong = {k: v for k, v in views.items() if k != "strong"}
    head = SelfSupervisedHead(components=("contrastive", "joint"), n_clusters=3,
                              appearance_views=("hflip", "intensity"), **FAST).fit(without_strong)
    assert head.views_ == ["identity", "hflip", "intensity"]
    assert nmi(y, kmeans_labels(head.embedding_, 3, 0)) > 0.9
    with pytest.raises(ParameterError, match="view 'strong'"):  # the default views need 'strong'
        SelfSupervisedHead(components=("contrastive",), n_clusters=3, **FAST).fit(without_strong)
    head.save(tmp_path)
    back = SelfSupervisedHead.load(tmp_path)
    assert back.params()["appearance_views"] == ["identity", "hflip", "intensity"]
    np.testing.assert_allclose(back.transform(without_strong), head.transform(without_strong), atol=1e-6)


def test_training_logs_its_progress_in_a_batch_jobs_log(monkeypatch, caplog):
    """Training had no progress at all: a CPU fine-tune ran 10 minutes without a line (a new user's walk). Without
    a terminal the CLI logs progress lines; here every update is due, and the last count is logged at the end."""
    import logging

    from brainclust import progress

    monkeypatch.setattr(progress, "LOG_WITHOUT_TERMINAL", True)
    monkeypatch.setattr(progress, "SHOW_BY_DEFAULT", None)  # as the CLI without -q sets it
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    views, _ = blob_views()
    with caplog.at_level(logging.INFO, logger="brainclust.progress"):
        SelfSupervisedHead(components=("contrastive", "refine"), n_clusters=3, random_state=0,
                           **{**FAST, "max_rounds": 1}).fit(views)
    lines = [r.getMessage() for r in caplog.records]
    total, epochs = FAST["epochs"] * 2, FAST["epochs"]  # 120 images in batches of 64
    # each bar says what trains (which head, which refinement round) and the epoch: 2 heads and 2 more bars
    # all read "ssl training" (a walk saw 18 such bars with nothing to tell them apart)
    for head in (1, 2):
        assert f"ssl head {head}/2, epoch {epochs}/{epochs}: {total} of {total} batch (100 %)" in "\n".join(lines)
        assert any(ln.startswith(f"ssl head {head}/2, epoch 1/{epochs}: 2 of {total} batch") for ln in lines)
        assert any(ln.startswith(f"ssl refinement round 1/1, head {head}/2, epoch ") for ln in lines)
    assert not any(ln.startswith("ssl training") for ln in lines)


def test_temi_training_shows_progress(monkeypatch, caplog):
    """TEMI trained its heads (200 epochs by default) without any progress: now a bar like the other trainers'."""
    import logging

    from brainclust import progress
    from brainclust.selfsup.temi import TEMIHead

    monkeypatch.setattr(progress, "LOG_WITHOUT_TERMINAL", True)
    monkeypatch.setattr(progress, "SHOW_BY_DEFAULT", None)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    X = blob_views()[0]["identity"]  # 120 images: batches of 32, 4 steps per epoch
    with caplog.at_level(logging.INFO, logger="brainclust.progress"):
        TEMIHead(n_clusters=3, epochs=3, n_heads=2, hidden=16, random_state=0).fit(X)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("temi: 2 heads, epoch 1/3: 1 of 12 step")
    assert "temi: 2 heads, epoch 3/3: 12 of 12 step (100 %)" in "\n".join(lines)
    with caplog.at_level(logging.INFO, logger="brainclust.progress"):
        caplog.clear()
        TEMIHead(n_clusters=3, epochs=3, n_heads=2, hidden=16, max_steps=5, random_state=0).fit(X)
    assert caplog.records[-1].getMessage().startswith("temi: 2 heads, epoch 2/3: 5 of 5 step (100 %)")  # the cap
