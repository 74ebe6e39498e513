"""The decoded contents a run's checks saw, kept in its model so that ``predict`` names new copies of them.

A run's :class:`~brainclust.checks.step.DataChecks` keeps :class:`FittedContents`: the SHA-256 of each
distinct decoded content among the images it checked, with the path of the first image (scan order)
that had it. It is saved as ``model/checks.npz`` (digests as ``(n, 32)`` bytes, paths as one UTF-8 blob
with offsets: no pickled objects) and hashed in ``config.json`` like every model file.

``predict`` checks the new images as ``brainclust check`` would check their folder, then
:func:`mark_fitted_copies`: a new image whose decoded content the model was fitted on is a
``duplicate`` whose ``duplicate_of`` is ``model:`` and that image's path (relative to the run's input
folder), and ``leakage.csv`` lists the pair with the splits ``fit`` and ``predict``: images that are
scored as new but were part of the fit. Exact copies only; near copies of fitted images are not
searched (their codes are not kept in the model).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_npz, read_npz
from brainclust.io.outputs import MODEL_FILES

__all__ = ["FILE", "FIT_SPLITS", "FITTED_PREFIX", "FittedContents", "mark_fitted_copies"]

FILE = MODEL_FILES["checks"]
#: How ``duplicate_of`` and ``leakage.csv`` name an image of the fit in a prediction's outputs.
FITTED_PREFIX = "model:"
#: ``leakage.csv``'s ``splits`` of a new image and the image of the fit it copies.
FIT_SPLITS = "fit;predict"


@dataclass(frozen=True)
class FittedContents:
    """Sorted digests (``S32``) of the distinct decoded contents of a fit and the first path of each."""

    digests: np.ndarray
    paths: list[str]

    @classmethod
    def of(cls, paths, sha256_hex, failed) -> "FittedContents":
        """From a check's paths, hex content digests and failed rows (``CheckResult`` fields)."""
        first: dict[bytes, str] = {}
        for i, (p, h) in enumerate(zip(paths, sha256_hex)):
            if i not in failed and h:
                first.setdefault(bytes.fromhex(h), p)
        keys = sorted(first)
        return cls(np.array(keys, dtype="S32"), [first[k] for k in keys])

    def __len__(self) -> int:
        return len(self.paths)

    def lookup(self, sha256_hex: list[str]) -> list[str | None]:
        """The fitted path of each hex digest, ``None`` where the fit had no such content."""
        if not len(self) or not sha256_hex:
            return [None] * len(sha256_hex)
        want = np.array([bytes.fromhex(h) if h else b"" for h in sha256_hex], dtype="S32")
        at = np.minimum(np.searchsorted(self.digests, want), len(self) - 1)
        return [self.paths[j] if h and self.digests[j] == w else None for h, w, j in zip(sha256_hex, want, at)]

    def save(self, path) -> None:
        blob = [p.encode("utf-8", "surrogateescape") for p in self.paths]
        offsets = np.cumsum([0] + [len(b) for b in blob], dtype=np.int64)
        atomic_write_npz(path, digests=np.frombuffer(self.digests.tobytes(), np.uint8).reshape(-1, 32),
                         paths=np.frombuffer(b"".join(blob), np.uint8), offsets=offsets)

    @classmethod
    def load(cls, path) -> "FittedContents":
        data = read_npz(path, "checks model file")
        try:
            dig, blob, off = data["digests"], data["paths"].tobytes(), data["offsets"]
            ok = (dig.dtype == np.uint8 and dig.ndim == 2 and dig.shape[1] == 32 and off.ndim == 1
                  and off.dtype.kind == "i" and len(off) == len(dig) + 1 and off[0] == 0
                  and off[-1] == len(blob) and bool(np.all(np.diff(off) >= 0)))
        except KeyError as exc:
            raise ModelFileError(f"checks model file '{path}': no array {exc}") from None
        if not ok:
            raise ModelFileError(f"checks model file '{path}': its digests, paths and offsets do not fit together")
        digests = np.frombuffer(np.ascontiguousarray(dig).tobytes(), dtype="S32")
        if len(digests) > 1 and not bool(np.all(digests[1:] > digests[:-1])):
            raise ModelFileError(f"checks model file '{path}': its digests are not sorted and distinct")
        paths = [blob[a:b].decode("utf-8", "surrogateescape") for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
        return cls(digests, paths)


def mark_fitted_copies(result, fitted: FittedContents | None):
    """``result`` (a :class:`~brainclust.checks.stage.CheckResult` of new images) with every image whose decoded
    content the model was fitted on flagged ``duplicate`` of it (``duplicate_of``: ``model:PATH``) and
    listed in ``leakage`` (splits ``fit`` and ``predict``)."""
    if fitted is None or not len(fitted):
        return result
    found = fitted.lookup(list(result.descriptors.pixel_sha256))
    if not any(found):
        return result
    flags, dup_of, members = list(result.flags), list(result.duplicate_of), {}
    for i, p in enumerate(found):
        if p is not None and i not in result.descriptors.failed:  # exact before near, as in a run
            flags[i] = (flags[i] - {"near_duplicate"}) | {"duplicate"}
            dup_of[i] = FITTED_PREFIX + p
            members.setdefault(p, []).append(i)
    leak = list(result.leakage)
    for p, rows in members.items():
        group = FITTED_PREFIX + p
        leak.append({"group": group, "splits": FIT_SPLITS, "path": group, "split": "fit",
                     "relation": "representative"})
        leak += [{"group": group, "splits": FIT_SPLITS, "path": result.paths[i], "split": "predict",
                  "relation": "duplicate"} for i in rows]
    return replace(result, flags=flags, duplicate_of=dup_of, leakage=leak)
