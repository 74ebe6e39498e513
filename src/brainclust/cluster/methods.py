"""Stage 5: clustering. One estimator per method, a factory for the CLI, and the saved-model reader.

============== ====================================================== =====================================
``--method``   estimator                                              new points (``predict``)
============== ====================================================== =====================================
hierarchical   :class:`~.hierarchical.HierarchicalClusterer`          lowest mean distance to a cluster's
               (average linkage, cosine; the reference; 10 levels)    members (each of the 10 levels too)
kmeans         :class:`~.kmeans.KMeansClusterer`                      nearest centre
gmm            :class:`~.gmm.GMMClusterer`                            most probable component
dbscan         :class:`~.dbscan.DBSCANClusterer` (eps from the knee)  nearest core point within eps, else -1
spectral       :class:`~.spectral.SpectralClusterer`                  vote of the 10 cosine-nearest images
============== ====================================================== =====================================

:func:`make_clusterer` builds one from ``--method`` and the parameters (as scikit-learn's
``sklearn.cluster`` has one class per algorithm and the CLI picks one); :class:`Clusterer` is
the former single class's name, kept as a factory: ``Clusterer(method=..., **params)`` and
``Clusterer.load(path)``. The shared parts (canonical ids, the predict contract, persistence)
are :mod:`.base`.
"""

from __future__ import annotations

import json

from brainclust.cluster.base import BaseClusterer, check_seed, relabel, relabel_like
from brainclust.cluster.dbscan import DBSCANClusterer, knee_eps
from brainclust.cluster.gmm import GMMClusterer
from brainclust.cluster.hierarchical import HierarchicalClusterer, cut_levels, hierarchical_tree
from brainclust.cluster.kmeans import KMeansClusterer
from brainclust.cluster.spectral import SpectralClusterer
from brainclust.core.choices import METHODS
from brainclust.core.params import from_json
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import read_npz
from brainclust.io.outputs import N_LEVELS

__all__ = ["CLUSTERERS", "METHODS", "N_LEVELS", "BaseClusterer", "Clusterer", "check_seed", "cut_levels",
           "hierarchical_tree", "knee_eps", "load_clusterer", "make_clusterer", "model_params", "relabel",
           "relabel_like"]

#: ``--method`` -> estimator class
CLUSTERERS: dict[str, type[BaseClusterer]] = {c.method: c for c in (
    HierarchicalClusterer, KMeansClusterer, GMMClusterer, DBSCANClusterer, SpectralClusterer)}
#: The parameters of the former single ``Clusterer`` and their defaults. A call may pass any of them;
#: one the method does not have must keep its default (it would be ignored), except that DBSCAN,
#: which chooses its own number of clusters and has no randomness, drops ``n_clusters`` and ``random_state``.
SHARED_DEFAULTS = {"n_clusters": 4, "random_state": None, "min_samples": 5, "n_neighbors": 10,
                   "linkage": "average", "metric": "cosine", "exact_max": 20000, "n_micro": 4000,
                   "kmeans_max": 100000}


def clusterer_class(method) -> type[BaseClusterer]:
    """The estimator class of ``--method``."""
    if method not in CLUSTERERS:
        raise ParameterError(f"--method: unknown method '{method}'; choose one of {', '.join(METHODS)}")
    return CLUSTERERS[method]


def make_clusterer(method: str = "hierarchical", **params) -> BaseClusterer:
    """The estimator of ``method`` with ``params`` (see :data:`SHARED_DEFAULTS` for the others)."""
    cls = clusterer_class(method)
    own = set(cls._get_param_names())
    kept = {}
    for name, value in params.items():
        if name in own:
            kept[name] = value
        elif name not in SHARED_DEFAULTS:
            raise ParameterError(f"{name}: not a parameter of any clustering method")
        elif method == "dbscan" and name in ("n_clusters", "random_state"):
            continue
        elif not (value == SHARED_DEFAULTS[name] and type(value) is type(SHARED_DEFAULTS[name])):
            raise ParameterError(f"{name}: does not apply to --method {method} (got {value!r}); leave it unset")
    return cls(**kept)


def model_params(data: dict, path) -> tuple[str, dict]:
    """``(method, parameters)`` of a saved cluster model's ``params`` field, checked like untrusted input."""
    try:
        params = json.loads(str(data["params"]))
    except KeyError:
        raise ModelFileError(f"cluster model '{path}': field 'params' is missing") from None
    except ValueError as exc:
        raise ModelFileError(f"cluster model '{path}': field 'params' is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ModelFileError(f"cluster model '{path}': field 'params' must be a JSON object, got {params!r:.60}")
    unknown = sorted(set(params) - set(SHARED_DEFAULTS) - {"method"})
    if unknown or "method" not in params:
        raise ModelFileError(f"cluster model '{path}': field 'params' has unknown keys {unknown} or no 'method'")
    method = params["method"]
    try:
        cls = clusterer_class(method)
        own = {k: from_json(v) for k, v in params.items() if k in set(cls._get_param_names())}
        cls(**own).check_params()
    except ParameterError as exc:
        raise ModelFileError(f"cluster model '{path}': field 'params' is invalid ({exc})") from None
    except TypeError as exc:  # an unhashable method name
        raise ModelFileError(f"cluster model '{path}': field 'params' is invalid ({exc})") from None
    if method != "dbscan" and params.get("n_clusters") == "auto":
        raise ModelFileError(f"cluster model '{path}': field 'params' has n_clusters 'auto' (never saved by a run)")
    return method, own


def load_clusterer(path) -> BaseClusterer:
    """Read a saved clustering (any method). Every field is checked (ModelFileError naming the file).

    A file written with images set apart (``--outliers auto``: ``-1`` among the labels) loads as
    its method's estimator with those labels; :class:`~brainclust.cluster.outliers.OutlierRule`
    reads it as a rule around that estimator.
    """
    data = read_npz(path, "cluster model")
    method, params = model_params(data, path)
    return CLUSTERERS[method].from_arrays(params, data, path)


class Clusterer:
    """The former single clustering class, kept as a factory (see the module docstring).

    ``Clusterer(method="kmeans", n_clusters=3, random_state=0)`` returns a
    :class:`~brainclust.cluster.kmeans.KMeansClusterer`; ``Clusterer.load(path)`` reads any saved
    clustering (:func:`load_clusterer`). ``method="dbscan"`` chooses its own number of clusters and has no
    randomness: ``n_clusters`` and ``random_state`` are dropped (``brainclust run --method dbscan --k N`` warns).
    """

    def __new__(cls, method: str = "hierarchical", n_clusters: int = 4,  # type: ignore[misc]
                **params) -> BaseClusterer:
        return make_clusterer(method, n_clusters=n_clusters, **params)

    load = staticmethod(load_clusterer)
