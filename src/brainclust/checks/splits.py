"""Split markers (train / test / validation) and the leakage they reveal.

Detection is conservative; a split is read from, in this order:

1. a metadata table given by the caller (``{path: split}``), when present;
2. a **folder**: the first folder of the image's relative path whose whole name is a split
   word (``train``, ``training``, ``test``, ``testing``, ``val``, ``valid``, ``validation``,
   ``holdout``; any case);
3. a **file-name token**: the file name split at ``-``, ``_``, ``.`` and spaces; its first token may be a
   split word or one of the abbreviations ``tr``, ``te``, ``ts``, ``va`` (``Tr-gl_0010.jpg``);
   a later token only a whole split word (``scan_train_01.png``).

A data set has splits only when at least two different splits are found, and either two different
split *folders* side by side are among them (``train/`` and ``test/`` beside an unmarked ``extra/``:
folders so named are the data set's own word; ``qa/test/`` and ``teaching/training/`` are not side by
side) or at least half of its images carry a marker (so one ``test.png``
among many unmarked files marks nothing). Markers that fail the rule are set aside with a warning
that names their count and the way to use them (``--split-table``). Images without a marker get the
empty split and never count as crossing. A table is the
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
from brainclust.io.pathfilter import SPLIT_WORDS

log = logging.getLogger(__name__)

PREFIX_ABBREVIATIONS = {"tr": "train", "te": "test", "ts": "test", "va": "val"}
#: Share of images that must carry a marker for the data set to count as split.
MIN_MARKED = 0.5
_TOKENS = re.compile(r"[-_. ]+")


def _marker(path: str) -> tuple[str, str, str]:
    """``(split, source, the folders above a split folder)`` of one relative path (see :func:`split_of`)."""
    parts = path.split("#", 1)[0].split("/")
    for i, folder in enumerate(parts[:-1]):
        hit = SPLIT_WORDS.get(folder.lower())
        if hit:
            return hit, "folder", "/".join(parts[:i])
    tokens = [t.lower() for t in _TOKENS.split(parts[-1]) if t]
    if len(tokens) > 2:  # a marker is followed by more of the name than its extension
        first = tokens[0]
        hit = SPLIT_WORDS.get(first) or PREFIX_ABBREVIATIONS.get(first)
        if hit:
            return hit, "file name", ""
        for tok in tokens[1:-1]:
            if tok in SPLIT_WORDS:
                return SPLIT_WORDS[tok], "file name", ""
    return "", "", ""


def split_of(path: str) -> tuple[str, str]:
    """``(split, source)`` of one relative path from its folders or file name; ``("", "")`` when unmarked.

    ``source`` is ``folder`` or ``file name``.
    """
    return _marker(path)[:2]


def match_table(paths: Sequence[str], abspaths: Sequence[str], table: Mapping[str, str],
                warn: bool = True) -> dict[str, str]:
    """A split table keyed by the run's own paths: each image is looked up by its relative path, its file (a
    slice's), its absolute path or its real path, against the table's paths as written and, for absolute ones,
    resolved (a folder reached through a link). Warns (``warn``) how many images it leaves without a split.

    Raises
    ------
    ParameterError
        The table names no image of the run, or gives none of those it names a split.
    """
    by: dict[str, str] = {}
    for k, v in table.items():
        key = str(k).strip().replace("\\", "/")
        forms = [os.path.normpath(key), os.path.realpath(key)] if os.path.isabs(key) else [key]
        by.update({f: str(v or "").strip() for f in forms})
    absolute = any(os.path.isabs(k) for k in by)  # else no image's path is resolved (a syscall per image)
    out, named = {}, 0
    for p, a in zip(paths, abspaths):
        keys = (p, p.split("#", 1)[0]) + ((os.path.normpath(a), os.path.realpath(a)) if absolute else ())
        key = next((k for k in keys if k in by), None)
        named += key is not None
        if key is not None and by[key]:
            out[p] = by[key]
    if not named:
        raise ParameterError(f"--split-table: none of its {len(table)} paths names an image of this run; write "
                             "them relative to DATA (as quality.csv does) or absolute")
    if not out:
        raise ParameterError(f"--split-table: its split column is empty for all {named} images it names")
    if warn and len(out) < len(paths):
        log.warning("--split-table: %d of %d images have no split in the table; they never count as crossing",
                    len(paths) - len(out), len(paths))
    return out


def detect_splits(paths: Sequence[str], table: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """The split of every path and how it was found (``metadata``, ``folder``, ``file name`` or ``""``).

    Returns empty splits and ``""`` when the data set is not split (see the module's rules). ``table`` is
    looked up by path as it is (:func:`match_table` keys a user's table by the run's paths).
    """
    n = len(paths)
    if table:
        splits = [SPLIT_WORDS.get(s.lower(), s.lower()) for s in (str(table.get(p, "") or "").strip() for p in paths)]
        if len({s for s in splits if s}) < 2:
            log.warning("--split-table: the images it names are all in one split (%s): no leakage can be found",
                        next(s for s in splits if s))
            return [""] * n, ""
        return splits, "metadata"
    else:
        marks = [_marker(p) for p in paths]
        splits = [s for s, _, _ in marks]
        source = " and ".join(sorted({src for _, src, _ in marks if src}))
    marked = sum(1 for s in splits if s)  # folders and file names only: a table returned above
    found = sorted({s for s in splits if s})
    if n == 0 or len(found) < 2:
        return [""] * n, ""
    siblings: dict[str, set] = {}  # split folders side by side (train/ and test/ in one folder)
    for split, src, above in marks:
        if src == "folder":
            siblings.setdefault(above, set()).add(split)
    if max(map(len, siblings.values()), default=0) < 2 and marked < MIN_MARKED * n:
        log.warning("splits: the %s of %d of %d images read as %s, fewer than half and not two split folders side "
                    "by side: not used, so no leakage is looked for; --split-table names the splits",
                    source or "names", marked, n, "/".join(found))
        return [""] * n, ""
    if marked < n:
        log.info("splits (%s): %d of %d images are in %s; the other %s never count as crossing", source, marked, n,
                 "/".join(found), "one has none and" if n - marked == 1 else f"{n - marked} have none and")
    return splits, source


def leakage_rows(paths: Sequence[str], splits: Sequence[str], representative, exact, near) -> list[dict]:
    """Rows of ``leakage.csv``: every member of each linked group whose members span two or more splits.

    ``representative[i]`` is the index of the first image that image ``i`` is linked to (``DuplicateGroups.linked``:
    exact copies and verified pairs, chains included, so no pair across splits is missed); ``exact``/``near``
    its flags. Columns: ``group`` (the representative's path), ``splits`` (``;``-joined, sorted),
    ``path``, ``split``, ``relation`` (``representative``, ``duplicate`` or ``near_duplicate``: a near copy
    of some member, flagged or not).
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
