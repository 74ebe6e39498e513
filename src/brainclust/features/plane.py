"""Which plane is a 2-D brain slice cut in? A label-free estimate for images without headers.

Clusters of real brain MRI follow the slice plane before anything else, so ``--within
plane`` / ``--remove plane`` need each image's plane. NIfTI slices know it (their frame,
``axial=45``); PNG and JPEG slices do not. :class:`PlaneEstimator` guesses it from the
**outline of the head**, which looks alike in every contrast: an axial slice is an oval,
longer front-to-back and mirror-symmetric left-right; a coronal slice is as wide as
tall, symmetric, with the temporal lobes and the brainstem below; a sagittal slice is
longer front-to-back than tall and not symmetric.

**Training data: geometry of a template, never the user's labels.** The classifier is
fitted on slices cut from the MNI152 T1 template that ships inside nilearn (the demo's
template), in the three planes, at random positions through the brain, each with a
random in-plane rotation (±15°), zoom, shift, left-right flip, gamma, a contrast
inversion on half of them (T2-like: bright fluid) and, on half, a bright rim around the
brain (skull and scalp). The labels are the planes the slices were cut in: what the
estimator learns is the geometry of a head, not anything about the user's data.

**Descriptor** (:func:`shape_descriptor`, contrast-free by construction): the head mask
(above 10 % of the image's robust range after a light blur, holes filled, largest
component) cropped to its bounding box; the log aspect ratio of the box; the mask's
fill fraction; its row and column width profiles (16 bins each); its left-right and
top-bottom mirror overlap (IoU); and the mask itself at 12 x 12. A multinomial logistic
regression on the standardised descriptor gives the probabilities.

Accuracy, measured where the plane is known (``docs/results.md``, "Plane estimate"):
on the demo generator's slices and on slices cut from real BraTS volumes in four
sequences. It is an estimate: :func:`estimate_planes` prefers the plane a NIfTI frame
records and says which images were estimated.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.base import BaseEstimator

from brainclust.errors import InputError, ParameterError

log = logging.getLogger(__name__)

PLANES = ("axial", "coronal", "sagittal")
#: Changes whenever the descriptor or the training slices change (stored models of another version are refitted).
VERSION = "3"
TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: Side of the mask thumbnail in the descriptor, and bins of its width profiles.
THUMB = 12
PROFILE = 16
#: Work size of the descriptor (the image's longer side is resized to this first).
WORK = 128


def template_path() -> Path:
    """The MNI152 T1 template inside the installed nilearn package (no network)."""
    spec = importlib.util.find_spec("nilearn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "datasets" / "data" / TEMPLATE
        if p.is_file():
            return p
    raise InputError(f"plane estimate: the MNI152 template '{TEMPLATE}' was not found in the nilearn package "
                     "(pip install nilearn)")


def head_mask(img: np.ndarray) -> np.ndarray:
    """Boolean mask of the head: blurred image above 10 % of its 1-99 percentile range, filled, largest part."""
    a = ndimage.gaussian_filter(np.asarray(img, np.float32), 1.0)
    lo, hi = np.percentile(a, (1, 99))
    if not hi > lo:
        return np.zeros(a.shape, bool)
    m = ndimage.binary_fill_holes(a > lo + 0.1 * (hi - lo))
    lab, n = ndimage.label(m)
    if n > 1:
        m = lab == (1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1)))))
    return m


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BOX))


def _profile(v: np.ndarray) -> np.ndarray:
    return np.interp(np.linspace(0, len(v) - 1, PROFILE), np.arange(len(v)), v)


def shape_descriptor(img: np.ndarray) -> np.ndarray:
    """The plane descriptor of one 2-D grey image (see the module docstring); zeros for a blank image."""
    img = np.nan_to_num(np.asarray(img, np.float32))
    if img.ndim != 2:
        raise ParameterError(f"plane estimate: needs a 2-D image, got shape {img.shape}")
    scale = WORK / max(img.shape)
    if scale < 1:
        img = _resize(img, (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))))
    m = head_mask(img)
    dim = 2 + 2 * PROFILE + 4 + THUMB * THUMB
    if m.sum() < 16:
        return np.zeros(dim)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    box = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    h, w = box.shape
    lr = float((box * box[:, ::-1]).sum() / max(1.0, np.maximum(box, box[:, ::-1]).sum()))
    tb = float((box * box[::-1]).sum() / max(1.0, np.maximum(box, box[::-1]).sum()))
    grey = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    mirror = [_corr(grey, grey[:, ::-1]), _corr(grey, grey[::-1])]  # intensity symmetry, contrast-free
    return np.concatenate([[np.log(h / w), box.mean()], _profile(box.mean(1)), _profile(box.mean(0)), [lr, tb],
                           mirror, _resize(box, (THUMB, THUMB)).reshape(-1)])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-shape images (0 when one is constant)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _add_neck(img: np.ndarray, brain: np.ndarray, plane: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """A crude neck below the brain (centred in coronal slices, behind the middle in sagittal ones, where a
    face bump is added in front): real full-head slices have them, the skull-stripped template does not."""
    rows, cols = np.flatnonzero(brain.any(1)), np.flatnonzero(brain.any(0))
    if not len(rows):
        return img, brain
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    h, w = bottom - top + 1, right - left + 1
    extra = int(h * rng.uniform(0.2, 0.5))
    img, brain = np.pad(img, ((0, extra), (0, 0))), np.pad(brain, ((0, extra), (0, 0)))
    centre = left + w * (0.5 if plane == "coronal" else rng.uniform(0.35, 0.5))
    half = w * rng.uniform(0.18, 0.3) / 2 if plane == "coronal" else w * rng.uniform(0.15, 0.25) / 2
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    neck = ((yy > top + 0.7 * h)
            & (np.abs(xx - centre) < half * (1 + 0.6 * np.clip((yy - bottom) / max(1, extra), 0, 1))))
    if plane == "sagittal":  # the face: in front of and below the frontal lobe (anterior is on the right)
        cy, cx = top + h * rng.uniform(0.7, 0.9), left + w * rng.uniform(0.75, 0.9)
        neck |= ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.15 * w)) ** 2 < 1
    neck &= ~brain
    tissue = np.clip(rng.uniform(0.2, 0.6) + rng.normal(0, 0.05, img.shape), 0, 1)
    return np.where(neck, tissue, img), brain | neck


def _template_volume() -> np.ndarray:
    from brainclust.io.formats import nifti

    vol = np.array(nifti.load_volume(template_path()), dtype=np.float32, order="C")  # a contiguous copy: fast cuts
    vol /= max(float(vol.max()), 1e-6)
    return vol


def template_ranges(vol: np.ndarray | None = None) -> np.ndarray:
    """``(first, last)`` slice with brain of the template in each plane of :data:`PLANES` (3, 2): the span the
    training slices are drawn from. A stored model trained on another span is refitted (:func:`fitted_estimator`):
    a change of ``nifti.brain_range`` moved it by one slice on 2026-12-07 without a change of :data:`VERSION`."""
    from brainclust.io.formats import nifti

    vol = _template_volume() if vol is None else vol
    return np.asarray([nifti.brain_range(vol, plane) for plane in PLANES], dtype=np.int64)


def _template_slices(n_per_plane: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Augmented slices of the template in every plane, their planes, and the span they were drawn from
    (:func:`template_ranges`; see the module docstring)."""
    from brainclust.io.formats import nifti

    vol = _template_volume()
    ranges = template_ranges(vol)
    rng = np.random.default_rng(seed)
    images, planes = [], []
    for p_i, plane in enumerate(PLANES):
        first, last = ranges[p_i]
        lo, hi = first + 0.12 * (last - first), last - 0.12 * (last - first)
        for _ in range(n_per_plane):
            img = nifti.cut(vol, plane, int(rng.integers(int(lo), int(hi) + 1)))
            brain = img > 0.05
            img = np.clip(img, 0, 1) ** rng.uniform(0.6, 1.6)
            if rng.random() < 0.5:  # T2-like: fluid bright, white matter dark
                img = np.where(brain, 1.05 - img, 0)
            if plane != "axial" and rng.random() < 0.6:  # the neck (and, sagittal, the face) below the brain
                img, brain = _add_neck(img, brain, plane, rng)
            if rng.random() < 0.5:  # a bright rim of skull and scalp
                rim = ndimage.binary_dilation(brain, iterations=int(rng.integers(3, 10))) & ~brain
                img = np.where(rim, rng.uniform(0.4, 1.0), img)
            img = ndimage.rotate(img, rng.uniform(-15, 15), reshape=True, order=1)
            z = rng.uniform(0.8, 1.2)
            img = ndimage.zoom(img, z, order=1)
            pad = rng.integers(0, 25, size=4)
            img = np.pad(img, ((pad[0], pad[1]), (pad[2], pad[3])))
            if rng.random() < 0.5:
                img = img[:, ::-1]
            images.append(img + rng.normal(0, 0.02, img.shape))
            planes.append(p_i)
    return images, np.asarray(planes), ranges


class PlaneEstimator(BaseEstimator):
    """Estimate the slice plane of 2-D brain images from the head's outline (template-trained).

    Parameters
    ----------
    n_per_plane : int, default 400
        Template slices per plane in the training set.
    C : float, default 1.0
        Inverse regularisation of the logistic regression.
    random_state : int, default 0

    Attributes
    ----------
    mean_, scale_ : ndarray
        Standardisation of the descriptor.
    coef_, intercept_ : ndarray
        The logistic regression (one row per plane of :data:`PLANES`).
    ranges_ : ndarray (3, 2)
        The span of the template the training slices were drawn from (:func:`template_ranges`).
    train_accuracy_ : float
        On its own template slices (a sanity check, not an accuracy on real data).
    """

    def __init__(self, n_per_plane: int = 400, C: float = 1.0, random_state: int = 0):
        self.n_per_plane = n_per_plane
        self.C = C
        self.random_state = random_state

    def fit(self, X=None, y=None) -> "PlaneEstimator":
        """Fit on template slices; ``X`` and ``y`` are ignored (the user's data never trains it)."""
        from sklearn.linear_model import LogisticRegression

        if isinstance(self.n_per_plane, bool) or not isinstance(self.n_per_plane, int) or self.n_per_plane < 10:
            raise ParameterError(f"plane estimate n_per_plane: must be an integer >= 10, got {self.n_per_plane!r}")
        images, planes, self.ranges_ = _template_slices(self.n_per_plane, self.random_state)
        D = np.stack([shape_descriptor(im) for im in images])
        self.mean_, self.scale_ = D.mean(0), np.maximum(D.std(0), 1e-6)
        lr = LogisticRegression(C=self.C, max_iter=2000).fit((D - self.mean_) / self.scale_, planes)
        self.coef_, self.intercept_ = lr.coef_, lr.intercept_
        self.train_accuracy_ = float((lr.predict((D - self.mean_) / self.scale_) == planes).mean())
        return self

    def predict_proba(self, images) -> np.ndarray:
        """``(n, 3)`` probabilities of :data:`PLANES` for a sequence of 2-D images."""
        D = np.stack([shape_descriptor(im) for im in images]) if len(images) else np.zeros((0, self.coef_.shape[1]))
        z = ((D - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def predict(self, images) -> np.ndarray:
        return np.asarray(PLANES, dtype=object)[np.argmax(self.predict_proba(images), axis=1)]


    # -- persistence (npz, no pickle) ----------------------------------------------
    _ARRAYS = ("mean_", "scale_", "coef_", "intercept_", "ranges_")

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (``.npz``, read back with ``allow_pickle=False``)."""
        from brainclust.io.atomic import atomic_write_npz

        atomic_write_npz(path, version=np.asarray(VERSION), n_per_plane=np.asarray(self.n_per_plane),
                         C=np.asarray(self.C), random_state=np.asarray(self.random_state),
                         train_accuracy=np.asarray(self.train_accuracy_),
                         **{a.rstrip("_"): getattr(self, a) for a in self._ARRAYS})

    @classmethod
    def load(cls, path) -> "PlaneEstimator":
        """Read what :meth:`save` wrote; a missing, damaged or older file raises :class:`ModelFileError`."""
        from brainclust.errors import ModelFileError
        from brainclust.io.atomic import read_npz

        d = read_npz(path, "plane estimator")
        if str(d.get("version", "")) != VERSION or any(a.rstrip("_") not in d for a in cls._ARRAYS):
            raise ModelFileError(f"plane estimator '{path}' is from another version (want {VERSION})")
        self = cls(n_per_plane=int(d["n_per_plane"]), C=float(d["C"]), random_state=int(d["random_state"]))
        for a in cls._ARRAYS:
            setattr(self, a, d[a.rstrip("_")])
        self.train_accuracy_ = float(d["train_accuracy"])
        return self


@functools.lru_cache(maxsize=4)
def fitted_estimator(random_state: int = 0, cache_dir: str | None = None) -> PlaneEstimator:
    """One fitted :class:`PlaneEstimator` per process, seed and cache folder.

    Fitting takes 20-70 s on a busy 2-core machine; with ``cache_dir`` (e.g. the feature
    cache folder) the fitted model is stored there as ``plane_estimator_<VERSION>_<seed>.npz``
    and reused by later runs (a damaged or older file is refitted and replaced).
    """
    from brainclust.errors import ModelFileError

    path = Path(cache_dir) / f"plane_estimator_{VERSION}_{random_state}.npz" if cache_dir else None
    if path is not None and path.is_file():
        try:
            stored = PlaneEstimator.load(path)
            if np.array_equal(stored.ranges_, template_ranges()):
                return stored
            log.warning("plane estimator '%s' was trained on other template slices; refitting", path)
        except ModelFileError as exc:
            log.warning("%s; refitting", exc)
    est = PlaneEstimator(random_state=random_state).fit()
    if path is not None:
        try:
            est.save(path)
        except OSError as exc:
            log.warning("plane estimate: cannot store the fitted model in '%s' (%s)", cache_dir, exc)
    return est


def estimate_planes(records, random_state: int = 0, cache_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(plane, source, confidence)`` for each :class:`~brainclust.io.scan.ImageRecord`.

    ``source`` is ``"header"`` where the record is a NIfTI slice (its frame names the plane;
    ``confidence`` 1) and ``"estimate"`` elsewhere (``confidence`` = the estimator's
    probability of its answer). Images that cannot be decoded get plane ``""``.
    """
    from brainclust.errors import ImageReadError
    from brainclust.io.formats import nifti
    from brainclust.io.scan import load_record

    n = len(records)
    plane, source, conf = np.empty(n, dtype=object), np.empty(n, dtype=object), np.ones(n)
    todo, images = [], []
    for i, r in enumerate(records):
        if r.frame and r.type == "nifti":
            plane[i], source[i] = nifti.parse_frame(r.frame)[0], "header"
            continue
        try:
            images.append(load_record(r))
            todo.append(i)
        except ImageReadError as exc:
            log.warning("plane estimate: %s", exc)
            plane[i], source[i], conf[i] = "", "unreadable", 0.0
    if todo:
        proba = fitted_estimator(random_state, None if cache_dir is None else str(cache_dir)).predict_proba(images)
        for j, i in enumerate(todo):
            plane[i], source[i], conf[i] = PLANES[int(np.argmax(proba[j]))], "estimate", float(proba[j].max())
    return plane, source, conf
