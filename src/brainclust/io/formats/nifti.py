"""NIfTI volumes (nibabel): 2-D slices chosen by a slice strategy.

How a volume becomes images
---------------------------
1. A 4-D volume contributes one 3-D volume, ``volume_index`` (default 0).
2. The volume is reoriented to the closest canonical orientation, RAS+
   (:func:`nibabel.as_closest_canonical`): the array's axes are then
   left->Right, posterior->Anterior, inferior->Superior, whatever the scanner's
   storage order. Two files holding the same anatomy with different affines give
   the same slices.
3. Values are ``scl_slope``/``scl_inter``-scaled floats; NaN and infinite voxels
   are set to the volume's smallest finite value (background). A volume with no
   finite voxel, or with one value everywhere, is skipped with a reason (there is
   nothing to cluster in it).
4. Slices are cut as a radiologist views them, in the neurological convention
   (patient's left on the image's left): axial (``vol[:, :, k]``, anterior up),
   coronal (``vol[:, k, :]``, superior up), sagittal (``vol[k, :, :]``,
   superior up, anterior right). Slice indices are 0-based indices of the
   canonical array.

Slice strategies (``--slices``), comma-separated, e.g. ``axial:mid,coronal:3``:

- ``PLANE:mid``: the middle slice of the array (index ``n // 2``).
- ``PLANE:N``: ``N`` slices evenly spaced through the slices that contain
  brain, at the centres of ``N`` equal bins of that range. A slice contains
  brain when its count of foreground voxels (above ``min + 0.1 * (p99 - min)``
  of the volume) is at least 5 % of the largest such count along that axis.
  Fewer than ``N`` slices result when the range is shorter than ``N``.
- ``PLANE:all``: every slice that contains brain.
- ``all-planes:...``: the same for axial, coronal and sagittal.

``PLANE`` is ``axial``, ``coronal`` or ``sagittal``. Each slice is one row whose
``path`` is ``volume.nii.gz#axial=45`` (``#axial=45&t=2`` for volume 2 of a 4-D
file).
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainclust.errors import ImageReadError, ParameterError, names_file
from brainclust.io.content import check_regular, read_content, verify_unchanged

PLANES = ("axial", "coronal", "sagittal")
DEFAULT_SLICES = "axial:mid"
#: Largest 3-D volume read (voxels); guards against gzip bombs and bogus headers.
MAX_VOXELS = 512 ** 3
#: Foreground threshold as a fraction of the range from the minimum to the 99th percentile.
FOREGROUND_FRACTION = 0.1
#: A slice contains brain when its foreground count reaches this fraction of the axis maximum.
BRAIN_SLICE_FRACTION = 0.05
_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
_SPEC = re.compile(r"^(axial|coronal|sagittal|all-planes):(mid|all|[0-9]+)$")
_FRAME = re.compile(r"^(axial|coronal|sagittal)=([0-9]+)(?:&t=([0-9]+))?$")


@dataclass(frozen=True)
class SliceInfo:
    """One slice a strategy picked: its record ``frame`` and its size."""

    frame: str
    plane: str
    index: int
    width: int
    height: int


def parse_slices(text: str) -> tuple[tuple[str, str], ...]:
    """Parse a ``--slices`` strategy into ``((plane, 'mid'|'all'|'N'), ...)``.

    Raises
    ------
    ParameterError
        If the text does not follow the rules of the module docstring.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"--slices: expected PLANE:mid|N|all (e.g. axial:mid), got {text!r}")
    out: list[tuple[str, str]] = []
    for part in text.split(","):
        m = _SPEC.match(part.strip().lower())
        if not m:
            raise ParameterError(f"--slices: '{part.strip()}' must be PLANE:mid, PLANE:N or PLANE:all with "
                                 f"PLANE one of axial, coronal, sagittal, all-planes; got {text!r}")
        plane, how = m.groups()
        if how.isdigit() and int(how) < 1:
            raise ParameterError(f"--slices: the number of slices must be >= 1, got {text!r}")
        for p in (PLANES if plane == "all-planes" else (plane,)):
            if (p, how) not in out:
                out.append((p, how))
    return tuple(out)


def check_volume_index(volume_index) -> int:
    if isinstance(volume_index, bool) or not isinstance(volume_index, int) or volume_index < 0:
        raise ParameterError(f"--volume-index: must be an integer >= 0, got {volume_index!r}")
    return volume_index


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether the file's content is a NIfTI-1/2 single-file image (``n+1``/``n+2``), gzipped or not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(548)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                head = gz.read(548)
    except (OSError, EOFError, ValueError):
        return False
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return True
    return len(head) >= 12 and head[4:8] in (b"n+2\x00", b"ni2\x00") and \
        540 in (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0])


def _open(source):
    """A nibabel image of a path, or of a buffer holding a file's bytes (gzipped or not)."""
    import nibabel as nib

    if not hasattr(source, "read"):
        return nib.load(source)
    head = source.read(2)
    source.seek(0)
    if head == b"\x1f\x8b":
        source = gzip.GzipFile(fileobj=source)
    magic = source.read(8)
    source.seek(0)
    klass = nib.Nifti2Image if magic[4:8] in (b"n+2\x00", b"ni2\x00") else nib.Nifti1Image
    return klass.from_stream(source)


def _load(path, volume_index: int) -> tuple[np.ndarray, int]:
    import nibabel as nib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _open(path)
            shape = tuple(int(s) for s in img.shape)
            if len(shape) < 3 or any(s < 1 for s in shape[:3]):
                raise ImageReadError(f"NIfTI image has shape {shape}; a 3-D or 4-D volume is needed")
            extra = shape[3:]
            if any(s > 1 for s in extra[1:]):
                raise ImageReadError(f"NIfTI image has shape {shape}; volumes of more than 4 dimensions "
                                     "are not supported")
            n_vol = extra[0] if extra else 1
            if n_vol == 1:
                volume_index = 0  # the option is about 4-D files; a 3-D file has one volume
            if volume_index >= n_vol:
                raise ImageReadError(f"--volume-index {volume_index} is out of range: the volume has "
                                     f"{n_vol} volume(s) (shape {shape})")
            if int(np.prod(shape[:3], dtype=np.int64)) > MAX_VOXELS:
                raise ImageReadError(f"NIfTI volume of {'x'.join(map(str, shape[:3]))} voxels exceeds the "
                                     f"limit of {MAX_VOXELS} voxels")
            if len(shape) > 3:
                img = img.slicer[(slice(None),) * 3 + (volume_index,) + (0,) * (len(shape) - 4)]
            canon = nib.as_closest_canonical(img)
            vol = np.asarray(canon.get_fdata(dtype=np.float32))
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError("cannot read NIfTI volume: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - nibabel/gzip/zlib raise many types
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ImageReadError(f"cannot read NIfTI volume ({type(exc).__name__}{': ' + msg if msg else ''})") \
            from None
    vol = vol.reshape(vol.shape[:3])
    finite = np.isfinite(vol)
    if not finite.any():
        raise ImageReadError("NIfTI volume has no finite voxel (all NaN or infinite)")
    if not finite.all():
        vol = np.where(finite, vol, vol[finite].min()).astype(np.float32)
    if vol.min() == vol.max():
        raise ImageReadError(f"NIfTI volume is constant (every voxel = {float(vol.min()):g}); no image content")
    return vol, n_vol


@functools.lru_cache(maxsize=2)
def _cached(path: str, mtime_ns: int, size: int, volume_index: int) -> tuple[np.ndarray, int]:
    vol, n_vol = _load(path, volume_index)
    vol.setflags(write=False)
    return vol, n_vol


@names_file()
def load_volume(path: str | os.PathLike, volume_index: int = 0) -> np.ndarray:
    """The canonical (RAS+) 3-D float32 volume, NaNs replaced (see module docstring).

    ``volume_index`` picks a volume of a 4-D file and is ignored for 3-D files.
    The last two volumes read are kept in memory, so cutting several slices of
    one file decodes it once per process.
    """
    return _volume(path, volume_index)[0]


def _volume(path, volume_index: int) -> tuple[np.ndarray, int]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    return _cached(str(p), st.st_mtime_ns, st.st_size, check_volume_index(volume_index))


def cut(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice ``index`` of ``plane`` of a canonical volume, as displayed (rows top to bottom)."""
    axis = _AXIS[plane]
    sl = np.take(vol, index, axis=axis)  # 2-D, axes in RAS order without ``axis``
    return np.ascontiguousarray(np.flipud(sl.T), dtype=np.float32)


def brain_range(vol: np.ndarray, plane: str) -> tuple[int, int]:
    """First and last index along ``plane`` of the slices that contain brain (inclusive)."""
    lo, hi = float(vol.min()), float(np.percentile(vol, 99))
    if not hi > lo:
        hi = float(vol.max())
    fg = vol > lo + FOREGROUND_FRACTION * (hi - lo)
    axis = _AXIS[plane]
    counts = fg.sum(axis=tuple(a for a in range(3) if a != axis))
    keep = np.flatnonzero(counts >= max(1, BRAIN_SLICE_FRACTION * counts.max()))
    if keep.size == 0:
        n = vol.shape[axis]
        return 0, n - 1
    return int(keep[0]), int(keep[-1])


def pick(vol: np.ndarray, plane: str, how: str) -> list[int]:
    """Slice indices of one ``(plane, how)`` strategy, ascending, without repeats."""
    n = vol.shape[_AXIS[plane]]
    if how == "mid":
        return [n // 2]
    first, last = brain_range(vol, plane)
    if how == "all":
        return list(range(first, last + 1))
    k = int(how)
    length = last - first + 1
    idx = [first + int((i + 0.5) * length / k) for i in range(k)]
    return sorted(set(idx))


def frame_id(plane: str, index: int, volume_index: int | None) -> str:
    """Record ``frame`` of a slice: ``axial=45``, or ``axial=45&t=2`` in a 4-D file."""
    return f"{plane}={index}" if volume_index is None else f"{plane}={index}&t={volume_index}"


def parse_frame(frame: str) -> tuple[str, int, int]:
    """``(plane, index, volume_index)`` of a record ``frame``."""
    m = _FRAME.match(frame or "")
    if not m:
        raise ImageReadError(f"invalid NIfTI slice id '{frame}'")
    return m.group(1), int(m.group(2)), int(m.group(3) or 0)


@names_file()
def probe(path: str | os.PathLike, slices: str = DEFAULT_SLICES, volume_index: int = 0) -> list[SliceInfo]:
    """The slices a strategy picks from a NIfTI file, in strategy order.

    Raises
    ------
    ImageReadError
        If the volume cannot be read, is constant or all NaN, or lacks ``volume_index``.
    ParameterError
        If ``slices`` or ``volume_index`` is invalid.
    """
    strategy = parse_slices(slices)
    vol, n_vol = _volume(path, volume_index)
    is_4d = n_vol > 1
    out: list[SliceInfo] = []
    for plane, how in strategy:
        for index in pick(vol, plane, how):
            h, w = cut(vol, plane, index).shape
            info = SliceInfo(frame_id(plane, index, volume_index if is_4d else None), plane, index, w, h)
            if info not in out:
                out.append(info)
    return out


@names_file()
def load_slice(path: str | os.PathLike, frame: str) -> np.ndarray:
    """Decode the slice a record ``frame`` names (see :func:`frame_id`)."""
    plane, index, volume_index = parse_frame(frame)
    return _slice(load_volume(path, volume_index), plane, index)


def _slice(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    n = vol.shape[_AXIS[plane]]
    if not 0 <= index < n:
        raise ImageReadError(f"{plane} slice {index} does not exist (the volume has {n})")
    return cut(vol, plane, index)


#: (path, device, inode, mtime, size, volume index) -> (SHA-256, volume) of the last volumes :func:`read_slice` read.
_HASHED: dict[tuple, tuple[str, np.ndarray]] = {}


@names_file()
def read_slice(path: str | os.PathLike, frame: str) -> tuple[str, np.ndarray]:
    """:func:`load_slice` from one read of the file: ``(SHA-256 of the bytes decoded, slice)``.

    The volume is decoded from the very bytes that were hashed (:mod:`brainclust.io.content`);
    the last two volumes are kept with their hash, so the slices of one file cost one read.
    """
    plane, index, volume_index = parse_frame(frame)
    st = check_regular(path)
    key = (os.fsdecode(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, volume_index)
    hit = _HASHED.get(key)
    if hit is None:
        content = read_content(path)
        vol, _ = _load(content.source(), volume_index)
        verify_unchanged(content)
        vol.setflags(write=False)
        while len(_HASHED) >= 2:
            _HASHED.pop(next(iter(_HASHED)))
        hit = _HASHED[key] = (content.sha256, vol)
    return hit[0], _slice(hit[1], plane, index)
