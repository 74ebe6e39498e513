"""The file names of an export's cluster folders (:mod:`brainclust.report.export`).

File names are kept when they are unique within a cluster folder. When two images of one cluster share a name
(``a/x.png`` and ``b/x.png``; compared case-insensitively, for case-insensitive file systems), each of them gets the
first 8 hex digits of the SHA-1 of its relative path before the extension (``x-1a2b3c4d.png``), so the result does not
depend on the order of the rows; a name that would exceed 255 bytes with its tag is shortened before the tag.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import PurePosixPath

from brainclust.errors import InputError

#: Longest file name (bytes) most Linux file systems accept.
NAME_MAX = 255


def _fits(name: str) -> bool:
    return len(os.fsencode(name)) <= NAME_MAX


def _tagged(path: str, digits: int) -> str:
    p = PurePosixPath(path)
    tag = hashlib.sha1(os.fsencode(path)).hexdigest()[:digits]
    stem, suffix = (p.stem, p.suffix) if p.stem else (p.name, "")
    if not _fits(f"-{tag}{suffix}"):
        suffix = ""
    while not _fits(f"{stem}-{tag}{suffix}"):  # too long for the file system: shorten the stem
        stem = stem[:-1]
    return f"{stem}-{tag}{suffix}"


def destination_names(paths: list[str]) -> dict[str, str]:
    """File name of each relative path inside one cluster folder, unique case-insensitively.

    Parameters
    ----------
    paths : list of str
        Relative POSIX paths of the images of one cluster.

    Returns
    -------
    dict
        path -> file name.
    """
    by_name: dict[str, list[str]] = {}
    for p in paths:
        by_name.setdefault(PurePosixPath(p).name.casefold(), []).append(p)
    out = {}
    for group in by_name.values():
        if len(group) == 1 and _fits(PurePosixPath(group[0]).name):
            out[group[0]] = PurePosixPath(group[0]).name
        else:
            for p in group:
                out[p] = _tagged(p, 8)
    # a tagged name can, in theory, equal another image's plain name: lengthen the tag until unique
    digits = 8
    while len({v.casefold() for v in out.values()}) < len(out):
        digits += 4
        seen: dict[str, str] = {}
        for p in sorted(out):
            key = out[p].casefold()
            if key in seen:
                out[p] = _tagged(p, digits)
            seen.setdefault(out[p].casefold(), p)
        if digits > 40:  # pragma: no cover - SHA-1 collision
            raise InputError("export: cannot make file names unique")
    return out
