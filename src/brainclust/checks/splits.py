"""Split markers (train / test / validation) and the leakage they reveal.

Detection is conservative; a split is read from, in this order:

1. a metadata table given by the caller (``{path: split}``), when present;
2. a **folder**: the first folder of the image's relative path whose whole name is a split
   word (``train``, ``training``, ``test``, ``testing``, ``val``, ``valid``, ``validation``,
   ``holdout``; any case);
3. a **file-name token**: the file name split at ``-``, ``_``, ``.`` and spaces; its first token may be a
   split word or one of the abbreviations ``tr``, ``te``, ``ts``, ``va`` (``Tr-gl_0010.jpg``);
   a later token only a whole split word (``scan_train_01.png``).

A data set has splits only when at least two different splits are found, and (from folders and file
names) at least half of its images carry a marker (so one ``test.png`` among many unmarked files marks
nothing). Images without a marker get the empty split and never count as crossing. A table is the
user's word: it is used however few images it covers (a warning says how many it leaves without a
split); its paths are matched relative to the data folder (``a/x.png``, or the file of a slice
``v.nii.gz#axial=3``) or absolute, and a table that names no image of the run is refused.

Names are normalised to ``train``, ``test`` and ``val``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence

from brainclust.errors import ParameterError

log = logging.getLogger(__name__)

SPLIT_WORDS = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val",
               "valid": "val", "validation": "val", "holdout": "test"}
PREFIX_ABBREVIATIONS = {"tr": "train", "te": "test", "ts": "test", "va": "val"}
#: Share of images that must carry a marker for the data set to count as split.
MIN_MARKED = 0.5
_TOKENS = re.compile(r"[-_. ]+")


def split_of(path: str) -> tuple[str, str]:
    """``(split, source)`` of one relative path from its folders or file name; ``("", "")`` when unmarked.

    ``source`` is ``folder`` or ``file name``.
    """
    parts = path.split("#", 1)[0].split("/")
    for folder in parts[:-1]:
        hit = SPLIT_WORDS.get(folder.lower())
        if hit:
            return hit, "folder"
    tokens = [t.lower() for t in _TOKENS.split(parts[-1]) if t]
    if len(tokens) > 2:  # a marker is followed by more of the name than its extension
        first = tokens[0]
        hit = SPLIT_WORDS.get(first) or PREFIX_ABBREVIATIONS.get(first)
        if hit:
            return hit, "file name"
        for tok in tokens[1:-1]:
            if tok in SPLIT_WORDS:
                return SPLIT_WORDS[tok], "file name"
    return "", ""


def _table_splits(paths: Sequence[str], table: Mapping[str, str], abspaths: Sequence[str] | None) -> list[str]:
    """The table's split of every path, matched on the relative path, its file (a slice's), the absolute path
    or the real path (module docstring)."""
    def norm(key) -> str:
        key = str(key).strip().replace("\\", "/")
        return os.path.normpath(key) if os.path.isabs(key) else key
    by = {norm(k): str(v or "").strip() for k, v in table.items()}
    found = []
    for i, p in enumerate(paths):
        keys = [p, p.split("#", 1)[0]]
        if abspaths is not None:
            keys += [os.path.normpath(abspaths[i]), os.path.realpath(abspaths[i])]
        key = next((k for k in keys if k in by), None)
        found.append(by[key] if key is not None else "")
    n_found = sum(1 for f in found if f)
    if n_found == 0:
        raise ParameterError(f"--split-table: none of its {len(by)} paths names an image of this run; write them "
                             "relative to DATA (as quality.csv does) or absolute")
    if n_found < len(paths):
        log.warning("--split-table: %d of %d images have no split in the table; they never count as crossing",
                    len(paths) - n_found, len(paths))
    return found


def detect_splits(paths: Sequence[str], table: Mapping[str, str] | None = None,
                  abspaths: Sequence[str] | None = None) -> tuple[list[str], str]:
    """The split of every path and how it was found (``metadata``, ``folder``, ``file name`` or ``""``).

    Returns empty splits and ``""`` when the data set is not split (see the module's rules). ``abspaths``
    (one per path) lets a table name the images by absolute path.
    """
    n = len(paths)
    if table:
        splits = [SPLIT_WORDS.get(s.lower(), s.lower()) for s in _table_splits(paths, table, abspaths)]
        if len({s for s in splits if s}) < 2:
            log.warning("--split-table: the images it names are all in one split (%s): no leakage can be found",
                        next(s for s in splits if s))
            return [""] * n, ""
        return splits, "metadata"
    else:
        pairs = [split_of(p) for p in paths]
        splits = [s for s, _ in pairs]
        sources = sorted({src for _, src in pairs if src})
        source = " and ".join(sources)
    marked = sum(1 for s in splits if s)  # folders and file names only: a table returned above
    if n == 0 or len({s for s in splits if s}) < 2 or marked < MIN_MARKED * n:
        return [""] * n, ""
    return splits, source


def leakage_rows(paths: Sequence[str], splits: Sequence[str], representative, exact, near) -> list[dict]:
    """Rows of ``leakage.csv``: every member of each duplicate group whose members span two or more splits.

    ``representative[i]`` is the index of image ``i``'s group representative; ``exact``/``near``
    its flags. Columns: ``group`` (the representative's path), ``splits`` (``;``-joined, sorted),
    ``path``, ``split``, ``relation`` (``representative``, ``duplicate`` or ``near_duplicate``).
    """
    members: dict[int, list[int]] = {}
    for i, r in enumerate(representative):
        members.setdefault(int(r), []).append(i)
    rows = []
    for rep in sorted(members):
        group = members[rep]
        spl = sorted({splits[i] for i in group if splits[i]})
        if len(group) < 2 or len(spl) < 2:
            continue
        for i in group:
            relation = "representative" if i == rep else ("duplicate" if exact[i] else "near_duplicate")
            rows.append({"group": paths[rep], "splits": ";".join(spl), "path": paths[i], "split": splits[i],
                         "relation": relation})
    return rows
