"""One NIfTI file read with nibabel: its kind from the header magic, and the image.

- :func:`is_nifti`: a NIfTI-1/2 header, gzipped or not, whatever the file's name.
- :func:`open_image`: the nibabel image of a path or of a buffer of the file's bytes. A 2-D image
  (shape ``(x, y)``) becomes a volume one voxel thick with the file's own affine and header
  (:func:`as_volume`), so it gives the same slice, orientation and voxel size as the same image stored
  as ``(x, y, 1)``. The header of a NIfTI pair (``.hdr`` + ``.img``, magic ``ni1``/``ni2``) is refused with
  :data:`PAIR_REASON`: the reader takes single files (``.nii``, ``.nii.gz``); :func:`pair_data_reason` is
  the reason of a pair's ``.img``, which names the pair.
- :func:`voxels`: the float32 voxels; complex values give their magnitude (:data:`COMPLEX_NOTE`), and values
  beyond the float32 range are refused (as float32 they would be infinite, then background).
- :func:`quiet`: nibabel's warnings and its own log lines (``pixdim[1,2,3] should be non-zero; setting
  0 dims to 1``, written raw to stderr by a handler nibabel installs) are silenced while it reads.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import struct
import threading
import warnings
from pathlib import Path

import numpy as np

from brainclust.errors import ImageReadError
from brainclust.io.outputs import escape_name

#: Why the header of a NIfTI pair is skipped.
PAIR_REASON = ("a NIfTI pair (.hdr/.img) is not supported; convert it to .nii "
               "(e.g. nibabel.save(nibabel.load('x.hdr'), 'x.nii'))")
#: What a warning says of a complex-valued volume.
COMPLEX_NOTE = "complex values: their magnitude is used"
#: The logger nibabel reports header problems to, through a stream handler of its own.
NIBABEL_LOGGER = "nibabel.global"
_HEADER_CHARS = 548
_PAIR_HEADERS = (".hdr", ".HDR", ".hdr.gz", ".HDR.GZ")


class _LoggerOff:
    """Turns a logger off while at least one thread is inside (counted: the first in turns it off, the last
    out restores it as it was)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.depth = 0
        self.was_disabled = False

    def __enter__(self) -> None:
        with self.lock:
            logger = logging.getLogger(self.name)
            if self.depth == 0:
                self.was_disabled = logger.disabled
            logger.disabled = True
            self.depth += 1

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                logging.getLogger(self.name).disabled = self.was_disabled


_NIBABEL_OFF = _LoggerOff(NIBABEL_LOGGER)


@contextlib.contextmanager
def quiet():
    """Silence warnings and nibabel's log lines while nibabel reads a file (brainclust says what matters)."""
    with _NIBABEL_OFF, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def header_bytes(path: str | os.PathLike) -> bytes:
    """The first 548 bytes of a file, decompressed when gzipped; ``b""`` when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_CHARS)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                head = gz.read(_HEADER_CHARS)
    except (OSError, EOFError, ValueError):
        return b""
    return head


def is_pair_header(head: bytes) -> bool:
    """Whether a header's first bytes carry the magic of a NIfTI pair's ``.hdr`` (``ni1``, ``ni2``)."""
    if head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return head[4:8] == b"ni2\x00"
    return head[344:348] == b"ni1\x00"


def pair_data_reason(path: str | os.PathLike) -> str | None:
    """The skip reason of ``x.img`` (``x.img.gz``) when it holds the voxels of a NIfTI pair whose ``x.hdr``
    lies beside it, naming that header; ``None`` for any other file."""
    p = Path(path)
    suffix = next((s for s in (".img.gz", ".img") if p.name.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = p.name[: len(p.name) - len(suffix)]
    for ending in _PAIR_HEADERS:
        header = p.with_name(stem + ending)
        if header.is_file() and is_pair_header(header_bytes(header)):
            return (f"the voxel data of the NIfTI pair '{escape_name(header.name)}', skipped with its header "
                    "(a NIfTI pair is not supported; convert it to .nii)")
    return None


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether the file's content is a NIfTI-1/2 header (single file ``n+1``/``n+2``, or a pair's ``.hdr``),
    gzipped or not."""
    head = header_bytes(path)
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return True
    return len(head) >= 12 and head[4:8] in (b"n+2\x00", b"ni2\x00") and \
        540 in (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0])


def open_image(source):
    """A nibabel image of a path, or of a buffer holding a file's bytes (gzipped or not). nibabel picks the
    format by the file name, so a NIfTI file under another name is read from its bytes (the scan found it
    by its content). A 2-D image becomes a volume one voxel thick (:func:`as_volume`).

    Raises
    ------
    ImageReadError
        For the header of a NIfTI pair (:data:`PAIR_REASON`).
    """
    import nibabel as nib

    if not hasattr(source, "read"):
        if str(source).lower().endswith((".nii", ".nii.gz")):
            return as_volume(nib.load(source))
        with open(source, "rb") as fh:
            source = io.BytesIO(fh.read())
    head = source.read(2)
    source.seek(0)
    if head == b"\x1f\x8b":
        source = gzip.GzipFile(fileobj=source)
    head = source.read(_HEADER_CHARS)
    source.seek(0)
    if is_pair_header(head):
        raise ImageReadError(PAIR_REASON)
    klass = nib.Nifti2Image if head[4:8] == b"n+2\x00" else nib.Nifti1Image
    return as_volume(klass.from_stream(source))


def as_volume(img):
    """A 2-D image as a volume one voxel thick with the file's own affine and header (``pixdim[3]`` included),
    so it reads as the same image stored ``(x, y, 1)`` reads: same slice, orientation and voxel size."""
    if len(img.shape) != 2:
        return img
    header = img.header.copy()
    header.set_data_shape((*img.shape, 1))
    return type(img)(np.asanyarray(img.dataobj)[:, :, None], _with_thickness(img.affine, header), header)


def _with_thickness(affine, header) -> np.ndarray:
    """A 2-D file's affine with a third axis: some writers leave it zero (meaningless for one slice), which no
    orientation can be read from. It becomes the in-plane axes' normal, ``pixdim[3]`` long (1 when unset); with
    no in-plane axes either, the image is placed as stored."""
    out = np.array(affine, dtype=np.float64)
    if np.linalg.matrix_rank(out[:3, :3]) == 3:
        return out
    thick = float(header["pixdim"][3])
    thick = thick if np.isfinite(thick) and thick > 0 else 1.0
    normal = np.cross(out[:3, 0], out[:3, 1])
    if not np.linalg.norm(normal) > 0:
        zooms = [float(z) for z in header.get_zooms()[:2]]
        return np.diag([*zooms, thick, 1.0])
    out[:3, 2] = normal / np.linalg.norm(normal) * thick
    return out


def voxels(img) -> tuple[np.ndarray, bool]:
    """The float32 voxels of an image, ``scl_slope``/``scl_inter``-scaled, and whether they are the magnitude
    of complex values (their real part alone, what a cast keeps, would fold the phase into the intensities).

    Raises
    ------
    ImageReadError
        When values exceed the float32 range: as float32 they would be infinite, then read as background
        (a volume of them as "constant").
    """
    is_complex = np.dtype(img.get_data_dtype()).kind == "c"
    if is_complex:
        wide = np.abs(np.asanyarray(img.dataobj))
        vol = wide.astype(np.float32)
    else:
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    beyond = np.isinf(vol)
    if beyond.any():  # infinite in the file, or too large for float32? (read again, wide, only then)
        wide = wide if is_complex else np.asanyarray(img.dataobj)
        beyond &= np.isfinite(wide)
        if beyond.any():
            raise ImageReadError(f"NIfTI volume has values beyond the float32 range (up to "
                                 f"{float(np.abs(wide[beyond]).max()):.3g}); rescale the volume to read it")
    return vol, is_complex
