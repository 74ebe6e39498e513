"""A run folder read for ``brainclust view``: columnar, compact, and never trusted.

:class:`ViewData` holds what the server needs for every image of a run, up
to millions of them: ``assignments.csv`` as a pyarrow table of strings (each
column other than the text ones dictionary-encoded), one :class:`ViewColumn`
per colourable column (category codes or numbers as numpy arrays, the same
classification and colours as the report: :mod:`brainclust.report.columns`),
and the map place of every image in the unit square.

The map comes from the run's ``map.npy``; when it is missing or does not fit
the run, it is computed once from ``model/cluster.npz`` with
:func:`brainclust.report.mapcoords.compute_map` and kept in the view cache
folder (the run folder may be read-only).

Memory at one million images: about 1 KB per row of ``assignments.csv``
while reading, about half of that afterwards (measured in ``benchmarks/bench_view.py``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from brainclust.errors import ModelFileError
from brainclust.io.atomic import read_npz
from brainclust.io.outputs import (FLAGS_COLUMN, MODEL_FILES, RunFolder, check_run_file, escape_name, read_json,
                                   shown_name)
from brainclust.io.runfolder import (
    check_assignment_columns, check_row_count, check_run_dir, input_root, read_manifest, recorded_hashes,
)
from brainclust.io.slicefile import read_slices
from brainclust.report.columns import (
    MAX_CATEGORIES,
    NOISE_NAME,
    Column,
    OTHER,
    RAMP,
    category_colours,
    category_order,
    classify,
    display_name,
    is_level,
    name_unclustered,
    unclustered_name,
)
from brainclust.report.explorer import kept_colour
from brainclust.report.mapcoords import compute_map, normalise, read_map

log = logging.getLogger(__name__)


def _rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def ramp_lut(steps: int = 256) -> np.ndarray:
    """``steps`` x 3 uint8 colours interpolated along :data:`~brainclust.report.columns.RAMP` (as the page does)."""
    stops = np.array([_rgb(c) for c in RAMP], dtype=np.float64)
    t = np.linspace(0, len(RAMP) - 1, steps)
    j = np.minimum(np.floor(t).astype(int), len(RAMP) - 2)
    f = (t - j)[:, None]
    return np.round(stops[j] + f * (stops[j + 1] - stops[j])).astype(np.uint8)


class ViewColumn(Column):
    """A colourable column of the explorer (:class:`brainclust.report.columns.Column`, ``cat`` or ``num``):
    ``codes`` int16 into ``categories`` (shown names; ``raw``: as written), or ``values`` float32 (NaN = empty)."""

    def rgb(self, idx: np.ndarray) -> np.ndarray:
        """uint8 colours (m, 3) of rows ``idx``; empty numeric values are grey."""
        if self.kind == "cat":
            pal = np.array([_rgb(c) for c in self.colours], dtype=np.uint8)
            return pal[self.codes[idx]]
        v = self.values[idx]
        out = np.full((len(idx), 3), 158, dtype=np.uint8)
        ok = np.isfinite(v)
        if ok.any() and self.lo is not None:
            span = (self.hi - self.lo) or 1.0
            t = np.clip((v[ok] - self.lo) / span if self.hi > self.lo else 0.5, 0, 1)
            out[ok] = RAMP_LUT[np.round(t * 255).astype(int)]
        return out


RAMP_LUT = ramp_lut()


#: The most dimensions an ``embeddings.parquet`` embedding may declare for ``view`` to read it.
EMBEDDING_MAX_DIM = 1 << 16


def _read_table(path: Path, folder: Path):
    """``assignments.csv`` as a pyarrow table whose every column is text."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    check_run_file(path, folder)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
        check_assignment_columns(header, path)
        return pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 24),
                             convert_options=pcsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                                                 strings_can_be_null=False))
    except FileNotFoundError:
        raise ModelFileError(f"'{folder}' is not a finished brainclust run: assignments.csv is missing") from None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error, pa.ArrowInvalid, MemoryError) as exc:
        reason = ":".join(str(exc).split(":")[:2])  # Arrow quotes the bad row after a second colon: never shown
        raise ModelFileError(f"'{path}' is damaged ({reason[:200]})") from None


def _embedding_column(path: Path, folder: Path, n: int) -> np.ndarray | None:
    """The ``embedding`` column of ``embeddings.parquet`` as a finite float32 ``(n, d)`` array; ``None`` when the
    file or the column is absent. Its type and row count are checked from the file's footer before any data is
    read (a small file can declare millions of rows), and no message quotes what the file holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not os.path.lexists(path):
        return None
    check_run_file(path, folder)
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
        if "embedding" not in schema.names:
            return None
        typ = schema.field("embedding").type
        if not (pa.types.is_fixed_size_list(typ) and 0 < typ.list_size <= EMBEDDING_MAX_DIM
                and (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type))):
            raise ModelFileError(f"'{path}' is damaged: column 'embedding' is {typ}, not vectors of numbers of one "
                                 f"length (at most {EMBEDDING_MAX_DIM})")
        if meta.num_rows != n:
            raise ModelFileError(f"'{folder / 'assignments.csv'}' ({n} rows) does not match embeddings.parquet "
                                 f"({meta.num_rows} images): the outputs come from different runs")
        col = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
        if col.null_count or len(col) != n:
            raise ModelFileError(f"'{path}' is damaged: its embedding has missing rows")
        X = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(n, -1)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException, MemoryError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({type(exc).__name__})") from None
    if not np.isfinite(X).all():
        raise ModelFileError(f"'{path}' is damaged: its embedding is not finite")
    return X


def _encode(name: str, arr, n: int) -> tuple[ViewColumn | None, object]:
    """One column: its :class:`ViewColumn` (``None`` for text) and the array the table keeps."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(arr)
    values = enc.dictionary.to_pylist()
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    counts_d = np.bincount(codes, minlength=len(values))
    nonempty = [v for v in values if v != ""]
    nums = {}
    if len(values) <= 200_000 and name not in ("path", "name"):
        for v in nonempty:
            try:
                x = float(v)
            except ValueError:
                nums = None
                break
            nums[v] = x if np.isfinite(x) else np.nan
    kind = classify(name, n, len(values), bool(nonempty) and nums is not None and bool(nums))
    if kind == "text":
        return None, arr
    if kind == "num":
        lut = np.array([np.nan if v == "" else (nums or {}).get(v, np.nan) for v in values], dtype=np.float32)
        vals = lut[codes] if len(lut) else np.zeros(n, np.float32)
        fin = vals[np.isfinite(vals)]
        col = ViewColumn(name, "num", values=vals,
                         lo=float(fin.min()) if len(fin) else None, hi=float(fin.max()) if len(fin) else None)
        return col, enc
    counts = {v: int(c) for v, c in zip(values, counts_d)}
    order = category_order(name, counts)
    shown = order if len(order) <= MAX_CATEGORIES else order[: MAX_CATEGORIES - 1] + [OTHER]
    pos = {v: j for j, v in enumerate(shown)}
    lut = np.array([pos.get(v, pos.get(OTHER, 0)) for v in values], dtype=np.int16)
    cat_codes = lut[codes] if len(lut) else np.zeros(n, np.int16)
    cnt = np.bincount(cat_codes, minlength=len(shown)).tolist()
    col = ViewColumn(name, "cat", [display_name(name, v) if v != OTHER else OTHER for v in shown], raw=shown,
                     colours=category_colours(name, shown), counts=cnt, codes=cat_codes)
    return col, enc


def run_key(folder: RunFolder) -> str:
    """A short key of the run (its real path, and the size and time of assignments.csv): the cache's folder name."""
    st = folder.assignments.stat()
    text = f"{os.path.realpath(folder.root)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class ViewData:
    """Everything ``brainclust view`` serves about a run, read once.

    Parameters
    ----------
    run_dir : path-like
        The ``--out`` folder of a finished run.
    cache_dir : Path, optional
        Where a computed map is kept (see :func:`brainclust.report.thumbcache.view_cache_dir`).

    Raises
    ------
    ModelFileError
        If the folder is not a finished run (no manifest or assignments.csv,
        damaged files, no map and no ``model/cluster.npz`` to compute one).
    """

    def __init__(self, run_dir, cache_dir: Path | None = None):
        check_run_dir(run_dir, "view")
        folder = RunFolder(Path(run_dir))
        from brainclust.report.run import MANIFEST_FIELDS, METRICS_FIELDS, check_fields

        self.folder = folder
        self.manifest = read_manifest(folder)
        check_fields(folder.manifest, self.manifest, MANIFEST_FIELDS)
        try:
            self.metrics = read_json(folder.metrics, folder.root)
            check_fields(folder.metrics, self.metrics if isinstance(self.metrics, dict) else {}, METRICS_FIELDS)
        except ModelFileError:
            self.metrics = {}
        if not isinstance(self.metrics, dict):
            self.metrics = {}
        self.root = input_root(folder, self.manifest, required=False)
        table = _read_table(folder.assignments, folder.root)
        self.n = table.num_rows
        if self.n == 0:
            raise ModelFileError(f"'{folder.assignments}' lists no image")
        check_row_count(self.n, self.manifest, folder.assignments)
        self.columns: list[ViewColumn] = []
        arrays = {}
        for name in table.column_names:
            col, kept = _encode(name, table.column(name), self.n)
            arrays[name] = kept
            if col is not None:
                self.columns.append(col)
        import pyarrow as pa

        self.table = pa.table(arrays)
        del table
        self.key = run_key(folder)
        self._images = self._image_sources() if self.root is not None else None
        self.xy = normalise(self._coordinates(cache_dir))
        self.x = np.ascontiguousarray(self.xy[:, 0])
        self.y = np.ascontiguousarray(self.xy[:, 1])
        self.by_name = {c.name: c for c in self.columns}
        self._label_colours()
        self.unclustered = self._unclustered()
        name_unclustered(self.columns, self.unclustered)

    @property
    def paths(self):
        return self.table.column("path")

    def _coordinates(self, cache_dir: Path | None) -> np.ndarray:
        stored = read_map(self.folder.root, self.n)
        if stored is not None:
            self.map_source = "map.npy"
            return stored
        cached = read_map(cache_dir / f"map-{self.key}", self.n) if cache_dir else None
        if cached is not None:
            self.map_source = "computed earlier (view cache)"
            return cached
        within = self.folder.model / MODEL_FILES["within"]
        has_cluster = os.path.lexists(self.folder.cluster)
        model_file = self.folder.cluster if has_cluster else within
        if has_cluster:
            arrays = read_npz(self.folder.cluster, "cluster model")
            try:
                X = np.asarray(arrays["X_fit"], dtype=np.float32).reshape(len(arrays["X_fit"]), -1)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelFileError(f"cluster model '{self.folder.cluster}' is damaged ({exc})") from None
        elif os.path.lexists(within):  # --within: the strata's embeddings, one row per image
            from brainclust.report.run import within_model

            X = within_model(within)[0].astype(np.float32)
        elif (X := _embedding_column(self.folder.embeddings, self.folder.root, self.n)) is not None:  # predict
            model_file = self.folder.embeddings
        else:
            raise ModelFileError(f"'{self.folder.root}' has neither map.npy nor model/cluster.npz (nor "
                                 "model/within.npz, nor embeddings.parquet): no map can be drawn")
        if len(X) != self.n:
            raise ModelFileError(f"'{self.folder.assignments}' ({self.n} rows) does not match "
                                 f"{model_file.relative_to(self.folder.root)} ({len(X)} images): the outputs "
                                 "come from different runs")
        from brainclust.report.run import run_seed

        seed = run_seed(self.manifest, self.folder.manifest)
        log.info("view: the run has no map.npy; computing the map of %d images once (seed %d)", self.n, seed)
        coords = compute_map(X, seed, clusters=self.by_name_codes("cluster"))
        self.map_source = "computed by brainclust view"
        if cache_dir is not None:
            try:
                from brainclust.report.mapcoords import save_map

                (cache_dir / f"map-{self.key}").mkdir(parents=True, exist_ok=True)
                save_map(cache_dir / f"map-{self.key}", coords)
            except OSError as exc:
                log.warning("view: could not keep the computed map in %s (%s)", cache_dir, exc)
        return coords

    def by_name_codes(self, name: str) -> np.ndarray | None:
        for c in self.columns:
            if c.name == name and c.kind == "cat":
                return c.codes
        return None

    def _unclustered(self) -> str:
        """What cluster -1 holds (:func:`~brainclust.report.columns.unclustered_name`): its rows with a flag of the
        manifest's ``--exclude`` were set aside (:func:`~brainclust.report.run.is_set_aside`), the others are noise."""
        from brainclust.report.run import excluded_flags, is_set_aside

        clu = self.by_name.get("cluster")
        if clu is None or clu.kind != "cat" or "-1" not in clu.raw:
            return NOISE_NAME
        exclude = excluded_flags(self.manifest)
        rows = np.flatnonzero(clu.codes == clu.raw.index("-1"))
        flags = self.table.column(FLAGS_COLUMN) if FLAGS_COLUMN in self.table.column_names else None
        aside = 0 if flags is None else sum(is_set_aside(-1, f, exclude) for f in flags.take(rows).to_pylist())
        return unclustered_name(len(rows) - aside, aside)

    def _label_colours(self) -> None:
        """Labels take their Hungarian-matched cluster's colour, as in the report."""
        lab, clu = self.by_name.get("label"), self.by_name.get("cluster")
        if lab is None or clu is None or lab.kind != "cat" or clu.kind != "cat":
            return
        from brainclust.report.tables import confusion

        ytrue = [lab.categories[c] if lab.categories[c] not in ("(none)", OTHER) else "" for c in lab.codes.tolist()]
        ids = [-1 if clu.raw[c] == "-1" else c for c in clu.codes.tolist()]
        conf = confusion(ytrue, ids)
        by_label = conf.label_colours(lambda cid: clu.colours[cid] if 0 <= cid < len(clu.colours) else None,
                                      sum(1 for c in clu.raw if c != "-1"))
        for name, colour in by_label.items():
            if name in lab.categories:
                lab.colours[lab.categories.index(name)] = colour

    def _image_sources(self):
        """What each row shows: ``(hashes, None)`` (its own file and recorded hash), or for a unit run
        ``(None, slices)`` (its middle slice, from ``slices.csv``)."""
        if "unit" in self.table.column_names:
            slices = read_slices(self.folder.slices) or {}
            units = [str(u) for u in self.table.column("unit").to_pylist()]
            return None, [(m[len(m) // 2] if m else {}) for m in (slices.get(u, []) for u in units)]
        return recorded_hashes(self.folder, [str(p) for p in self.paths.to_pylist()]), None

    def image_of(self, i: int) -> tuple[dict, object]:
        """The row whose file shows row ``i`` and the SHA-256 the run recorded for it (``None``: none)."""
        if self._images is None:
            return self.row(i), None
        hashes, middle = self._images
        if middle is not None:
            return middle[i], middle[i].get("sha256")
        return self.row(i), None if hashes is None else hashes[i]

    # -- rows --------------------------------------------------------------------------
    def row(self, i: int) -> dict:
        """Every column of row ``i`` as text (as written in assignments.csv)."""
        return {k: ("" if v is None else str(v)) for k, v in self.table.slice(i, 1).to_pylist()[0].items()}

    def path(self, i: int) -> str:
        return str(self.paths[i].as_py())

    def shown_path(self, i: int) -> str:
        """Row ``i``'s path as the page shows it (:func:`~brainclust.io.outputs.shown_name`)."""
        return shown_name(self.path(i))

    def caption(self, i: int) -> str:
        """``path | cluster C | label L`` (as the report's preview), the path as a message shows it."""
        text = self.shown_path(i)
        for name in ("cluster", "label"):
            col = self.by_name.get(name)
            if col is not None and col.kind == "cat" and (name != "label" or self.has_labels):
                text += f" | {name} {col.categories[int(col.codes[i])]}"
        return text

    @property
    def has_labels(self) -> bool:
        """Whether any image has a label (a run without ``--labels-from-folders`` has an empty column)."""
        col = self.by_name.get("label")
        return col is not None and col.kind == "cat" and any(v != "" for v in (col.raw or []))

    def first_colour(self) -> str | None:
        """The column the map is coloured by at first: the report's (the last ``report --color-by``, else the
        run's ``--color-by``) when this run still has it, else ``cluster``."""
        wanted = kept_colour(self.manifest, None) or (self.manifest.get("settings") or {}).get("color_by")
        col = self.by_name.get(wanted) if isinstance(wanted, str) else None
        if col is not None and col.kind != "text":
            return wanted
        return "cluster" if "cluster" in self.by_name else (self.columns[0].name if self.columns else None)

    def meta(self) -> dict:
        """What the page needs to start (no per-row data)."""
        title = self.root.name if self.root else self.folder.root.name
        scores = {k: float(v) for k, v in ((k, self.metrics.get(k)) for k in ("silhouette", "ari", "nmi", "fmi", "acc"))
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}
        return {"mode": "server", "n_total": self.n, "columns": [c.meta() for c in self.columns],
                "colour": self.first_colour(),
                "has_labels": self.has_labels, "title": escape_name(title), "scores": scores,
                "map_source": self.map_source, "levels": [c.name for c in self.columns if is_level(c.name)],
                "unclustered": self.unclustered}
