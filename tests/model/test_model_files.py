"""A saved model folder is untrusted input: every structural tampering gives a ModelFileError naming the file.

Also: degenerate input (identical, blank, constant images; duplicates) gives a one-line error or a
clean result, never NaN in metrics.json / manifest.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from brainclust import pipeline
from brainclust.errors import InputError, ModelFileError, ParameterError

from conftest import make_image, two_group_images

BACKBONE = "pixels@16"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished run per method (dbscan, kmeans, gmm, hierarchical) on tiny synthetic images."""
    root = tmp_path_factory.mktemp("runs")
    data = two_group_images(root / "data")
    out = {}
    for method in ("hierarchical", "kmeans", "gmm", "dbscan"):
        pipeline.run(data, root / method, backbone=BACKBONE, k=2, method=method, pca=5,
                     cache_dir=str(root / "cache"))
        out[method] = root / method
    out["data"] = data
    return out


def _edit_json(path, fn):
    info = json.loads(path.read_text())
    path.write_text(json.dumps(fn(info)))


def _set(section, key, value):
    def fn(info):
        info[section][key] = value
        return info
    return fn


def _drop(section, key=None):
    def fn(info):
        if key is None:
            del info[section]
        else:
            del info[section][key]
        return info
    return fn


def _edit_npz(path, fn):
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data = fn(data)
    path.unlink()
    np.savez(path, **data)


def _npz_set(key, value_of):
    def fn(data):
        data[key] = value_of(data)
        return data
    return fn


def _npz_drop(key):
    def fn(data):
        del data[key]
        return data
    return fn


def _switch_method(method):
    def fn(data):
        params = json.loads(str(data["params"]))
        params["method"] = method
        data["params"] = np.asarray(json.dumps(params))
        return data
    return fn


CONFIG = "config.json"
CLUSTER = "cluster.npz"
PCA = "pca.npz"

#: (id, method of the run, file under model/, tampering, file the message must name)
TAMPERINGS = [
    ("config-list", "hierarchical", CONFIG, lambda p: p.write_text("[]"), CONFIG),
    ("config-null", "hierarchical", CONFIG, lambda p: p.write_text("null"), CONFIG),
    ("config-empty", "hierarchical", CONFIG, lambda p: p.write_text("{}"), CONFIG),
    ("config-not-json", "hierarchical", CONFIG, lambda p: p.write_text("{not json"), CONFIG),
    ("no-settings", "hierarchical", CONFIG, lambda p: _edit_json(p, _drop("settings")), CONFIG),
    ("no-reducer-step", "kmeans", CONFIG,
     lambda p: _edit_json(p, lambda i: {**i, "steps": [e for e in i["steps"] if e["name"] != "reducer"]}), CONFIG),
    ("settings-list", "hierarchical", CONFIG, lambda p: _edit_json(p, lambda i: {**i, "settings": []}), CONFIG),
    ("no-backbone", "hierarchical", CONFIG, lambda p: _edit_json(p, _drop("backbone")), CONFIG),
    ("no-method", "hierarchical", CONFIG, lambda p: _edit_json(p, _drop("settings", "method")), CONFIG),
    ("method-int", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "method", 3)), CONFIG),
    ("method-unknown", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "method", "magic")),
     CONFIG),
    ("pca-str", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "pca", "50")), CONFIG),
    ("pca-one-float", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "pca", 1.0)), CONFIG),
    ("k-str", "kmeans", CONFIG, lambda p: _edit_json(p, _set("settings", "k", "four")), CONFIG),
    ("bids-unknown", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "bids", "maybe")), CONFIG),
    ("bids-bool", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "bids", False)), CONFIG),
    ("k-negative", "kmeans", CONFIG, lambda p: _edit_json(p, _set("settings", "k", -3)), CONFIG),
    ("seed-float", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "seed", 0.5)), CONFIG),
    ("batch-bool", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "batch_size", True)),
     CONFIG),
    ("clip-three", "hierarchical", CONFIG,
     lambda p: _edit_json(p, _set("settings", "clip_percentiles", [1, 2, 3])), CONFIG),
    ("clip-str", "hierarchical", CONFIG,
     lambda p: _edit_json(p, _set("settings", "clip_percentiles", "0.5,99.5")), CONFIG),
    ("backbone-name-int", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("backbone", "name", 7)), CONFIG),
    ("backbone-no-dim", "hierarchical", CONFIG, lambda p: _edit_json(p, _drop("backbone", "dim")), CONFIG),
    ("backbone-dim-wrong", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("backbone", "dim", 999)),
     "pca.npz"),
    ("config-says-kmeans", "hierarchical", CONFIG, lambda p: _edit_json(p, _set("settings", "method", "kmeans")),
     CLUSTER),
    ("cluster-method-switched", "hierarchical", CLUSTER, lambda p: _edit_npz(p, _switch_method("kmeans")),
     CLUSTER),
    ("cluster-method-to-gmm", "kmeans", CLUSTER, lambda p: _edit_npz(p, _switch_method("gmm")), CLUSTER),
    ("cluster-method-unknown", "kmeans", CLUSTER, lambda p: _edit_npz(p, _switch_method("magic")), CLUSTER),
    ("params-list", "kmeans", CLUSTER, lambda p: _edit_npz(p, _npz_set("params", lambda d: np.asarray("[]"))),
     CLUSTER),
    ("params-not-json", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("params", lambda d: np.asarray("{x"))), CLUSTER),
    ("params-missing", "kmeans", CLUSTER, lambda p: _edit_npz(p, _npz_drop("params")), CLUSTER),
    ("centers-missing", "kmeans", CLUSTER, lambda p: _edit_npz(p, _npz_drop("centers")), CLUSTER),
    ("centers-wrong-shape", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("centers", lambda d: d["centers"][:, :2])), CLUSTER),
    ("centers-too-few", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("centers", lambda d: d["centers"][:1])), CLUSTER),
    ("centers-str-dtype", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("centers", lambda d: d["centers"].astype(str))), CLUSTER),
    ("centers-nan", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("centers", lambda d: d["centers"] * np.nan)), CLUSTER),
    ("labels-float", "kmeans", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("labels", lambda d: d["labels"].astype(float))), CLUSTER),
    ("labels-short", "kmeans", CLUSTER, lambda p: _edit_npz(p, _npz_set("labels", lambda d: d["labels"][:3])),
     CLUSTER),
    ("labels-gap", "kmeans", CLUSTER, lambda p: _edit_npz(p, _npz_set("labels", lambda d: d["labels"] * 5)),
     CLUSTER),
    ("X-fit-missing", "hierarchical", CLUSTER, lambda p: _edit_npz(p, _npz_drop("X_fit")), CLUSTER),
    ("X-fit-1d", "hierarchical", CLUSTER, lambda p: _edit_npz(p, _npz_set("X_fit", lambda d: d["X_fit"][:, 0])),
     CLUSTER),
    ("X-fit-inf", "hierarchical", CLUSTER, lambda p: _edit_npz(p, _npz_set("X_fit", lambda d: d["X_fit"] + np.inf)),
     CLUSTER),
    ("levels-missing", "hierarchical", CLUSTER, lambda p: _edit_npz(p, _npz_drop("levels")), CLUSTER),
    ("levels-wrong-shape", "hierarchical", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("levels", lambda d: d["levels"][:, :3])), CLUSTER),
    ("levels-out-of-range", "hierarchical", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("levels", lambda d: d["levels"] + 7)), CLUSTER),
    ("tree-wrong-shape", "hierarchical", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("tree", lambda d: d["tree"][:2])), CLUSTER),
    ("gmm-means-wrong", "gmm", CLUSTER, lambda p: _edit_npz(p, _npz_set("means", lambda d: d["means"][:, :1])),
     CLUSTER),
    ("gmm-cov-missing", "gmm", CLUSTER, lambda p: _edit_npz(p, _npz_drop("covariances")), CLUSTER),
    ("dbscan-eps-negative", "dbscan", CLUSTER, lambda p: _edit_npz(p, _npz_set("eps", lambda d: np.asarray(-1.0))),
     CLUSTER),
    ("dbscan-core-int", "dbscan", CLUSTER,
     lambda p: _edit_npz(p, _npz_set("core", lambda d: d["core"].astype(int))), CLUSTER),
    ("cluster-not-npz", "kmeans", CLUSTER, lambda p: p.write_bytes(b"garbage"), CLUSTER),
    ("cluster-missing", "kmeans", CLUSTER, lambda p: p.unlink(), CLUSTER),
    ("pca-components-nan", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"] * np.nan)), PCA),
    ("pca-components-inf", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"] + np.inf)), PCA),
    ("pca-components-zero", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"] * 0)), PCA),
    ("pca-components-wrong-width", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"][:, :10])), PCA),
    ("pca-components-fewer", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"][:2])), PCA),
    ("pca-components-3d", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("components", lambda d: d["components"][None])), PCA),
    ("pca-mean-wrong", "hierarchical", PCA, lambda p: _edit_npz(p, _npz_set("mean", lambda d: d["mean"][:3])),
     PCA),
    ("pca-mean-nan", "hierarchical", PCA, lambda p: _edit_npz(p, _npz_set("mean", lambda d: d["mean"] * np.nan)),
     PCA),
    ("pca-n-features-wrong", "hierarchical", PCA,
     lambda p: _edit_npz(p, _npz_set("n_features_in", lambda d: np.asarray(12))), PCA),
    ("pca-mean-missing", "hierarchical", PCA, lambda p: _edit_npz(p, _npz_drop("mean")), PCA),
]


def _tampered(runs, tmp_path, method, name, tamper):
    """A copy of a run with one model file changed and its SHA-256 in ``config.json`` recorded again, so that the
    check the tampering targets is reached (a folder changed without it is refused by the hash first)."""
    from brainclust.io.atomic import file_sha256

    model = tmp_path / "run"
    shutil.copytree(runs[method], model)
    tamper(model / "model" / name)
    config = model / "model" / CONFIG
    try:
        info = json.loads(config.read_text())
    except (OSError, ValueError):  # the tampering was of config.json itself
        return model
    if isinstance(info, dict) and isinstance(info.get("sha256"), dict):
        info["sha256"] = {k: file_sha256(model / "model" / k) for k in info["sha256"]
                          if (model / "model" / k).is_file()}
        config.write_text(json.dumps(info))
    return model


def test_a_model_file_from_another_run_is_refused(runs, tmp_path):
    model = tmp_path / "mixed"
    shutil.copytree(runs["hierarchical"], model)
    (model / "model" / ".DS_Store").write_bytes(b"a file no step wrote")       # not hashed: no refusal
    assert len(pipeline.predict(model, runs["data"], cache_dir=str(tmp_path / "cache")).labels) == 12
    shutil.copy(runs["kmeans"] / "model" / CLUSTER, model / "model" / CLUSTER)
    with pytest.raises(ModelFileError, match=f"model file '.*{CLUSTER}' is not the one this model was saved with"):
        pipeline.predict(model, runs["data"], cache_dir=str(tmp_path / "cache"))
    (model / "model" / CLUSTER).unlink()
    with pytest.raises(ModelFileError, match=f"model file '.*{CLUSTER}' is missing"):
        pipeline.predict(model, runs["data"], cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("case", TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_tampered_model_gives_model_file_error_naming_the_file(runs, tmp_path, case):
    _id, method, name, tamper, named = case
    model = _tampered(runs, tmp_path, method, name, tamper)
    with pytest.raises(ModelFileError) as err:
        pipeline.predict(model, runs["data"], cache_dir=str(tmp_path / "cache"))
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_untouched_models_still_predict_their_own_images(runs, tmp_path):
    for method in ("hierarchical", "kmeans", "gmm", "dbscan"):
        res = pipeline.predict(runs[method], runs["data"], cache_dir=str(tmp_path / "cache"))
        assert len(res.labels) == 12


def test_swapped_backbone_name_is_refused(runs, tmp_path):
    model = _tampered(runs, tmp_path, "hierarchical", CONFIG,
                      lambda p: _edit_json(p, _set("backbone", "name", "pixels@32")))
    with pytest.raises(ModelFileError, match="backbone"):
        pipeline.predict(model, runs["data"], cache_dir=str(tmp_path / "cache"))


CLI_CASES = ["config-list", "no-settings", "cluster-method-switched", "centers-wrong-shape",
             "pca-components-nan", "levels-wrong-shape"]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_predict_on_tampered_model_exits_2_without_traceback(runs, tmp_path, case_id):
    _id, method, name, tamper, named = next(t for t in TAMPERINGS if t[0] == case_id)
    model = _tampered(runs, tmp_path, method, name, tamper)
    proc = subprocess.run([sys.executable, "-m", "brainclust", "predict", str(model), str(runs["data"]),
                           "--out", str(tmp_path / "pred"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert named in proc.stderr


# -- degenerate input ------------------------------------------------------------------------------
def _folder(tmp_path, arrays):
    d = tmp_path / "data"
    for i, a in enumerate(arrays):
        make_image(d / f"im{i}.png", a)
    return d


def _noise(seed, shape=(24, 24)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


DEGENERATE = {
    "identical-2": lambda: [_noise(0)] * 2,
    "identical-5": lambda: [_noise(0)] * 5,
    "all-black": lambda: [np.zeros((24, 24), np.uint8)] * 4,
    "constant-sizes": lambda: [np.full((16 + 5 * i, 20 + 3 * i), 30 * i + 10, np.uint8) for i in range(4)],
}
METHODS = ("hierarchical", "kmeans", "gmm", "dbscan", "spectral")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_images_without_variance_give_input_error(tmp_path, kind, method):
    data = _folder(tmp_path, DEGENERATE[kind]())
    with pytest.raises(InputError, match="identical features"):
        pipeline.run(data, tmp_path / "out", backbone=BACKBONE, k=2, method=method,
                     cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "spectral"])
def test_k_above_distinct_images_is_a_parameter_error(tmp_path, method):
    data = _folder(tmp_path, [_noise(0)] * 4 + [_noise(1)])
    with pytest.raises(ParameterError, match="distinct"):
        pipeline.run(data, None, backbone=BACKBONE, k=3, method=method, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("arrays, k, error, message", [
    ([_noise(i) for i in range(3)] + [_noise(0)], 4, ParameterError,
     r"^--k: 4 clusters requested but only 3 of the 4 images in '.*' have distinct contents \(identical files share "
     r"one point\); use --k 3 or fewer$"),
    ([_noise(0)] * 2, 2, InputError, r"^all 2 images have identical features"),
])
def test_k_equal_to_the_images_but_above_their_distinct_contents_fails_once(tmp_path, caplog, monkeypatch, arrays, k,
                                                                          error, message):
    """run(k=40) on 40 images, two of them copies, warned that every image would be a cluster of its own, extracted
    every image and then failed: "only 39 of the 40 images have distinct features". Now one line, before the
    extraction when two contents or more are left to cluster."""
    from brainclust.features.extractor import FeatureExtractor

    if error is ParameterError:  # refused before the extraction
        monkeypatch.setattr(FeatureExtractor, "fit_extract", lambda *a, **kw: pytest.fail("extracted"))
    data = _folder(tmp_path, arrays)
    with caplog.at_level("WARNING", logger="brainclust"), pytest.raises(error, match=message):
        pipeline.run(data, None, backbone=BACKBONE, k=k, cache_dir=str(tmp_path / "cache"))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def _no_nan(path):
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "dbscan"])
def test_duplicates_mixed_with_distinct_images_give_clean_json(tmp_path, method):
    data = _folder(tmp_path, [_noise(0)] * 5 + [_noise(1), _noise(2), 255 - _noise(3)] + [_noise(4)] * 3)
    pipeline.run(data, tmp_path / "out", backbone=BACKBONE, k=2, method=method, cache_dir=str(tmp_path / "cache"))
    for name in ("metrics.json", "manifest.json"):
        _no_nan(tmp_path / "out" / name)


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "dbscan"])
def test_two_images_give_clean_json(tmp_path, method):
    data = _folder(tmp_path, [_noise(0), _noise(1)])
    pipeline.run(data, tmp_path / "out", backbone=BACKBONE, k=2, method=method, cache_dir=str(tmp_path / "cache"))
    for name in ("metrics.json", "manifest.json"):
        _no_nan(tmp_path / "out" / name)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pca"]["solver"] == "full"


@pytest.mark.parametrize("n, k", [(2, 2), (3, 2), (4, 3)])
def test_spectral_on_too_few_images_is_a_parameter_error(tmp_path, n, k):
    data = _folder(tmp_path, [_noise(i) for i in range(n)])
    with pytest.raises(ParameterError, match="spectral: needs at least k \\+ 2"):
        pipeline.run(data, None, backbone=BACKBONE, k=k, method="spectral", cache_dir=str(tmp_path / "cache"))


@pytest.mark.slow
def test_cli_identical_images_exit_2_one_line(tmp_path):
    data = _folder(tmp_path, [_noise(0)] * 2)
    proc = subprocess.run([sys.executable, "-m", "brainclust", "run", str(data), "--out", str(tmp_path / "o"),
                           "--backbone", BACKBONE, "--k", "2", "--cache-dir", str(tmp_path / "cache"),
                           "--no-report"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "identical features" in proc.stderr


def test_where_to_cache_and_how_many_workers_come_from_this_machine_never_from_the_folder(runs, tmp_path,
                                                                                          monkeypatch):
    """A model folder from elsewhere (or crafted) must not choose the cache folder (here: inside the input) or
    start 64 processes: ``predict`` uses what it is given, else the defaults."""
    from brainclust.model.composite import BrainClusterModel

    planted = runs["data"] / ".planted_cache"

    def plant(info):
        for step in info["steps"]:
            if step["name"] == "extractor":
                step["params"].update(cache_dir=str(planted), num_workers=64, batch_size=3, device="cuda")
            if step["name"] == "checks":
                step["params"].update(cache_dir=str(planted), workers=64)
        return info
    model = _tampered(runs, tmp_path, "hierarchical", CONFIG, lambda p: _edit_json(p, plant))
    monkeypatch.setenv("BRAINCLUST_CACHE", str(tmp_path / "env_cache"))
    loaded = BrainClusterModel.load(model)
    ex, checks = loaded.extractor_, loaded.step("checks")
    assert (ex.cache_dir, ex.num_workers, ex.batch_size, ex.device) == (None, None, 32, "cpu")
    assert (checks.cache_dir, checks.workers) == (None, None)
    res = pipeline.predict(model, runs["data"], tmp_path / "pred", workers=0)
    assert len(res.labels) == 12 and not planted.exists() and (tmp_path / "env_cache").is_dir()
