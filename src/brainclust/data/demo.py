"""Synthetic-but-anatomical demo data set of 2-D brain MRI slices.

The demo set is cut from the real MNI152 (ICBM 2009a, 1 mm) skull-stripped T1
template that ships *inside* the ``nilearn`` wheel, so generating it never
touches the network.  Each image is a slice from one of the three orthogonal
planes (the class label), taken at a random position through the middle of the
brain, with a small random in-plane pose change, random global gain/gamma, a
smooth multiplicative bias field and Rician noise.  Exactly half of the images
of each class (rounded down) carry a simulated lesion, a smooth bright or dark
ellipsoidal blob inside the brain; lesion presence is encoded in the file name
only (``axial_0007_lesion.png`` versus ``axial_0008.png``).

Layout written by :func:`make_demo_dataset`::

    out_dir/
        axial/     axial_0000.png, axial_0001_lesion.png, ...
        coronal/   coronal_0000_lesion.png, ...
        sagittal/  sagittal_0000.png, ...

Nothing else is written to ``out_dir``, because downstream code scans the
folder recursively for images.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import numbers
import os
import pathlib
import re

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from brainclust.data.slices import crop_box, crop_square, orient, resize, slice_range
from brainclust.errors import InputError, ParameterError
from brainclust.io.atomic import atomic_write_bytes

__all__ = ["PLANES", "foreign_demo_entry", "foreign_entry", "make_demo_dataset"]

logger = logging.getLogger(__name__)

#: Class labels (sub-folder names), in generation order.
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

# Voxel axis normal to each plane in the RAS-oriented template
# (axis 0: left->right, axis 1: posterior->anterior, axis 2: inferior->superior).
_PLANE_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}

_TEMPLATE_NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"



def _template_path() -> pathlib.Path | None:
    """Locate the MNI152 T1 template file inside the installed nilearn package.

    ``importlib.util.find_spec`` finds the package directory without importing
    nilearn (importing ``nilearn.datasets`` pulls in pandas and scikit-learn and
    takes seconds).

    Returns
    -------
    pathlib.Path or None
        Path of the packaged template, or ``None`` if it cannot be found.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location) / "datasets" / "data" / _TEMPLATE_NAME
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _load_template() -> NDArray[np.float32]:
    """Load the 1 mm MNI152 T1 template as a float32 RAS volume scaled to [0, 1].

    The file is read straight from the nilearn package with nibabel, which is
    exactly what ``nilearn.datasets.load_mni152_template(resolution=1)`` does
    (it also rescales by the maximum), but without the slow
    ``nilearn.datasets`` import.  If the file is not where expected, that
    function is used as a fallback; it also only reads the packaged file.
    The result is cached, so the template is loaded once per process.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(197, 233, 189)`` (for nilearn's template), axes in
        RAS order, background exactly zero, maximum 1.

    Raises
    ------
    InputError
        If the template cannot be loaded or is not RAS-oriented.
    """
    import nibabel as nib

    path = _template_path()
    if path is not None:
        logger.debug("Loading MNI152 template from %s", path)
        img = nib.load(path)
    else:  # pragma: no cover - depends on nilearn's internal layout
        logger.debug("Packaged template not found; using nilearn loader")
        from nilearn.datasets import load_mni152_template

        img = load_mni152_template(resolution=1)
    if nib.aff2axcodes(img.affine) != ("R", "A", "S"):
        raise InputError(
            "the MNI152 template of nilearn: expected RAS orientation, got axis codes "
            f"{nib.aff2axcodes(img.affine)}"
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    peak = float(data.max())
    if data.ndim != 3 or peak <= 0:
        raise InputError("the MNI152 template of nilearn is empty or not a 3-D volume")
    data /= peak
    data.setflags(write=False)
    return data


def _random_pose(
    image: NDArray[np.float32], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Apply a small random rotation, scaling and shift about the image centre.

    Parameters
    ----------
    image : numpy.ndarray
        Square 2-D image.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Transformed image (zero outside the original field of view).
    """
    size = image.shape[0]
    angle = np.deg2rad(rng.uniform(-8.0, 8.0))
    scale = rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.04, 0.04, size=2) * size
    cos, sin = np.cos(angle), np.sin(angle)
    # affine_transform maps output coordinates to input coordinates.
    matrix = np.array([[cos, -sin], [sin, cos]]) / scale
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
    offset = centre - matrix @ (centre + shift)
    out = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, None).astype(np.float32)


def _add_lesion(
    image: NDArray[np.float32], brain: NDArray[np.bool_], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Insert a smooth bright or dark ellipsoidal blob inside the brain.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image with intensities roughly in [0, 1].
    brain : numpy.ndarray
        Boolean brain mask of the same shape.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Image with the lesion added.
    """
    size = image.shape[0]
    # Keep the centre well inside the brain so most of the blob lands on tissue.
    inner = ndimage.binary_erosion(brain, iterations=max(2, size // 16))
    candidates = np.flatnonzero(inner if inner.any() else brain)
    centre = np.unravel_index(candidates[rng.integers(candidates.size)], image.shape)
    semi_axes = rng.uniform(0.035, 0.11, size=2) * size
    theta = rng.uniform(0.0, np.pi)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    dr, dc = rows - centre[0], cols - centre[1]
    u = (dr * np.cos(theta) + dc * np.sin(theta)) / semi_axes[0]
    v = (-dr * np.sin(theta) + dc * np.cos(theta)) / semi_axes[1]
    radius = np.sqrt(u * u + v * v)
    # Flat core with a smooth (smoothstep) rim between radius 0.6 and 1.3.
    t = np.clip((1.3 - radius) / 0.7, 0.0, 1.0)
    blob = (t * t * (3.0 - 2.0 * t)) * brain
    if rng.random() < 0.5:  # hyperintense
        strength = rng.uniform(0.3, 0.6)
        return image + strength * blob
    strength = rng.uniform(0.5, 0.85)  # hypointense
    return image * (1.0 - strength * blob)


def _bias_field(size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Smooth multiplicative low-frequency bias field (exp of a quadratic).

    Parameters
    ----------
    size : int
        Side length of the square field.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Positive field with values typically within about 0.6-1.6.
    """
    y, x = np.mgrid[-1.0 : 1.0 : size * 1j, -1.0 : 1.0 : size * 1j]
    terms = np.stack([x, y, x * x, y * y, x * y])
    coefs = rng.normal(0.0, [0.2, 0.2, 0.12, 0.12, 0.12])
    log_field = np.tensordot(coefs, terms, axes=1)
    return np.exp(log_field - log_field.mean()).astype(np.float32)


def _render(
    base: NDArray[np.float32],
    lesion: bool,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    """Turn a clean resized slice into one degraded 8-bit demo image.

    Parameters
    ----------
    base : numpy.ndarray
        Clean ``size`` x ``size`` slice in [0, 1].
    lesion : bool
        Whether to insert a simulated lesion.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        ``uint8`` image.
    """
    image = _random_pose(base, rng)
    if lesion:
        # The template's background is exactly zero, so this is the brain mask.
        image = _add_lesion(image, image > 0.02, rng)
    image = image * _bias_field(image.shape[0], rng)
    gamma = rng.uniform(0.7, 1.4)
    gain = rng.uniform(0.6, 0.9)
    image = gain * np.power(np.clip(image, 0.0, None), gamma)
    sigma = rng.uniform(0.01, 0.05)
    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    image = np.sqrt(real * real + imag * imag)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _png_bytes(pixels: NDArray[np.uint8]) -> bytes:
    """An 8-bit grayscale PNG of ``pixels`` (2-D ``uint8``)."""
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _name_pattern(plane: str) -> re.Pattern:
    """The names of a plane's demo images: ``axial_0007.png``, ``axial_0012_lesion.png``."""
    return re.compile(rf"{re.escape(plane)}_\d+(_lesion)?\.png")


def foreign_entry(out_dir: str | os.PathLike[str]) -> str | None:
    """The first entry of a ``brainclust demo --out`` folder that a demo does not write, as a relative POSIX
    path, or ``None``: a demo writes ``data/`` (plane folders of demo images) and ``results/`` (a run folder,
    which the run checks itself); names starting with ``.`` (a killed run's leftovers) are left to the run.
    A user's image in ``data/`` would otherwise be clustered and scored as a demo image."""
    root = pathlib.Path(out_dir)
    if not root.is_dir():
        return None
    for top in sorted(os.listdir(root)):
        if top.startswith(".") or top == "results":
            continue
        if top != "data" or not (root / top).is_dir():
            return top
        if (inner := foreign_demo_entry(root / top)) is not None:
            return f"{top}/{inner}"
    return None


def foreign_demo_entry(data_dir: str | os.PathLike[str]) -> str | None:
    """The first entry of the folder ``data_dir`` that :func:`make_demo_dataset` does not write (only plane folders
    of demo images), as a relative POSIX path, or ``None``."""
    root = pathlib.Path(data_dir)
    for plane in sorted(os.listdir(root)):
        folder = root / plane
        if plane not in PLANES or not folder.is_dir():
            return plane
        demo_name = _name_pattern(plane)
        name = next((n for n in sorted(os.listdir(folder)) if not demo_name.fullmatch(n)), None)
        if name is not None:
            return f"{plane}/{name}"
    return None


def _write_plane(root: pathlib.Path, plane: str, volume: np.ndarray, brain3d: np.ndarray, n_per_class: int,
                 size: int, rng: np.random.Generator) -> None:
    """Write the ``n_per_class`` images of one plane and remove stale demo images of that plane."""
    axis = _PLANE_AXIS[plane]
    folder = root / plane
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n_per_class - 1)))
    first, last = slice_range(brain3d, axis)
    # One crop window per plane (from the brain's projected footprint) so
    # all slices of a plane share the same scale.
    box = crop_box(orient(brain3d.any(axis=axis)))
    positions = rng.integers(first, last + 1, size=n_per_class)
    lesion_flags = rng.permutation(np.arange(n_per_class) < n_per_class // 2)
    expected: set[str] = set()
    for index, (position, lesion) in enumerate(zip(positions, lesion_flags)):
        index_tuple: list[int | slice] = [slice(None)] * 3
        index_tuple[axis] = int(position)
        slice2d = volume[tuple(index_tuple)]
        base = resize(crop_square(orient(slice2d), box), size)
        pixels = _render(base, bool(lesion), rng)
        name = f"{plane}_{index:0{width}d}{'_lesion' if lesion else ''}.png"
        atomic_write_bytes(folder / name, _png_bytes(pixels))
        expected.add(name)
    stale_pattern = _name_pattern(plane)
    for path in folder.iterdir():
        if path.name not in expected and stale_pattern.fullmatch(path.name) and path.is_file():
            logger.debug("Removing stale demo image %s", path)
            path.unlink()


def make_demo_dataset(
    out_dir: str | os.PathLike[str],
    n_per_class: int = 40,
    size: int = 128,
    random_state: int = 0,
) -> pathlib.Path:
    """Generate a labelled demo set of 2-D brain MRI slices from real anatomy.

    Slices are cut from the MNI152 T1 template bundled with ``nilearn`` (read
    from the installed package; no network access).  For each plane
    (``axial``, ``coronal``, ``sagittal``) ``n_per_class`` PNG images are
    written to the sub-folder of that name.  Slice positions are drawn
    uniformly from the slices holding the central 70 % of the brain's volume
    along the plane's normal; images are shown in radiology orientation (anterior up for axial,
    superior up for coronal and sagittal, patient's right on the left, face on
    the left for sagittal).  Each image gets a small random rotation, scale and
    shift, a smooth multiplicative bias field, random gain and gamma, and
    Rician noise of random strength.  Exactly ``n_per_class // 2`` images per
    class contain a simulated lesion; their file names end in ``_lesion.png``
    (e.g. ``axial_0007_lesion.png`` versus ``axial_0008.png``).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder; created if missing.  Existing images with the same
        names are overwritten, and stale demo images from an earlier call
        (files named ``<plane>_<digits>[_lesion].png`` in the plane folders)
        are removed so the folder holds exactly this set.  No other files are
        touched or written.
    n_per_class : int, default=40
        Number of images per plane; must be at least 2.
    size : int, default=128
        Width and height of the square output images in pixels; must be at
        least 32.
    random_state : int, default=0
        Seed for :func:`numpy.random.default_rng`.  The same arguments always
        produce byte-identical PNG files.

    Returns
    -------
    pathlib.Path
        ``out_dir`` as a path.

    Raises
    ------
    ParameterError
        If ``n_per_class``, ``size`` or ``random_state`` is not an integer, ``n_per_class < 2`` or
        ``size < 32``, or ``out_dir`` (or a plane's folder in it) is a file.
    """
    for option, value in (("--n-per-class", n_per_class), ("size", size), ("--seed (random_state)", random_state)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ParameterError(f"{option}: must be an integer, got {value!r}")
    n_per_class, size, random_state = int(n_per_class), int(size), int(random_state)
    if n_per_class < 2:
        raise ParameterError(f"--n-per-class: n_per_class must be at least 2 (half of each plane's images carry "
                             f"a lesion), got {n_per_class}")
    if size < 32:
        raise ParameterError(f"size: must be at least 32 pixels, got {size}")

    root = pathlib.Path(out_dir)
    for folder in (root, *(root / plane for plane in PLANES)):  # was NotADirectoryError / FileExistsError
        if folder.exists() and not folder.is_dir():
            raise ParameterError(f"out_dir: '{folder}' exists and is not a folder; choose another out_dir")
    volume = _load_template()
    brain3d = volume > 0  # the template is skull-stripped with a zero background
    rng = np.random.default_rng(random_state)
    n_lesion = n_per_class // 2
    for plane in PLANES:
        _write_plane(root, plane, volume, brain3d, n_per_class, size, rng)

    logger.info(
        "Wrote demo data set to %s (%d images per class, %d with lesions, %dx%d px)",
        root,
        n_per_class,
        n_lesion,
        size,
        size,
    )
    return root
