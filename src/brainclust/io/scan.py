"""Stage 1: find images in a folder, record their meta-attributes, decode them.

Scanning is deterministic: files are visited in the order of their relative
POSIX paths, and the 2-D images inside one file (DICOM frames, NIfTI slices)
in index order. Every file that gives no readable image ends up in the list of
skipped files with a reason; one bad file never ends a run. Accounting is per
file: every file found either contributes at least one record, is skipped, is a
metadata file (JSON/TSV sidecars and tables: read as metadata, never listed as
skipped images) or is left out (``--include``/``--exclude-files``, a BIDS filter,
a BIDS non-data folder, a file under ``sub-<label>/`` without a BIDS name, a hidden
name: a hidden folder counts as one entry): ``len(files_with_records) + len(skipped) +
metadata_files + sum(excluded.values()) == n_files``. One summary line (INFO)
gives the metadata and left-out counts.

Every record carries ``meta``, its metadata columns (:mod:`brainclust.io.metadata`):
``folder`` (first-level folder), the BIDS columns of :mod:`brainclust.io.bids`
in a BIDS data set, the whitelisted fields of a JSON sidecar with the same stem
(``x.nii.gz`` + ``x.json``, as dcm2niix writes them) elsewhere, the DICOM header
whitelist and ``series_id`` (see below), the NIfTI header fields, and per
slice ``plane``, ``slice_index`` and (when the strategy located the brain)
``slice_position``; ``aspect`` (width / height) for every image.

DICOM series: files are grouped by SeriesInstanceUID (compared through a
one-way hash). A series is named ``<folder of its first file>#series=<n>``,
``n`` counting the series first met in that folder (1, 2, ...); a file without
the UID is a series of its own, named by its path. The UID is never written.

A file's kind comes from its content (:func:`brainclust.io.formats.detect`):
DICOM (:mod:`brainclust.io.formats.dicom`), NIfTI (:mod:`brainclust.io.formats.nifti`),
else a 2-D image that Pillow reads. :func:`load_record` is the one place that
decodes a record, whatever its kind.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from brainclust.errors import ImageReadError, InputError, names_file
from brainclust.io import formats, scanmeta
from brainclust.io.atomic import file_sha256
from brainclust.io.content import check_regular, guard_pixels, read_content, require_scanned, verify_unchanged
from brainclust.io.formats import dicom, nifti, niftiread
from brainclust.io.outputs import escape_name
from brainclust.io.pathfilter import label_folder_of
from brainclust.io.walk import LINKED_FOLDER, drop_colliding, skipped_text, walk_folder
from brainclust.progress import bar

log = logging.getLogger(__name__)

#: Image formats brainclust decodes (Pillow format names), whatever the extension.
SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
#: Record types that are slices or frames of a scan (a NIfTI volume, a DICOM object), with a header of their own;
#: every other record is a 2-D image file.
SCAN_TYPES = frozenset({"nifti", "dicom"})


@dataclass(frozen=True)
class ImageRecord:
    """One image found by :func:`scan`.

    ``path`` is relative to the scanned root (POSIX), ``abspath`` is absolute.
    ``name``, ``type``, ``size``, ``width`` and ``height`` are the five
    meta-attributes of the method. ``sha256`` is the hash of the file's bytes,
    which keys the feature cache. ``label`` is the first sub-folder under the root (the one below it when
    that is a split folder) when labels are read from folders, else ``""``. ``frame`` names one
    2-D image inside a multi-image file (a slice or a frame); ``""`` for plain
    2-D images. ``meta`` maps metadata column names to values (see the module
    docstring and :func:`brainclust.io.metadata.record_columns`); it takes no
    part in equality or hashing.
    """

    path: str
    abspath: str
    name: str
    type: str
    size: int
    width: int
    height: int
    sha256: str
    label: str = ""
    frame: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """Cache key: content hash, plus the frame for multi-image files."""
        return f"{self.sha256}:{self.frame}" if self.frame else self.sha256


@dataclass
class ScanResult:
    """What :func:`scan` found: readable images, skipped files with reasons, and counts.

    ``metadata_files``: JSON/TSV files (and BIDS README, CHANGES, LICENSE,
    ``.bval``/``.bvec``) taken as metadata, not images. ``excluded``: files left
    out on purpose, by reason. ``bids``: whether the root is a BIDS data set.
    ``summary``: the one line that sums these up (``""`` when there is nothing to say).
    """

    root: str
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    n_files: int = 0
    metadata_files: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    bids: bool = False
    summary: str = ""

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]

    def skipped_text(self) -> str:
        """``2 files and 1 folder`` (:func:`brainclust.io.walk.skipped_text`)."""
        return skipped_text(self.skipped)


def _unreadable(exc: Exception) -> str:
    """The skip reason of a file whose reading raised ``exc`` (not an :class:`ImageReadError`)."""
    if isinstance(exc, (zlib.error, EOFError)):
        return "cannot read file: corrupt or truncated compressed data"
    return f"cannot read file: {exc.strerror or exc}" if isinstance(exc, OSError) else \
        f"cannot read file ({type(exc).__name__})"


_IMAGE_ERRORS = (Exception, Image.DecompressionBombWarning)  # Pillow plugins raise many types on bad data


def _exif_transposed(im: Image.Image) -> bool:
    """Whether the image's EXIF orientation swaps width and height (orientations 5-8)."""
    try:
        return im.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a damaged EXIF block only loses the orientation
        return False


def _pages(im: Image.Image) -> int:
    """Pages (frames) in an image file; 1 when unknown (a damaged page list only loses the count)."""
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001
        return 1


@names_file()
def probe(path: str | os.PathLike, shown: str | None = None) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of a 2-D image file from its header; a warning about the file names
    it as ``shown`` (its path under the input folder; the file name when ``None``), never the absolute path.

    Width and height are those of the image as displayed (after EXIF rotation).
    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) holds: a
    larger image is an error, not a warning.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, not an image, too large, or of an
        unsupported format.
    """
    path = Path(path)
    if check_regular(path).st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata; the reason is in the error
            with Image.open(path) as im:
                guard_pixels(im)
                fmt, (w, h) = im.format, im.size
                pages = _pages(im)
                if _exif_transposed(im):
                    w, h = h, w
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"image too large (decompression-bomb guard): {exc}") from None
    except _IMAGE_ERRORS as exc:  # a system error's reason alone: its text would hold the absolute path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        raise ImageReadError(f"cannot read image header: {why}") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(f"unsupported image format {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}")
    if w < 1 or h < 1:
        raise ImageReadError(f"invalid dimensions {w}x{h}")
    if pages > 1:
        log.warning("%s: a %s of %d pages; only its first page is used", escape_name(shown or path.name), fmt, pages)
    return fmt, w, h


def _file_records(p: Path, rel: str, label: str, strategy: str, volume_index: int,
                  meta: dict | None = None) -> tuple[list[ImageRecord], str, tuple[str, ...]]:
    """The records of one file (one per 2-D image in it), its DICOM series key (``""`` if none) and
    the DICOM header columns the sanitiser withheld.

    Raises ImageReadError with a reason when the file gives no image.
    """
    if p.is_symlink() and not p.exists():
        raise ImageReadError("broken or looping symbolic link")
    if check_regular(p).st_size == 0:  # a FIFO or a link to /dev/zero is never opened
        raise ImageReadError("empty file (0 bytes)")
    kind = formats.detect(p)
    base = dict(meta or {})

    def make(kind_name: str, w: int, h: int, frame: str = "", path: str = rel, extra=None) -> ImageRecord:
        m = dict(base)
        m.update(extra or {})
        m["aspect"] = round(w / h, 4) if h else None
        return ImageRecord(path=path, abspath=str(p), name=p.name, type=kind_name, size=size,
                           width=w, height=h, sha256=digest, label=label, frame=frame, meta=m)

    if kind == "nifti":
        found = nifti.probe(p, strategy, volume_index, shown=rel)
        try:
            base.update(nifti.header_fields(p))
        except ImageReadError:
            pass  # the volume was read: only its header fields are missing
        size, digest = p.stat().st_size, file_sha256(p)
        out = []
        for s in found:
            extra = {"plane": s.plane, "slice_index": s.index}
            if s.position == s.position:  # not NaN
                extra["slice_position"] = s.position
            out.append(make("nifti", s.width, s.height, s.frame, f"{rel}#{s.frame}", extra))
        return out, "", ()
    if kind == "dicom":
        info = dicom.probe(p)
    else:
        try:
            fmt, w, h = probe(p, rel)
        except ImageReadError:
            if (pair := niftiread.pair_data_reason(p)) is not None:  # x.img beside the x.hdr of a NIfTI pair
                raise ImageReadError(pair) from None
            if not dicom.may_be_headerless(p):
                raise
            try:  # an old DICOM export without the preamble; accepted only if it has an image's attributes
                info = dicom.probe(p, force=True)
            except ImageReadError:
                pass
            else:
                kind = "dicom"
            if kind != "dicom":
                raise
        else:
            size, digest = p.stat().st_size, file_sha256(p)
            return [make(fmt.lower(), w, h)], "", ()
    size, digest = p.stat().st_size, file_sha256(p)
    base.update(info.fields)
    if info.n_frames == 1:
        return [make("dicom", info.width, info.height)], info.series_key, info.withheld
    return [make("dicom", info.width, info.height, dicom.frame_id(i), f"{rel}#frame={i + 1}")
            for i in range(info.n_frames)], info.series_key, info.withheld


def scan(root: str | os.PathLike, labels_from_folders: bool = False, slices: str = nifti.DEFAULT_SLICES,
         volume_index: int = 0, progress: bool | None = None, *, include=(), exclude=(),
         bids_filter=None, bids: str | bool | None = "auto", told=("slices", "volume_index")) -> ScanResult:
    """Find the images under ``root`` (recursively, deterministic order).

    Parameters
    ----------
    root : path-like
        Folder to scan.
    labels_from_folders : bool (True or False: ``"no"`` is refused), default False
        Each image's label: its first sub-folder under ``root``, the one below it under a split folder
        (``Training/glioma/``: ``glioma``); ``""`` (not scored) directly in ``root`` or a split folder.
    slices : str, default "axial:mid"
        Which 2-D slices of each NIfTI volume become images
        (see :mod:`brainclust.io.formats.nifti`), e.g. ``"axial:5"`` or ``"all-planes:3"``.
    volume_index : int, default 0
        The volume of 4-D NIfTI files to slice (ignored for 3-D files).
    progress : bool or None, default None
        A progress bar over the files (every file is read and hashed); ``None`` = on a terminal.
    include, exclude : iterable of str, default ()
        ``--include`` / ``--exclude-files`` globs over relative paths (:mod:`brainclust.io.pathfilter`).
    bids_filter : str or mapping or None
        ``--bids-filter`` (:func:`brainclust.io.bids.parse_filter`); needs a BIDS data set.
    bids : {"auto", "off"}, default "auto"
        ``--bids``: ``auto`` detects a BIDS data set, ``off`` never (:func:`brainclust.io.bids.detect`).
    told : collection of str, default ("slices", "volume_index")
        Those of the two the user gave (``predict`` reads the others from the run): warned of without NIfTI files.

    Returns
    -------
    ScanResult
        Readable images (``records``: one per 2-D image, DICOM frame, NIfTI slice), skipped files, counts.

    Raises
    ------
    InputError
        ``root`` is not a folder (one line: missing, or a file), or BIDS data files exist but none is selected.
    ParameterError
        ``root`` is not a path (a list); an invalid or ignored ``slices``, ``volume_index``, pattern, ``bids``, filter.
    """
    nifti.parse_slices(slices)
    nifti.check_volume_index(volume_index)
    rootp = scanmeta.check_options(root, labels_from_folders).resolve()
    files, linked_dirs, hidden, unlisted = walk_folder(rootp)
    scanmeta.warn_links_out(files, rootp)
    rels = [p.relative_to(rootp).as_posix() for p in files]
    select = scanmeta.FileSelector(rootp, rels, include, exclude, bids_filter, bids, str(root), hidden)
    result = ScanResult(root=str(rootp), bids=select.bids,
                        n_files=len(files) + len(linked_dirs) + hidden + len(unlisted),
                        skipped=[{"path": d.relative_to(rootp).as_posix(), "reason": LINKED_FOLDER}
                                 for d in linked_dirs] + unlisted)
    series_keys: dict[str, str] = {}
    pbar = bar(len(files), "scan", progress, unit="file")
    for p, rel in zip(files, rels):
        pbar.update(1)
        meta = select(p, rel)
        if meta is None:
            continue
        label = label_folder_of(rel) if labels_from_folders else ""
        try:
            found, series_keys[rel], held = _file_records(p, rel, label, slices, volume_index, meta)
            result.records.extend(found)
            select.count_withheld(held)
        except ImageReadError as exc:
            result.skipped.append({"path": rel, "reason": exc.reason})
        except Exception as exc:  # noqa: BLE001 - one odd file never ends a run
            result.skipped.append({"path": rel, "reason": _unreadable(exc)})
    pbar.close()
    drop_colliding(result)
    select.finish()  # raises when a BIDS filter selected nothing
    scanmeta.assign_series_ids(result.records, series_keys)
    result.metadata_files, result.excluded, result.summary = select.metadata_files, select.excluded, select.summary
    if result.summary:
        log.info("scan: %s", result.summary)  # one line: sidecars and left-out files are never listed one by one
    scanmeta.warn_found(result.records, result.skipped, {"slices": (slices, nifti.DEFAULT_SLICES),
                        "volume_index": (volume_index, 0)}, told, root=rootp.name)
    result.skipped.sort(key=lambda s: s["path"])
    for s in result.skipped:
        log.warning("skipped %s: %s", escape_name(s["path"]), s["reason"])  # as written in the outputs
    return result


@names_file()
def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode a 2-D image file (see :func:`gray_from`)."""
    return gray_from(path)


def gray_from(source) -> np.ndarray:
    """Decode a 2-D image into a float32 grayscale array in its own intensity units.

    Modes L, I;16, I, F, RGB, RGBA, P, LA and CMYK are accepted. Colour is
    converted to luminance; alpha is dropped (transparent pixels become 0).
    EXIF orientation is applied.

    Raises
    ------
    ImageReadError
        If the file cannot be decoded (including images above Pillow's
        decompression-bomb limit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata; the reason is in the error
            with Image.open(source) as im:
                guard_pixels(im)
                im.load()
                im = ImageOps.exif_transpose(im)
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(im, dtype=np.float32)
                else:
                    if mode == "P":
                        im = im.convert("RGBA")
                    if im.mode in ("RGBA", "LA"):
                        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                        im = Image.alpha_composite(bg, im.convert("RGBA"))
                    arr = np.asarray(im.convert("L"), dtype=np.float32)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"image too large (decompression-bomb guard): {exc}") from None
    except _IMAGE_ERRORS as exc:
        raise ImageReadError(f"cannot decode image: {type(exc).__name__}: {exc}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise ImageReadError(f"decoded to an unexpected shape {arr.shape}")
    return arr


@names_file(lambda record: record.abspath)
def load_record(record: ImageRecord) -> np.ndarray:
    """Decode the 2-D grayscale image a record stands for, whatever the file's kind.

    DICOM frames come back windowed to [0, 1] (:func:`brainclust.io.formats.dicom.load_frame`),
    NIfTI slices in the volume's units (:func:`brainclust.io.formats.nifti.load_slice`),
    other images from :func:`load_gray`. A record of unknown type (a bare path)
    is dispatched on the file's content.

    Raises
    ------
    ImageReadError
        If the image cannot be decoded; never any other exception for bad data.
    """
    return read_record(record)[1]


@names_file(lambda record: record.abspath)
def read_record(record: ImageRecord) -> tuple[str, np.ndarray]:
    """:func:`load_record` from one read of the file: ``(SHA-256 of the bytes decoded, image)``.

    The file is read once, hashed, and decoded from the same bytes
    (:mod:`brainclust.io.content`), so the hash always belongs to the pixels.
    """
    kind = record.type
    if kind not in SCAN_TYPES:
        try:
            detected = formats.detect(record.abspath) if not kind else "image"
        except Exception:  # noqa: BLE001
            detected = "image"
        kind = detected if detected != "image" else kind
    try:
        if kind == "dicom":
            return dicom.read_frame(record.abspath, dicom.frame_index(record.frame))
        if kind == "nifti":
            return nifti.read_slice(record.abspath, record.frame or nifti.probe(record.abspath)[0].frame)
        if record.frame:
            raise ImageReadError(f"a {kind or 'plain'} image has no frame '{record.frame}'")
        content = read_content(record.abspath)
        image = gray_from(content.source())
        verify_unchanged(content)
        return content.sha256, image
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError("cannot decode image: not enough memory") from None
    except Exception as exc:  # noqa: BLE001 - bad data must only ever be an ImageReadError
        raise ImageReadError(f"cannot decode image: {type(exc).__name__}: {exc}") from None


@names_file(lambda record: record.abspath)
def load_checked(record: ImageRecord, warn: bool = True) -> np.ndarray:
    """:func:`load_record`, refused unless the bytes decoded are those the scan hashed (``record.sha256``).

    What the feature extractor calls before it stores features under ``record.key``: a file
    rewritten between the scan and the extraction is an ImageReadError (:data:`~brainclust.io.content.CHANGED_REASON`,
    with one warning unless ``warn`` is false), so the store never holds one content's features under
    another's hash.
    """
    digest, image = read_record(record)
    require_scanned(record.path, record.sha256, digest, warn)
    return image
