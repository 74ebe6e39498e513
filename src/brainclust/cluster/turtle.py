"""TURTLE: the labelling that linear classifiers learn best in one or more representation spaces.

After Gadetsky, Jiang and Brbić, "Let Go of Your Labels with Unsupervised Transfer"
(ICML 2024). Given frozen representations ``Z_1 .. Z_K`` of the same images (here: the
PCA spaces of several backbones, e.g. EfficientNet-Lite0 and pixels), TURTLE looks for
the partition into ``C`` groups that a *linear* classifier in every space can learn with
the smallest error, the label-free counterpart of "a task whose classes are linearly
separable, with a large margin, in good representations". Unlike the co-association vote
(``--consensus``), which combines finished partitions, the spaces shape one labelling
together.

Model (what :meth:`TurtleClusterer.fit` optimises):

* **task encoder**: per space a linear map with weight normalisation (each class row is
  ``g * v / ||v||``); the labelling is the mean over spaces of their softmaxes,
  ``tau(x) = mean_k softmax(theta_k z_k(x))``;
* **inner learners**: per space a linear classifier ``w_k`` trained for ``M`` Adam steps
  on the soft labels ``tau`` (cross-entropy; re-initialised every iteration: the paper's
  "cold start");
* **outer step**: Adam on the task encoder to lower ``sum_k CE(w_k z_k, tau) - gamma *
  sum_k H(mean_x softmax(theta_k z_k(x)))``, the inner solutions held fixed (the paper's
  first-order approximation); the entropy term keeps the groups from collapsing.

The paper's settings are kept (``gamma`` 10, ``M`` 10, both learning rates 1e-3, Adam,
cold start); ``T`` (outer iterations) is 1000 instead of 6000 for a 2-core CPU, fixed
before any score was seen. Every space is given as its rows scaled to unit length (the
geometry of cosine clustering). With ``n_init > 1`` the run with the lowest final
objective is kept (label-free). Full batch up to ``batch_size`` images, else seeded
mini-batches. Deterministic under ``random_state`` (NumPy, gradients written out and tested
against autograd).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from brainclust.errors import ParameterError

log = logging.getLogger(__name__)


def run_seed(random_state, r: int) -> int:
    """A 63-bit seed for restart ``r`` of seed ``random_state``."""
    return int.from_bytes(hashlib.sha256(f"turtle|{random_state}|{r}".encode()).digest()[:8], "little") >> 1


def _unit(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


class TurtleClusterer(ClusterMixin, BaseEstimator):
    """Cluster images jointly in several representation spaces (TURTLE); see the module docstring.

    Parameters
    ----------
    n_clusters : int, default 4
    gamma : float, default 10.0
        Weight of the entropy of each space's cluster marginal.
    n_iter : int, default 1000
        Outer iterations ``T``.
    inner_steps : int, default 10
        ``M``.
    inner_lr, outer_lr : float, default 1e-3
    batch_size : int, default 10000
    n_init : int, default 1
    random_state : int, default 0

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
    proba_ : ndarray of shape (n_samples, n_clusters)
        ``tau``: the mean of the spaces' softmaxes.
    objective_ : float
        Final objective of the kept run (lower is better).
    history_ : list of float
        The kept run's objective every 50 iterations.
    n_clusters_ : int
        Groups that received at least one image.
    """

    def __init__(self, n_clusters: int = 4, gamma: float = 10.0, n_iter: int = 1000, inner_steps: int = 10,
                 inner_lr: float = 1e-3, outer_lr: float = 1e-3, batch_size: int = 10000, n_init: int = 1,
                 warm_start: bool = False, random_state: int = 0):
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.n_iter = n_iter
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.outer_lr = outer_lr
        self.batch_size = batch_size
        self.n_init = n_init
        self.warm_start = warm_start
        self.random_state = random_state

    def _check(self, spaces) -> list[np.ndarray]:
        for name in ("n_clusters", "n_iter", "inner_steps", "batch_size", "n_init"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"turtle {name}: must be a positive integer, got {v!r}")
        for name in ("gamma", "inner_lr", "outer_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ParameterError(f"turtle {name}: must be a finite number >= 0, got {v!r}")
        if isinstance(spaces, np.ndarray):
            spaces = [spaces]
        if not isinstance(spaces, Sequence) or not spaces:
            raise ParameterError("turtle: needs a list of one or more (n_images, dim) representation arrays")
        Zs = [np.asarray(Z, dtype=np.float64) for Z in spaces]
        n = len(Zs[0])
        for Z in Zs:
            if Z.ndim != 2 or len(Z) != n or not np.all(np.isfinite(Z)):
                raise ParameterError(f"turtle: every space must be a finite 2-D array of {n} rows, got {Z.shape}")
        if self.n_clusters > n:
            raise ParameterError(f"turtle: {self.n_clusters} clusters requested but there are only {n} images")
        return [_unit(Z) for Z in Zs]

    # -- the model (NumPy, gradients by hand: the matrices are small, and torch's per-op overhead
    #    made a 120-image fit take 50 s on a loaded 2-core machine) -----------------
    @staticmethod
    def _softmax(L: np.ndarray) -> np.ndarray:
        L = L - L.max(axis=1, keepdims=True)
        E = np.exp(L)
        return E / E.sum(axis=1, keepdims=True)

    @staticmethod
    def _weights(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g[:, None] * v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def _space_proba(self, params, Zs) -> list[np.ndarray]:
        return [self._softmax(z @ self._weights(v, g).T + b) for (v, g, b), z in zip(params, Zs)]

    def _inner(self, Z: np.ndarray, target: np.ndarray, rng, state=None) -> np.ndarray:
        """``M`` Adam steps of a linear softmax classifier on soft ``target``: its logits.

        Cold start (``state`` None): from a random start. Warm start: ``state`` = ``[W, b, adam]``
        carried over from the previous iteration (updated in place).
        """
        n, d = Z.shape
        C = target.shape[1]
        if state is None or not state:
            W = (rng.random((C, d)) * 2 - 1) / math.sqrt(d)
            b = np.zeros(C)
            adam = _Adam([W, b], self.inner_lr)
            if state is not None:
                state += [W, b, adam]
        else:
            W, b, adam = state
        for _ in range(int(self.inner_steps)):
            G = (self._softmax(Z @ W.T + b) - target) / n  # d CE / d logits
            adam.step([G.T @ Z, G.sum(0)])
        return Z @ W.T + b

    def _outer(self, params, Zb, per_space, log_pred) -> tuple[float, list]:
        """The outer objective ``sum_k CE(pred_k, tau) - gamma sum_k H(mean_x p_k)`` and its gradients.

        ``log_pred``: the inner classifiers' log-probabilities (held fixed); gradients w.r.t. every
        space's ``v``, ``g`` (weight normalisation) and bias, in the order of ``params``.
        """
        K, m = len(Zb), len(Zb[0])
        tau = sum(per_space) / K
        pred_error = float(sum(-(tau * lp).sum(1).mean() for lp in log_pred))
        marg = [p.mean(0) for p in per_space]
        entropy = float(sum(-(q * np.log(np.maximum(q, 1e-300))).sum() for q in marg))
        g_tau = -sum(log_pred) / m  # d pred_error / d tau
        grads = []
        for (v, g, b), z, p, q in zip(params, Zb, per_space, marg):
            g_p = g_tau / K + self.gamma * (np.log(np.maximum(q, 1e-300)) + 1) / m  # d objective / d p_k
            g_logit = p * (g_p - (p * g_p).sum(1, keepdims=True))
            G_W = g_logit.T @ z
            norm = np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            u = v / norm
            dot = (G_W * u).sum(1, keepdims=True)
            grads += [g[:, None] / norm * (G_W - dot * u), dot[:, 0], g_logit.sum(0)]
        return pred_error - self.gamma * entropy, grads

    def _run(self, Zs, seed: int):
        rng = np.random.default_rng(seed)
        C, n = int(self.n_clusters), len(Zs[0])
        params = []
        for Z in Zs:
            v = (rng.random((C, Z.shape[1])) * 2 - 1) / math.sqrt(Z.shape[1])
            params.append([v, np.linalg.norm(v, axis=1), np.zeros(C)])
        adam = _Adam([p for ps in params for p in ps], self.outer_lr)
        history, objective, K = [], float("nan"), len(Zs)
        batch = min(int(self.batch_size), n)
        states = [[] if self.warm_start else None for _ in Zs]
        for it in range(int(self.n_iter)):
            rows = np.sort(rng.choice(n, batch, replace=False)) if batch < n else slice(None)
            Zb = [Z[rows] for Z in Zs]
            per_space = self._space_proba(params, Zb)
            tau = sum(per_space) / K
            log_pred = [self._inner(z, tau, rng, st) for z, st in zip(Zb, states)]
            log_pred = [L - L.max(1, keepdims=True) - np.log(np.exp(L - L.max(1, keepdims=True)).sum(1, keepdims=True))
                        for L in log_pred]
            objective, grads = self._outer(params, Zb, per_space, log_pred)
            adam.step(grads)
            if it % 50 == 0 or it == int(self.n_iter) - 1:
                history.append(round(objective, 5))
        proba = sum(self._space_proba(params, Zs)) / K
        return params, proba, objective, history

    def fit(self, spaces, y=None) -> "TurtleClusterer":
        """Fit on ``spaces``: a list of ``(n_images, dim_k)`` arrays (or one array) of the same images."""
        Zs = self._check(spaces)
        best = None
        for r in range(int(self.n_init)):
            run = self._run(Zs, run_seed(self.random_state, r))
            if best is None or run[2] < best[2]:
                best = run
        self.params_ = [[p.copy() for p in ps] for ps in best[0]]
        self.proba_, self.objective_, self.history_ = best[1], best[2], best[3]
        self.labels_ = np.argmax(self.proba_, axis=1)
        self.n_clusters_ = int(len(np.unique(self.labels_)))
        self.dims_ = [Z.shape[1] for Z in Zs]
        if self.n_clusters_ < self.n_clusters:
            log.warning("turtle: %d of %d groups received images", self.n_clusters_, self.n_clusters)
        return self

    def predict_proba(self, spaces) -> np.ndarray:
        """``tau`` for new images given in the same spaces (each already reduced the same way)."""
        Zs = [_unit(Z) for Z in ([spaces] if isinstance(spaces, np.ndarray) else spaces)]
        if [Z.shape[1] for Z in Zs] != self.dims_:
            raise ParameterError(f"turtle: spaces of dimensions {[Z.shape[1] for Z in Zs]}; fitted on {self.dims_}")
        return sum(self._space_proba(self.params_, Zs)) / len(Zs)

    def predict(self, spaces) -> np.ndarray:
        return np.argmax(self.predict_proba(spaces), axis=1)


class _Adam:
    """Adam (Kingma and Ba 2015, PyTorch's defaults: betas 0.9 / 0.999, eps 1e-8) updating arrays in place."""

    def __init__(self, params: list, lr: float):
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)
