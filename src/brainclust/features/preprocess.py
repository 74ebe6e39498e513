"""Stage 2: pre-processing (METHOD.md eqs 1-4).

1. Aspect-preserving resize (eqs 1-2): the longer side becomes ``size`` and
   the other side is scaled by the same factor. Then the image is padded to a
   square with the background value; it is never stretched.
2. Optional robust clip to the ``clip_percentiles`` of the image's intensities
   (MRI has bright outliers).
3. Min-max normalisation to [0, 1] (eq 3), then linear scaling to
   ``[new_min, new_max]`` (eq 4). Both are the same formula, implemented once in
   :func:`rescale`. A constant image maps to ``new_min`` everywhere.

With ``intensity_window=(lo, hi)`` steps 2-3 use that one fixed range for every
image instead of each image's own percentiles or min and max (values outside
are clipped): absolute grey levels are kept, so two images that differ only in
brightness stay different. Use it when intensities are comparable across the
collection (one scanner and protocol, or 8-bit exports: ``0,255``).

The CNN-specific steps (grey to three channels, the backbone's mean and std)
are in :func:`to_model_input`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from brainclust.errors import ParameterError


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the pre-processing stage (recorded in the manifest).

    Parameters
    ----------
    size : int
        Side of the square output, in pixels (set from the backbone).
    clip_percentiles : tuple of float or None, default (0.5, 99.5)
        Clip intensities to these percentiles before normalising; ``None`` turns
        the clip off.
    new_min, new_max : float, default 0.0 and 1.0
        Output intensity range (eq 4).
    intensity_window : tuple of float or None, default None
        Fixed ``(lo, hi)`` input range for every image; replaces the per-image
        clip and min-max when set.
    """

    size: int = 224
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    new_min: float = 0.0
    new_max: float = 1.0
    intensity_window: tuple[float, float] | None = None

    def validate(self) -> None:
        try:
            self._validate()
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ParameterError):
                raise
            raise ParameterError(f"invalid pre-processing settings {self!r}: {exc}") from None

    def _validate(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ParameterError(f"preprocess size must be an integer >= 8, got {self.size!r}")
        if self.clip_percentiles is not None:
            lo, hi = self.clip_percentiles
            if not 0.0 <= lo < hi <= 100.0:
                raise ParameterError(
                    f"clip percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles!r}")
        if self.intensity_window is not None:
            lo, hi = (float(v) for v in self.intensity_window)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ParameterError(f"intensity window needs finite LOW < HIGH, got {self.intensity_window!r}")
        if not self.new_max > self.new_min:
            raise ParameterError(f"intensity range needs new_max > new_min, got [{self.new_min}, {self.new_max}]")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["clip_percentiles"] = list(self.clip_percentiles) if self.clip_percentiles else None
        if self.intensity_window is None:
            del d["intensity_window"]  # absent when unset, so that older cache keys stay valid
        else:
            d["intensity_window"] = [float(v) for v in self.intensity_window]
        return d


def resize_keep_aspect(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D float image so that its longer side is ``size`` (eqs 1-2)."""
    h, w = img.shape
    scale = size / max(h, w)
    new_w = max(1, round(w * scale))
    new_h = max(1, round(h * scale))
    if (new_h, new_w) == (h, w):
        return img.astype(np.float32, copy=False)
    out = Image.fromarray(img.astype(np.float32), mode="F").resize((new_w, new_h), Image.BILINEAR,
                                                                   reducing_gap=None)
    return np.asarray(out, dtype=np.float32)


def pad_to_square(img: np.ndarray, size: int, value: float) -> np.ndarray:
    """Centre ``img`` (at most ``size`` on each side) on a ``size`` x ``size`` canvas."""
    h, w = img.shape
    if (h, w) == (size, size):
        return np.array(img, dtype=np.float32, copy=True)
    out = np.full((size, size), value, dtype=np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def rescale(img: np.ndarray, new_min: float = 0.0, new_max: float = 1.0,
            lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Linearly map ``[lo, hi]`` (default: the image's min and max) to ``[new_min, new_max]``.

    With the defaults this is eq 3 (min-max to [0, 1]); with another range it is
    eq 4. Values outside ``[lo, hi]`` are clipped. A constant image (hi == lo)
    maps to ``new_min`` instead of dividing by zero.
    """
    img = np.asarray(img, dtype=np.float32)
    lo = float(np.min(img)) if lo is None else float(lo)
    hi = float(np.max(img)) if hi is None else float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.full_like(img, new_min, dtype=np.float32)
    out = (np.clip(img, lo, hi) - lo) / (hi - lo)
    if new_min == 0.0 and new_max == 1.0:  # x * 1 + 0 is x in float32 (the result is never -0.0): skip two passes
        return out.astype(np.float32, copy=False)
    return (out * (new_max - new_min) + new_min).astype(np.float32)


def preprocess(img: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Apply eqs 1-4 to a 2-D grayscale image; return ``size`` x ``size`` float32."""
    img = np.asarray(img, dtype=np.float32)
    if not np.isfinite(img).all():  # the check is a fraction of the cost of always replacing
        img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
    img = resize_keep_aspect(img, config.size)
    lo = hi = None
    if config.intensity_window is not None:
        lo, hi = config.intensity_window
    elif config.clip_percentiles is not None:
        lo, hi = np.percentile(img, config.clip_percentiles)
    img = rescale(img, config.new_min, config.new_max, lo, hi)
    return pad_to_square(img, config.size, config.new_min)


def to_model_input(img: np.ndarray, mean: tuple[float, float, float],
                   std: tuple[float, float, float]) -> np.ndarray:
    """Repeat a [0, 1] grey image to 3 channels and normalise per channel: (3, H, W).

    When the three channels share their mean and std (every backbone here), the grey image is
    normalised once and copied to the other two channels (the same values, a third of the arithmetic).
    """
    if len(set(mean)) == 1 and len(set(std)) == 1:
        img = np.asarray(img)
        out = np.empty((3, *img.shape), dtype=np.result_type(img, np.float32))
        np.subtract(img, np.float32(mean[0]), out=out[0])
        np.divide(out[0], np.float32(std[0]), out=out[0])
        out[1] = out[0]
        out[2] = out[0]
        return out
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (np.broadcast_to(img, (3, *img.shape)) - m) / s
