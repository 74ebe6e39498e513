"""DICOM files (pydicom): one 2-D image per frame, rescaled, windowed, monochrome.

How a frame becomes an image
----------------------------
1. **Modality rescale**: ``value * RescaleSlope + RescaleIntercept`` (per frame
   for enhanced multi-frame objects, from the functional groups).
2. **Window** to [0, 1]: the first ``WindowCenter``/``WindowWidth`` pair when
   present, with the ``VOILUTFunction`` of DICOM PS3.3 C.11.2.1.2 (``LINEAR``
   by default, ``LINEAR_EXACT``, ``SIGMOID``). Without a window, a robust
   percentile window: the 0.5th and 99.5th percentiles of the frame's
   rescaled values map to 0 and 1 (a constant frame maps to 0).
3. **MONOCHROME1** (white = low values) is inverted: ``1 - value``. Colour
   objects (RGB, YBR) are converted to luminance before step 2; PALETTE COLOR
   ones through their colour lookup table first (one without the red
   descriptor or a colour's table data is skipped with a reason that names it:
   its stored values are indices, not intensities).

Multi-frame objects give one image per frame; frames are numbered from 1 as in
the DICOM standard (``img.dcm#frame=3`` is the third frame). Objects without
pixel data (structured reports, presentation states, DICOMDIR) are skipped with
a reason. Compressed transfer syntaxes decode with the decoders pydicom finds
(Pillow covers JPEG baseline and JPEG 2000, numpy covers RLE); the others
(JPEG-LS, JPEG lossless...) need the ``dicom-codecs`` extra.

Privacy: nothing from the header other than geometry, photometric settings,
series/instance numbers and the SOP class name is ever read into a message.
:func:`header_fields` reads the whitelist of :data:`brainclust.io.privacy.DICOM_FIELDS`
(sanitised there) for the metadata columns, and a one-way hash of the
SeriesInstanceUID groups files into series (the UID itself is never kept).
pydicom's own warnings (which may quote element values such as a malformed
PatientName) are silenced inside this module, and messages of pydicom's
exceptions are never passed on for reading errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.errors import ImageReadError, names_file
from brainclust.io import privacy
from brainclust.io.content import read_content, verify_unchanged
from brainclust.io.formats.dicomdisplay import frame_item, palette_missing, to_display
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: The optional extra that installs the decoders of the other compressed syntaxes.
CODECS_EXTRA = "dicom-codecs"
#: Suffixes of files that may be DICOM without the 'DICM' preamble (old exports).
FORCE_SUFFIXES = (".dcm", ".dicom", ".ima", "")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class DicomInfo:
    """Header facts of one DICOM image object (no patient data).

    ``series_key`` is a SHA-256 of the SeriesInstanceUID (``""`` without one): it
    groups files into series and is never written anywhere. ``fields`` are the
    whitelisted, sanitised header fields (:func:`header_fields`); ``withheld``
    the columns whose value was dropped by the sanitiser.
    """

    width: int
    height: int
    n_frames: int
    series_number: int | None
    instance_number: int | None
    series_key: str = field(default="", compare=False, repr=False)
    fields: dict = field(default_factory=dict, compare=False)
    withheld: tuple[str, ...] = field(default=(), compare=False)


def marked(head: bytes) -> bool:
    """Whether bytes from a file's start carry the DICOM Part 10 marker ``DICM`` at byte 128."""
    return head[128:132] == b"DICM"


def has_preamble(path: str | os.PathLike) -> bool:
    """Whether the file carries the DICOM Part 10 marker (:func:`marked`)."""
    try:
        with open(path, "rb") as fh:
            return marked(fh.read(132))
    except OSError:
        return False


@contextlib.contextmanager
def _quiet():
    """Silence pydicom's value warnings: they quote element values, which may be patient data."""
    from pydicom import config

    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        yield


def _read(path, force: bool = False, header_only: bool = False):
    import pydicom

    try:
        with _quiet():
            src = path if hasattr(path, "read") else str(path)  # a path, or a buffer of the file's bytes
            ds = pydicom.dcmread(src, force=force, defer_size="1 KB" if header_only else None)
            if "TransferSyntaxUID" not in ds.file_meta:  # a bare data set: its encoding as read
                from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

                implicit = (ds.original_encoding or (True, True))[0]
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
            return ds
    except MemoryError:
        raise ImageReadError("cannot read DICOM file: header asks for too much memory") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types; messages may quote values
        raise ImageReadError(f"cannot read DICOM file ({type(exc).__name__})") from None


def _int(ds, keyword: str) -> int | None:
    try:
        v = ds.get(keyword)
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return None


def _sop_name(ds) -> str:
    try:
        uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        if uid is None or uid.name == str(uid):  # not registered: never repeated (see _uid_text)
            return "unknown SOP class"
        return str(uid.name)
    except Exception:  # noqa: BLE001
        return "unknown SOP class"


def _transfer_syntax(ds):
    from pydicom.uid import ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return ts or ImplicitVRLittleEndian


def _uid_text(uid) -> str:
    """A UID as a message may show it: a registered one with its name; any other is never repeated (header
    text posing as a UID may hold a name, and digits and dots a date or a record number)."""
    text = str(uid)
    if uid.name != text:
        return f"{uid.name} ({text})"
    return "(an unregistered UID)" if _is_uid(text) else "(not a valid UID)"


def _is_uid(text: str) -> bool:
    return re.fullmatch(r"[0-9.]{1,64}", text) is not None


def _check(ds) -> DicomInfo:
    """Validate an image object's header; raise ImageReadError with a reason otherwise."""
    from PIL import Image
    from pydicom.pixels import get_decoder

    if not any(k in ds for k in _PIXEL_KEYWORDS):
        sop = _sop_name(ds)
        if sop.endswith("Image Storage") or sop == "unknown SOP class":  # an image class without pixels: cut short
            raise ImageReadError(f"DICOM {'image ' if sop != 'unknown SOP class' else ''}object has no pixel data "
                                 f"({sop}): the file is truncated or damaged")
        raise ImageReadError(f"DICOM object has no pixel data ({sop}); not an image")
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not cols or rows < 1 or cols < 1:
        raise ImageReadError(f"DICOM image has invalid dimensions Rows={rows} Columns={cols}")
    if missing := palette_missing(ds):
        raise ImageReadError(f"DICOM PALETTE COLOR image lacks {', '.join(missing)} of its colour lookup table: "
                             "its stored values are indices, not intensities")
    frames = _int(ds, "NumberOfFrames") or 1
    if frames < 1:
        raise ImageReadError(f"DICOM image has invalid NumberOfFrames={frames}")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and rows * cols > limit:
        raise ImageReadError(f"DICOM frame of {cols}x{rows} pixels exceeds the limit of {limit} pixels "
                             "(decompression-bomb guard)")
    ts = _transfer_syntax(ds)
    if "PixelData" in ds:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise ImageReadError(f"DICOM transfer syntax {_uid_text(ts)} has no pixel decoder") from None
        if not decoder.is_available:
            raise ImageReadError(f"compressed DICOM ({ts.name}) needs a decoder that is not installed: "
                                 f"pip install 'brainclust[{CODECS_EXTRA}]'")
        if ts.is_compressed:  # a bogus NumberOfFrames must not turn into millions of records
            have = len(ds.PixelData or b"")
            if frames > have // 2:
                raise ImageReadError(f"DICOM NumberOfFrames={frames} does not fit {have} bytes of "
                                     "compressed pixel data")
        else:
            bits = _int(ds, "BitsAllocated") or 0
            spp = _int(ds, "SamplesPerPixel") or 1
            need = rows * cols * frames * spp * bits // 8
            elem = ds.get_item("PixelData")
            have = getattr(elem, "length", None)
            if have is None or have == 0xFFFFFFFF:
                have = len(ds.PixelData or b"")
            if bits not in (1, 8, 16, 32, 64) or have < need:
                raise ImageReadError(f"DICOM pixel data is truncated or inconsistent ({have} bytes, "
                                     f"{need} expected for {frames}x{rows}x{cols}, {bits} bits)")
    fields, withheld = header_fields(ds)
    number = _int(ds, "InstanceNumber")
    if number is not None:  # orders a series' slices in a unit (features.unitpool); a count, never PHI
        fields["instance_number"] = number
    return DicomInfo(width=cols, height=rows, n_frames=frames, series_number=_int(ds, "SeriesNumber"),
                     instance_number=number, series_key=series_key(ds), fields=fields, withheld=tuple(withheld))


def series_key(ds) -> str:
    """A one-way SHA-256 (hex) of the data set's SeriesInstanceUID, or ``""`` without one."""
    try:
        uid = str(ds.get("SeriesInstanceUID") or "").strip()
    except Exception:  # noqa: BLE001 - a damaged element counts as absent
        return ""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest() if uid else ""


def header_fields(ds) -> tuple[dict[str, object], list[str]]:
    """The whitelisted header fields as metadata columns: ``(columns, withheld columns)``.

    Reads only the keywords of :data:`brainclust.io.privacy.DICOM_FIELDS`; each
    value is converted and sanitised there (a value that fails the sanitiser is
    withheld: left out, its column named in ``withheld``). The plane comes from
    ImageOrientationPatient, or from the shared (else first per-frame) functional
    group of an enhanced multi-frame object.
    """
    out: dict[str, object] = {}
    withheld: list[str] = []
    with _quiet():
        for keyword, (column, kind) in privacy.DICOM_FIELDS.items():
            try:
                if kind == "presence":
                    out[column] = privacy.convert(ds.get(keyword) if keyword in ds else None, kind)
                    continue
                raw = ds.get(keyword)
                if raw is None and keyword == "ImageOrientationPatient":
                    item = frame_item(ds, 0, "PlaneOrientationSequence")
                    raw = item.get(keyword) if item is not None else None
                if raw is None or raw == "":
                    continue
                value = privacy.convert(list(raw) if type(raw).__name__ == "MultiValue" else raw, kind)
            except Exception:  # noqa: BLE001 - an odd value is left out, never quoted
                value = None
            if value is None:
                withheld.append(column)
            else:
                out[column] = value
    return out, withheld


@names_file()
def probe(path: str | os.PathLike, force: bool = False) -> DicomInfo:
    """Read a DICOM header and check that it is a decodable image.

    Parameters
    ----------
    path : path-like
    force : bool, default False
        Read without the Part 10 preamble (pydicom's ``force=True``); the file
        is only accepted when it then has an image's attributes.

    Raises
    ------
    ImageReadError
        Not DICOM, not an image (no pixel data), missing decoder, damaged.
    """
    ds = _read(path, force=force, header_only=True)
    with _quiet():
        if force and not ("SOPClassUID" in ds or "Rows" in ds):
            raise ImageReadError("not a DICOM file")
        try:
            return _check(ds)
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - odd header values
            raise ImageReadError(f"cannot read DICOM header ({type(exc).__name__})") from None


@names_file()
def load_frame(path: str | os.PathLike, frame: int = 0, force: bool = False) -> np.ndarray:
    """Decode frame ``frame`` (0-based) of a DICOM file to a float32 image in [0, 1].

    Raises
    ------
    ImageReadError
        If the file is not a decodable DICOM image or has no such frame.
    """
    return _frame(_read(path, force=force or not has_preamble(path)), frame)


@names_file()
def read_frame(path: str | os.PathLike, frame: int = 0, force: bool = False) -> tuple[str, np.ndarray]:
    """:func:`load_frame` from one read of the file: ``(SHA-256 of the bytes decoded, image)``.

    See :mod:`brainclust.io.content`: the hash and the pixels come from the same bytes.
    """
    content = read_content(path)
    preamble = marked(content.data) if content.data is not None else has_preamble(path)
    image = _frame(_read(content.source(), force=force or not preamble), frame)
    verify_unchanged(content)
    return content.sha256, image


def _frame(ds, frame: int) -> np.ndarray:
    with _quiet():
        try:
            return _decode(ds, frame)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError("cannot decode DICOM pixel data: not enough memory") from None
        except Exception as exc:  # noqa: BLE001 - odd header values
            raise ImageReadError(f"cannot decode DICOM image ({type(exc).__name__})") from None


def _decode(ds, frame: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    info = _check(ds)
    if not 0 <= frame < info.n_frames:
        raise ImageReadError(f"DICOM file has {count_text(info.n_frames, 'frame')}; frame {frame + 1} does not exist")
    try:
        raw = pixel_array(ds, index=frame if info.n_frames > 1 else None)
    except MemoryError:
        raise ImageReadError("cannot decode DICOM pixel data: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - decoder errors of any type become a skip
        raise ImageReadError(f"cannot decode DICOM pixel data ({type(exc).__name__})") from None
    if raw.ndim == 3 and info.n_frames > 1 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.shape[:2] != (info.height, info.width):
        raise ImageReadError(f"DICOM pixel data decoded to shape {raw.shape}, expected "
                             f"{info.height}x{info.width}")
    try:
        out = to_display(raw, ds, frame)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - odd header values
        raise ImageReadError(f"cannot apply DICOM rescale/window ({type(exc).__name__})") from None
    if not np.all(np.isfinite(out)):
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    return out


def frame_id(index: int) -> str:
    """Record ``frame`` of the 0-based frame ``index`` (``f0003`` = third frame)."""
    return f"f{index + 1:04d}"


def frame_index(frame: str) -> int:
    """Inverse of :func:`frame_id`; ``""`` is frame 0 of a single-frame file."""
    if not frame:
        return 0
    try:
        return int(frame.lstrip("f")) - 1
    except ValueError:
        raise ImageReadError(f"invalid DICOM frame id '{frame}'") from None


def may_be_headerless(path: Path) -> bool:
    """Whether a file without the preamble may still be tried as DICOM (by suffix)."""
    suffix = path.suffix.lower()
    return suffix in FORCE_SUFFIXES or suffix[1:].isdigit()  # UID-named files: '1.2.840.113619.2.5'
