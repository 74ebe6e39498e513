"""Per-image descriptors of the checks, from one decode of each image.

:func:`describe` turns one :class:`~brainclust.checks.decode.Decoded` image into

- a float32 vector whose slots are named by :data:`DESCRIPTOR_NAMES` (colour
  statistics taken before the grey conversion, size, intensity statistics on the
  image's own robust scale, border darkness, entropy and two structure measures);
- a 64x64 uint8 *thumbnail*: the whole frame, clipped to its 0.5-99.5
  percentiles, stretched to [0, 255] and box-averaged. Near-duplicate codes are
  made from it (:mod:`brainclust.checks.nearcode`).

Both depend only on the decoded pixels, so a run can compute them in the same
decode as the backbone input and cache them by content hash
(:attr:`~brainclust.checks.decode.Decoded.pixel_sha256`).
:func:`describe_records` decodes records in worker processes with a progress bar.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from brainclust.checks.decode import Decoded, decode
from brainclust.checks.shape import CUE_NAMES, shape_cues
from brainclust.errors import ImageReadError, ParameterError
from brainclust.io.scan import ImageRecord
from brainclust.progress import bar

log = logging.getLogger(__name__)

#: The slots of a descriptor vector.
DESCRIPTOR_NAMES = (
    "width", "height",            # decoded size, pixels
    "colourfulness",              # Hasler-Suesstrunk M (0-255 RGB units); 0 for grey images
    "colour_fraction",            # fraction of pixels whose chroma max(RGB)-min(RGB) exceeds 0.15 of full scale
    "mode_fraction",              # fraction of pixels in the most populated of 64 bins spanning [min, max]
    "foreground_fraction",        # fraction differing from that modal level by > 10 % of (max - min)
    "dark_fraction",              # fraction below 0.1 on the image's own 0.5-99.5 percentile scale
    "bright_fraction",            # fraction above 0.9 on that scale
    "border_level",               # median of the outer ring (5 % of each side) on that scale
    "mean_level",                 # mean on that scale
    "structure",                  # share of the variance kept by an 8x8 block average
    "neighbour_correlation",      # correlation of horizontally/vertically adjacent pixels
    "entropy",                    # of a 64-bin histogram on that scale, bits
    "amplitude",                  # standard deviation / nominal full scale
    "foreground_colour_fraction",  # colour_fraction among the pixels that are not dark (max(RGB) > 0.1 of full scale)
    "air_border",                 # shape cues of checks.shape: the frame's ring that is border-connected dark air
    "object_touch",               # ... the ring's share covered by the largest non-air object
    "gap_ratio",                  # ... pixels in [0.08, 0.2) over pixels below 0.05 (no air spike: large)
    "extreme_fraction",           # ... pixels below 0.02 or above 0.98 (two-level graphics: ~1)
    "two_level",                  # ... the smaller of those two fractions (0 below a quarter of full scale)
    "symmetry",                   # ... best correlation with the left-right mirror (64x64, shifts up to 6 px)
    "main_object",                # ... the largest non-air object's share of the objects' area (a slice: ~1)
    "strokes",                    # ... the share of the non-air pixels in parts thinner than ~5 px (text, plot lines)
    "flat_air",                   # ... the share of the air within 0.02 of its median level (a rendered ground: ~1)
    "box_edge",                   # ... the share of the main object's bounding-box outline it covers (a rectangle: ~1)
    "grey_levels",                # distinct values of the decoded grey image, up to LEVELS_CAP (label maps: few)
)
#: ``grey_levels`` counts up to this many distinct values; a sample of at most LEVELS_SAMPLE pixels is counted first.
LEVELS_CAP = 64
LEVELS_SAMPLE = 16384
#: Side of the stored thumbnail.
THUMB = 64
#: Longer side of the working copy the statistics are computed on.
WORK = 256
_IDX = {n: i for i, n in enumerate(DESCRIPTOR_NAMES)}


def slot(name: str) -> int:
    """Index of a named slot in a descriptor vector."""
    return _IDX[name]


def _resize(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr, np.float32), "F").resize((w, h), Image.BOX),
                      np.float32)


def _work(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    s = WORK / max(h, w)
    if s >= 1:
        return gray.astype(np.float32, copy=False)
    return _resize(gray, max(1, round(w * s)), max(1, round(h * s)))


def _colour(rgb: np.ndarray | None) -> tuple[float, float, float]:
    """(Hasler-Suesstrunk colourfulness, colour fraction, colour fraction among the non-dark pixels)."""
    if rgb is None:
        return 0.0, 0.0, 0.0
    h, w = rgb.shape[:2]
    s = WORK / max(h, w)
    if s < 1:
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX))
    x = rgb.reshape(-1, 3).astype(np.float32)
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    m = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    top = x.max(1)
    chroma = (top - x.min(1)) / 255.0
    coloured = chroma > 0.15
    lit = top > 0.1 * 255.0
    return m, float(coloured.mean()), float(coloured[lit].mean()) if lit.any() else 0.0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 1.0


def _structure(x: np.ndarray) -> tuple[float, float]:
    """(share of variance kept by 8x8 block means, neighbour correlation) of a [0, 1] image."""
    h, w = x.shape
    var = float(x.var())
    if var <= 0:
        return 1.0, 1.0
    hb, wb = h // 8 * 8, w // 8 * 8
    if hb >= 16 and wb >= 16:
        blocks = x[:hb, :wb].reshape(hb // 8, 8, wb // 8, 8).mean((1, 3))
        kept = float(blocks.var() / var)
    else:
        kept = 1.0
    corr = []
    if w > 1:
        corr.append(_corr(x[:, :-1], x[:, 1:]))
    if h > 1:
        corr.append(_corr(x[:-1], x[1:]))
    return kept, float(np.mean(corr)) if corr else 1.0


def unit_histogram(s: np.ndarray) -> np.ndarray:
    """``np.histogram(s, bins=64, range=(0, 1))[0]`` of values in [0, 1], 2.5x faster: the edges k/64 and
    ``s * 64`` are exact in binary, so a value's bin is the floor (1.0 closes the last bin) and numpy's
    edge corrections change nothing."""
    return np.bincount(np.minimum((np.ravel(s) * 64.0).astype(np.intp), 63), minlength=64)


def thumbnail(scaled: np.ndarray) -> np.ndarray:
    """The 64x64 uint8 thumbnail of an image already on its [0, 1] percentile scale."""
    return np.clip(np.rint(_resize(scaled, THUMB, THUMB) * 255.0), 0, 255).astype(np.uint8)


def grey_levels(gray: np.ndarray) -> int:
    """The number of distinct values of ``gray``, at most :data:`LEVELS_CAP`: counted on a strided sample of at
    most :data:`LEVELS_SAMPLE` pixels first (an anatomical image or a photograph exceeds the cap there), on every
    pixel only when the sample has few (so a label present in a few pixels is counted)."""
    step = max(1, math.ceil(math.sqrt(gray.size / LEVELS_SAMPLE)))
    if len(np.unique(gray[::step, ::step])) > LEVELS_CAP:
        return LEVELS_CAP
    return min(len(np.unique(gray)), LEVELS_CAP)


def describe(img: Decoded) -> tuple[np.ndarray, np.ndarray]:
    """Descriptor vector (:data:`DESCRIPTOR_NAMES`) and 64x64 uint8 thumbnail of one decoded image."""
    gray = img.gray
    h, w = gray.shape
    finite = np.isfinite(gray)
    if not finite.all():
        gray = np.where(finite, gray, np.nanmin(np.where(finite, gray, np.nan)) if finite.any() else 0.0)
    x = _work(gray).astype(np.float64)
    out = np.zeros(len(DESCRIPTOR_NAMES), np.float32)
    out[_IDX["width"]], out[_IDX["height"]] = w, h
    (out[_IDX["colourfulness"]], out[_IDX["colour_fraction"]],
     out[_IDX["foreground_colour_fraction"]]) = _colour(img.rgb)
    lo_abs, hi_abs = float(x.min()), float(x.max())
    out[_IDX["amplitude"]] = float(gray.std()) / max(float(img.full_scale), 1e-12)
    out[_IDX["grey_levels"]] = grey_levels(gray)
    if not hi_abs > lo_abs:  # constant
        out[_IDX["mode_fraction"]] = 1.0
        out[_IDX["structure"]] = out[_IDX["neighbour_correlation"]] = 1.0
        out[_IDX["dark_fraction"]] = 1.0
        return out, np.zeros((THUMB, THUMB), np.uint8)
    hist, edges = np.histogram(x, bins=64, range=(lo_abs, hi_abs))
    k = int(hist.argmax())
    mode = 0.5 * (edges[k] + edges[k + 1])
    out[_IDX["mode_fraction"]] = hist[k] / x.size
    out[_IDX["foreground_fraction"]] = float((np.abs(x - mode) > 0.1 * (hi_abs - lo_abs)).mean())
    lo, hi = np.percentile(x, [0.5, 99.5])
    cue_scale = (lo, hi)
    if not hi > lo:
        lo, hi = lo_abs, hi_abs
    s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    out[_IDX["dark_fraction"]] = float((s < 0.1).mean())
    out[_IDX["bright_fraction"]] = float((s > 0.9).mean())
    bh, bw = max(1, round(0.05 * s.shape[0])), max(1, round(0.05 * s.shape[1]))
    ring = np.concatenate([s[:bh].ravel(), s[-bh:].ravel(), s[:, :bw].ravel(), s[:, -bw:].ravel()])
    out[_IDX["border_level"]] = float(np.median(ring))
    out[_IDX["mean_level"]] = float(s.mean())
    p = unit_histogram(s) / s.size
    p = p[p > 0]
    out[_IDX["entropy"]] = float(-(p * np.log2(p)).sum())
    out[_IDX["structure"]], out[_IDX["neighbour_correlation"]] = _structure(s)
    for name, value in zip(CUE_NAMES, shape_cues(x, float(img.full_scale), cue_scale)):
        out[_IDX[name]] = value
    full = np.clip((gray.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return out, thumbnail(full)


@dataclass
class Descriptors:
    """Descriptors of a list of records (row ``i`` = record ``i``).

    ``vectors`` (n, len(DESCRIPTOR_NAMES)) float32 and ``thumbs`` (n, 64, 64) uint8
    are zero and ``pixel_sha256`` empty for the rows listed in ``failed``
    (row -> reason).
    """

    vectors: np.ndarray
    thumbs: np.ndarray
    pixel_sha256: list[str]
    failed: dict[int, str] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        return self.vectors[:, _IDX[name]]


def _one(record: ImageRecord):
    try:
        img = decode(record)
        vec, thumb = describe(img)
        return vec, thumb, img.pixel_sha256, ""
    except ImageReadError as exc:
        return None, None, "", exc.reason
    except MemoryError:
        return None, None, "", "cannot decode image: not enough memory"
    except Exception as exc:  # noqa: BLE001 - one odd image never ends the checks
        return None, None, "", f"cannot describe image ({type(exc).__name__})"


def describe_records(records: Sequence[ImageRecord], workers: int = 0, progress: bool | None = None,
                     chunksize: int = 16) -> Descriptors:
    """Decode every record once and describe it, in ``workers`` processes (0 = this process).

    Raises
    ------
    ParameterError
        ``workers`` is not an integer >= 0.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParameterError(f"--workers: must be an integer >= 0, got {workers!r}")
    n = len(records)
    vecs = np.zeros((n, len(DESCRIPTOR_NAMES)), np.float32)
    thumbs = np.zeros((n, THUMB, THUMB), np.uint8)
    hashes = [""] * n
    failed: dict[int, str] = {}
    pbar = bar(n, "checks", progress)
    if workers == 0 or n < 2 * chunksize:
        results = map(_one, records)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_one, records, chunksize=chunksize)
    try:
        for i, (vec, thumb, digest, reason) in enumerate(results):
            pbar.update(1)
            if reason:
                failed[i] = reason
                log.warning("checks: cannot describe %s: %s", records[i].path, reason)
                continue
            vecs[i], thumbs[i], hashes[i] = vec, thumb, digest
    finally:
        pbar.close()
        if pool is not None:
            pool.shutdown()
    return Descriptors(vecs, thumbs, hashes, failed)
