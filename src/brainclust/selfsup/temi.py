"""``--self-supervised temi``: clustering heads trained on frozen features (TEMI).

After Adaloglou et al., "Exploring the limits of deep image clustering using
pretrained models" (BMVC 2023): images whose frozen features are near
neighbours probably share a cluster, so heads are trained to give an image and
a random one of its ``n_neighbors`` nearest neighbours the same cluster
distribution. It needs no augmented views: only the features the run already has.

What :meth:`TEMIHead.fit` does:

1. **Input map.** Rows are L2-normalised, mapped by PCA to ``input_dim``
   dimensions (:func:`~brainclust.selfsup.common.input_pca`) and normalised again;
   the ``n_neighbors`` cosine nearest neighbours of every image are mined there.
2. **Training.** ``n_heads`` student heads (``Linear -> GELU -> Linear`` to
   ``n_clusters`` logits) and a teacher copy of each, updated as an exponential
   moving average (``momentum``) of its student. For a batch of images ``x`` and
   one random neighbour ``x'`` of each, with ``q_s = softmax(student / tau_s)``,
   ``q_t = softmax(teacher / tau_t)`` and ``pi`` a moving average of the teacher's
   cluster marginal::

       pmi(x, x') = log sum_c (q_s(c|x) q_t(c|x'))**beta / pi(c)
       w(x, x')   = mean over heads of sum_c q_t(c|x) q_t(c|x')     (no gradient)
       loss       = -1/2 mean_batch w(x, x') * (pmi(x, x') + pmi(x', x))

   ``beta < 1`` and the division by ``pi`` keep the heads from collapsing into one
   cluster; the weight ``w`` discounts neighbour pairs the heads already place
   apart (false positives).
3. **Embedding.** Each image becomes the concatenation over heads of the square
   roots of its teacher probabilities, divided by ``sqrt(n_heads)``: the cosine of
   two images is then the mean over heads of the Bhattacharyya coefficient of their
   cluster distributions. The pipeline's reference clustering of this embedding is
   a consensus of the heads.

The paper's settings are kept where they carry over (``beta`` 0.6, ``tau_s``
0.1, ``tau_t`` 0.04); the head count (10, not 50), the head width and the
teacher momentum (0.99, for the few hundred steps of a small set) are chosen for
a 2-core CPU and were fixed before any score was seen. Training stops after
``epochs`` passes or ``max_steps`` steps, whichever comes first.

Determinism: weights, batches and neighbour draws come from a ``torch.Generator``
seeded by ``random_state``; training runs on one thread with deterministic algorithms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from brainclust.core.arrays import seeded_sample, unit_rows
from brainclust.core.params import check_is_fitted
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_json
from brainclust.progress import bar
from brainclust.selfsup.common import FORMAT_VERSION, cosine_neighbors, input_pca, seed_for, torch_determinism

STEM = "ssl_temi"
#: Smallest cluster prior used in the loss (an empty cluster's EMA prior decays towards 0).
PRIOR_FLOOR = 1e-30


class TEMIHead:
    """TEMI clustering heads on frozen features (``--self-supervised temi``).

    Parameters
    ----------
    n_clusters : int, default 4
        Outputs of each head (the run's k).
    epochs : int, default 200
        Passes over the images (each image is an anchor once per pass).
    n_heads : int, default 10
    n_neighbors : int, default 20
        Mined neighbours per image (capped by the number of images).
    input_dim, hidden : int, default 64 and 256
    beta : float, default 0.6
    student_temperature, teacher_temperature : float, default 0.1 and 0.04
    momentum : float, default 0.99
        Teacher EMA per step.
    prior_momentum : float, default 0.9
        EMA of the teacher's cluster marginal per step.
    lr, weight_decay : float, default 1e-3 and 1e-4
        AdamW.
    batch_size : int, default 256
        Capped at a quarter of the images (at least 32) so that a small set still
        gives several steps per epoch.
    max_steps : int, default 5000
        Cap on optimiser steps (bounds the cost on large sets).
    fit_max : int, default 20000
        The heads are trained on a seeded sample of at most this many images (the
        neighbour mining is quadratic in the images it sees); every image is embedded.
    random_state : int, default 0

    Attributes
    ----------
    embedding_ : ndarray of shape (n_images, n_heads * n_clusters)
    head_agreement_ : float
        Mean ARI between the heads' partitions of the images they were trained on. The
        heads start from different weights but share the batches, the neighbour draws
        and the loss weight, so this is a proxy for seed stability (what the gate uses),
        not the agreement of fully independent runs.
    history_ : dict
        ``loss``: ``{"temi": per-epoch mean loss}``; ``refine``: ``[]`` (no rounds).
    """

    def __init__(self, n_clusters: int = 4, epochs: int = 200, n_heads: int = 10, n_neighbors: int = 20,
                 input_dim: int = 64, hidden: int = 256, beta: float = 0.6, student_temperature: float = 0.1,
                 teacher_temperature: float = 0.04, momentum: float = 0.99, prior_momentum: float = 0.9,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256, max_steps: int = 5000,
                 fit_max: int = 20000, random_state: int = 0):
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.n_heads = n_heads
        self.n_neighbors = n_neighbors
        self.input_dim = input_dim
        self.hidden = hidden
        self.beta = beta
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.momentum = momentum
        self.prior_momentum = prior_momentum
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.fit_max = fit_max
        self.random_state = random_state

    _INTS = ("n_clusters", "epochs", "n_heads", "n_neighbors", "input_dim", "hidden", "batch_size", "max_steps",
             "fit_max")
    _UNIT = ("beta", "momentum", "prior_momentum")
    _POSITIVE = ("student_temperature", "teacher_temperature", "lr")

    def check_params(self) -> None:
        for name in self._INTS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "batch_size" else 1):
                raise ParameterError(f"temi {name}: must be a positive integer, got {v!r}")
        for name in self._UNIT + self._POSITIVE + ("weight_decay",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(f"temi {name}: must be a number, got {v!r}")
        if (any(not 0 < getattr(self, n) <= 1 for n in self._UNIT) or any(getattr(self, n) <= 0 for n in self._POSITIVE)
                or self.weight_decay < 0):
            raise ParameterError("temi: beta and the momenta must be in (0, 1]; temperatures and lr above 0; "
                                 "weight_decay at least 0")

    # -- model -----------------------------------------------------------------
    def _init_weights(self, d_in: int):
        """Student weights ``[W1 (H, d, h), b1 (H, 1, h), W2 (H, h, C), b2 (H, 1, C)]`` as leaf tensors."""
        import torch

        gen = torch.Generator().manual_seed(seed_for(self.random_state, "temi-init"))
        H, h, C = self.n_heads, self.hidden, self.n_clusters

        def uniform(shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return ((torch.rand(shape, generator=gen) * 2 - 1) * bound).requires_grad_(True)

        return [uniform((H, d_in, h), d_in), uniform((H, 1, h), d_in), uniform((H, h, C), h), uniform((H, 1, C), h)]

    @staticmethod
    def _logits(weights, x):
        """``(B, d) -> (H, B, C)`` logits of every head."""
        import torch
        import torch.nn.functional as F

        W1, b1, W2, b2 = weights
        hidden = F.gelu(torch.matmul(x.unsqueeze(0), W1) + b1)
        return torch.matmul(hidden, W2) + b2

    def _map(self, X: np.ndarray):
        import torch
        import torch.nn.functional as F

        U = unit_rows(np.asarray(X, np.float64))
        Z = (U - self.input_mean_) @ self.input_components_.T
        return F.normalize(torch.from_numpy(Z.astype(np.float32)), dim=1)

    def _pmi(self, log_ps, log_pt, log_prior):
        """``log sum_c (q_s q_t)**beta / pi`` from log-probabilities ``(H, B, C)`` and ``log pi`` ``(H, C)``.

        Computed as a log-sum-exp of ``beta * (log q_s + log q_t) - log pi``: the same value as the
        product form wherever that is finite, but without its two failure modes. In float32 a
        confident teacher (``tau_t`` 0.04: a logit gap of about 4 is a probability below 1e-45)
        makes ``q_s * q_t`` exactly 0, where the gradient of ``x ** beta`` is infinite and the
        chain rule gives ``0 * inf = NaN``; and the prior of an empty cluster decays (EMA) to 0,
        a division by zero. Either turned every weight, then the embedding, into NaN after a few
        thousand steps on a 6,000-image set (issue 24: the gate then failed on "PCA: features must
        be a finite 2-D array").
        """
        import torch

        return torch.logsumexp(self.beta * (log_ps + log_pt) - log_prior.unsqueeze(1), dim=-1)

    def _step(self, student, teacher, prior, xa, xb):
        """Loss of one batch (anchors ``xa``, their sampled neighbours ``xb``) and the batch teacher marginal."""
        import torch

        la, lb = (torch.log_softmax(self._logits(student, x) / self.student_temperature, -1) for x in (xa, xb))
        with torch.no_grad():
            lta, ltb = (torch.log_softmax(self._logits(teacher, x) / self.teacher_temperature, -1) for x in (xa, xb))
            ta, tb = lta.exp(), ltb.exp()
            weight = (ta * tb).sum(-1).mean(0)  # (B,), the heads' agreement that the pair shares a cluster
            log_prior = prior.clamp_min(PRIOR_FLOOR).log()
        pmi = self._pmi(la, ltb, log_prior) + self._pmi(lb, lta, log_prior)  # (H, B)
        loss = -0.5 * (weight.unsqueeze(0) * pmi).mean()
        return loss, torch.cat([ta, tb], dim=1).mean(1)

    # -- estimator API -----------------------------------------------------------
    def fit(self, X, y=None) -> "TEMIHead":
        """Train on frozen features ``X`` of shape ``(n_images, dim)``."""
        import torch

        self.check_params()
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or len(X) < 3:
            raise ParameterError(f"temi: needs a 2-D feature matrix of at least 3 images, got shape {X.shape}")
        rows = np.arange(len(X))
        if len(X) > self.fit_max:
            rows = seeded_sample(len(X), self.fit_max, seed_for(self.random_state, "temi-sample"))
        self.fit_rows_ = len(rows)
        U = unit_rows(X[rows])
        self.input_mean_, self.input_components_, _ = input_pca(U, self.input_dim,
                                                                 random_state=self.random_state % 2**32)
        self.n_features_in_ = X.shape[1]
        n, C = len(rows), self.n_clusters
        batch = max(2, min(self.batch_size, n, max(32, n // 4)))
        curve = []
        with torch_determinism():
            Z = self._map(X[rows])
            nbrs = cosine_neighbors(Z, min(self.n_neighbors, n - 1))
            student = self._init_weights(Z.shape[1])
            teacher = [w.detach().clone() for w in student]
            prior = torch.full((self.n_heads, C), 1.0 / C)
            opt = torch.optim.AdamW(student, lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(seed_for(self.random_state, "temi-train"))
            steps = 0
            desc = f"temi: {self.n_heads} heads"
            pbar = bar(min(self.epochs * len(range(0, n, batch)), self.max_steps), desc, unit="step")
            for epoch in range(self.epochs):
                pbar.set_description(f"{desc}, epoch {epoch + 1}/{self.epochs}", refresh=False)
                order, total, seen = torch.randperm(n, generator=gen), 0.0, 0
                for s in range(0, n, batch):
                    idx = order[s:s + batch]
                    pick = torch.randint(nbrs.shape[1], (len(idx),), generator=gen)
                    loss, marginal = self._step(student, teacher, prior, Z[idx], Z[nbrs[idx, pick]])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        for t, w in zip(teacher, student):
                            t.mul_(self.momentum).add_(w.detach(), alpha=1 - self.momentum)
                        prior.mul_(self.prior_momentum).add_(marginal, alpha=1 - self.prior_momentum)
                    total, seen, steps = total + float(loss.detach()) * len(idx), seen + len(idx), steps + 1
                    pbar.update(1)
                    if steps >= self.max_steps:
                        break
                curve.append(round(total / seen, 5))
                if steps >= self.max_steps:
                    break
            pbar.close()
            if not all(bool(torch.isfinite(w).all()) for w in teacher):
                raise ParameterError(f"temi: training diverged (non-finite weights after {steps} steps, seed "
                                     f"{self.random_state}); try fewer --ssl-epochs or another --seed")
            self.teacher_ = teacher
            self.embedding_ = self._embed(Z if len(rows) == len(X) else self._map(X))
        self.head_agreement_ = head_agreement(self.embedding_[rows], self.n_heads, C)
        self.history_ = {"loss": {"temi": curve}, "refine": [], "steps": steps}
        return self

    def _embed(self, Z) -> np.ndarray:
        import torch

        with torch.no_grad():
            p = torch.softmax(self._logits(self.teacher_, Z) / self.teacher_temperature, -1)  # (H, n, C)
        E = p.sqrt().permute(1, 0, 2).reshape(len(Z), -1) / math.sqrt(self.n_heads)
        return E.numpy().astype(np.float64)

    def transform(self, X) -> np.ndarray:
        """Embedding ``(n_images, n_heads * n_clusters)`` of new images' frozen features."""
        check_is_fitted(self, "n_features_in_")
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ParameterError(f"temi: features have shape {X.shape}; the heads were trained on "
                                 f"{self.n_features_in_} dimensions")
        with torch_determinism():
            return self._embed(self._map(X))

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).embedding_

    # -- persistence (safetensors + JSON, no pickle) -----------------------------
    _KEYS = ("n_clusters", "epochs", "n_heads", "n_neighbors", "input_dim", "hidden", "beta", "student_temperature",
             "teacher_temperature", "momentum", "prior_momentum", "lr", "weight_decay", "batch_size", "max_steps",
             "fit_max", "random_state")

    def params(self) -> dict:
        return {"method": "temi", **{k: getattr(self, k) for k in self._KEYS}}

    def save(self, folder) -> None:
        """Write ``ssl_temi.safetensors`` (teacher weights, input map) and ``ssl_temi.json``."""
        import torch
        from safetensors.torch import save

        tensors = {f"teacher.{i}": w.contiguous().clone() for i, w in enumerate(self.teacher_)}
        tensors["input.mean"] = torch.from_numpy(np.ascontiguousarray(self.input_mean_))
        tensors["input.components"] = torch.from_numpy(np.ascontiguousarray(self.input_components_))
        folder = Path(folder)
        atomic_write_bytes(folder / f"{STEM}.safetensors", save(tensors))
        atomic_write_json(folder / f"{STEM}.json", {"format": FORMAT_VERSION, "params": self.params(),
                                                    "n_features_in": self.n_features_in_})

    @classmethod
    def load(cls, folder) -> "TEMIHead":
        """Read what :meth:`save` wrote; raise :class:`ModelFileError` naming the file if missing or damaged."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            info = json.loads((folder / f"{STEM}.json").read_text())
            params = {k: v for k, v in info["params"].items() if k != "method"}
            self = cls(**params)
            self.check_params()
            tensors = load_file(str(folder / f"{STEM}.safetensors"))
            self.teacher_ = [tensors[f"teacher.{i}"] for i in range(4)]
            self.input_mean_ = tensors["input.mean"].numpy()
            self.input_components_ = tensors["input.components"].numpy()
            self.n_features_in_ = int(info["n_features_in"])
            d, H, h, C = len(self.input_components_), self.n_heads, self.hidden, self.n_clusters
            want = [(H, d, h), (H, 1, h), (H, h, C), (H, 1, C)]
            if ([tuple(t.shape) for t in self.teacher_] != want
                    or self.input_components_.shape[1] != self.n_features_in_
                    or self.input_mean_.shape != (self.n_features_in_,)):
                raise ValueError(f"tensor shapes do not match the settings (want {want})")
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, ParameterError, SafetensorError) as exc:
            raise ModelFileError(f"TEMI heads in '{folder / STEM}.*' are missing or damaged "
                                 f"({type(exc).__name__}: {exc})") from None
        return self


def head_agreement(embedding: np.ndarray, n_heads: int, n_clusters: int) -> float:
    """Mean pairwise ARI between the heads' most probable clusters (1.0 for a single head)."""
    from sklearn.metrics import adjusted_rand_score

    parts = np.asarray(embedding).reshape(len(embedding), n_heads, n_clusters).argmax(2)
    pairs = [(i, j) for i in range(n_heads) for j in range(i + 1, n_heads)]
    return float(np.mean([adjusted_rand_score(parts[:, i], parts[:, j]) for i, j in pairs])) if pairs else 1.0
