"""A clustering fitted on part of a run's rows, seen over every row: :class:`SetAside`.

When a step of the model sets images aside before the clustering (``--exclude``: the data checks'
flags), the clustering is fitted on the other rows only. ``SetAside`` wraps that fitted clustering
so the run still has one label per image: ``-1`` for the rows set aside, as ``--outliers auto``
writes its outliers. ``cluster.npz`` holds ``X_fit``, ``labels`` and ``levels`` over every row
(what the report reads), the clustering's own arrays unchanged, and ``set_aside`` (bool per row);
DBSCAN's ``core`` mask is widened with ``False``. :meth:`SetAside.read` splits such a file back
into the clustering of the kept rows (which ``predict`` uses: new images are never set aside) and
the whole-run arrays.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClusterMixin

from brainclust.cluster.base import BaseClusterer
from brainclust.cluster.methods import CLUSTERERS, model_params
from brainclust.core.params import Step
from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_npz, read_npz

#: Arrays of ``cluster.npz`` with one row per image (widened over the rows set aside).
ROW_ARRAYS = ("X_fit", "labels", "levels", "core")


def _widen(part: np.ndarray | None, keep: np.ndarray, fill) -> np.ndarray | None:
    if part is None:
        return None
    part = np.asarray(part)
    out = np.full((len(keep), *part.shape[1:]), fill, dtype=part.dtype)
    out[keep] = part
    return out


def _base(clusterer, arrays: bool = False):
    """The clustering estimator inside any rule (``AutoK``, ``OutlierRule``); with ``arrays``, the first
    one that writes ``cluster.npz``'s arrays (an ``OutlierRule`` writes them over its outliers too)."""
    c = clusterer
    while not isinstance(c, BaseClusterer) and not (arrays and hasattr(c, "state_arrays")):
        c = c.estimator_
    return c


class SetAside(ClusterMixin, Step):
    """A fitted clustering of the kept rows, with ``labels_``, ``levels_`` and ``X_fit_`` over every row.

    Build it with :meth:`fitted` (after the fit) or :meth:`restored` (from a model folder); it is
    never fitted itself. ``predict`` and everything else delegate to the inner clustering.

    Attributes
    ----------
    estimator_ : the clustering (or rule around one) fitted on the kept rows
    set_aside_ : ndarray of bool, shape (n_rows,)
    labels_, levels_, X_fit_ : over every row, ``-1`` (labels, levels) on the rows set aside
    n_clusters_ : int
    """

    _fitted_attribute = "estimator_"

    def __init__(self, estimator=None):
        self.estimator = estimator

    @classmethod
    def fitted(cls, estimator_, set_aside: np.ndarray, X: np.ndarray) -> "SetAside":
        """Wrap ``estimator_`` (fitted on the rows of ``X`` where ``set_aside`` is False)."""
        keep = ~np.asarray(set_aside, bool)
        levels = getattr(estimator_, "levels_", None)
        return cls.restored(estimator_, set_aside, X, _widen(estimator_.labels_, keep, -1),
                            _widen(levels, keep, -1) if levels is not None else None)

    @classmethod
    def restored(cls, estimator_, set_aside, X, labels, levels) -> "SetAside":
        from sklearn.base import clone

        self = cls(estimator=clone(estimator_))
        self.estimator_, self.set_aside_ = estimator_, np.asarray(set_aside, bool)
        self.X_fit_, self.labels_, self.levels_ = X, np.asarray(labels), levels
        self.n_clusters_ = int(estimator_.n_clusters_)
        return self

    # -- delegation ---------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.estimator_.method

    eps_ = property(lambda self: getattr(self.estimator_, "eps_", None))
    tree_ = property(lambda self: getattr(self.estimator_, "tree_", None))

    @property
    def k_(self) -> int:
        if not hasattr(self.estimator_, "k_"):
            raise AttributeError("k_")
        return self.estimator_.k_

    def predict(self, X):
        self.check_is_fitted()
        return self.estimator_.predict(X)

    def predict_levels(self, X):
        self.check_is_fitted()
        return self.estimator_.predict_levels(X)

    def leaf_labels(self):
        self.check_is_fitted()
        return self.estimator_.leaf_labels()

    # -- persistence ----------------------------------------------------------------------------
    def state_arrays(self) -> dict:
        """The inner clustering's arrays, its rows widened to every row, and ``set_aside``."""
        self.check_is_fitted()
        arrays = dict(_base(self.estimator_, arrays=True).state_arrays())
        keep = ~self.set_aside_
        arrays.update(X_fit=self.X_fit_, labels=self.labels_, set_aside=self.set_aside_)
        if self.levels_ is not None:
            arrays["levels"] = self.levels_
        if "core" in arrays:
            arrays["core"] = _widen(arrays["core"], keep, False)
        return arrays

    def save_step(self, folder) -> dict:
        """``cluster.npz`` over every row; the entry records this wrapper around the inner clustering's entry."""
        from brainclust.io.outputs import MODEL_FILES

        self.check_is_fitted()
        inner = self.estimator_.save_step(folder)  # its own entry (the file is rewritten below)
        atomic_write_npz(folder / MODEL_FILES["cluster"], params=np.asarray(_base(self.estimator_).params_json()),
                         **self.state_arrays())
        return {"class": type(self).__name__, "params": {},
                "estimator": {k: v for k, v in inner.items() if k != "files"}, "files": inner["files"]}

    @staticmethod
    def read(path) -> tuple[BaseClusterer, dict]:
        """``(clustering of the kept rows, whole-run arrays)`` of a ``cluster.npz`` written by :meth:`save_step`.

        The whole-run arrays are ``set_aside``, ``X_fit``, ``labels`` and ``levels`` (``None`` when absent).

        Raises
        ------
        ModelFileError
            A field is missing or does not match the others.
        """
        data = read_npz(path, "cluster model")
        method, params = model_params(data, path)
        aside, X, labels = data.get("set_aside"), data.get("X_fit"), data.get("labels")
        if (aside is None or aside.dtype != bool or aside.ndim != 1 or X is None or labels is None
                or len(aside) != len(X) or len(labels) != len(X) or np.any(labels[aside] != -1)):
            raise ModelFileError(f"cluster model '{path}': field 'set_aside' must be one bool per row of 'X_fit', "
                                 "true only where 'labels' is -1")
        keep = ~aside
        inner = dict(data)
        for name in ROW_ARRAYS:
            if name in inner and getattr(inner[name], "ndim", 0) >= 1 and len(inner[name]) == len(aside):
                inner[name] = inner[name][keep]
        est = CLUSTERERS[method].from_arrays(params, inner, f"{path} (the rows not set aside)")
        whole = {"set_aside": aside, "X_fit": X, "labels": labels, "levels": data.get("levels")}
        return est, whole
