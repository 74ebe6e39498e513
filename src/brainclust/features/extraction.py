"""What an extraction returns, and the pieces it runs in DataLoader workers.

:class:`Extraction` is the result object of
:meth:`FeatureExtractor.extract <brainclust.features.extractor.FeatureExtractor.extract>`: the
feature matrix (NaN rows for images that could not be decoded), the reason of each failure, the
cache hits and misses and the time spent. Nothing of it is kept on the extractor, so
``transform`` has no side effects.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.errors import ImageReadError, ModelFileError, NumericalError, ParameterError
from brainclust.features import augment
from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input
from brainclust.io.atomic import file_sha256
from brainclust.io.scan import ImageRecord, ScanResult, load_checked


@dataclass
class Extraction:
    """Features of ``n`` images and what happened to each.

    Attributes
    ----------
    features : ndarray of shape (n, dim), float32
        NaN rows for the images that failed.
    failed : dict of int to str
        Row index -> reason, for images that could not be decoded or pre-processed.
    cache_hits, cache_misses : int
        Per image: features read from the store, features computed now. Failed images are neither
        (``hits + misses + len(failed) == n``).
    copies : int
        Of the misses, the images whose content an earlier row holds too: computed once, at that row.
    seconds : float
        Time spent computing (not reading the cache).
    """

    features: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    copies: int = 0

    def split(self, records: Sequence[ImageRecord]) -> tuple[list[ImageRecord], np.ndarray, list[dict]]:
        """``(records that decoded, their features, skipped)``; ``skipped`` = ``[{"path", "reason"}]``.

        The feature matrix is not copied when nothing failed (it may be memory-mapped).
        """
        skipped = [{"path": records[i].path, "reason": reason} for i, reason in sorted(self.failed.items())]
        if not self.failed:
            return list(records), self.features, skipped
        ok = [i for i in range(len(records)) if i not in self.failed]
        return [records[i] for i in ok], take_rows(self.features, ok), skipped

    def cache_info(self) -> dict:
        """``{"hits", "misses"}`` per image (``hits + misses`` = the images that decoded), ``failed`` when some
        image could not be decoded and ``copies`` when some misses were computed once for an earlier row."""
        return {"hits": self.cache_hits, "misses": self.cache_misses,
                **({"failed": len(self.failed)} if self.failed else {}),
                **({"copies": self.copies} if self.copies else {})}


class ImageDataset:
    """Map-style dataset: index -> (index, model input or feature vector, error or "").

    Runs in DataLoader workers: decoding, pre-processing, the optional augmentation ``view``
    and, for array backbones (pixels, HOG...), the feature computation itself.
    """

    def __init__(self, records: Sequence[ImageRecord], config: PreprocessConfig, spec, view: str | None,
                 view_seed: int):
        self.records, self.config, self.spec = list(records), config, spec
        self.view, self.view_seed = view, view_seed

    def __len__(self) -> int:
        return len(self.records)

    def item(self, rec: ImageRecord) -> np.ndarray:
        img = preprocess(load_checked(rec), self.config)  # the bytes the scan hashed, or a skip
        if self.view:
            img = augment.apply(self.view, img, rec.key, self.view_seed)
        if self.spec.array_fn is not None:
            return np.asarray(self.spec.array_fn(img), dtype=np.float32)
        return to_model_input(img, self.spec.mean, self.spec.std)

    def __getitem__(self, i: int):
        try:
            return i, self.item(self.records[i]), ""
        except ImageReadError as exc:
            err = exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd file must not end the run
            err = f"cannot pre-process image: {type(exc).__name__}: {exc}"
        shape = (self.spec.dim,) if self.spec.array_fn is not None else (3, self.config.size, self.config.size)
        return i, np.zeros(shape, np.float32), err


def collate(items):
    import torch

    idx = [it[0] for it in items]
    x = torch.from_numpy(np.stack([it[1] for it in items]))
    errs = [it[2] for it in items]
    return idx, x, errs


#: Above this many values (1 GiB of float32) the feature matrix is a memory-mapped temporary file.
MEMMAP_VALUES = 2**28
#: Rows a memory-mapped result is written at a time.
BLOCK_ROWS = 65536


def result_array(n: int, dim: int, fill: bool = True) -> np.ndarray:
    """``(n, dim)`` float32 filled with NaN (left unfilled when ``fill`` is false: the caller writes every row):
    in memory, or above :data:`MEMMAP_VALUES` values a memory-mapped file in the temporary folder, unlinked at
    once (the space is freed with the array), so a million-image run pages its features instead of holding
    them all in RAM. A memory map is written :data:`BLOCK_ROWS` rows at a time."""
    if n * dim <= MEMMAP_VALUES:
        return np.full((n, dim), np.nan, dtype=np.float32) if fill else np.empty((n, dim), np.float32)
    fd, path = tempfile.mkstemp(prefix="brainclust-features-", suffix=".npy")
    os.close(fd)
    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    finally:
        os.unlink(path)
    for s in range(0, n, BLOCK_ROWS) if fill else ():
        arr[s:s + BLOCK_ROWS] = np.nan
    return arr


def take_rows(X: np.ndarray, rows) -> np.ndarray:
    """``X[rows]`` (rows: indices or a boolean mask) as a :func:`result_array`: above its size threshold a
    memory-mapped file, filled a block at a time, so a million-image matrix is not copied into RAM."""
    rows = np.asarray(rows)
    rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64, copy=False)
    if len(rows) * X.shape[1] <= MEMMAP_VALUES:
        return X[rows]
    out = result_array(len(rows), X.shape[1], fill=False)
    for s in range(0, len(rows), BLOCK_ROWS):
        out[s:s + BLOCK_ROWS] = X[rows[s:s + BLOCK_ROWS]]
    return out


def as_records(X: Sequence) -> list[ImageRecord]:
    """``X`` as ImageRecords: records stay, bare paths get :func:`record_of`. One path (a string: it would be
    read a character at a time), a ScanResult (its ``.records`` are meant) or an array of pixels is one line
    (ParameterError) that says what to pass."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ParameterError(f"expected a list of image paths or ImageRecords, got the single path {str(X)!r:.80}: "
                             "pass [path], or scan('FOLDER').records (brainclust.io.scan) for a folder")
    if isinstance(X, ScanResult):
        raise ParameterError(f"expected a list of image paths or ImageRecords, got a ScanResult ('{X.root}'):"
                             " pass its .records, as in scan('FOLDER').records")
    if isinstance(X, np.ndarray) and X.dtype.kind not in "USO":
        raise ParameterError(f"expected a list of image paths or ImageRecords, got an array of {X.dtype} "
                             f"{X.shape}: brainclust reads the images from their files")
    out = []
    for item in X:
        if not isinstance(item, (ImageRecord, str, os.PathLike)):
            raise ParameterError(f"expected image paths or ImageRecords, got an item of type {type(item).__name__}")
        out.append(item if isinstance(item, ImageRecord) else record_of(item))
    return out


def record_of(path: str | os.PathLike) -> ImageRecord:
    """A minimal record for a bare path (meta-attributes unknown)."""
    p = Path(path)
    try:
        digest = file_sha256(p)
    except OSError as exc:
        digest = f"unreadable:{p}:{exc}"
    return ImageRecord(path=p.as_posix(), abspath=str(p), name=p.name, type="", size=0, width=0, height=0,
                       sha256=digest)


def check_finite(feats: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(feats)):
        raise NumericalError(f"--backbone {name}: the network produced non-finite features (NaN or infinite); "
                             "try --precision fp32 or check the --weights file")
    return feats


def check_fitted_as_saved(ex, state: dict, source: str) -> None:
    """A re-fitted extractor must be the one a model was saved with (dimension, weights): ModelFileError."""
    if "dim" in state and ex.spec_.dim != state["dim"]:
        raise ModelFileError(f"{source}: field 'backbone.name' ('{state.get('name')}') gives {ex.spec_.dim} "
                             f"dimensions but the model was saved with backbone.dim = {state['dim']}")
    sha = state.get("weights_sha256")
    if sha is not None and ex.weights_.sha256 != sha:
        used = ex.weights_.path or state.get("weights_file") or state.get("weights_path") or "built-in"
        raise ModelFileError(f"the weights of backbone '{state.get('name')}' ('{used}') have changed since the model "
                             f"was saved (SHA-256 {ex.weights_.sha256[:12]} != {sha[:12]})")
