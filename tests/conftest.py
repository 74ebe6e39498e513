"""Shared fixtures: tiny synthetic images and an isolated feature cache."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image


def _pattern(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    """A small deterministic image of the given Pillow mode."""
    rng = np.random.default_rng(seed)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    if mode == "I;16":
        arr = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        return Image.fromarray(arr)
    if mode == "RGB":
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
    if mode == "P":
        im = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        return im.quantize(colors=16)
    raise ValueError(f"unknown mode {mode!r}")


def make_image(path, array_or_mode="L", size=(32, 32), fmt=None, seed=0, **save_kwargs) -> pathlib.Path:
    """Write a tiny image and return its path.

    ``array_or_mode`` is either a numpy array (uint8 2-D/3-D or uint16 2-D,
    written as is) or a Pillow mode name (``L``, ``I;16``, ``RGB``, ``RGBA``,
    ``P``) for a random pattern of ``size`` = (width, height). ``fmt`` is the
    Pillow format name; by default Pillow guesses it from the extension.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(array_or_mode, np.ndarray):
        im = Image.fromarray(array_or_mode)
    elif isinstance(array_or_mode, Image.Image):
        im = array_or_mode
    else:
        im = _pattern(array_or_mode, size[0], size[1], seed)
    if fmt is None and path.suffix.lower() in (".jpg", ".jpeg"):
        fmt = "JPEG"
    im.save(path, format=fmt, **save_kwargs)
    return path


def two_group_images(folder, n=12, seed=0) -> pathlib.Path:
    """``n`` noisy 24 x 24 images in two visible groups (a dark or a bright band), ``img00.png``..."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        arr[:, : 12 if i % 2 else 4] = 255 * (i % 2)
        make_image(pathlib.Path(folder) / f"img{i:02d}.png", arr)
    return pathlib.Path(folder)


def record_hashes(out, data) -> pathlib.Path:
    """Write the ``path`` and ``sha256`` columns of ``embeddings.parquet`` for a hand-made run folder
    (the report, ``view`` and ``export`` open an input file only when its bytes hash to these)."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from brainclust.io.atomic import file_sha256
    from brainclust.io.outputs import unescape_name

    out, data = pathlib.Path(out), pathlib.Path(data)
    with open(out / "assignments.csv", newline="", encoding="utf-8") as fh:
        paths = [r["path"] for r in csv.DictReader(fh)]
    files = [data / unescape_name(p).split("#", 1)[0] for p in paths]
    hashes = [file_sha256(f) if f.is_file() else "" for f in files]
    pq.write_table(pa.table({"path": paths, "sha256": hashes}), out / "embeddings.parquet")
    return out / "embeddings.parquet"


@pytest.fixture(name="make_image")
def make_image_fixture():
    """The :func:`make_image` helper as a fixture."""
    return make_image


#: relative path -> (mode, (width, height), Pillow format)
IMAGE_FOLDER_SPEC = {
    "a/a1_gray.png": ("L", (32, 40), "PNG"),
    "a/a2_sixteen.png": ("I;16", (48, 32), "PNG"),
    "a/a3_rgb.JPG": ("RGB", (40, 40), "JPEG"),
    "a/a4_tiff.tif": ("L", (36, 32), "TIFF"),
    "b/b1_rgba.png": ("RGBA", (32, 32), "PNG"),
    "b/b2_palette.png": ("P", (64, 48), "PNG"),
    "b/b3_bitmap.bmp": ("RGB", (33, 35), "BMP"),
    "b/b4_gray.jpeg": ("L", (40, 32), "JPEG"),
}


@pytest.fixture
def image_folder_spec() -> dict:
    """What :func:`image_folder` writes: relative path -> (mode, (width, height), format)."""
    return dict(IMAGE_FOLDER_SPEC)


@pytest.fixture
def image_folder(tmp_path) -> pathlib.Path:
    """A labelled folder: ``a/`` and ``b/`` with 4 images each in assorted modes/formats."""
    root = tmp_path / "images"
    for i, (rel, (mode, size, fmt)) in enumerate(sorted(IMAGE_FOLDER_SPEC.items())):
        make_image(root / rel, mode, size=size, fmt=fmt, seed=i)
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Point BRAINCLUST_CACHE at a per-session temporary folder (never ~/.cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINCLUST_CACHE", str(tmp_path_factory.mktemp("brainclust-cache")))
    yield
    mp.undo()


def _progress_defaults() -> tuple:
    from brainclust import progress

    return progress.SHOW_BY_DEFAULT, progress.LOG_WITHOUT_TERMINAL


#: brainclust.progress's defaults as imported, before any test configured the CLI's logging.
PROGRESS_DEFAULTS = _progress_defaults()


@pytest.fixture(autouse=True)
def _restore_brainclust_logger():
    """A test that calls ``cli.main`` in-process configures the ``brainclust`` logger (its own handler on the
    then-current stderr, no propagation), the progress module's defaults (``-q`` hides progress) and Python's
    ``warnings.showwarning``; put them back so later tests' ``caplog`` and progress lines do not depend on the
    order the tests ran in (``test_head``'s progress test failed after ``test_checks_command``'s ``-q`` runs)."""
    import logging
    import warnings

    from brainclust import progress

    logger = logging.getLogger("brainclust")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    show = warnings.showwarning
    # the progress defaults are the module's own at every test's start and end: a module-scoped fixture that ran
    # the CLI with -q before this test must not hide its progress either
    progress.SHOW_BY_DEFAULT, progress.LOG_WITHOUT_TERMINAL = PROGRESS_DEFAULTS
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]
    progress.SHOW_BY_DEFAULT, progress.LOG_WITHOUT_TERMINAL = PROGRESS_DEFAULTS
    warnings.showwarning = show
