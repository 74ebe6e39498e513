"""How one decoded DICOM frame becomes a float32 image in [0, 1]: rescale, window, MONOCHROME1 inversion,
colour to luminance (the steps :mod:`brainclust.io.formats.dicom` lists). A PALETTE COLOR frame holds indices
into colour lookup tables: the colours they stand for are looked up first (:func:`palette_rgb`), then taken to
luminance as for an RGB frame.

A PALETTE COLOR image is shown when pydicom's ``apply_color_lut`` has what it reads (:data:`PALETTE_NEEDED`): the
red table's descriptor and the three tables' data, all plain or all segmented as the red one. A missing green
or blue descriptor does not stop it: PS3.3 C.7.6.3.1.5 makes every descriptor's values those of the red one,
which is the one pydicom reads (the table lengths it checks). An image without one of those is skipped with a
reason that names what it lacks (:func:`palette_missing`).
"""

from __future__ import annotations

import numpy as np

from brainclust.errors import ImageReadError
from brainclust.io.privacy import number

#: Percentiles of the fallback window when the header has none.
FALLBACK_PERCENTILES = (0.5, 99.5)
#: The lookup-table attributes of a PALETTE COLOR image that pydicom reads (PS3.3 C.7.6.3.1.5-6): the red
#: descriptor and each colour's data (``Segmented`` before each data keyword for segmented tables).
PALETTE_NEEDED = ("RedPaletteColorLookupTableDescriptor", *(f"{c}PaletteColorLookupTableData"
                                                           for c in ("Red", "Green", "Blue")))


def frame_item(ds, frame: int, sequence: str):
    """Item ``sequence[0]`` of a frame's per-frame, else shared, functional group."""
    for group, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(group)
        if seq and len(seq) > index:
            inner = seq[index].get(sequence)
            if inner:
                return inner[0]
    return None


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map values to [0, 1] with a DICOM VOI window (PS3.3 C.11.2.1.2).

    ``LINEAR``: values at or below ``c - 0.5 - (w - 1) / 2`` map to 0, values
    above ``c - 0.5 + (w - 1) / 2`` to 1, linearly in between
    (``(x - (c - 0.5)) / (w - 1) + 0.5``). ``LINEAR_EXACT``: ``(x - c) / w + 0.5``
    clipped to [0, 1]. ``SIGMOID``: ``1 / (1 + exp(-4 (x - c) / w))``.
    """
    x = values.astype(np.float64, copy=False)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        out = np.clip((x - center) / width + 0.5, 0.0, 1.0)
    else:
        if width < 1:
            raise ImageReadError(f"DICOM WindowWidth must be >= 1 for a LINEAR window, got {width}")
        if width == 1:
            out = (x > center - 0.5).astype(np.float64)
        else:
            out = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return out.astype(np.float32)


def percentile_window(values: np.ndarray, percentiles: tuple[float, float] = FALLBACK_PERCENTILES) -> np.ndarray:
    """Map the given percentiles of ``values`` to 0 and 1, clipping outside; constant -> 0."""
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_display(raw: np.ndarray, ds, frame: int = 0) -> np.ndarray:
    """Rescale, window and (for MONOCHROME1) invert one decoded frame; float32 in [0, 1]. Colour (RGB, YBR,
    PALETTE COLOR through its lookup table) is taken to luminance first."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    arr = np.asarray(raw)
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        arr = palette_rgb(arr, ds)
    if arr.ndim == 3:  # colour: pydicom returns RGB (YBR is converted by default)
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    arr = arr.astype(np.float64, copy=False)
    item = frame_item(ds, frame, "PixelValueTransformationSequence") or ds
    slope, intercept = number(item.get("RescaleSlope")), number(item.get("RescaleIntercept"))
    if slope is not None or intercept is not None:
        arr = arr * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)
    voi = frame_item(ds, frame, "FrameVOILUTSequence") or ds
    center, width = number(voi.get("WindowCenter")), number(voi.get("WindowWidth"))
    if photometric.startswith("MONOCHROME") and center is not None and width is not None and width > 0:
        out = window(arr, center, width, str(voi.get("VOILUTFunction", "LINEAR")))
    else:
        out = percentile_window(arr)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def palette_missing(ds) -> list[str]:
    """The lookup-table attributes of :data:`PALETTE_NEEDED` a PALETTE COLOR image lacks (``[]`` for one pydicom
    can look up, or any other image): the data of all three colours plain, or all segmented when the red one is
    segmented only. Without them its stored values are indices, not intensities."""
    if str(ds.get("PhotometricInterpretation", "")).upper() != "PALETTE COLOR":
        return []
    segmented = "SegmentedRedPaletteColorLookupTableData" in ds and "RedPaletteColorLookupTableData" not in ds
    need = [k if k.endswith("Descriptor") or not segmented else f"Segmented{k}" for k in PALETTE_NEEDED]
    return [k for k in need if k not in ds]


def palette_rgb(indices: np.ndarray, ds) -> np.ndarray:
    """The colours (RGB, or RGBA) that the indices of a PALETTE COLOR frame stand for (pydicom's
    ``apply_color_lut``); ImageReadError when the tables cannot be applied (their message is not passed on)."""
    from pydicom.pixels import apply_color_lut

    try:
        return apply_color_lut(indices, ds)
    except Exception as exc:  # noqa: BLE001 - a malformed table of any kind makes the file a skip
        raise ImageReadError(f"cannot apply the DICOM PALETTE COLOR lookup table ({type(exc).__name__})") from None
