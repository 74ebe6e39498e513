"""Stage 1: find images in a folder, record their meta-attributes, decode them.

Scanning is deterministic: files are visited in the order of their relative
POSIX paths. Every file that is not a readable image ends up in the list of
skipped files with a reason; one bad file never ends a run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError, InputError

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

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.records]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> list[Path]:
    """All non-hidden regular files under ``root``, sorted by relative POSIX path."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            if not fn.startswith("."):
                found.append(Path(dirpath) / fn)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def probe(path: str | os.PathLike) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of an image file from its header.

    Raises
    ------
    ImageReadError
        If the file is empty, not an image, or of an unsupported format.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, (w, h) = im.format, im.size
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image header: {exc}") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageReadError(f"unsupported image format {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}")
    if w < 1 or h < 1:
        raise ImageReadError(f"invalid dimensions {w}x{h}")
    return fmt, w, h


def scan(root: str | os.PathLike, labels_from_folders: bool = False) -> ScanResult:
    """Find the images under ``root`` (recursively, deterministic order).

    Parameters
    ----------
    root : path-like
        Folder to scan.
    labels_from_folders : bool, default False
        Take each image's first sub-folder under ``root`` as its label. Images
        directly in ``root`` then get the empty label and are not scored.

    Returns
    -------
    ScanResult
        Readable images (``records``) and skipped files with reasons.

    Raises
    ------
    InputError
        If ``root`` is not a folder.
    """
    rootp = Path(root)
    if not rootp.is_dir():
        raise InputError(f"input folder '{root}' does not exist or is not a folder")
    rootp = rootp.resolve()
    result = ScanResult(root=str(rootp))
    for p in _walk(rootp):
        rel = p.relative_to(rootp).as_posix()
        try:
            if p.is_symlink() and not p.exists():
                raise ImageReadError("broken symbolic link")
            fmt, w, h = probe(p)
            digest = _sha256(p)
            size = p.stat().st_size
        except ImageReadError as exc:
            result.skipped.append({"path": rel, "reason": str(exc)})
            continue
        except OSError as exc:
            result.skipped.append({"path": rel, "reason": f"cannot read file: {exc.strerror or exc}"})
            continue
        parts = rel.split("/")
        label = parts[0] if labels_from_folders and len(parts) > 1 else ""
        result.records.append(ImageRecord(
            path=rel, abspath=str(p), name=p.name, type=fmt.lower(), size=size,
            width=w, height=h, sha256=digest, label=label))
    for s in result.skipped:
        log.warning("skipped %s: %s", s["path"], s["reason"])
    return result


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode an image into a 2-D float32 grayscale array in its own intensity units.

    Modes L, I;16, I, F, RGB, RGBA, P, LA and CMYK are accepted. Colour is
    converted to luminance; alpha is dropped (transparent pixels become 0).
    EXIF orientation is applied.

    Raises
    ------
    ImageReadError
        If the file cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
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
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode image: {exc}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise ImageReadError(f"decoded to an unexpected shape {arr.shape}")
    return arr


def load_record(record: ImageRecord) -> np.ndarray:
    """Decode the 2-D grayscale image a record stands for (see :func:`load_gray`)."""
    return load_gray(record.abspath)
