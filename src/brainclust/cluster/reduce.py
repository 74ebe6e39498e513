"""Stage 4: dimensionality reduction with PCA (METHOD.md eqs 5-9).

A thin wrapper over :class:`sklearn.decomposition.PCA` that accepts a number of
components, a variance fraction, or 0 for "off", caps the number of components
at what the data allow, and saves/loads itself as ``.npz`` (no pickle).

Solver (``svd_solver="auto"``): the exact full SVD while its cost
``min(n, d)**2 * max(n, d)`` is at most :data:`EXACT_MAX_COST` (= 1024**2 * 16384,
about 1/34 of the 6019 x 16384 fit that took 186 s, so a few seconds on two
cores; it covers e.g. 1000 images x 16384 pixels, 16384 images x 1024 dims, and
the demo's 120 x 1280, which stays bit-identical). The exact solver is kept
wherever it is affordable because average-linkage trees are sensitive to tiny
changes of the embedding (hierarchical ARI between the two solvers' clusterings
of the 1000 real pixels features: 0.87; K-Means: 1.0). Above it, scikit-learn's
randomized SVD (seeded by ``random_state``,
``iterated_power=`` :data:`POWER_ITERATIONS`), fitted on a seeded sample of at
most :data:`MAX_FIT_ROWS` rows. A variance fraction with the randomized solver
computes a block of components, cuts it where the fraction of the (exact) total
variance is reached and grows the block when it is not. ``transform`` works
in chunks of :data:`CHUNK_ROWS` rows on large inputs, so memory stays bounded.

The output is float64 whatever the input's dtype (float32 features included): the model's clusterings run in
float64 on it, and the average-linkage tree is sensitive to rounding (see above), so a float32 embedding would
move the recorded results. ``save``/``load`` write and read the fitted arrays and the parameters (``params``,
JSON), as the clusterers' files do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import pathlib

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.decomposition import PCA

from brainclust.cluster.base import RANDOM_STATE
from brainclust.core.arrays import as_numbers, check_finite_rows, seeded_sample
from brainclust.core.choices import DEFAULT_COMPONENTS
from brainclust.core.params import BOOL, NONE, ArrayStep, OneOf, drawn_seed, entry_params, json_params, param
from brainclust.errors import InputError, ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_npz, read_npz

log = logging.getLogger(__name__)

#: Largest ``min(n, d)**2 * max(n, d)`` fitted with the exact full SVD under ``svd_solver="auto"``.
EXACT_MAX_COST = 1024 ** 2 * 16384
#: Rows the randomized solver fits on at most (a seeded sample beyond that).
MAX_FIT_ROWS = 20_000
#: Power iterations of the randomized solver (scikit-learn's default is 4 or 7).
POWER_ITERATIONS = 7
#: Rows per chunk of :meth:`PCAReducer.transform` on inputs above ``CHUNK_ROWS * 8192`` values.
CHUNK_ROWS = 2048
SOLVERS = ("auto", "full", "randomized")
#: How a message names ``n_components`` (as :meth:`~brainclust.core.params.Param.label` names a declared parameter).
PCA_LABEL = "--pca (n_components)"


def limit_text(rows: int, features: int) -> str:
    """What caps the components of a ``rows x features`` matrix, for a message: ``the 32 features`` (fewer
    features than images), ``the 20 images`` (fewer images), or both when they are equal."""
    if features < rows:
        return f"the {features} features"
    if rows < features:
        return f"the {rows} images"
    return f"the {rows} images and {features} features"


def warns_on_cap(n_components, warn_cap: bool | None) -> bool:
    """Whether capping ``n_components`` at what the data allow is a warning: ``warn_cap`` when set (the user
    chose the number, or did not), else unless it is the default :data:`DEFAULT_COMPONENTS`."""
    return bool(warn_cap) if warn_cap is not None else n_components != DEFAULT_COMPONENTS


def distinct_rows(X, chunk: int = 4096) -> int:
    """Number of distinct rows of a 2-D array (rows compared by a 128-bit hash of their bytes).

    Memory is a 16-byte digest per row, not a copy of the matrix (1M x 1280 float32 is 5 GB).
    """
    seen: set[bytes] = set()
    for s in range(0, len(X), chunk):
        block = np.ascontiguousarray(X[s:s + chunk])
        seen.update(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block)
    return len(seen)


def _column_range(X, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum, read in row blocks (no full-size temporary)."""
    lo = np.full(X.shape[1], np.inf)
    hi = np.full(X.shape[1], -np.inf)
    for s in range(0, len(X), chunk):
        block = np.asarray(X[s:s + chunk])
        lo, hi = np.minimum(lo, block.min(axis=0)), np.maximum(hi, block.max(axis=0))
    return lo, hi


def check_not_constant(X) -> None:
    """InputError when every row of ``X`` is the same vector (zero total variance)."""
    lo, hi = _column_range(X)
    spread = float(np.max(hi - lo)) if X.size else 0.0
    if spread <= 1e-12 * max(1.0, float(max(np.max(np.abs(lo)), np.max(np.abs(hi)))) if X.size else 1.0):
        raise InputError(f"all {len(X)} images have identical features (zero variance in every one of the "
                         f"{X.shape[1] if X.ndim == 2 else 0} dimensions: identical, blank or constant images); "
                         f"nothing to cluster")


def _pick_solver(requested: str, shape) -> str:
    if requested != "auto":
        return requested
    small, big = sorted(shape)
    return "full" if small * small * big <= EXACT_MAX_COST else "randomized"


def _fit_sample(X: np.ndarray, seed) -> np.ndarray:
    """At most :data:`MAX_FIT_ROWS` rows of ``X``: a seeded sample (in the original order)."""
    if len(X) <= MAX_FIT_ROWS:
        return X
    return X[seeded_sample(len(X), MAX_FIT_ROWS, seed)]


def _parts(pca: PCA, keep: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, components, explained variance ratio)`` of a fitted PCA, the first ``keep`` components."""
    keep = len(pca.components_) if keep is None else keep
    return pca.mean_, pca.components_[:keep], pca.explained_variance_ratio_[:keep]


def _randomized(X: np.ndarray, n, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomized PCA of ``X`` with ``n`` components (an int) or a variance fraction (a float): :func:`_parts`."""
    cap = min(X.shape) - 1  # the randomized solver needs n < min(n_samples, n_features)
    if isinstance(n, int):
        return _parts(PCA(n_components=min(n, cap), svd_solver="randomized", iterated_power=POWER_ITERATIONS,
                          random_state=seed).fit(X))
    block = min(64, cap)
    while True:
        pca = PCA(n_components=block, svd_solver="randomized", iterated_power=POWER_ITERATIONS,
                  random_state=seed).fit(X)
        cum = np.cumsum(pca.explained_variance_ratio_)
        if cum[-1] >= n or block >= cap:
            return _parts(pca, int(np.searchsorted(cum, n) + 1) if cum[-1] >= n else block)
        block = min(block * 2, cap)


class PCAReducer(TransformerMixin, ArrayStep):
    """PCA to ``n_components`` dimensions.

    Parameters
    ----------
    n_components : int or float, default 50
        An integer (``int >= 1``, including 1; an integer-valued float other than 1.0 counts too):
        number of components (capped at ``min(n_samples, n_features)``, see ``warn_cap``);
        a float strictly in (0, 1): smallest number of components that explains this fraction of
        the variance; ``0``: no reduction (identity). ``1.0`` is refused as ambiguous.
    random_state : int, None, numpy Generator or RandomState, default None
        Seed of the randomized solver and of its row sample; a generator gives one seed per ``fit`` (``seed_``).
    svd_solver : {"auto", "full", "randomized"}, default "auto"
        See the module docstring for the rule of ``"auto"``.
    only_if_wider : bool, default False
        No reduction (the identity) when the input has at most ``n_components`` dimensions
        (``--reduce umap``: PCA to 100 only for wider features).
    warn_cap : bool or None, default None
        Whether capping ``n_components`` at ``min(n_samples, n_features)`` is a warning (``True``: the user
        chose the number) or a debug line (``False``); ``None``: a warning unless it is the default 50.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    components_ : ndarray of shape (n_components_, n_features) or None when off
    explained_variance_ratio_ : ndarray of shape (n_components_,) or None
    n_components_ : int
    solver_ : str
        ``"full"``, ``"randomized"`` or ``"none"`` (off); ``None`` for a model saved before it was recorded.
    fit_rows_ : int
        Rows the components were fitted on (fewer than the input when the randomized solver sampled).
    n_distinct_ : int
        Distinct input rows of ``fit`` (duplicated images share one).
    seed_ : int or None
        The seed of the fit: ``random_state``, or the one drawn from a numpy generator.

    ``transform`` returns float64 for any input dtype (see the module docstring); ``get_feature_names_out`` names
    the output columns ``pca0``, ``pca1``, ... (the input's names when off).
    """

    _parameter_constraints = {"random_state": RANDOM_STATE, "svd_solver": param(OneOf(SOLVERS), option="svd_solver"),
                              "only_if_wider": param(BOOL, option="only_if_wider"),
                              "warn_cap": param(NONE, BOOL, option="warn_cap")}
    _fitted_attribute = "mean_"

    def __init__(self, n_components: int | float = 50, random_state: int | None = None,
                 svd_solver: str = "auto", only_if_wider: bool = False, warn_cap: bool | None = None):
        self.n_components = n_components
        self.random_state = random_state
        self.svd_solver = svd_solver
        self.only_if_wider = only_if_wider
        self.warn_cap = warn_cap

    def check_params(self):
        """The declared rules, then ``n_components`` (no data needed); returns it as an int or a fraction."""
        super().check_params()
        n = self.n_components
        if isinstance(n, bool) or not isinstance(n, numbers.Real):
            raise ParameterError(f"{PCA_LABEL}: must be a number, got {n!r}")
        if n == 0:
            return 0
        if not isinstance(n, numbers.Integral) and n == 1:
            raise ParameterError(f"{PCA_LABEL}: 1.0 is ambiguous; write 1 for one component or a variance "
                                 "fraction below 1 (e.g. 0.99)")
        if n >= 1 and float(n).is_integer():
            return int(n)
        if 0 < n < 1:
            return float(n)
        raise ParameterError(f"{PCA_LABEL}: must be 0 (off), an integer >= 1 or a variance fraction in (0, 1), "
                             f"got {n}")

    def fit(self, X, y=None):
        n = self.check_params()
        X = as_numbers(X, "PCA: features", None)
        if X.ndim != 2:
            raise ParameterError(f"PCA: features must be a 2-D array (n, d), got shape {X.shape}")
        check_finite_rows(X, "PCA: ")
        if len(X) < 2:
            raise ParameterError(f"PCA: needs at least 2 rows to fit, got {len(X)}")
        check_not_constant(X)
        self.n_features_in_ = X.shape[1]
        self.n_distinct_ = distinct_rows(X)
        self.fit_rows_ = len(X)
        self.seed_ = seed = drawn_seed(self.random_state)
        if self.only_if_wider and isinstance(n, int) and X.shape[1] <= n:
            n = 0
        if n == 0:
            self.mean_ = np.zeros(X.shape[1])
            self.components_ = None
            self.explained_variance_ratio_ = None
            self.n_components_ = X.shape[1]
            self.solver_ = "none"
            return self
        if isinstance(n, int):
            cap = min(X.shape)
            if n > cap:
                (log.warning if warns_on_cap(n, self.warn_cap) else log.debug)(
                    "--pca %d is more than %s allow; using %d", n, limit_text(*X.shape), cap)
                n = cap
        self.solver_ = _pick_solver(self.svd_solver, X.shape)
        if self.solver_ == "full" or min(X.shape) < 3:
            self.solver_ = "full"
            mean, comps, evr = _parts(PCA(n_components=n, svd_solver="full", random_state=seed).fit(
                np.asarray(X, dtype=np.float64)))
        else:
            Xs = _fit_sample(X if X.dtype == np.float32 else np.asarray(X, dtype=np.float64), seed)
            self.fit_rows_ = len(Xs)
            mean, comps, evr = _randomized(Xs, n, seed)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.components_ = np.asarray(comps, dtype=np.float64)
        self.explained_variance_ratio_ = np.nan_to_num(np.asarray(evr, np.float64))
        self.n_components_ = len(self.components_)
        return self

    def transform(self, X):
        self.check_is_fitted()
        X = as_numbers(X, "PCA: features", None)
        if X.ndim != 2:
            raise ParameterError(f"PCA: expected features of shape (n, {self.n_features_in_}), got {X.shape}")
        if X.shape[1] != self.n_features_in_:
            raise ParameterError(f"features have {X.shape[-1]} dimensions; the PCA was fitted on {self.n_features_in_}")
        if self.components_ is None:
            out = np.asarray(X, dtype=np.float64)
        elif X.size <= CHUNK_ROWS * 8192:
            out = (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T
        else:
            out = np.empty((len(X), self.components_.shape[0]))
            for s in range(0, len(X), CHUNK_ROWS):
                out[s:s + CHUNK_ROWS] = (np.asarray(X[s:s + CHUNK_ROWS], dtype=np.float64) - self.mean_) \
                    @ self.components_.T
        check_finite_rows(out, "PCA: ")  # a NaN or infinite feature spreads to its row's projection
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output columns (scikit-learn's convention): ``pca0``, ``pca1``, ...; when off
        (``n_components=0``: the identity), the input's: ``input_features``, else ``x0``, ``x1``, ..."""
        self.check_is_fitted()
        if self.components_ is not None:
            return np.asarray([f"pca{i}" for i in range(self.n_components_)], dtype=object)
        if input_features is None:
            return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
        if len(input_features) != self.n_features_in_:
            raise ParameterError(f"input_features: {len(input_features)} names for the {self.n_features_in_} "
                                 "features the PCA was fitted on")
        return np.asarray(input_features, dtype=object)

    def save(self, path) -> None:
        self.check_is_fitted()
        arrays = {"mean": self.mean_, "n_features_in": np.asarray(self.n_features_in_),
                  "params": np.asarray(json.dumps(json_params(self.record_params())))}
        if self.components_ is not None:
            arrays["components"] = self.components_
            arrays["explained_variance_ratio"] = self.explained_variance_ratio_
        if getattr(self, "solver_", None) is not None:
            arrays["solver"] = np.asarray(self.solver_)
            arrays["fit_rows"] = np.asarray(self.fit_rows_)
        atomic_write_npz(path, **arrays)

    def save_step(self, folder) -> dict:
        from brainclust.io.outputs import MODEL_FILES

        self.save(folder / MODEL_FILES["pca"])
        return {**self.entry(), "files": [MODEL_FILES["pca"]]}

    @classmethod
    def load_step(cls, folder, entry) -> "PCAReducer":
        """The fitted PCA of ``pca.npz`` with the parameters the model's manifest records (``random_state``, the
        ``n_components`` asked for...), so a clone refits as the run did."""
        from brainclust.io.outputs import MODEL_FILES

        step = cls.load(folder / MODEL_FILES["pca"])
        return _with_params(step, entry_params(cls, entry), f"model config in '{folder}': step 'reducer'",
                            MODEL_FILES["pca"])

    @classmethod
    def load(cls, path) -> "PCAReducer":
        data = read_npz(path, "PCA file")
        try:
            self = cls(n_components=0)
            self.mean_ = data["mean"]
            self.n_features_in_ = int(data["n_features_in"])
            self.components_ = data.get("components")
            self.explained_variance_ratio_ = data["explained_variance_ratio"] if "components" in data else None
            self.solver_ = str(data["solver"]) if "solver" in data else None
            self.fit_rows_ = int(data["fit_rows"]) if "fit_rows" in data else None
        except (OSError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise ModelFileError(f"PCA file '{path}' is missing or damaged ({exc})") from None
        _check_loaded(self, path)
        self.n_components = 0 if self.components_ is None else self.components_.shape[0]
        self.n_components_ = self.n_features_in_ if self.components_ is None else self.components_.shape[0]
        if "params" not in data:  # written before the parameters were saved: n_components from the arrays
            return self
        where = f"PCA file '{path}': field 'params'"
        try:
            params = json.loads(str(data["params"]))
        except ValueError as exc:
            raise ModelFileError(f"{where} is not valid JSON ({exc})") from None
        if not isinstance(params, dict):
            raise ModelFileError(f"{where} must be a JSON object, got {params!r:.60}")
        return _with_params(self, entry_params(cls, {"params": params}), where, pathlib.Path(path).name)


def _with_params(step: PCAReducer, params: dict, where: str, file: str) -> PCAReducer:
    """The loaded ``step`` with its recorded ``params`` (``random_state``, the ``n_components`` asked for...), so a
    clone refits as the fit did; ModelFileError (``where`` first) when they are invalid or ask for fewer components
    than ``file`` holds."""
    try:
        n = step.set_params(**params).check_params()
    except ParameterError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    fitted = 0 if step.components_ is None else step.n_components_
    if (n == 0 and fitted) or (isinstance(n, int) and fitted > n):  # more components than asked for
        raise ModelFileError(f"{where}: n_components is {n} but '{file}' holds {fitted} components")
    return step


def _check_loaded(red: PCAReducer, path) -> None:
    """ModelFileError naming the file and the field when a loaded PCA is inconsistent."""
    def bad(field, why):
        raise ModelFileError(f"PCA file '{path}': field '{field}' {why}")

    d = red.n_features_in_
    if d < 1:
        bad("n_features_in", f"must be a positive integer, got {d}")
    for field, arr, shape in (("mean", red.mean_, (d,)),
                              ("components", red.components_, None),
                              ("explained_variance_ratio", red.explained_variance_ratio_, None)):
        if arr is None:
            continue
        if arr.dtype.kind not in "fiu":
            bad(field, f"must hold numbers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            bad(field, "holds NaN or infinite values")
        if shape is not None and arr.shape != shape:
            bad(field, f"has shape {arr.shape}; expected {shape} (n_features_in = {d})")
    C = red.components_
    if C is not None:
        if C.ndim != 2 or C.shape[1] != d or not 1 <= C.shape[0] <= d:
            bad("components", f"has shape {C.shape}; expected (k, {d}) with 1 <= k <= {d}")
        if red.explained_variance_ratio_.shape != (C.shape[0],):
            bad("explained_variance_ratio", f"has shape {red.explained_variance_ratio_.shape}; "
                f"expected ({C.shape[0]},)")
        if not np.all(np.linalg.norm(C, axis=1) > 1e-6):
            bad("components", "holds an all-zero component")
