r"""The run folder's schema, defined once: file names, CSV columns and model files.

A finished ``brainclust run --out OUT`` folder holds::

    OUT/assignments.csv     one row per image: ASSIGNMENT_COLUMNS (+ LEVEL_COLUMNS for hierarchical)
    OUT/metrics.json        the scores
    OUT/manifest.json       versions, settings, timings, skipped files (written last)
    OUT/model/config.json   what predict needs to rebuild the extractor
    OUT/model/pca.npz       the fitted PCA
    OUT/model/cluster.npz   the fitted clustering (and the embedding it saw, for the report)
    OUT/report.html         the report (and OUT/figures/), unless --no-report

The writer (:mod:`brainclust.pipeline`), :mod:`brainclust.report`, export and
``predict`` all go through :class:`RunFolder` and the readers here.

File names in the outputs
-------------------------
Every output (``assignments.csv``'s ``path``, ``name`` and ``label``, the
``skipped`` list and ``input`` of ``manifest.json``, ``export.csv``, the
report) holds a path as *escaped text* (:func:`escape_name`): a byte that is
not valid UTF-8 (``os.fsdecode`` gives ``\udcNN``) and a control character
(0x01-0x1f, 0x7f) are written ``\xNN`` (two lower-case hex digits), a
backslash is written ``\\``; everything else is kept, so ordinary names are
unchanged. :func:`unescape_name` is the exact inverse; readers unescape a name
before they open its file.

A run folder is written whole: into a temporary sibling folder, which then
replaces ``OUT`` (see :func:`brainclust.io.atomic.swap_folder`), under a lock
(:func:`brainclust.io.atomic.folder_lock`) so two writers never mix their files.
:data:`RUN_ENTRIES` are the names a run folder may hold; an existing ``--out``
holding anything else is refused rather than replaced.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_csv

#: Depth of the hierarchical tree kept per image (``level_1`` .. ``level_10``).
N_LEVELS = 10
ASSIGNMENT_COLUMNS = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
LEVEL_COLUMNS = [f"level_{L}" for L in range(1, N_LEVELS + 1)]


#: The entries of a finished run (or predict) folder; a folder with anything else is not replaced.
RUN_ENTRIES = frozenset({"assignments.csv", "embeddings.parquet", "metrics.json", "manifest.json", "model",
                         "report.html", "figures", "auto.csv"})


def _escape_char(c: str) -> str:
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte (os.fsdecode's surrogate escape)
        return f"\\x{o - 0xDC00:02x}"
    if 0xD800 <= o <= 0xDFFF:  # any other lone surrogate (not from a file name): keep it encodable
        return f"\\u{o:04x}"
    return f"\\x{o:02x}"  # a control character


_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(?:\\|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))")


def escape_name(name: str) -> str:
    """A file name or path (``str``, as ``os.fsdecode`` gives it) as the printable UTF-8 text of the outputs.

    Undecodable bytes and control characters become ``\\xNN``, a backslash
    ``\\\\``; any other text is unchanged. :func:`unescape_name` inverts it exactly.
    """
    return _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), name)


def _unescape_match(m: re.Match) -> str:
    if m.group(1) is not None:
        v = int(m.group(1), 16)
        return chr(v) if v < 0x80 else chr(0xDC00 + v)
    if m.group(2) is not None:
        return chr(int(m.group(2), 16))
    return "\\"


def unescape_name(text: str) -> str:
    """The name :func:`escape_name` was given (``os.fsencode`` of it gives the original bytes)."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(_unescape_match, text)


def escaped_manifest(manifest: Mapping) -> dict:
    """A copy of ``manifest`` with its file names escaped (``input``, ``model_dir``, ``skipped``)."""
    out = dict(manifest)
    for key in ("input", "model_dir"):
        if isinstance(out.get(key), str):
            out[key] = escape_name(out[key])
    if "skipped" in out:
        out["skipped"] = [{k: escape_name(v) if isinstance(v, str) else v for k, v in s.items()}
                          for s in out["skipped"]]
    return out


class RunFolder:
    """The paths of one run folder (nothing is read or created by building one)."""

    def __init__(self, root) -> None:
        self.root = Path(root)

    assignments = property(lambda self: self.root / "assignments.csv")
    metrics = property(lambda self: self.root / "metrics.json")
    embeddings = property(lambda self: self.root / "embeddings.parquet")
    manifest = property(lambda self: self.root / "manifest.json")
    model = property(lambda self: self.root / "model")
    model_config = property(lambda self: self.model / "config.json")
    pca = property(lambda self: self.model / "pca.npz")
    cluster = property(lambda self: self.model / "cluster.npz")
    #: ``--reduce umap|pca+umap`` only: the UMAP's training input and embedding (cluster.manifold)
    umap = property(lambda self: self.model / "umap.npz")
    #: ``--auto`` only: every candidate's label-free criteria (analysis.autoconfig)
    auto = property(lambda self: self.root / "auto.csv")
    report = property(lambda self: self.root / "report.html")
    figures = property(lambda self: self.root / "figures")


def read_json(path, folder=None) -> dict:
    """Read a JSON file of a run folder; a missing or damaged file is a :class:`ModelFileError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or path.parent}' is not a finished brainclust run: "
                             f"{path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def write_assignments(path, rows: Iterable[Mapping], with_levels: bool) -> Path:
    """Write ``assignments.csv``: :data:`ASSIGNMENT_COLUMNS`, then the levels when ``with_levels``."""
    header = ASSIGNMENT_COLUMNS + (LEVEL_COLUMNS if with_levels else [])
    return atomic_write_csv(path, header, rows)


def read_assignments(path, folder=None) -> list[dict]:
    """Read ``assignments.csv`` back as a list of dict rows (strings)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or Path(path).parent}' is not a finished brainclust run: "
                             f"{Path(path).name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def assignment_rows(records: Sequence, labels, levels) -> list[dict]:
    """One dict per image with the columns of ``assignments.csv`` (``records`` are ImageRecords)."""
    rows = []
    for i, r in enumerate(records):
        row = {"path": escape_name(r.path), "name": escape_name(r.name), "type": r.type, "size": r.size,
               "width": r.width, "height": r.height, "label": escape_name(r.label or ""),
               "cluster": int(labels[i])}
        if levels is not None:
            row.update({c: int(levels[i, j]) for j, c in enumerate(LEVEL_COLUMNS)})
        rows.append(row)
    return rows
