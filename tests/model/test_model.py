"""BrainClusterModel: fit -> predict -> scores, one save/load protocol with a versioned manifest, open step list."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.base import TransformerMixin

from brainclust.core.params import ArrayStep
from brainclust.errors import ModelFileError, NotFittedError, ParameterError
from brainclust.io.outputs import MODEL_FORMAT, MODEL_VERSION, RunFolder, meta_columns, write_run_files
from brainclust.io.scan import ImageRecord, scan
from brainclust.model.composite import BrainClusterModel
from brainclust.model.config import RunConfig, build_steps

from conftest import two_group_images


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return scan(two_group_images(tmp_path_factory.mktemp("data"))).records


def _model(tmp_path, **settings):
    cfg = RunConfig(**{"backbone": "pixels@16", "k": 2, "pca": 5, "workers": 0, "progress": False,
                       "cache_dir": str(tmp_path / "c"), **settings})
    return BrainClusterModel(build_steps(cfg))


@pytest.mark.parametrize("settings", [{}, {"method": "kmeans", "outliers": "auto"}, {"k": "auto"}])
def test_fit_predict_save_load(records, tmp_path, settings):
    model = _model(tmp_path, **settings).fit(records)
    assert [n for n, _ in model.steps_] == ["extractor", "checks", "reducer", "clusterer"]
    assert model.embedding_.shape == (12, 5) and len(model.records_) == 12 and model.skipped_ == []
    assert len(set(model.labels_.tolist()) - {-1}) == 2
    scores = model.scores([r.path for r in model.records_])
    assert scores["n_images"] == 12 and ("k_selection" in scores) == (settings.get("k") == "auto")
    got = model.predict(records)
    assert np.mean(got.labels == model.labels_) >= 0.9  # new images go to their cluster
    model.save(tmp_path / "run")
    info = json.loads((RunFolder(tmp_path / "run").model_config).read_text())
    assert (info["format"], info["version"]) == (MODEL_FORMAT, MODEL_VERSION)
    assert [e["name"] for e in info["steps"]] == ["extractor", "checks", "reducer", "clusterer"]
    assert info["steps"][0]["class"] == "FeatureExtractor" and info["steps"][0]["params"]["backbone"] == "pixels@16"
    back = BrainClusterModel.load(tmp_path / "run")
    assert [type(s).__name__ for _, s in back.steps_] == [type(s).__name__ for _, s in model.steps_]
    np.testing.assert_array_equal(back.predict(records).labels, got.labels)
    np.testing.assert_array_equal(back.clusterer_.labels_, model.labels_)


@pytest.mark.parametrize("method", ["hierarchical", "gmm"])
def test_the_clusterer_keeps_the_models_embedding_without_a_copy(records, tmp_path, method):
    """The clusterers copy a writeable array they keep (editing the caller's array must not move predict); the
    model's own embedding is handed over read-only and kept once (a copy is 400 MB at 1M images x 50)."""
    model = _model(tmp_path, method=method).fit(records)
    kept = model.clusterer_.X_fit_
    assert np.shares_memory(kept, model.embedding_) and not kept.flags.writeable
    assert model.embedding_.flags.writeable  # the model's own array stays the model's


def test_an_unfitted_model_and_a_bad_step_list_are_refused(records, tmp_path):
    model = _model(tmp_path)
    with pytest.raises(NotFittedError):
        model.predict(records)
    with pytest.raises(NotFittedError):
        model.scores()
    steps = build_steps(RunConfig(backbone="pixels@16", k=2))
    with pytest.raises(ParameterError, match="'extractor' first and 'clusterer' last"):
        BrainClusterModel(steps[::-1]).fit(records)


class Centre(TransformerMixin, ArrayStep):
    """A new kind of middle step: subtract the training mean."""

    _fitted_attribute = "mean_"

    def fit(self, X, y=None):
        self.mean_ = np.asarray(X).mean(axis=0)
        return self

    def transform(self, X):
        self.check_is_fitted()
        return np.asarray(X) - self.mean_


def test_the_step_list_is_open_to_new_middle_steps(records, tmp_path):
    steps = build_steps(RunConfig(backbone="pixels@16", k=2, pca=5, workers=0, cache_dir=str(tmp_path / "c")))
    model = BrainClusterModel([*steps[:-1], ("centre", Centre()), steps[-1]]).fit(records)
    assert [n for n, _ in model.steps_] == ["extractor", "checks", "reducer", "centre", "clusterer"]
    np.testing.assert_allclose(model.embedding_.mean(axis=0), 0.0, atol=1e-9)
    assert "centre" in model.timings_
    np.testing.assert_allclose(model.predict(records).embedding.mean(axis=0), 0.0, atol=1e-9)
    assert model.step("ssl") is None


def test_records_carry_metadata_columns_into_assignments(tmp_path):
    recs = [ImageRecord(path=f"a{i}.png", abspath=f"/x/a{i}.png", name=f"a{i}.png", type="png", size=1, width=2,
                        height=2, sha256="ab" * 32, meta={"subject": f"s{i % 2}", "site": "x\ty"})
            for i in range(3)]
    from brainclust.io.outputs import assignment_rows

    rows = assignment_rows(recs, np.array([0, 1, 0]), None)
    assert meta_columns(recs) == ["subject", "site"]
    folder = RunFolder(tmp_path)
    write_run_files(folder, rows, False, {"n_images": 3}, recs, np.zeros((3, 2)), None, meta_columns(recs))
    header, first = folder.assignments.read_text().splitlines()[:2]
    assert header.endswith(",cluster,subject,site") and first.endswith(",0,s0,x\\x09y")  # escaped like names


def test_a_scan_result_or_a_model_folder_is_one_line_naming_the_fix(records, tmp_path):
    model = _model(tmp_path).fit(records)
    model.save(tmp_path / "run")
    scanned = scan(tmp_path / "run")  # any ScanResult: what scan(FOLDER) returns instead of its .records
    with pytest.raises(ParameterError, match=r"got a ScanResult \('.*run'\): pass its \.records, as in scan\("):
        model.predict(scanned)
    with pytest.raises(ModelFileError, match=r"'.*run/model' looks like the model/ folder of a run: pass the run "
                                             r"folder '.*run', not its model/ folder$"):
        BrainClusterModel.load(tmp_path / "run" / "model")
    shutil.copytree(tmp_path / "run" / "model", tmp_path / "model_only")  # a copy: its parent is no run
    with pytest.raises(ModelFileError, match=r"looks like the model/ folder of a run: put it in a folder of its own "
                                             r"under the name model/ \(DIR/model/config.json\) and pass DIR$"):
        BrainClusterModel.load(tmp_path / "model_only")
    shutil.copytree(tmp_path / "model_only", tmp_path / "DIR" / "model")  # as said: it loads
    assert BrainClusterModel.load(tmp_path / "DIR") is not None
    with pytest.raises(ModelFileError, match="is not a finished brainclust run"):  # not a run at all
        BrainClusterModel.load(tmp_path)


def test_a_loaded_model_keeps_the_parameters_of_its_reduction(records, tmp_path):
    model = _model(tmp_path, pca=50, seed=3).fit(records)  # 12 images: 50 components asked, 12 fitted
    model.save(tmp_path / "run")
    fitted, back = model.step("reducer"), BrainClusterModel.load(tmp_path / "run").step("reducer")
    assert back.n_components_ == fitted.n_components_ < 50
    assert back.get_params() == fitted.get_params()  # was n_components=12, random_state=None
    assert back.get_params()["n_components"] == 50 and back.get_params()["random_state"] == 3
    info = json.loads(RunFolder(tmp_path / "run").model_config.read_text())
    next(e for e in info["steps"] if e["name"] == "reducer")["params"]["svd_solver"] = "exact"
    RunFolder(tmp_path / "run").model_config.write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match=r"step 'reducer': svd_solver: must be one of auto, full, randomized"):
        BrainClusterModel.load(tmp_path / "run")
    for params in ({"svd_solver": "auto", "n_components": 3}, {"n_components": 0}):  # the file holds 12 components
        next(e for e in info["steps"] if e["name"] == "reducer")["params"].update(params)
        RunFolder(tmp_path / "run").model_config.write_text(json.dumps(info))
        with pytest.raises(ModelFileError, match=rf"step 'reducer': n_components is {params['n_components']} but "
                                                 r"'pca.npz' holds 12 components$"):
            BrainClusterModel.load(tmp_path / "run")


def test_a_loaded_model_predicts_and_says_in_one_line_that_it_has_no_scores(records, tmp_path):
    _model(tmp_path).fit(records).save(tmp_path / "run")
    back = BrainClusterModel.load(tmp_path / "run")
    assert len(back.predict(records).labels) == 12
    with pytest.raises(NotFittedError, match=r"a model read by load\(\) keeps no rows of its fit .* metrics\.json$"):
        back.scores()  # was AttributeError: 'BrainClusterModel' object has no attribute 'embedding_'


@pytest.mark.parametrize("steps, message", [
    ("abc", r"must be a list of \(name, step\) pairs, got 'abc'"),  # was ValueError: not enough values to unpack
    ([("extractor", 3), ("clusterer", 4)], r"step 'extractor' must be a brainclust step .* got int"),  # AttributeError
])
def test_a_step_list_of_other_things_is_one_line(records, steps, message):
    with pytest.raises(ParameterError, match=rf"^model steps: {message}$"):
        BrainClusterModel(steps).fit(records)


def test_save_into_another_runs_folder_or_a_file_is_refused_in_one_line(records, tmp_path):
    model = _model(tmp_path).fit(records)
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "assignments.csv").write_text("path,cluster\n")  # another run's outputs: save mixed the two runs
    with pytest.raises(ParameterError, match=r"^save: '.*other_run' holds 'assignments.csv', not only the model/ of "
                                             r"an earlier save: .* save into a new or empty folder$"):
        model.save(other)
    assert not (other / "model").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ParameterError, match=r"^save: '.*f' is a file; give a folder"):
        model.save(tmp_path / "f")  # was NotADirectoryError
    model.save(tmp_path / "mine")
    model.save(tmp_path / "mine")  # an earlier save of its own is replaced
    assert len(BrainClusterModel.load(tmp_path / "mine").predict(records).labels) == 12


def test_get_params_deep_gives_the_steps_and_their_parameters_as_a_pipeline_does(tmp_path):
    """get_params(deep=True) gave only ``steps``; scikit-learn's Pipeline gives ``step`` and ``step__param`` too."""
    from sklearn.base import clone

    from brainclust.cluster.methods import Clusterer

    model = _model(tmp_path)
    params = model.get_params()
    assert params["reducer"] is dict(model.steps)["reducer"] and params["reducer__n_components"] == 5
    assert params["clusterer__n_clusters"] == 2 and params["extractor__backbone"] == "pixels@16"
    assert model.get_params(deep=False) == {"steps": model.steps}
    kmeans = Clusterer(method="kmeans", n_clusters=3)
    assert model.set_params(reducer__n_components=4, clusterer=kmeans) is model
    assert model.get_params()["reducer__n_components"] == 4 and dict(model.steps)["clusterer"] is kmeans
    assert clone(model).get_params()["clusterer__n_clusters"] == 3
    with pytest.raises(ValueError, match="Invalid parameter 'nothing'"):
        model.set_params(nothing__x=1)


def test_a_model_saved_with_a_numpy_generator_records_the_seed_its_fit_drew(records, tmp_path):
    """A Generator as random_state: each fit draws one seed, which the model's manifest records (JSON)."""
    model = _model(tmp_path)
    model.set_params(reducer__random_state=np.random.default_rng(3), clusterer__random_state=np.random.default_rng(4))
    model.fit(records).save(tmp_path / "run")
    info = json.loads((RunFolder(tmp_path / "run").model_config).read_text())
    steps = {e["name"]: e["params"] for e in info["steps"]}
    fitted = dict(model.steps_)
    assert steps["reducer"]["random_state"] == fitted["reducer"].seed_ == int(np.random.default_rng(3).integers(2**32))
    assert steps["clusterer"]["random_state"] == fitted["clusterer"].seed_
    assert BrainClusterModel.load(tmp_path / "run").step("reducer").random_state == fitted["reducer"].seed_


@pytest.mark.parametrize("pca, named", [(0, "checks 256 -> 256 dims"), (5, "checks+pca 256 -> 5 dims")])
def test_the_fits_line_names_the_pca_only_when_one_was_fitted(records, tmp_path, caplog, pca, named):
    """``--pca 0`` fits no PCA, yet the fit's line named one (``checks+pca 1280 -> 1280 dims``,
    ``checks+ssl+pca 1280 -> 96 dims``)."""
    with caplog.at_level("INFO", logger="brainclust"):
        _model(tmp_path, pca=pca).fit(records)
    line = [r.getMessage() for r in caplog.records if " dims in " in r.getMessage()]
    assert len(line) == 1 and line[0].startswith(f"12 images: {named} in "), line
