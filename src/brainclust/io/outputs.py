r"""Every file schema of the outputs, defined once, and the one way a folder of outputs is published.

A finished ``brainclust run --out OUT`` folder holds::

    OUT/assignments.csv     one row per image: ASSIGNMENT_COLUMNS (+ LEVEL_COLUMNS for hierarchical,
                            + the records' metadata columns, if any)
    OUT/embeddings.parquet  the embedding of every row (write_embeddings: path, sha256, frame, embedding,
                            cluster, level_1..10 for hierarchical, features on request)
    OUT/metrics.json        the scores
    OUT/manifest.json       versions, settings, timings, skipped files (written last)
    OUT/model/config.json   the model manifest: MODEL_FORMAT, version, each step's class and parameters
    OUT/model/pca.npz       the fitted PCA            (MODEL_FILES: the steps' files)
    OUT/model/cluster.npz   the fitted clustering (and the embedding it saw, for the report)
    OUT/model/umap.npz      --reduce umap|pca+umap only; ssl_*.json/.safetensors: --self-supervised only
    OUT/model/checks.npz    the content hashes of the images the checks saw (predict names copies of them)
    OUT/auto.csv            --auto / --consensus only: every candidate's criteria
    OUT/quality.csv         the data checks (unless --checks off): one row per image, QUALITY_COLUMNS
    OUT/leakage.csv         duplicate groups that cross train/test/val splits: LEAKAGE_COLUMNS
    OUT/report.html         the report (and OUT/figures/), unless --no-report

The model manifest (``model/config.json``, :func:`write_model_manifest`, :func:`read_model_manifest`)
is versioned: version 2 lists the steps (``{"name", "class", "params", "files"}``) beside the run's
``settings`` and the fitted ``backbone``; a file without ``version`` was written before the list
existed (version 1) and its steps follow from ``settings`` (:mod:`brainclust.model.persist`).

:func:`brainclust.io.publish.publish` writes a whole folder (a run, a prediction, an export): under
a lock, into a staging folder that then replaces the target; :func:`brainclust.io.publish.check_out`
is its rule of which folders may be replaced (every entry, at every depth, one of
:data:`RUN_ENTRIES` / :data:`RUN_NESTED`). The writers (:mod:`brainclust.pipeline`,
:mod:`brainclust.report.export`), :mod:`brainclust.report` and ``predict`` all go through
:class:`RunFolder` and the readers here. A new output is a new entry of :data:`RUN_ENTRIES` or
:data:`RUN_NESTED` (and a property of :class:`RunFolder`); a new per-image column comes with the
records (``ImageRecord.meta``).

Reading a run folder back
-------------------------
A run folder is untrusted input (it may have been edited, truncated or damaged). :func:`read_run`
is the one reader of its tables for ``report``, ``export`` and ``view``: ``manifest.json`` must be
a JSON object whose ``input`` is an absolute folder, ``assignments.csv`` UTF-8 with every column of
:data:`ASSIGNMENT_COLUMNS`, each row as many fields as the header, an integer ``cluster`` and a
non-empty ``path``, and as many rows as ``manifest.json``'s ``n_images``. Anything else is a
one-line :class:`~brainclust.errors.ModelFileError`. The ``path`` of a row is then only opened
through :func:`brainclust.io.atomic.safe_join` under that ``input`` folder.

File names in the outputs
-------------------------
Every output (``assignments.csv``'s ``path``, ``name`` and ``label``, the
``skipped`` list and ``input`` of ``manifest.json``, ``export.csv``, the
report) holds a path as *escaped text* (:func:`escape_name`): a byte that is
not valid UTF-8 (``os.fsdecode`` gives ``\udcNN``) and a control character
(0x01-0x1f, 0x7f) are written ``\xNN`` (two lower-case hex digits), a
backslash is written ``\\``, and so is a first character that would make a
spreadsheet read the cell as a formula (``=``, ``+``, ``-``, ``@``: a file named
``=HYPERLINK(...).png`` is written ``\x3dHYPERLINK(...).png``; numbers such as
``-3.5`` stay); everything else is kept, so ordinary names are unchanged. Every
CSV the outputs write passes its text cells through the same first-character
rule (:func:`brainclust.io.csvcell.formula_safe`), and a metadata column whose
name starts so gets :data:`META_PREFIX`. :func:`unescape_name` is the exact inverse; readers unescape a name
before they open its file.

A run folder is written whole, its report included: into a temporary sibling folder, which then
replaces ``OUT`` (see :func:`brainclust.io.atomic.swap_folder`), under a lock
(:func:`brainclust.io.atomic.folder_lock`) so two writers never mix their files.
:data:`RUN_ENTRIES` and :data:`RUN_NESTED` are the names a run folder may hold; an existing
``--out`` holding anything else, at any depth, is refused rather than replaced.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_csv, atomic_write_json
from brainclust.io.csvcell import formula_safe
from brainclust.io.privacy import is_missing
from brainclust.io.runjson import loads_run_json
from brainclust.terminal import clipped

log = logging.getLogger(__name__)

#: Depth of the hierarchical tree kept per image (``level_1`` .. ``level_10``).
N_LEVELS = 10
ASSIGNMENT_COLUMNS = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
LEVEL_COLUMNS = [f"level_{L}" for L in range(1, N_LEVELS + 1)]
#: Columns of a run whose rows are units (``--unit volume|series|subject``): after the levels.
UNIT_COLUMNS = ["unit", "n_slices"]
#: The data checks' column (``;``-joined flags, empty = clean), after the levels (and the unit columns).
FLAGS_COLUMN = "flags"
#: Columns a steered run adds to its rows (``--within``, ``--remove``; :mod:`brainclust.model.steering`). They
#: travel in the rows' metadata, so :func:`output_name` writes them as they are.
RUN_MADE = frozenset({"stratum", "cluster_in_stratum", "plane_source", "plane_confidence", "removed_stratum"})
#: Columns of the run itself: a metadata column with one of these names gets :data:`META_PREFIX`.
RESERVED = frozenset(ASSIGNMENT_COLUMNS + LEVEL_COLUMNS + UNIT_COLUMNS + sorted(RUN_MADE) +
                     [FLAGS_COLUMN, "sha256", "frame", "embedding", "features", "abspath"])
META_PREFIX = "meta_"
#: Columns that count along the axis another column names: a NIfTI slice's ``slice_index`` and ``slice_position``
#: (:mod:`brainclust.io.scan`) count along its ``plane``, so index 100 of an axial and of a sagittal slice are
#: different places, and a DICOM file's ``instance_number`` counts along its ``series_id``;
#: ``associations.csv`` ranks them within each value of that column.
COUNTS_ALONG = {"slice_index": "plane", "slice_position": "plane", "instance_number": "series_id"}


#: The entries of a finished run (or predict) folder; a folder with anything else is not replaced.
RUN_ENTRIES = frozenset({"assignments.csv", "embeddings.parquet", "metrics.json", "manifest.json", "model",
                         "report.html", "figures", "auto.csv", "map.npy", "associations.csv", "slices.csv",
                         "quality.csv", "leakage.csv"})
#: The entries of a ``brainclust predict --out`` folder: a run's without its model, report and map, so a
#: prediction never replaces a run's folder.
PREDICT_ENTRIES = RUN_ENTRIES - {"model", "report.html", "figures", "auto.csv", "map.npy"}
#: ``brainclust check``'s page (a gallery per flag; :mod:`brainclust.report.checkpage`).
CHECK_PAGE = "checks.html"
#: The entries of a ``brainclust check --out`` folder (the checks alone).
CHECK_ENTRIES = frozenset({"quality.csv", "leakage.csv", "manifest.json", CHECK_PAGE})

#: The data checks' files (writers: brainclust.checks.tables); the :data:`FLAGS_COLUMN` (``;``-joined, empty =
#: clean) that ``assignments.csv`` and ``embeddings.parquet`` get after the levels when the run checked its data.
QUALITY_FILE, LEAKAGE_FILE = "quality.csv", "leakage.csv"
#: Descriptor slots written to ``quality.csv`` (the scores behind the pixel rules).
QUALITY_SCORE_COLUMNS = ["width", "height", "colourfulness", "colour_fraction", "dark_fraction", "border_level",
                         "mode_fraction", "foreground_fraction", "structure", "neighbour_correlation", "strokes",
                         "flat_air", "box_edge", "grey_levels"]
#: ``quality.csv``: one row per image the checks saw (scan order); see :mod:`brainclust.checks.tables`.
QUALITY_COLUMNS = ["path", "flags", "duplicate_of", "split", "near_similarity", "outlier_z", "likeness_z",
                   "likeness_role", "picture_score", "not_mri_reason", "non_image_dicom",
                   *QUALITY_SCORE_COLUMNS, "content_sha256", "error"]
#: ``leakage.csv``: one row per member of every duplicate group whose members come from two or more splits.
LEAKAGE_COLUMNS = ["group", "splits", "path", "split", "relation"]
#: The files of ``model/``, by role (a step's ``save_step`` writes its own).
MODEL_FILES = {"config": "config.json", "pca": "pca.npz", "cluster": "cluster.npz", "umap": "umap.npz",
               "remove": "remove.npz", "within": "within.npz", "checks": "checks.npz"}
#: The figures the report writes to ``figures/`` (each as ``.png`` and ``.svg``).
FIGURE_NAMES = ("tsne_clusters", "tsne_labels", "dendrogram", "silhouette", "montages", "k_selection", "confusion")
#: The folders of :data:`RUN_ENTRIES` and the names (``fnmatch`` patterns) a run writes inside them; nothing
#: else is ever written deeper, so anything else found there is a user's and the folder is not replaced.
RUN_NESTED = {"model": (*MODEL_FILES.values(), "ssl_*.json", "ssl_*.safetensors", "within_*_pca.npz",
                        "within_*_cluster.npz", "within_map_pca.npz"),
              "figures": tuple(f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "svg"))}
#: ``format`` and current ``version`` of the model manifest (``model/config.json``).
MODEL_FORMAT = "brainclust-model"
MODEL_VERSION = 3  # 3: no path of the machine that saved it (weights by file name and SHA-256)


def _escape_char(c: str) -> str:
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte (os.fsdecode's surrogate escape)
        return f"\\x{o - 0xDC00:02x}"
    if o > 0xFF:  # a lone surrogate (keep it encodable) or a bidirectional control (it would reorder the text)
        return f"\\u{o:04x}"
    return f"\\x{o:02x}"  # a control character


_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f\ud800-\udfff\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
_ESCAPED = re.compile(r"\\(?:\\|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))")


def escape_name(name: str) -> str:
    """A file name or path (``str``, as ``os.fsdecode`` gives it) as the printable UTF-8 text of the outputs.

    Undecodable bytes and control characters become ``\\xNN``, bidirectional controls (``U+202E`` shows
    ``gnp.exe`` as ``exe.png``) and invisible characters (zero-width spaces and joiners, the byte-order mark)
    ``\\uNNNN``, a backslash
    ``\\\\``, and the first character of a name a spreadsheet would evaluate (``=``, ``+``, ``-``, ``@``
    after any blanks; :func:`~brainclust.io.csvcell.formula_safe`) ``\\xNN``; any other text is unchanged.
    :func:`unescape_name` inverts it exactly.
    """
    return formula_safe(escape_text(name))


def escape_text(text: str) -> str:
    """:func:`escape_name` without the spreadsheet guard: for text of a JSON output that is no file name (a skip
    reason), where a leading ``-`` (``--volume-index 5 is out of range``) must read as written."""
    return _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), text)


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


def shown_name(text: str, clip: bool = False) -> str:
    """A path of an output (:func:`escape_name`'s text) as a message shows it: the spreadsheet guard on its
    first character undone (``\\x2d2.jpg`` is ``-2.jpg``), every other escape kept; ``clip``: at most
    :data:`~brainclust.terminal.NAME_SHOWN` characters (:func:`~brainclust.terminal.clipped`)."""
    shown = escape_text(unescape_name(text))
    return clipped(shown) if clip else shown


def write_manifest(path, manifest: Mapping) -> Path:
    """``manifest.json``, its file names escaped (:func:`escaped_manifest`); written last, when all else is in place."""
    return atomic_write_json(path, escaped_manifest(manifest))


def escaped_manifest(manifest: Mapping) -> dict:
    """A copy of ``manifest`` with its file names escaped (``input``, ``model_dir``, the paths of ``skipped``;
    the skip reasons by :func:`escape_text`, without the spreadsheet guard: JSON is no spreadsheet)."""
    out = dict(manifest)
    for key in ("input", "model_dir"):
        if isinstance(out.get(key), str):
            out[key] = escape_name(out[key])
    if "skipped" in out:
        out["skipped"] = [{k: (escape_name if k == "path" else escape_text)(v) if isinstance(v, str) else v
                           for k, v in s.items()} for s in out["skipped"]]
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
    model_config = property(lambda self: self.model / MODEL_FILES["config"])
    pca = property(lambda self: self.model / MODEL_FILES["pca"])
    cluster = property(lambda self: self.model / MODEL_FILES["cluster"])
    #: ``--reduce umap|pca+umap`` only: the UMAP's training input and embedding (cluster.manifold)
    umap = property(lambda self: self.model / MODEL_FILES["umap"])
    #: ``--auto`` only: every candidate's label-free criteria (analysis.autoconfig)
    auto = property(lambda self: self.root / "auto.csv")
    report = property(lambda self: self.root / "report.html")
    figures = property(lambda self: self.root / "figures")
    #: every metadata column ranked by its association with the clusters (analysis.associations)
    associations = property(lambda self: self.root / "associations.csv")
    #: unit runs only: the slices of every unit (:mod:`brainclust.io.slicefile`)
    slices = property(lambda self: self.root / "slices.csv")
    #: the data checks (unless ``--checks off``)
    quality = property(lambda self: self.root / QUALITY_FILE)
    leakage = property(lambda self: self.root / LEAKAGE_FILE)


def check_run_file(path, folder=None) -> int:
    """The size of a file of a run folder about to be read, refused (ModelFileError) unless it is (or links to: DataLad
    and git-annex keep files as links) a regular file, not empty: a FIFO would block the reader, a link to ``/dev/zero``
    never end. A link refused says so (not its target); no error message quotes what such a file holds."""
    import stat as stat_module

    path = Path(path)
    link = path.is_symlink()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or path.parent}' is not a finished brainclust run: {path.name} is "
                             + ("a symbolic link to a file that does not exist" if link else "missing")) from None
    except OSError as exc:
        raise ModelFileError(f"'{path}' cannot be read ({exc.strerror or exc})"
                             + ("; it is a symbolic link" if link else "")) from None
    if not stat_module.S_ISREG(st.st_mode):
        raise ModelFileError(f"'{path}' is " + ("a symbolic link to something other than a regular file; refusing "
                                                "to follow it" if link else "not a regular file; not read"))
    if st.st_size == 0:
        raise ModelFileError(f"'{path}' is damaged (empty)")
    return st.st_size


#: The largest JSON file of a run folder that is read (a manifest lists skipped files: 1M of them ~ 200 MB).
JSON_MAX = 1 << 30


def read_json(path, folder=None) -> dict:
    """Read a JSON file of a run folder; a missing or damaged file (:func:`check_run_file`) is a
    :class:`ModelFileError`."""
    path = Path(path)
    size = check_run_file(path, folder)
    try:
        if size > JSON_MAX:
            raise ValueError(f"{size} bytes, above the {JSON_MAX} a run writes")
        with open(path, "rb") as fh:
            raw = fh.read(size + 1)
        if len(raw) > size:
            raise ValueError("it grew while being read")
        return loads_run_json(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({str(exc)[:200]})") from None


def write_assignments(path, rows: Iterable[Mapping], with_levels: bool, extra_columns: Sequence[str] = (),
                      units: bool = False) -> Path:
    """Write ``assignments.csv``: :data:`ASSIGNMENT_COLUMNS`, then the levels when ``with_levels``, then
    :data:`UNIT_COLUMNS` when ``units``, then ``extra_columns`` (the records' metadata, :func:`meta_columns`)."""
    header = ASSIGNMENT_COLUMNS + (LEVEL_COLUMNS if with_levels else []) + (UNIT_COLUMNS if units else [])
    return atomic_write_csv(path, header + [c for c in extra_columns if c not in header], rows)


def read_assignments(path, folder=None) -> list[dict]:
    """Read ``assignments.csv`` (or any table the outputs write) back as a list of dict rows (strings).

    A row with more or fewer fields than the header (a truncated or edited file) is a ModelFileError.
    """
    check_run_file(path, folder)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for row in reader:
                if None in row or None in row.values():
                    raise ModelFileError(f"'{path}' is damaged (line {reader.line_num} does not have the "
                                         f"{len(reader.fieldnames or ())} fields of the header): truncated or "
                                         "edited")
                rows.append(row)
            return rows
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or Path(path).parent}' is not a finished brainclust run: "
                             f"{Path(path).name} is missing") from None
    except (OSError, ValueError, csv.Error, MemoryError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def column_name(name) -> str:
    """The column a metadata field is written as: its name, with :data:`META_PREFIX` while it is reserved
    or when a spreadsheet would read it as a formula (``=x`` -> ``meta_=x``)."""
    out = str(name).strip()
    while out in RESERVED or formula_safe(out) != out:
        out = META_PREFIX + out
    return out


def output_name(key) -> str:
    """The column a key of a row's ``meta`` is written as: a run-made column (:data:`RUN_MADE`) as it is,
    anything else by :func:`column_name`."""
    return key if key in RUN_MADE else column_name(key)


def meta_keys(records: Sequence) -> list[str]:
    """The keys of the records' metadata (``ImageRecord.meta``), each once, in the records' own order: a key first
    met in a later record goes right after the key before it there (BIDS ``ce``, in some files, beside ``subject``)."""
    order, seen = [], set()
    for r in records:
        before = None
        for key in getattr(r, "meta", None) or {}:
            if key not in seen:
                seen.add(key)
                order.insert(0 if before is None else order.index(before) + 1, key)
            before = key
    return order


def meta_columns(records: Sequence) -> list[str]:
    """The metadata columns the records carry, as written: :func:`meta_keys` through :func:`output_name`."""
    return list(dict.fromkeys(output_name(key) for key in meta_keys(records)))


def meta_text(value) -> str:
    """A metadata value as ``assignments.csv`` holds it: missing (:func:`brainclust.io.privacy.is_missing`:
    ``None``, NaN, ``""``, ``n/a``, ``nan``) -> ``""``, else its text, escaped like a file name."""
    return "" if is_missing(value) else escape_name(str(value))


def assignment_rows(records: Sequence, labels, levels) -> list[dict]:
    """One dict per row with the columns of ``assignments.csv`` (``records``: ImageRecords or unit records).

    A unit record (``n_slices`` attribute) adds ``unit`` and ``n_slices``; metadata a record
    carries (``meta``: column -> value) follows, named by :func:`output_name` and written by
    :func:`meta_text`.
    """
    rows = []
    for i, r in enumerate(records):
        row = {"path": escape_name(r.path), "name": escape_name(r.name), "type": r.type, "size": r.size,
               "width": r.width, "height": r.height, "label": escape_name(r.label or ""),
               "cluster": int(labels[i])}
        if levels is not None:
            row.update({c: int(levels[i, j]) for j, c in enumerate(LEVEL_COLUMNS)})
        if getattr(r, "n_slices", None) is not None:
            row.update(unit=escape_name(r.unit), n_slices=int(r.n_slices))
        for key, value in (getattr(r, "meta", None) or {}).items():
            row[output_name(key)] = meta_text(value)
        rows.append(row)
    return rows


def write_run_files(folder: "RunFolder", rows: list[dict], with_levels: bool, metrics: dict, records: Sequence,
                    embedding, features=None, extra_columns: Sequence[str] = (),
                    typed: Mapping[str, tuple[str, list]] | None = None) -> None:
    """``assignments.csv``, ``embeddings.parquet`` and ``metrics.json`` of a run or a prediction
    (``typed``: the metadata columns for the Parquet file, name -> (``float64`` | ``string``, values))."""
    units = bool(records) and getattr(records[0], "n_slices", None) is not None
    write_assignments(folder.assignments, rows, with_levels, extra_columns, units=units)
    write_embeddings(folder.embeddings, rows, records, embedding, features, typed)
    atomic_write_json(folder.metrics, metrics)


def write_table(path, columns: Sequence[str], rows: Sequence[Mapping]) -> Path:
    """Rows as CSV with a fixed column order; ``None`` becomes an empty cell (``auto.csv``, the studies' tables)."""
    return atomic_write_csv(path, columns, [{c: ("" if r.get(c) is None else r.get(c)) for c in columns}
                                            for r in rows])


# -- embeddings.parquet -----------------------------------------------------------------------
def _vectors(pa, matrix: np.ndarray):
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ParameterError(f"embeddings: expected an (n, dim) matrix, got shape {m.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1), type=pa.float32()), m.shape[1])


def write_embeddings(path, rows: Sequence[Mapping], records: Sequence, embedding: np.ndarray,
                     features: np.ndarray | None = None, typed: Mapping[str, tuple[str, list]] | None = None) -> Path:
    """Write ``embeddings.parquet`` atomically; ``rows`` are the rows of ``assignments.csv``, ``records`` their images.

    Unit runs add ``unit`` (string) and ``n_slices`` (int32); the rows' :data:`FLAGS_COLUMN`, when present,
    follows as a string column; ``typed`` adds the metadata columns after them (``float64`` or ``string``,
    missing values null), named as in ``assignments.csv``; ``features`` comes last.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (len(rows) == len(records) == len(embedding)) or (features is not None and len(features) != len(rows)):
        raise ParameterError("embeddings: rows, records, embedding and features must have one entry per image")
    cols = {"path": pa.array([str(r["path"]) for r in rows], type=pa.string()),
            "sha256": pa.array([r.sha256 for r in records], type=pa.string()),
            "frame": pa.array([r.frame for r in records], type=pa.string()),
            "embedding": _vectors(pa, np.asarray(embedding).reshape(len(rows), -1)),
            "cluster": pa.array([int(r["cluster"]) for r in rows], type=pa.int32())}
    if rows and LEVEL_COLUMNS[0] in rows[0]:
        for c in LEVEL_COLUMNS:
            cols[c] = pa.array([int(r[c]) for r in rows], type=pa.int32())
    if rows and "n_slices" in rows[0]:
        cols["unit"] = pa.array([str(r["unit"]) for r in rows], type=pa.string())
        cols["n_slices"] = pa.array([int(r["n_slices"]) for r in rows], type=pa.int32())
    if rows and FLAGS_COLUMN in rows[0]:
        cols[FLAGS_COLUMN] = pa.array([str(r[FLAGS_COLUMN]) for r in rows], type=pa.string())
    for name, (kind, values) in (typed or {}).items():
        if len(values) != len(rows):
            raise ParameterError(f"embeddings: metadata column '{name}' has {len(values)} values for {len(rows)} rows")
        if kind != "float64":  # the same escaped text as assignments.csv
            values = [None if v is None else escape_name(str(v)) for v in values]
        cols.setdefault(output_name(name), pa.array(values, type=pa.float64() if kind == "float64" else pa.string()))
    if features is not None:
        cols["features"] = _vectors(pa, np.asarray(features).reshape(len(rows), -1))
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return atomic_write_bytes(path, buf.getvalue())
