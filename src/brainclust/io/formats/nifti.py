"""NIfTI volumes (nibabel): 2-D slices chosen by a slice strategy.

How a volume becomes images
---------------------------
1. A 4-D volume contributes one 3-D volume, ``volume_index`` (default 0). A 2-D image is read as
   the same image stored ``(x, y, 1)``, with its own affine (:mod:`brainclust.io.formats.niftiread`).
2. The volume is reoriented to the closest canonical orientation, RAS+
   (:func:`nibabel.as_closest_canonical`): the array's axes are then
   left->Right, posterior->Anterior, inferior->Superior, whatever the scanner's
   storage order. Two files holding the same anatomy with different affines give
   the same slices.
3. Values are ``scl_slope``/``scl_inter``-scaled floats (the magnitude of complex
   values, with a warning); NaN and infinite voxels are set to the volume's
   smallest finite value (background). A volume with no finite voxel, or with
   one value everywhere, is skipped with a reason (there is nothing to cluster in
   it), as is one with values beyond the float32 range.
4. Slices are cut as a radiologist views them, in the neurological convention
   (patient's left on the image's left): axial (``vol[:, :, k]``, anterior up),
   coronal (``vol[:, k, :]``, superior up), sagittal (``vol[k, :, :]``,
   superior up, anterior right). Slice indices are 0-based indices of the
   canonical array.

Slice strategies (``--slices``), comma-separated, e.g. ``axial:mid,coronal:3``:

- ``PLANE:mid``: the middle slice of the array (index ``n // 2``).
- ``PLANE:N``: ``N`` slices evenly spaced through the slices that contain
  brain, at the centres of ``N`` equal bins of that range. Fewer than ``N``
  slices result when the range is shorter than ``N``.
- ``PLANE:all``: every slice that contains brain.
- ``all-planes:...``: the same for axial, coronal and sagittal.

Which slices contain brain (:func:`brain_range`)
------------------------------------------------
The brain's extent comes from a mask that intensity noise cannot grow, so that
slice ``k`` of one subject matches slice ``k`` of another as well as a rigid,
unregistered choice can, and noise-only edge slices are never chosen. The rule
(:mod:`brainclust.io.formats.brainmask`):

1. **Smooth**: volumes above ``MASK_FULL_RES_VOXELS`` voxels are first
   reduced by 2x2x2 block means; then a Gaussian filter of
   ``MASK_SIGMA`` voxels. Both average white noise away.
2. **Threshold**: Otsu's threshold ``t`` of the smoothed values (between the
   background and the tissue modes).
3. **Largest connected component** (6-connectivity) of ``smoothed > t``,
   dilated by one (coarse) voxel: the *support*. Specks of noise and bright
   artefacts outside the head are not part of it.
4. **Count**, per slice, the voxels of the original volume above ``t`` inside
   the support. A slice contains brain when its count reaches
   ``BRAIN_SLICE_FRACTION`` (5 %) of the largest count along that axis.

A copy of a volume with added Gaussian noise gets the same range to within a
slice or two (tested), where the plain threshold of earlier versions
(``min + 0.1 (p99 - min)``, on unsmoothed voxels) let the noise decide it.

The mask is computed once per volume, and only when a strategy other than
``mid`` needs it. Each slice also gets its ``position`` in that range (0 at the
first slice with brain, 1 at the last).

``PLANE`` is ``axial``, ``coronal`` or ``sagittal``. Each slice is one row whose
``path`` is ``volume.nii.gz#axial=45`` (``#axial=45&t=2`` for volume 2 of a 4-D
file).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.errors import ImageReadError, ParameterError, names_file
from brainclust.io.content import check_regular, read_content, verify_unchanged
from brainclust.io.formats.brainmask import BRAIN_SLICE_FRACTION, slice_counts
from brainclust.io.formats.gzwhole import read_whole
from brainclust.io.formats.niftiread import COMPLEX_NOTE, open_image, quiet, voxels
from brainclust.io.outputs import escape_name
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

PLANES = ("axial", "coronal", "sagittal")
DEFAULT_SLICES = "axial:mid"
#: Largest 3-D volume read (voxels); guards against gzip bombs and bogus headers.
MAX_VOXELS = 512 ** 3
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
    #: Position of the slice in the brain's range along its axis (0 = first, 1 = last slice with brain);
    #: outside [0, 1] for a ``mid`` slice beyond the brain.
    position: float = field(default=float("nan"), compare=False)


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


def _load(path, volume_index: int) -> tuple[np.ndarray, int, tuple[str, ...]]:
    """``(canonical float32 volume, volumes in the file, notes for a warning)``."""
    import nibabel as nib

    try:
        with quiet():
            img = open_image(read_whole(path, MAX_VOXELS))
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
                raise ImageReadError(f"--volume-index {volume_index} is out of range: the file has "
                                     f"{count_text(n_vol, 'volume')} (shape {shape})")
            if int(np.prod(shape[:3], dtype=np.int64)) > MAX_VOXELS:
                raise ImageReadError(f"NIfTI volume of {'x'.join(map(str, shape[:3]))} voxels exceeds the "
                                     f"limit of {MAX_VOXELS} voxels")
            if len(shape) > 3:
                img = img.slicer[(slice(None),) * 3 + (volume_index,) + (0,) * (len(shape) - 4)]
            canon = nib.as_closest_canonical(img)
            vol, is_complex = voxels(canon)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError("cannot read NIfTI volume: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - nibabel/gzip/zlib raise many types
        msg = str(exc).replace(os.fspath(path), os.path.basename(path))  # nibabel names the full path
        msg = msg.splitlines()[0][:200] if msg else ""
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
    return vol, n_vol, (COMPLEX_NOTE,) if is_complex else ()


@functools.lru_cache(maxsize=2)
def _cached(path: str, mtime_ns: int, size: int, volume_index: int) -> tuple[np.ndarray, int, tuple[str, ...]]:
    loaded = _load(path, volume_index)
    loaded[0].setflags(write=False)
    return loaded


@names_file()
def load_volume(path: str | os.PathLike, volume_index: int = 0) -> np.ndarray:
    """The canonical (RAS+) 3-D float32 volume, NaNs replaced (see module docstring).

    ``volume_index`` picks a volume of a 4-D file and is ignored for 3-D files.
    The last two volumes read are kept in memory, so cutting several slices of
    one file decodes it once per process.
    """
    return _volume(path, volume_index)[0]


def _volume(path, volume_index: int) -> tuple[np.ndarray, int, tuple[str, ...]]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    return _cached(str(p), st.st_mtime_ns, st.st_size, check_volume_index(volume_index))


def cut(vol: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice ``index`` of ``plane`` of a canonical volume, as displayed (rows top to bottom)."""
    axis = _AXIS[plane]
    where: list = [slice(None)] * 3
    where[axis] = index
    sl = vol[tuple(where)]  # 2-D view, axes in RAS order without ``axis``
    return np.ascontiguousarray(np.flipud(sl.T), dtype=np.float32)


def cut_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """``(height, width)`` of the slices :func:`cut` gives for a volume of ``shape``."""
    rest = [n for a, n in enumerate(shape[:3]) if a != _AXIS[plane]]
    return rest[1], rest[0]


def brain_range(vol: np.ndarray, plane: str, counts: dict[str, np.ndarray] | None = None) -> tuple[int, int]:
    """First and last index along ``plane`` of the slices that contain brain (inclusive).

    ``counts`` (from :func:`slice_counts`) saves recomputing the mask for each plane.
    """
    c = (counts or slice_counts(vol))[plane]
    keep = np.flatnonzero(c >= max(1, BRAIN_SLICE_FRACTION * c.max()))
    if keep.size == 0:
        n = vol.shape[_AXIS[plane]]
        return 0, n - 1
    return int(keep[0]), int(keep[-1])


def pick(vol: np.ndarray, plane: str, how: str, counts: dict[str, np.ndarray] | None = None) -> list[int]:
    """Slice indices of one ``(plane, how)`` strategy, ascending, without repeats."""
    n = vol.shape[_AXIS[plane]]
    if how == "mid":
        return [n // 2]
    first, last = brain_range(vol, plane, counts)
    if how == "all":
        return list(range(first, last + 1))
    k = int(how)
    length = last - first + 1
    idx = [first + int((i + 0.5) * length / k) for i in range(k)]
    return sorted(set(idx))


def position(index: int, first: int, last: int) -> float:
    """Where slice ``index`` lies in the brain's range ``[first, last]``: 0 at ``first``, 1 at ``last``."""
    return 0.5 if last <= first else round((index - first) / (last - first), 4)


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
def probe(path: str | os.PathLike, slices: str = DEFAULT_SLICES, volume_index: int = 0,
          shown: str | None = None) -> list[SliceInfo]:
    """The slices a strategy picks from a NIfTI file, in strategy order (none of a plane whose slices are a
    line: those across a volume one voxel thick). A volume one voxel thick (a 2-D file, or ``(x, y, 1)``)
    whose thin axis the strategy does not name gives its one slice all the same (``coronal=0`` for a
    coronal one under ``axial:mid``), so that no file disappears. What the reader changed (the magnitude of
    complex values) is one warning naming the file as ``shown`` (its path under the input folder; the file
    name when ``None``).

    Raises
    ------
    ImageReadError
        If the volume cannot be read, is constant or all NaN, lacks ``volume_index``, or holds no 2-D slice.
    ParameterError
        If ``slices`` or ``volume_index`` is invalid.
    """
    strategy = parse_slices(slices)
    vol, n_vol, notes = _volume(path, volume_index)
    t = volume_index if n_vol > 1 else None
    out = _picked(vol, strategy, t)
    thin = [p for p in PLANES if vol.shape[_AXIS[p]] == 1]
    if not out and len(thin) == 1:
        out = _picked(vol, ((thin[0], "mid"),), t)
    if not out:
        raise ImageReadError(f"NIfTI volume of {'x'.join(map(str, vol.shape))} voxels holds no 2-D slice "
                             "(it is a line)")
    for note in notes:
        log.warning("%s: %s", escape_name(shown or Path(path).name), note)
    return out


def _picked(vol: np.ndarray, strategy, t: int | None) -> list[SliceInfo]:
    """The slices of ``strategy`` (``((plane, how), ...)``) in a volume; ``t``: the volume index of a 4-D file."""
    counts = None if all(how == "mid" for _, how in strategy) else slice_counts(vol)  # mid needs no mask
    out: list[SliceInfo] = []
    for plane, how in strategy:
        h, w = cut_shape(vol.shape, plane)
        if min(h, w) < 2:  # across a volume one voxel thick: a line, not an image
            continue
        first, last = brain_range(vol, plane, counts) if counts is not None else (None, None)
        for index in pick(vol, plane, how, counts):
            pos = float("nan") if first is None else position(index, first, last)
            info = SliceInfo(frame_id(plane, index, t), plane, index, w, h, pos)
            if info not in out:
                out.append(info)
    return out


@names_file()
def header_fields(path: str | os.PathLike) -> dict[str, object]:
    """Geometry from a NIfTI header (no voxel is read): the columns of :mod:`brainclust.io.metadata`.

    ``voxel_x_mm``, ``voxel_y_mm``, ``voxel_z_mm``: voxel size along the canonical
    (RAS+) axes, i.e. as the slices are cut (sagittal, coronal, axial spacing);
    ``shape``: the canonical 3-D shape, ``"240x240x155"``; ``n_volumes``: volumes
    of a 4-D file (1 for 3-D); ``orientation``: the stored axis codes
    (nibabel's ``aff2axcodes``, e.g. ``"LPS"``; the slices are reoriented
    whatever they are). NIfTI headers hold no patient data besides the free-text
    ``descrip``/``aux_file``/``intent_name``, which are never read.

    Raises
    ------
    ImageReadError
        If the header cannot be read.
    """
    import nibabel as nib

    try:
        with quiet():
            img = open_image(os.fspath(path))
            shape = tuple(int(s) for s in img.shape)
            zooms = [float(z) for z in img.header.get_zooms()[:3]]
            if len(shape) < 3 or len(zooms) < 3:
                raise ImageReadError(f"NIfTI image has shape {shape}; a 3-D or 4-D volume is needed")
            ornt = nib.orientations.io_orientation(img.affine)[:3, 0]
            codes = "".join(c or "?" for c in nib.aff2axcodes(img.affine))
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types
        raise ImageReadError(f"cannot read NIfTI header ({type(exc).__name__})") from None
    canon_zoom, canon_shape = list(zooms), list(shape[:3])
    if np.all(np.isfinite(ornt)) and sorted(ornt.astype(int)) == [0, 1, 2]:
        for stored_axis, ras_axis in enumerate(ornt.astype(int)):
            canon_zoom[ras_axis] = zooms[stored_axis]
            canon_shape[ras_axis] = shape[stored_axis]
    return {"voxel_x_mm": round(canon_zoom[0], 4), "voxel_y_mm": round(canon_zoom[1], 4),
            "voxel_z_mm": round(canon_zoom[2], 4), "shape": "x".join(map(str, canon_shape)),
            "n_volumes": shape[3] if len(shape) > 3 else 1, "orientation": codes}


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
        vol = _load(content.source(), volume_index)[0]
        verify_unchanged(content)
        vol.setflags(write=False)
        while len(_HASHED) >= 2:
            _HASHED.pop(next(iter(_HASHED)))
        hit = _HASHED[key] = (content.sha256, vol)
    return hit[0], _slice(hit[1], plane, index)
