"""One colour-aware decode of each image for the checks, and a small DICOM header read.

:func:`brainclust.io.scan.load_gray` drops colour, and colour is the first sign
that an image is not an MRI slice, so raster files are read here once more with
the same orientation rules (EXIF transposed; palette and alpha composited on
black, as ``load_gray`` does). DICOM frames and NIfTI slices come from
:func:`brainclust.io.scan.load_checked` (grey already). Every image is decoded from
the bytes whose SHA-256 the scan recorded, or refused: the check store is keyed by
that hash.

The *content hash* (``pixel_sha256``) is the SHA-256 of the decoded pixels
(their dtype, shape and bytes), not of the file: a PNG and its lossless re-save
agree, and an RGB file whose three channels are equal hashes as its grey image.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from brainclust.errors import ImageReadError
from brainclust.io.content import guard_pixels, read_content, require_scanned, verify_unchanged
from brainclust.io.scan import ImageRecord, load_checked

#: DICOM header fields the checks read (none is patient data).
DICOM_FIELDS = ("Modality", "SOPClassUID", "ImageType", "BurnedInAnnotation")


@dataclass(frozen=True)
class Decoded:
    """One decoded image.

    ``gray`` is float32 (H, W) in the image's own units; ``rgb`` is uint8 (H, W, 3)
    for colour raster files, else ``None``; ``full_scale`` is the nominal white
    level (255 for 8-bit files, 65535 for 16-bit, 1 for DICOM frames, the largest
    absolute value otherwise); ``pixel_sha256`` is the content hash.
    """

    gray: np.ndarray
    rgb: np.ndarray | None
    full_scale: float
    pixel_sha256: str


def content_hash(arr: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _raster(source) -> Decoded:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as im:
                guard_pixels(im)
                im.load()
                im = ImageOps.exif_transpose(im)
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(im)
                    if arr.dtype.byteorder not in ("=", "|"):
                        arr = arr.astype(arr.dtype.newbyteorder("="))
                    gray = arr.astype(np.float32)
                    scale = 65535.0 if mode.startswith("I;16") else float(max(np.abs(gray).max(), 1e-12))
                    return Decoded(gray, None, scale, content_hash(arr))
                if mode == "P":
                    im = im.convert("RGBA")
                if im.mode in ("RGBA", "LA", "PA"):
                    bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                    im = Image.alpha_composite(bg, im.convert("RGBA"))
                im = im.convert("L") if im.mode in ("1", "L") else im.convert("RGB")
                arr = np.asarray(im)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"image too large (decompression-bomb guard): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types on bad data
        raise ImageReadError(f"cannot decode image: {type(exc).__name__}: {exc}") from None
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = np.ascontiguousarray(arr[..., 0])  # grey stored as RGB: the same content as its grey file
    if arr.ndim == 3:
        gray = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return Decoded(gray, arr, 255.0, content_hash(arr))
    return Decoded(arr.astype(np.float32), None, 255.0, content_hash(arr))


def decode(record: ImageRecord) -> Decoded:
    """Decode the image a record stands for (colour kept for raster files).

    Raises
    ------
    ImageReadError
        If it cannot be decoded, or its bytes are no longer those the scan hashed
        (the message names the file).
    """
    if record.type in ("dicom", "nifti") or record.frame:
        gray = np.asarray(load_checked(record), np.float32)
        scale = 1.0 if record.type == "dicom" else float(max(np.abs(gray).max(), 1e-12))
        return Decoded(gray, None, scale, content_hash(gray))
    try:
        content = read_content(record.abspath)  # decoded from the bytes hashed, as the extractor does
        require_scanned(record.path, record.sha256, content.sha256)
        out = _raster(content.source())
        verify_unchanged(content)
    except ImageReadError as exc:
        exc.path = exc.path or record.abspath
        raise
    if out.gray.ndim != 2 or out.gray.size == 0:
        raise ImageReadError(f"decoded to an unexpected shape {out.gray.shape}", record.abspath)
    return out


def dicom_header(path: str | os.PathLike) -> dict[str, object]:
    """The :data:`DICOM_FIELDS` of a DICOM file (absent fields omitted); ``{}`` when unreadable.

    Only these elements are parsed (``specific_tags``), never pixel data or patient data.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True,
                                 specific_tags=list(DICOM_FIELDS))
            out: dict[str, object] = {}
            for key in DICOM_FIELDS:
                value = ds.get(key)
                if value is None and key == "SOPClassUID":
                    value = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
                if value is None or value == "":
                    continue
                if key == "ImageType":
                    out[key] = tuple(str(v) for v in (value if isinstance(value, (list, tuple)) or
                                                      type(value).__name__ == "MultiValue" else [value]))
                else:
                    out[key] = str(value)
            return out
    except Exception:  # noqa: BLE001 - an unreadable header gives no evidence either way
        return {}
