"""Augmented *views* of a pre-processed image, for self-supervised learning.

A view is a named function ``(img, rng) -> img`` on a 2-D float image in
``[0, 1]`` of shape ``(S, S)``; it must return the same shape. Its randomness
comes from a generator seeded by the image's content key, the view name and a
seed, so a view is reproducible and can be cached like any feature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from .errors import ParameterError

ViewFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

VIEWS: dict[str, ViewFn] = {
    "identity": lambda img, rng: img,
    "hflip": lambda img, rng: img[:, ::-1].copy(),
    "rot90": lambda img, rng: np.rot90(img, 1).copy(),
    "rot180": lambda img, rng: np.rot90(img, 2).copy(),
    "rot270": lambda img, rng: np.rot90(img, 3).copy(),
}


def check(name: str) -> None:
    if name not in VIEWS:
        raise ParameterError(f"view: unknown augmentation '{name}'; choose one of {', '.join(VIEWS)}")


def rng_for(key: str, view: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{key}|{view}|{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def apply(view: str, img: np.ndarray, key: str, seed: int = 0) -> np.ndarray:
    """Apply the named view to ``img`` with randomness seeded by ``(key, view, seed)``."""
    check(view)
    out = VIEWS[view](img, rng_for(key, view, seed))
    return np.ascontiguousarray(out, dtype=np.float32)
