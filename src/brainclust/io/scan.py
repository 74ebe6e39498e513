"""Stage 1: find images in a folder, record their meta-attributes, decode them.

Scanning is deterministic: files are visited in the order of their relative
POSIX paths, and the 2-D images inside one file (DICOM frames, NIfTI slices)
in index order. Every file that gives no readable image ends up in the list of
skipped files with a reason; one bad file never ends a run. Accounting is per
file: every file found either contributes at least one record or is skipped
(``len(files_with_records) + len(skipped) == n_files``).

A file's kind comes from its content (:func:`brainclust.io.formats.detect`):
DICOM (:mod:`brainclust.io.formats.dicom`), NIfTI (:mod:`brainclust.io.formats.nifti`),
else a 2-D image that Pillow reads. :func:`load_record` is the one place that
decodes a record, whatever its kind.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from brainclust.io import formats
from brainclust.errors import ImageReadError, InputError, names_file
from brainclust.io.atomic import file_sha256
from brainclust.io.content import CHANGED_REASON, check_regular, read_content, verify_unchanged
from brainclust.io.formats import dicom, nifti
from brainclust.progress import bar
from brainclust.io.outputs import escape_name

log = logging.getLogger(__name__)

#: Image formats brainclust decodes (Pillow format names), whatever the extension.
SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")


@dataclass(frozen=True)
class ImageRecord:
    """One image found by :func:`scan`.

    ``path`` is relative to the scanned root (POSIX), ``abspath`` is absolute.
    ``name``, ``type``, ``size``, ``width`` and ``height`` are the five
    meta-attributes of the method. ``sha256`` is the hash of the file's bytes,
    which keys the feature cache. ``label`` is the first sub-folder under the
    root when labels are read from folders, else ``""``. ``frame`` names one
    2-D image inside a multi-image file (a slice or a frame); ``""`` for plain
    2-D images.
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

    @property
    def key(self) -> str:
        """Cache key: content hash, plus the frame for multi-image files."""
        return f"{self.sha256}:{self.frame}" if self.frame else self.sha256


@dataclass
class ScanResult:
    """What :func:`scan` found: readable images and skipped files with reasons."""

    root: str
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    n_files: int = 0

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Non-hidden files under ``root`` and symbolic links to folders (not followed: they may loop).

    Both lists are sorted by relative POSIX path.
    """
    found: list[Path] = []
    linked_dirs: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        linked_dirs.extend(Path(dirpath) / d for d in dirnames if (Path(dirpath) / d).is_symlink())
        for fn in filenames:
            if not fn.startswith("."):
                found.append(Path(dirpath) / fn)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    linked_dirs.sort(key=lambda p: p.relative_to(root).as_posix())
    return found, linked_dirs


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
def probe(path: str | os.PathLike) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of a 2-D image file from its header.

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
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, (w, h) = im.format, im.size
                pages = _pages(im)
                if _exif_transposed(im):
                    w, h = h, w
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"image too large (decompression-bomb guard): {exc}") from None
    except _IMAGE_ERRORS as exc:
        raise ImageReadError(f"cannot read image header: {type(exc).__name__}: {exc}") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(f"unsupported image format {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}")
    if w < 1 or h < 1:
        raise ImageReadError(f"invalid dimensions {w}x{h}")
    if pages > 1:
        log.warning("%s: a %s of %d pages; only its first page is used", escape_name(os.fsdecode(path)), fmt, pages)
    return fmt, w, h


def _file_records(p: Path, rel: str, label: str, strategy: str, volume_index: int) -> list[ImageRecord]:
    """The records of one file (one per 2-D image in it), or ImageReadError with a reason."""
    if p.is_symlink() and not p.exists():
        raise ImageReadError("broken or looping symbolic link")
    if check_regular(p).st_size == 0:  # a FIFO or a link to /dev/zero is never opened
        raise ImageReadError("empty file (0 bytes)")
    kind = formats.detect(p)

    def make(kind_name: str, w: int, h: int, frame: str = "", path: str = rel) -> ImageRecord:
        return ImageRecord(path=path, abspath=str(p), name=p.name, type=kind_name, size=size,
                           width=w, height=h, sha256=digest, label=label, frame=frame)

    if kind == "nifti":
        found = nifti.probe(p, strategy, volume_index)
        size, digest = p.stat().st_size, file_sha256(p)
        return [make("nifti", s.width, s.height, s.frame, f"{rel}#{s.frame}") for s in found]
    if kind == "dicom":
        info = dicom.probe(p)
    else:
        try:
            fmt, w, h = probe(p)
        except ImageReadError:
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
            return [make(fmt.lower(), w, h)]
    size, digest = p.stat().st_size, file_sha256(p)
    if info.n_frames == 1:
        return [make("dicom", info.width, info.height)]
    return [make("dicom", info.width, info.height, dicom.frame_id(i), f"{rel}#frame={i + 1}")
            for i in range(info.n_frames)]


def scan(root: str | os.PathLike, labels_from_folders: bool = False, slices: str = nifti.DEFAULT_SLICES,
         volume_index: int = 0, progress: bool | None = None) -> ScanResult:
    """Find the images under ``root`` (recursively, deterministic order).

    Parameters
    ----------
    root : path-like
        Folder to scan.
    labels_from_folders : bool, default False
        Take each image's first sub-folder under ``root`` as its label. Images
        directly in ``root`` then get the empty label and are not scored.
    slices : str, default "axial:mid"
        Which 2-D slices of each NIfTI volume become images
        (see :mod:`brainclust.io.formats.nifti`), e.g. ``"axial:5"`` or ``"all-planes:3"``.
    volume_index : int, default 0
        The volume of 4-D NIfTI files to slice (ignored for 3-D files).
    progress : bool or None, default None
        A progress bar over the files (every file is read and hashed); ``None`` = on a terminal.

    Returns
    -------
    ScanResult
        Readable images (``records``: one per 2-D image, so one per DICOM frame
        and NIfTI slice) and skipped files with reasons.

    Raises
    ------
    InputError
        If ``root`` is not a folder.
    ParameterError
        If ``slices`` or ``volume_index`` is invalid.
    """
    nifti.parse_slices(slices)
    nifti.check_volume_index(volume_index)
    rootp = Path(root)
    if not rootp.is_dir():
        raise InputError(f"input folder '{root}' does not exist or is not a folder")
    rootp = rootp.resolve()
    result = ScanResult(root=str(rootp))
    files, linked_dirs = _walk(rootp)
    result.n_files = len(files) + len(linked_dirs)
    for d in linked_dirs:
        result.skipped.append({"path": d.relative_to(rootp).as_posix(),
                               "reason": "symbolic link to a folder; not followed (it could loop)"})
    pbar = bar(len(files), "scan", progress, unit="file")
    for p in files:
        pbar.update(1)
        rel = p.relative_to(rootp).as_posix()
        parts = rel.split("/")
        label = parts[0] if labels_from_folders and len(parts) > 1 else ""
        try:
            result.records.extend(_file_records(p, rel, label, slices, volume_index))
        except ImageReadError as exc:
            result.skipped.append({"path": rel, "reason": exc.reason})
        except OSError as exc:
            result.skipped.append({"path": rel, "reason": f"cannot read file: {exc.strerror or exc}"})
        except Exception as exc:  # noqa: BLE001 - one odd file never ends a run
            result.skipped.append({"path": rel, "reason": f"cannot read file ({type(exc).__name__})"})
    pbar.close()
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
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
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
    if kind not in ("dicom", "nifti"):
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
def load_checked(record: ImageRecord) -> np.ndarray:
    """:func:`load_record`, refused unless the bytes decoded are those the scan hashed (``record.sha256``).

    What the feature extractor calls before it stores features under ``record.key``: a file
    rewritten between the scan and the extraction is an ImageReadError (:data:`CHANGED_REASON`,
    with one warning), so the store never holds one content's features under another's hash.
    """
    digest, image = read_record(record)
    if digest != record.sha256:
        log.warning("%s: %s", escape_name(record.path), CHANGED_REASON)
        raise ImageReadError(CHANGED_REASON)
    return image
