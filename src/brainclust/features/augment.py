"""Augmented *views* of a pre-processed image, for self-supervised learning.

A view is a named function ``(img, rng) -> img`` on a 2-D float image in
``[0, 1]`` of shape ``(S, S)``; it must return the same shape and stay in
``[0, 1]``. Its randomness comes from a generator seeded by the image's
content key, the view name and a seed, so a view is reproducible and can be
cached like any feature (``FeatureExtractor(view=NAME, view_seed=S)``).

Views suited to MRI slices:

* geometry: ``hflip``, ``vflip``, the four rotations (``identity``, ``rot90``,
  ``rot180``, ``rot270``; the targets of the rotation pretext task),
  ``crop`` (random crop of 60-90 % of the area, rescaled back),
  ``affine`` (small rotation of up to 15 degrees and scale 0.9-1.1);
* intensity: ``gamma`` (gamma in [0.7, 1.5]), ``contrast`` (x0.7-1.3 about
  the mean), ``bias`` (a smooth multiplicative bias field, as produced by coil
  inhomogeneity), ``noise`` (Rician noise), and ``intensity`` = all four;
* ``strong``: random horizontal flip, ``affine``, ``crop`` and ``intensity``
  together: the SimCLR-style view used for the contrastive loss;
* ``tight_crop``: the slice cropped to its content (the air around the head
  removed) and 0-10 % further in on each side, as some public sets store
  slices; the data checks' likeness rule compares pictures without air to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from brainclust.errors import ParameterError
from brainclust.features.preprocess import pad_to_square, resize_keep_aspect

ViewFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: Views whose rotation angle is known: name -> quarter turns (counter-clockwise).
ROTATIONS: dict[str, int] = {"identity": 0, "rot90": 1, "rot180": 2, "rot270": 3}


def crop(img: np.ndarray, rng: np.random.Generator, area: tuple[float, float] = (0.6, 0.9)) -> np.ndarray:
    """Random square-ish crop of ``area`` of the image, rescaled back to its size."""
    s = img.shape[0]
    frac = rng.uniform(*area)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    h = int(np.clip(round(s * np.sqrt(frac / ratio)), 2, s))
    w = int(np.clip(round(s * np.sqrt(frac * ratio)), 2, s))
    top = int(rng.integers(0, s - h + 1))
    left = int(rng.integers(0, s - w + 1))
    patch = img[top:top + h, left:left + w]
    out = Image.fromarray(np.asarray(patch, np.float32), mode="F").resize((s, s), Image.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def affine(img: np.ndarray, rng: np.random.Generator, degrees: float = 15.0,
           scale: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
    """Small rotation (uniform in +-``degrees``) and isotropic scale about the centre; 0 fills."""
    s = img.shape[0]
    angle = float(rng.uniform(-degrees, degrees))
    z = float(rng.uniform(*scale))
    im = Image.fromarray(np.asarray(img, np.float32), mode="F")
    im = im.rotate(angle, resample=Image.BILINEAR, fillcolor=0.0)
    n = max(2, round(s * z))
    im = im.resize((n, n), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.float32)
    if n >= s:
        o = (n - s) // 2
        return arr[o:o + s, o:o + s].copy()
    out = np.zeros((s, s), np.float32)
    o = (s - n) // 2
    out[o:o + n, o:o + n] = arr
    return out


def gamma(img: np.ndarray, rng: np.random.Generator, low: float = 0.7, high: float = 1.5) -> np.ndarray:
    """``img ** g`` with ``log g`` uniform in ``[log low, log high]``."""
    g = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return np.power(np.clip(img, 0.0, 1.0), g)


def contrast(img: np.ndarray, rng: np.random.Generator, low: float = 0.7, high: float = 1.3) -> np.ndarray:
    """Scale the deviations from the mean intensity by a factor in ``[low, high]``."""
    c = float(rng.uniform(low, high))
    m = float(img.mean())
    return np.clip((img - m) * c + m, 0.0, 1.0)


def bias(img: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """Multiply by a smooth bias field ``exp(p(x, y))``, ``p`` a random quadratic of range about +-``strength``."""
    s = img.shape[0]
    y, x = np.mgrid[-1:1:complex(0, s), -1:1:complex(0, s)]
    terms = np.stack([x, y, x * y, x * x - 1 / 3, y * y - 1 / 3])
    coef = rng.normal(0.0, strength / 2, size=5)
    field = np.exp(np.tensordot(coef, terms, axes=1))
    return np.clip(img * field, 0.0, 1.0)


def noise(img: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (0.01, 0.05)) -> np.ndarray:
    """Rician noise: the magnitude of the image plus complex Gaussian noise of std in ``sigma``."""
    sd = float(rng.uniform(*sigma))
    re = img + rng.normal(0.0, sd, img.shape)
    im = rng.normal(0.0, sd, img.shape)
    return np.clip(np.sqrt(re * re + im * im), 0.0, 1.0)


def intensity(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``gamma``, ``contrast``, ``bias`` and ``noise`` in turn."""
    for fn in (gamma, contrast, bias, noise):
        img = fn(img, rng)
    return img


def strong(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip, ``affine``, ``crop`` (70-100 % area) and ``intensity``."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = affine(img, rng)
    img = crop(img, rng, area=(0.7, 1.0))
    return intensity(img, rng)


def tight_crop(img: np.ndarray, rng: np.random.Generator, content: float = 0.1, inset: float = 0.1) -> np.ndarray:
    """The bounding box of the pixels above ``content``, cut a random 0-``inset`` further in on each side,
    enlarged to fill the frame with its aspect kept (0 pads), as a file holding only that box would be
    pre-processed. An image without content is returned unchanged."""
    ys, xs = np.nonzero(img > content)
    if len(ys) == 0:
        return img
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    cut = rng.uniform(0.0, inset, 4)
    patch = img[y0 + int(cut[0] * h):y1 - int(cut[1] * h), x0 + int(cut[2] * w):x1 - int(cut[3] * w)]
    return np.clip(pad_to_square(resize_keep_aspect(patch, img.shape[0]), img.shape[0], 0.0), 0.0, 1.0)


VIEWS: dict[str, ViewFn] = {
    "identity": lambda img, rng: img,
    "hflip": lambda img, rng: img[:, ::-1].copy(),
    "vflip": lambda img, rng: img[::-1, :].copy(),
    "rot90": lambda img, rng: np.rot90(img, 1).copy(),
    "rot180": lambda img, rng: np.rot90(img, 2).copy(),
    "rot270": lambda img, rng: np.rot90(img, 3).copy(),
    "crop": crop,
    "affine": affine,
    "gamma": gamma,
    "contrast": contrast,
    "bias": bias,
    "noise": noise,
    "intensity": intensity,
    "strong": strong,
    "tight_crop": tight_crop,
}


def check(name: str) -> None:
    """Raise :class:`~brainclust.errors.ParameterError` unless ``name`` is a registered view."""
    if name not in VIEWS:
        raise ParameterError(f"view: unknown augmentation '{name}'; choose one of {', '.join(VIEWS)}")


def rng_for(key: str, view: str, seed: int) -> np.random.Generator:
    """The generator of one (image, view, seed): independent of everything else."""
    digest = hashlib.sha256(f"{key}|{view}|{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def apply(view: str, img: np.ndarray, key: str, seed: int = 0) -> np.ndarray:
    """Apply the named view to ``img`` with randomness seeded by ``(key, view, seed)``.

    Returns a C-contiguous float32 array of the same shape, in ``[0, 1]``.
    """
    check(view)
    out = VIEWS[view](np.asarray(img, dtype=np.float32), rng_for(key, view, seed))
    return np.ascontiguousarray(out, dtype=np.float32)
