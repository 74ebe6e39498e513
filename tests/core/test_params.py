"""The step protocol: declared rules, one-line messages, the fitted check of every step, JSON parameters."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.core.params import BOOL, NONE, Integer, OneOf, Pair, Real, Step, from_json, json_params, param
from brainclust.errors import BrainclustError, NotFittedError, ParameterError
from brainclust.model.persist import STEP_CLASSES


def test_rules_accept_and_refuse():
    assert Integer(1).accepts(3) and not Integer(1).accepts(0) and not Integer(1).accepts(True)
    assert not Integer(1).accepts(2.0) and Integer(0, 5).accepts(5) and not Integer(0, 5).accepts(6)
    assert Real(0, 1, open=True).accepts(0.5) and not Real(0, 1, open=True).accepts(1.0)
    assert not Real().accepts(float("nan")) and not Real().accepts(True)
    assert OneOf(("a", "b")).accepts("a") and not OneOf(("a",)).accepts("c") and not OneOf((False,)).accepts(0)
    assert Pair().accepts((0, 255)) and not Pair().accepts((5, 1)) and not Pair().accepts((0, float("inf")))
    assert NONE.accepts(None) and BOOL.accepts(False) and not BOOL.accepts(0)


def test_a_violation_is_one_line_naming_the_option_the_rule_and_the_value():
    p = param(NONE, Integer(1), option="--k")
    p.check("n_clusters", None)
    with pytest.raises(ParameterError) as err:
        p.check("n_clusters", -3)
    assert str(err.value) == "--k (n_clusters): must be a positive integer (or unset), got -3"  # no None there
    with pytest.raises(ParameterError, match=r"^--batch-size: must be a positive integer, got 0$"):
        param(Integer(1), option="--batch-size").check("batch_size", 0)  # the option says the parameter's name
    with pytest.raises(ParameterError, match=r"^n_clusters: must be None or a positive integer, got -3$"):
        param(NONE, Integer(1)).check("n_clusters", -3)  # a parameter without an option: Python's words
    with pytest.raises(ParameterError, match=r"^progress: must be None or True or False, got 'x'$"):
        param(NONE, BOOL, option="progress").check("progress", "x")  # named, but no command-line option


class Toy(Step):
    _parameter_constraints = {"size": param(Integer(1), option="--size")}
    _fitted_attribute = "mean_"

    def __init__(self, size=3):
        self.size = size

    def fit(self, X, y=None):
        self.check_params()
        self.mean_ = np.mean(X)
        return self

    def transform(self, X):
        self.check_is_fitted()
        return np.asarray(X) - self.mean_


def test_a_step_checks_its_declared_rules_and_its_fitted_state():
    with pytest.raises(ParameterError, match="--size"):
        Toy(size=0).fit([1.0])
    toy = Toy()
    with pytest.raises(NotFittedError, match="Toy: not fitted"):
        toy.transform([1.0])
    assert isinstance(NotFittedError("x"), BrainclustError)
    assert toy.fit([1.0, 3.0]).transform([2.0])[0] == 0.0
    assert toy.__sklearn_is_fitted__()


def test_json_parameters_round_trip_and_nest_steps():
    params = json_params({"clip": (0.5, 99.5), "n": np.int64(3), "inner": Toy(size=2)})
    assert params == {"clip": [0.5, 99.5], "n": 3, "inner": {"class": "Toy", "params": {"size": 2}}}
    assert from_json([0.5, [1, 2]]) == (0.5, (1, 2))


def _unfitted_calls(step):
    """The calls that need a fitted step (the ones the class has)."""
    calls = []
    for name in ("transform", "transform_batch", "predict", "predict_batch", "predict_levels", "extract", "describe",
                 "leaf_labels"):
        if callable(getattr(type(step), name, None)):
            calls.append(name)
    return calls


@pytest.mark.parametrize("name", sorted(STEP_CLASSES))
def test_every_unfitted_step_raises_not_fitted(name, tmp_path):
    from brainclust.cluster.methods import make_clusterer

    cls = STEP_CLASSES[name]
    needs_estimator = "estimator" in cls._get_param_names()
    step = cls(estimator=make_clusterer("kmeans", n_clusters=2)) if needs_estimator else cls()
    calls = _unfitted_calls(step)
    assert calls, name
    for call in calls:
        with pytest.raises(NotFittedError):
            arg = [str(tmp_path / "x.png")] if call in ("transform", "extract") and "Extractor" in name else (
                np.zeros((2, 3)))
            getattr(step, call)(*(() if call in ("describe", "leaf_labels") else (arg,)))
    with pytest.raises(NotFittedError):
        step.save_step(tmp_path)


def _estimator_errors():
    from brainclust.cluster.methods import Clusterer
    from brainclust.cluster.reduce import PCAReducer
    from brainclust.data.demo import make_demo_dataset
    from brainclust.features.extractor import FeatureExtractor

    X = np.random.default_rng(0).normal(size=(10, 4))
    return [
        (lambda: PCAReducer(3, random_state=-1).fit(X), r"^--seed \(random_state\): must be an integer from 0 "),
        (lambda: PCAReducer(1.0).fit(X), r"^--pca \(n_components\): 1\.0 is ambiguous"),
        (lambda: PCAReducer(-2).fit(X), r"^--pca \(n_components\): must be 0 \(off\)"),
        (lambda: Clusterer(method="kmeans", n_clusters=2, random_state=2**40).fit(X), r"^--seed \(random_state\): "),
        (lambda: Clusterer(method="kmeans", n_clusters=20).fit(X),
         r"^--k \(n_clusters\): 20 clusters requested but there are only 10 images$"),
        (lambda: FeatureExtractor(backbone="pixels", num_workers=-1).fit(), r"^--workers \(num_workers\): must be "),
        (lambda: make_demo_dataset("unused", random_state=0.5), r"^--seed \(random_state\): must be an integer"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_the_python_api_errors_name_the_python_parameter_beside_the_option(case):
    """They said ``--seed: ...``, ``--pca: ...``, ``--workers: ...`` to a caller who passed ``random_state``,
    ``n_components``, ``num_workers`` (only ``--k (n_clusters)`` named both)."""
    call, message = _estimator_errors()[case]
    with pytest.raises(ParameterError, match=message):
        call()
