"""What the self-supervised modules share: the components, seeding, determinism, neighbours and the input PCA."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import numpy as np

from brainclust.core.arrays import cosine_knn
from brainclust.errors import ParameterError

COMPONENTS: tuple[str, ...] = ("contrastive", "rotation", "joint", "refine")
#: A method of its own (:mod:`brainclust.selfsup.temi`), not combinable with the components.
TEMI = "temi"
#: Above this many input dimensions the head's input PCA is a randomized SVD (see :func:`input_pca`).
EXACT_PCA_MAX_DIM = 4096
FORMAT_VERSION = 1


def parse_components(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"contrastive,rotation"``, ``"all"``, ``"temi"``, ``"none"`` or a sequence -> ordered tuple of components."""
    if value is None:
        return ()
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if items in (["all"],):
        return COMPONENTS
    if items in ([], ["none"], ["off"]):
        return ()
    if {"none", "off"} & set(items):
        raise ParameterError(f"--self-supervised: '{next(v for v in items if v in ('none', 'off'))}' means no "
                             "self-supervised learning; it cannot be combined with components")
    if TEMI in items:
        if len(set(items)) > 1:
            raise ParameterError("--self-supervised: temi is a method of its own; it cannot be combined "
                                 "with the other components")
        return (TEMI,)
    bad = [v for v in items if v not in COMPONENTS]
    if bad:
        raise ParameterError(f"--self-supervised: unknown component '{bad[0]}'; choose from "
                             f"{', '.join(COMPONENTS)}, 'all', 'temi' or 'none'")
    return tuple(c for c in COMPONENTS if c in items)


def seed_for(*parts) -> int:
    """A 63-bit seed derived from ``parts`` (independent streams for heads, rounds...)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


@contextlib.contextmanager
def torch_determinism(threads: int = 1):
    """Run a block on ``threads`` threads with deterministic algorithms, restoring the settings after."""
    import torch

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def cosine_neighbors(E, k: int):
    """Indices ``(n, k)`` of each row's ``k`` cosine-nearest other rows (torch tensor in, int64 tensor out):
    :func:`brainclust.core.arrays.cosine_knn` on the tensor's values."""
    import torch

    idx, _ = cosine_knn(E.detach().cpu().numpy(), k, exclude_self=True)
    return torch.from_numpy(idx.astype(np.int64))


def input_pca(X: np.ndarray, n_components: int, whiten_power: float = 0.0, random_state: int | None = 0):
    """``(mean, components, scale)`` of the input map ``x -> (x - mean) @ components.T / scale``.

    PCA by the eigendecomposition of the ``(D, D)`` covariance (exact, fast for many
    rows) up to ``EXACT_PCA_MAX_DIM`` input dimensions, and by a randomized
    SVD seeded by ``random_state`` (the run's seed) above (pixels, HOG and fused features have 8k-18k
    dimensions). Signs are
    fixed so that each component's largest entry is positive. Each
    component is divided by ``std ** whiten_power`` and all by one constant, so
    that the mapped input has unit mean variance per dimension.
    """
    X = np.asarray(X, np.float64)
    mean = X.mean(0)
    Xc = X - mean
    d = int(max(1, min(n_components, X.shape[0] - 1, X.shape[1])))
    if X.shape[1] <= EXACT_PCA_MAX_DIM:
        evals, evecs = np.linalg.eigh(Xc.T @ Xc / max(1, X.shape[0] - 1))
        order = np.argsort(evals)[::-1][:d]
        comps, evals = evecs[:, order].T, evals[order]
    else:  # pixels, HOG, fusions: a (D, D) eigendecomposition would take minutes to hours
        from sklearn.utils.extmath import randomized_svd

        _, sv, comps = randomized_svd(Xc, d, n_oversamples=20, n_iter=7, random_state=random_state)
        evals = sv ** 2 / max(1, X.shape[0] - 1)
    comps *= np.sign(comps[np.arange(d), np.argmax(np.abs(comps), axis=1)])[:, None]
    sd = np.sqrt(np.maximum(evals, 1e-12))
    scale = sd ** whiten_power
    scale = scale * np.sqrt(np.mean((sd / scale) ** 2))
    return mean, np.ascontiguousarray(comps), scale
