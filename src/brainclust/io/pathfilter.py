"""``--include GLOB`` / ``--exclude-files GLOB``: which files of a folder are scanned.

Patterns are matched against each file's path relative to the scanned folder,
with ``/`` between folders, case-sensitively:

- ``*`` matches any run of characters within one folder or file name,
  ``?`` one character, ``[abc]`` / ``[!abc]`` one character of a set;
- ``**`` as a whole path component matches any number of folders (also none):
  ``**/anat/*.nii.gz``;
- a pattern without ``/`` matches the file *name* in any folder (``*.dcm``,
  ``sub-*_T1w.nii.gz``), like ``.gitignore``;
- a pattern ending in ``/`` matches everything under such a folder
  (``derivatives/``, ``*/localizer/``).

A file is scanned when it matches at least one ``--include`` pattern (every file
when there is none) and no ``--exclude-files`` pattern. Files left out are not
"skipped": they are only counted, in the scan's one summary line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from brainclust.errors import ParameterError


def _segment(seg: str, pattern: str, option: str) -> str:
    out, i = [], 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 2 if i + 1 < len(seg) and seg[i + 1] in "!^" else i + 1)
            if j < 0:
                raise ParameterError(f"{option}: unclosed '[' in pattern {pattern!r}")
            body = seg[i + 1:j]
            neg = body[:1] in ("!", "^")
            body = body[1:] if neg else body
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[^/{body}]" if neg else f"[{body}]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def compile_glob(pattern: str, option: str = "--include") -> re.Pattern:
    """The regular expression of one pattern (rules in the module docstring).

    Raises
    ------
    ParameterError
        If the pattern is empty, absolute, or has an unclosed ``[``.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ParameterError(f"{option}: a pattern must not be empty, got {pattern!r}")
    pat = pattern.strip()
    if pat.startswith("/"):
        raise ParameterError(f"{option}: patterns are relative to the data folder; got the absolute {pattern!r}")
    under = pat.endswith("/")
    pat = pat.rstrip("/")
    if pat.startswith("./"):
        pat = pat[2:]
    if "/" not in pat and not under:
        return re.compile("^(?:.*/)?" + _segment(pat, pattern, option) + "$")
    parts = pat.split("/")
    rx = ""
    for k, seg in enumerate(parts):
        last = k == len(parts) - 1
        if seg == "**":
            rx += "(?:[^/]+/)*" if not last else ".*"
        else:
            rx += _segment(seg, pattern, option) + ("" if last else "/")
    if "/" not in pat:  # 'name/': a folder of that name at any depth
        rx = "(?:.*/)?" + rx
    return re.compile("^" + rx + ("/.*" if under else "") + "$")


#: Folder names (lower case) that mark a split of a data set, and the split each names.
SPLIT_WORDS = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val",
               "valid": "val", "validation": "val", "holdout": "test"}


def folder_of(rel: str) -> str:
    """The first-level folder of a relative path (``""`` for a file directly in the root; a ``#frame`` suffix
    names a frame of the last part only, and a folder may hold ``#``)."""
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else ""


def class_folder_of(rel: str) -> str:
    """The folder below a first-level split folder (``Training/glioma/x.jpg`` -> ``glioma``); ``""`` when the
    first-level folder is not a split (:data:`SPLIT_WORDS`), the file lies directly in it, or the folder below
    is a BIDS subject (``test/sub-01/anat/...``: a subject is not a class)."""
    parts = rel.split("/")
    below = parts[1] if len(parts) > 2 and parts[0].lower() in SPLIT_WORDS else ""
    return "" if below.startswith("sub-") else below


def label_folder_of(rel: str) -> str:
    """``--labels-from-folders``' label: the first-level folder, or the class folder below it when it is a split
    folder (:func:`class_folder_of`; ``""`` for a file directly in a split folder or in the root)."""
    first = folder_of(rel)
    return class_folder_of(rel) if first.lower() in SPLIT_WORDS else first


def glob_list(value, option: str) -> tuple[str, ...]:
    """The patterns of ``--include``/``--exclude-files`` given from Python: a string is one pattern (as after the
    flag: ``include="*.png"``), a list or tuple its patterns, ``None`` none."""
    if isinstance(value, str):
        return (value,)
    try:
        patterns = tuple(value or ())
    except TypeError:
        raise ParameterError(f"{option}: expected a pattern or a list of patterns, got {value!r:.80}") from None
    if isinstance(value, (bytes, bytearray, memoryview)) or not all(isinstance(p, str) for p in patterns):
        raise ParameterError(f"{option}: expected a pattern or a list of patterns (strings), got {value!r:.80}")
    return patterns


class PathFilter:
    """Include / exclude patterns over relative POSIX paths (see the module docstring)."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.include = glob_list(include, "--include")
        self.exclude = glob_list(exclude, "--exclude-files")
        self._inc = [compile_glob(p, "--include") for p in self.include]
        self._exc = [compile_glob(p, "--exclude-files") for p in self.exclude]

    def __bool__(self) -> bool:
        return bool(self._inc or self._exc)

    def __call__(self, rel: str) -> bool:
        """Whether the file at ``rel`` is scanned."""
        if self._inc and not any(rx.match(rel) for rx in self._inc):
            return False
        return not any(rx.match(rel) for rx in self._exc)
