"""The step protocol: parameters declared once beside the estimator that owns them, the fitted check,
save and load.

Every estimator a run is made of (extractor, self-supervised stage, reducer, manifold, clusterer,
outlier rule, the meta-estimators of ``--auto``) is a :class:`Step`:

* **parameters**: scikit-learn's ``get_params`` / ``set_params`` (``__init__`` only stores them);
* **declared constraints**: ``_parameter_constraints`` maps each parameter to a :class:`Param`, the
  values it accepts and the option that sets it (for the message). :meth:`Step.check_params`
  checks them all; a violation is one :class:`~brainclust.errors.ParameterError` line
  ``OPTION: must be DESCRIPTION, got VALUE``. Rules that tie several parameters together live in
  the step's own ``check_params`` after the declared ones. (scikit-learn's ``_parameter_constraints``
  is the model; its private validator is not used.)
* **fitted check**: ``_fitted_attribute`` names what ``fit`` sets; :meth:`Step.check_is_fitted`
  raises :class:`~brainclust.errors.NotFittedError` before any ``transform`` / ``predict`` of an
  unfitted step;
* **save / load**: :meth:`Step.save_step` writes the step's files into a model folder and returns
  its entry of the model manifest (class, parameters, small fitted state, files);
  :meth:`Step.load_step` rebuilds the fitted step from that entry and the files. (Steps that
  are one file, such as the PCA or a clusterer, also keep their ``save(path)`` / ``load(path)``.)

Middle steps of a model (between the extractor and the clusterer) see a *batch* (the records
and their current feature matrix ``X``); :class:`ArrayStep` is the protocol of the steps that
only transform ``X`` (PCA, UMAP, and later steps of the same kind).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from brainclust.errors import NotFittedError, ParameterError


class Rule:
    """One kind of accepted value."""

    def accepts(self, value) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Rule):
    """An integer (``bool`` refused) in ``[low, high]`` (``None`` = unbounded)."""

    low: int | None = None
    high: int | None = None

    def accepts(self, value) -> bool:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and (self.low is None or value >= self.low) and (self.high is None or value <= self.high))

    def describe(self) -> str:
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.high is None:
            return "an integer" if self.low is None else f"an integer >= {self.low}"
        return f"an integer from {self.low} to {self.high}"


@dataclass(frozen=True)
class Real(Rule):
    """A finite real number (``bool`` refused) between ``low`` and ``high``; ``open`` excludes the bounds."""

    low: float | None = None
    high: float | None = None
    open: bool = False

    def accepts(self, value) -> bool:
        if not _is_number(value) or not math.isfinite(float(value)):
            return False
        if self.low is not None and (value <= self.low if self.open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open else value <= self.high)

    def describe(self) -> str:
        lo, hi = ("(", ")") if self.open else ("[", "]")
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"a number {'>' if self.open else '>='} {self.low}"
        if self.low is None:
            return f"a number {'<' if self.open else '<='} {self.high}"
        return f"a number in {lo}{self.low}, {self.high}{hi}"


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a fixed set of values."""

    values: tuple

    def accepts(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) if not isinstance(v, str) else v for v in self.values)


@dataclass(frozen=True)
class Kind(Rule):
    """An instance of ``types`` (``bool`` only when ``bool`` is listed); ``None`` is ``type(None)``."""

    types: tuple
    name: str

    def accepts(self, value) -> bool:
        if isinstance(value, bool) and bool not in self.types:
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class Pair(Rule):
    """Two finite numbers ``(low, high)`` with ``low < high`` (a tuple or a list)."""

    def accepts(self, value) -> bool:
        return (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
                and all(math.isfinite(float(v)) for v in value) and value[0] < value[1])

    def describe(self) -> str:
        return "two finite numbers LOW < HIGH"


#: ``None`` as an accepted value.
NONE = Kind((type(None),), "None")
BOOL = Kind((bool,), "True or False")
TEXT = Kind((str,), "a string")
#: A numpy generator as a ``random_state`` (the Python API): each fit draws one seed from it (:func:`drawn_seed`).
GENERATOR = Kind((np.random.Generator, np.random.RandomState), "a numpy Generator or RandomState")


def drawn_seed(random_state):
    """The seed a fit uses: ``random_state`` itself (an int or None), or one integer in [0, 2**32) drawn from a
    numpy ``Generator`` or ``RandomState``. The draw advances the generator, so a second fit with it draws another
    seed (scikit-learn's estimators likewise use up a ``RandomState``); the same generator state, the same fit."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**32))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**32))
    return random_state


@dataclass(frozen=True)
class Param:
    """The accepted values of one parameter and the option that sets it (named in the message)."""

    rules: tuple[Rule, ...]
    option: str | None = None
    #: ``(text, why)``: a refused string value (any case) that a user may expect to work, and where it does
    hints: tuple[tuple[str, str], ...] = ()

    def label(self, name: str) -> str:
        """How a message names parameter ``name``: its option, followed by ``(name)`` when the option is a
        command-line flag of another name (``--k (n_clusters)``, ``--seed (random_state)``: one message for the
        command line and the Python API); ``name`` when there is no option."""
        if (self.option or "").startswith("--") and self.option[2:].replace("-", "_") != name:
            return f"{self.option} ({name})"
        return self.option or name

    def check(self, name: str, value) -> None:
        if any(r.accepts(value) for r in self.rules):
            return
        why = next((w for text, w in self.hints if isinstance(value, str) and value.lower() == text), None)
        # a command-line option's None is its absence (a command line has no None): "(or unset)"
        unset = (self.option or "").startswith("--") and NONE in self.rules and len(self.rules) > 1
        shown = " or ".join(r.describe() for r in self.rules if not (unset and r == NONE))
        raise ParameterError(f"{self.label(name)}: must be {shown}{' (or unset)' if unset else ''}, "
                             f"got {value!r}" + (f"; {why}" if why else ""))


def param(*rules: Rule, option: str | None = None, hints: tuple[tuple[str, str], ...] = ()) -> Param:
    """A :class:`Param`: ``param(Integer(1), OneOf(("auto",)), option="--k")``; ``hints``: see :class:`Param`."""
    return Param(tuple(rules), option, hints)


def check_params(obj, constraints: Mapping[str, Param]) -> None:
    """Check every declared parameter of ``obj`` (the first violation raises ParameterError)."""
    for name, p in constraints.items():
        p.check(name, getattr(obj, name))


def check_is_fitted(obj, attribute: str) -> None:
    """:class:`~brainclust.errors.NotFittedError` unless ``fit`` has set ``attribute`` on ``obj``."""
    if getattr(obj, attribute, None) is None:
        raise NotFittedError(f"{type(obj).__name__}: not fitted yet; call fit first (or load a fitted model)")


def json_params(params: Mapping[str, Any]) -> dict:
    """Parameters as JSON values: tuples become lists, a nested step becomes its ``{"class", "params"}``."""
    def conv(v):
        if isinstance(v, Step):
            return {"class": type(v).__name__, "params": json_params(v.record_params())}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if hasattr(v, "item") and callable(v.item):  # a numpy scalar
            return v.item()
        return v

    return {k: conv(v) for k, v in params.items()}


def from_json(value):
    """The inverse of :func:`json_params` for plain values: lists become tuples (parameters are immutable)."""
    if isinstance(value, list):
        return tuple(from_json(v) for v in value)
    return value


def entry_params(cls, entry: Mapping, drop=()) -> dict:
    """The parameters of ``cls`` recorded in a manifest entry (``entry["params"]``; unknown names and ``drop``
    ignored)."""
    names = set(cls._get_param_names()) - set(drop)
    return {k: from_json(v) for k, v in (entry.get("params") or {}).items() if k in names}


class Step(BaseEstimator):
    """Base class of every estimator of a model (see the module docstring)."""

    #: parameter name -> :class:`Param`
    _parameter_constraints: ClassVar[dict[str, Param]] = {}
    #: the attribute ``fit`` sets; its absence means "not fitted"
    _fitted_attribute: ClassVar[str] = ""

    def check_params(self) -> "Step":
        """Every declared rule (no data needed); ``fit`` calls it, and so does ``RunConfig.validate``."""
        check_params(self, self._parameter_constraints)
        return self

    def check_is_fitted(self) -> None:
        if self._fitted_attribute:
            check_is_fitted(self, self._fitted_attribute)

    def __sklearn_is_fitted__(self) -> bool:
        return not self._fitted_attribute or getattr(self, self._fitted_attribute, None) is not None

    def record_params(self) -> dict:
        """``get_params(deep=False)`` as a saved model records them: a ``random_state`` that is a numpy generator
        becomes the seed the fit drew from it (``seed_``; ``None`` before a fit), so a clone of the loaded step
        refits as this fit did."""
        params = self.get_params(deep=False)
        if GENERATOR.accepts(params.get("random_state")):
            params["random_state"] = getattr(self, "seed_", None)
        return params

    def entry(self) -> dict:
        """The step's entry of the model manifest: class and parameters (JSON)."""
        return {"class": type(self).__name__, "params": json_params(self.record_params())}

    def save_step(self, folder) -> dict:
        """Write the fitted step's files into ``folder``; return its manifest entry (with ``files``)."""
        self.check_is_fitted()
        return {**self.entry(), "files": []}

    @classmethod
    def load_step(cls, folder, entry: Mapping) -> "Step":  # pragma: no cover - each step defines it
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")


class ArrayStep(Step):
    """A middle step that only transforms the feature matrix of a batch (``fit_transform`` / ``transform``).

    The model hands it a batch (records and their features ``X``, see
    :class:`brainclust.model.composite.Batch`); it returns the batch with ``X`` replaced.
    """

    def fit_batch(self, batch):
        return batch.with_features(self.fit_transform(batch.X))

    def transform_batch(self, batch):
        self.check_is_fitted()
        return batch.with_features(self.transform(batch.X))


def named_pairs(steps) -> list | None:
    """The ``(name, step)`` pairs of a ``steps`` parameter; ``None`` when it is not a list of such pairs."""
    if isinstance(steps, (str, bytes)) or not all(isinstance(e, (tuple, list)) and len(e) == 2
                                                  and isinstance(e[0], str) for e in steps):
        return None
    return [tuple(e) for e in steps]


class NamedSteps:
    """The parameters of an estimator made of named steps (its ``steps``), as scikit-learn's ``Pipeline`` has them:
    ``get_params(deep=True)`` adds each step under its name and the step's own parameters as ``NAME__PARAM``;
    ``set_params`` takes all of them (``steps`` first, then whole steps by name, then the steps' parameters, set on
    the step objects)."""

    def get_params(self, deep: bool = True) -> dict:
        out = super().get_params(deep=False)
        for name, step in (named_pairs(self.steps) or []) if deep else ():
            out[name] = step
            if hasattr(step, "get_params"):
                out.update({f"{name}__{key}": value for key, value in step.get_params(deep=True).items()})
        return out

    def set_params(self, **params):
        if "steps" in params:
            self.steps = params.pop("steps")
        names = dict(named_pairs(self.steps) or [])
        swap = {name: params.pop(name) for name in list(params) if name in names}
        if swap:
            self.steps = [(name, swap.get(name, step)) for name, step in named_pairs(self.steps)]
        return super().set_params(**params) if params else self
