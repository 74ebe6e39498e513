"""Export a finished run as one folder per cluster.

``export_clusters(out_dir, to)`` reads ``assignments.csv`` and the data root
from ``manifest.json`` (:func:`brainclust.io.runfolder.read_run`, which checks them)
and puts every image in exactly one folder:
``cluster_0/``, ``cluster_1/``, ..., ``noise/`` for DBSCAN's or ``--outliers``' noise (``-1``) and
``set_aside/`` for the images ``--exclude`` left out (``-1`` with an excluded flag).
Images are copied (default) or symbolically linked. A copied DICOM file is de-identified
(:func:`brainclust.io.deidentify.deidentified_dicom`: a whitelist of image attributes, UIDs replaced)
and a copied PNG, JPEG or TIFF loses its metadata (:mod:`brainclust.io.rastermeta`: text chunks, EXIF,
comments, tags; a TIFF of several pages page by page) unless ``dicom_headers="keep"``; one that cannot be (a damaged
page) is copied as it is, counted in ``kept``, with a warning. A link points at the file as it is, so ``symlink``
is refused, when any file would be linked, unless ``dicom_headers="keep"`` says so (no patient data reaches an
output unasked); a run of NIfTI slices and DICOM frames alone links nothing, so ``symlink`` writes its PNG files.

File names are kept when they are unique within a cluster folder. When two
images of one cluster share a name (``a/x.png`` and ``b/x.png``; compared
case-insensitively, for case-insensitive file systems), each of them gets
the first 8 hex digits of the SHA-1 of its relative path before the
extension (``x-1a2b3c4d.png``), so the result does not depend on the order of
the rows. ``export.csv`` in the target folder maps every ``path`` to its
``cluster`` and ``file``. A 2-D image inside a multi-image file (a NIfTI
slice or DICOM frame, ``path`` = ``FILE#FRAME``) cannot be copied or linked
on its own; it is written as an 8-bit PNG of that slice (min-max scaled), in
both modes.

The run folder is untrusted input: every ``path`` is joined to the data root with
:func:`brainclust.io.atomic.safe_join` (relative, no ``..``, and its real location, links
followed, inside the root), and every file placed must be a regular file holding an image
brainclust reads (found from its content, as the scan does). A row that breaks either rule
refuses the whole export with one line naming the row; nothing is written and nothing outside
the data root is read. So a tampered ``assignments.csv`` (``../../etc/passwd``, an absolute path,
a link out of the root) or a tampered ``input`` in ``manifest.json`` cannot copy other files.

The export is all-or-nothing: it is published like a run folder
(:func:`brainclust.io.publish.publish`: built in a temporary sibling folder of ``to`` under a
lock, then swapped in; removed on any failure), and ``to`` follows the same rule as a run's
``--out`` (:func:`brainclust.io.publish.check_out`: outside the data root and any run folder),
except that it must be new or empty. File
names are the images' own (``assignments.csv`` holds them escaped, see
:func:`brainclust.io.outputs.escape_name`; ``export.csv`` too); a name that
would exceed 255 bytes with its tag is shortened before the tag.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from brainclust.checks.decode import dicom_header
from brainclust.checks.rules import burned_in_text
from brainclust.errors import ImageReadError, InputError, ModelFileError, ParameterError, UnsafePathError
from brainclust.io.atomic import atomic_write_csv, safe_join
from brainclust.io.content import content_sha256
from brainclust.io.deidentify import deidentified_copy
from brainclust.io.outputs import FLAGS_COLUMN, RunFolder, escape_name, shown_name, unescape_name
from brainclust.io.publish import check_out, prepare_out, publish
from brainclust.io.runfolder import check_run_dir, read_run
from brainclust.io.slicefile import read_slices
from brainclust.report.exportnames import destination_names
from brainclust.report.run import excluded_flags, is_set_aside
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

MODES = ("copy", "symlink")
#: What a copy does with a DICOM file's header: de-identify it (default) or keep it whole.
DICOM_HEADERS = ("strip", "keep")


@dataclass
class ExportResult:
    """What :func:`export_clusters` wrote: target folder, files per cluster folder, mode."""

    to: Path
    counts: dict[str, int]
    mode: str
    n_png: int = 0  # DICOM frames and NIfTI slices: written as PNG files whatever the mode
    n_deidentified: int = 0  # DICOM files copied with their headers stripped
    n_stripped: int = 0  # PNG, JPEG and TIFF files copied without their metadata
    kept: list[str] = field(default_factory=list)  # copies whose metadata could not be removed
    dicom_headers: str = "strip"

    @property
    def n_files(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """The one line ``brainclust export`` prints."""
        how = self.mode if not self.n_png else "PNG files" if self.n_png == self.n_files else \
            f"{self.mode}; {count_text(self.n_png, 'frame or slice as a PNG file', 'frames or slices as PNG files')}"
        done = ((self.n_deidentified, "DICOM file de-identified", "DICOM files de-identified"),
                (self.n_stripped, "PNG/JPEG/TIFF file without its metadata",
                 "PNG/JPEG/TIFF files without their metadata"))
        how += "".join(f"; {count_text(n, *what)}" for n, *what in done if n)  # the files kept as they are: a warning
        if self.dicom_headers == "keep" and self.n_png < self.n_files:  # a PNG written anew has no header
            how += "; headers and metadata kept, patient data included"
        return (f"exported {count_text(self.n_files, 'image')} ({how}) into {count_text(len(self.counts), 'folder')}"
                f" under {self.to}: " + ", ".join(f"{k} ({v})" for k, v in self.counts.items()))


def _file_named(root: Path, text: str) -> Path | None:
    """``root / text`` checked by :func:`safe_join` when it is a file, else ``None``."""
    try:
        p = safe_join(root, text)
    except UnsafePathError:
        return None
    try:
        return p if p.is_file() else None
    except OSError:  # e.g. a frame row of a file whose name is near the 255-byte limit: "NAME#frame=2" is too long
        return None


def record_of_row(root: Path, row: dict, sha256: str | bytes):
    """The :class:`~brainclust.io.scan.ImageRecord` an ``assignments.csv`` row stands for, its ``sha256`` the
    hash the run recorded for the row's file (:func:`brainclust.io.runfolder.recorded_hashes`).

    A plain image's ``path`` is its file. A 2-D image inside a multi-image file
    (NIfTI slice, DICOM frame) is ``FILE#FRAME``: ``FILE#axial=45`` (NIfTI,
    the frame id itself) or ``FILE#frame=N`` (DICOM, 1-based). The file is
    :func:`~brainclust.io.atomic.safe_join` ed to ``root`` (``abspath`` is its
    real path).

    Raises
    ------
    UnsafePathError
        The path is absolute, holds ``..``, or its real location is outside ``root``.
    """
    from brainclust.io.scan import ImageRecord

    path = row["path"]  # escaped text (see brainclust.io.outputs.escape_name)
    sha256 = sha256.decode("ascii", "replace") if isinstance(sha256, bytes) else str(sha256 or "")
    text = unescape_name(path)
    rel, sep, suffix = text.partition("#")
    frame = ""
    whole = _file_named(root, text) if sep else None
    if sep and whole is None:
        frame = suffix
        if row.get("type") == "dicom" and suffix.startswith("frame="):
            from brainclust.io.formats import dicom

            try:
                frame = dicom.frame_id(int(suffix.split("=", 1)[1]) - 1)
            except ValueError:
                frame = suffix  # decoding says it is not a frame number
        abspath = safe_join(root, rel)
    else:
        abspath = whole if whole is not None else safe_join(root, text)

    def num(key: str) -> int:
        try:
            return int(row.get(key) or 0)
        except ValueError:
            return 0

    return ImageRecord(path=path, abspath=str(abspath), name=unescape_name(row.get("name", "")),
                       type=row.get("type", ""), size=num("size"), width=num("width"), height=num("height"),
                       sha256=sha256, label=unescape_name(row.get("label", "") or ""), frame=frame)


#: The folder of the images ``--exclude`` left out of the clustering.
SET_ASIDE = "set_aside"


def folder_name(cluster: int) -> str:
    """``cluster_<id>``, or ``noise`` for ``-1``."""
    return "noise" if cluster == -1 else f"cluster_{cluster}"


def image_file_problem(path: Path) -> str | None:
    """Why the file ``path`` is not one an export may place (``None`` when it is): it must be a
    regular file holding an image brainclust reads, told from its content as the scan does."""
    from brainclust.io import formats
    from brainclust.io.content import check_regular
    from brainclust.io.formats import dicom
    from brainclust.io.scan import probe

    try:
        check_regular(path)
        if formats.detect(path) in ("dicom", "nifti"):
            return None
        try:
            probe(path)
        except ImageReadError:
            if not dicom.may_be_headerless(path):
                raise
            dicom.probe(path, force=True)
    except ImageReadError as exc:
        return exc.reason
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _plan_records(folder: RunFolder, rows: list[dict], root: Path, hashes, no_link: str | None = None) -> dict:
    """path -> record of every row, each file checked (:func:`record_of_row`, :func:`image_file_problem`,
    and its bytes against the SHA-256 in ``hashes``); the first row that breaks a rule refuses the export
    (one line). ``no_link`` (the options, e.g. ``--mode symlink``): the first row that would be linked, a file
    rather than a slice or frame written as a PNG, refuses it."""
    records, missing, digests = {}, [], {}
    for i, r in enumerate(rows, start=1):
        where, shown = f"export: row {i} of '{folder.assignments}'", shown_name(r["path"], clip=True)
        try:
            rec = record_of_row(root, r, hashes[i - 1])
            if not Path(rec.abspath).exists():
                missing.append(r["path"])
                continue
        except UnsafePathError as exc:
            raise UnsafePathError(f"{where}: {exc}; nothing was exported") from None
        except OSError as exc:  # a part over 255 bytes (a tampered row): ENAMETOOLONG, not False
            raise InputError(f"{where}: '{shown}' cannot be read ({exc.strerror or type(exc).__name__}); "
                             "nothing was exported") from None
        if no_link and not rec.frame:
            raise ParameterError(f"{no_link}: '{shown}' would be linked, and a link points at the original file, "
                                 "its DICOM header and PNG/JPEG/TIFF metadata with it (patient data included); use "
                                 "--mode copy for de-identified copies, or add --dicom-headers keep")
        if not rec.sha256:
            raise InputError(f"{where}: '{shown}': the run records no content hash for it "
                             "(embeddings.parquet edited); refused, nothing was exported")
        if rec.abspath not in digests:  # the bytes are checked against the run before any decoder reads them
            try:
                digests[rec.abspath] = content_sha256(rec.abspath)
            except ImageReadError as exc:
                raise InputError(f"{where}: '{shown}' cannot be read ({exc.reason}); nothing was exported") from None
        if digests[rec.abspath] != rec.sha256:
            raise InputError(f"{where}: '{shown}' is not the file the run clustered (its SHA-256 is "
                             "not the one the run recorded: changed since, or the run folder was edited); nothing was "
                             "exported")
        # a frame row names a multi-frame file already probed at scan time
        problem = None if rec.frame else image_file_problem(Path(rec.abspath))
        if problem is not None:
            raise InputError(f"{where}: '{shown}' is not an image file brainclust reads ({problem}); "
                             "nothing was exported")
        records[r["path"]] = rec
    if missing:
        raise InputError(f"export: {count_text(len(missing), 'image')} of {folder.assignments.name} missing under "
                         f"'{root}', e.g. '{shown_name(missing[0], clip=True)}'; nothing was exported")
    return records


def unit_slices(folder: RunFolder, rows: list[dict]) -> list[dict]:
    """A unit run's rows as the slices of each unit (from ``slices.csv``), each in its unit's cluster;
    any other run's rows unchanged."""
    if not (rows and "unit" in rows[0] and folder.slices.is_file()):
        return rows
    slices = read_slices(folder.slices) or {}
    return [{**s, "cluster": r.get("cluster", ""), **({"stratum": r["stratum"]} if "stratum" in r else {})}
            for r in rows for s in slices.get(r.get("unit") or "", [])]


def export_clusters(out_dir, to, mode: str = "copy", dicom_headers: str | None = None) -> ExportResult:
    """Write one folder per cluster under ``to`` holding every image of ``assignments.csv`` once.

    Parameters
    ----------
    out_dir : path-like
        The ``--out`` folder of a finished ``brainclust run`` (or ``predict``).
    to : path-like
        Target folder; must not exist yet or be empty.
    mode : {"copy", "symlink"}, default "copy"
        Copy the files, or create symbolic links to their absolute paths.
    dicom_headers : {"strip", "keep"}, optional
        A copied DICOM file is de-identified and a PNG/JPEG/TIFF loses its metadata (``strip``, the default of
        ``copy``: :mod:`brainclust.io.deidentify`), or every file is copied as it is, patient data included
        (``keep``). ``symlink`` needs ``keep`` when a file is linked: a link points at the file with its headers.

    Returns
    -------
    ExportResult

    Raises
    ------
    ParameterError
        Unknown ``mode``, ``symlink`` of a file without ``dicom_headers="keep"``, a non-empty target folder, or one
        inside the run's input folder.
    ModelFileError
        The run's outputs are missing or damaged (:func:`brainclust.io.runfolder.read_run`).
    UnsafePathError
        A ``path`` of ``assignments.csv`` leads outside the data root; nothing is written.
    InputError
        An image listed in ``assignments.csv`` no longer exists, or its file is not an image
        brainclust reads; nothing is written.
    """
    if mode not in MODES:
        raise ParameterError(f"--mode: must be one of {', '.join(MODES)}, got '{mode}'")
    if dicom_headers not in (None, *DICOM_HEADERS):
        raise ParameterError(f"--dicom-headers: must be one of {', '.join(DICOM_HEADERS)}, got '{dicom_headers}'")
    # no patient data reaches an output unasked: a file that would be linked refuses symlink without keep
    no_link = f"--mode symlink{' --dicom-headers strip' if dicom_headers else ''}" \
        if mode == "symlink" and dicom_headers != "keep" else None
    dicom_headers = dicom_headers or "strip"
    strip = dicom_headers == "strip"  # copies only: a symlink of a file needs keep (_plan_records)
    check_run_dir(out_dir, "export")
    run = read_run(out_dir, warn=False)  # a missing embeddings.parquet refuses the export: one line
    folder, to, root = run.folder, Path(to), run.input_root
    check = dict(option="--to", data=root, data_name="the run's input folder", allowed=frozenset())
    prepare_out(to, **check)  # not inside the input folder (a later run would cluster the copies) nor a run
    rows = unit_slices(folder, run.rows)
    hashes = run.hashes if rows is run.rows else [s.get("sha256", "") for s in rows]
    if hashes is None:
        raise ModelFileError(f"export: '{folder.embeddings}' is missing, damaged or lists other rows, so the images "
                             "cannot be checked against the run; nothing was exported")
    items = [(r["path"], int(r["cluster"])) for r in rows]
    records = _plan_records(folder, rows, root, hashes, no_link)
    aside = excluded_flags(run.manifest)  # --exclude FLAGS
    plan: dict[str, list[str]] = {}
    for r in rows:
        plan.setdefault(export_folder(r, aside), []).append(r["path"])
    counts: dict[str, int] = {}
    strata = {r["path"]: r["stratum"] for r in rows if "stratum" in r}  # a --within run: each image's stratum
    salt = secrets.token_hex(16) if strip else None  # new UIDs: one series stays one, no guess is checkable
    done: dict[str, list[str]] = {}  # what each copy's bytes were (told from them, not the run folder's rows)
    publish(to, lambda staging: counts.update(_write_plan(staging, plan, records, mode, salt, done,
                                                          dict(items), strata)),
            check=lambda: check_out(to, **check), option="--to")
    log.debug("export: %d images into %d folders under %s (%s)", len(items), len(counts), to, mode)
    kept = sorted(done.get("kept", []))
    if kept:
        log.warning("export: the metadata of %s is kept, which may hold patient data (a file Pillow cannot write "
                    "again, or a copy not decoding to the same pixels), first '%s'",
                    count_text(len(kept), "copied file"), kept[0])
    texted = _burned_in_files(records[p] for p, _ in items)
    if texted:  # the report and view draw a placeholder instead; export writes what the run read
        log.warning("export: %s may show patient text burned into the pixels (BurnedInAnnotation YES, a screen "
                    "save or a Secondary Capture), which export does not remove: look at them before sharing, first "
                    "'%s'", count_text(len(texted), "DICOM file"), shown_name(texted[0], clip=True))
    return ExportResult(to=to, counts=counts, mode=mode, n_png=sum(bool(records[p].frame) for p, _ in items),
                        n_deidentified=len(done.get("dicom", [])), n_stripped=len(done.get("raster", [])),
                        kept=kept, dicom_headers=dicom_headers)


def _burned_in_files(recs) -> list[str]:
    """The DICOM files (their paths, sorted) among ``recs`` that may show patient text in their pixels
    (:func:`~brainclust.checks.rules.burned_in_text`): each file's header read once, and never of a FIFO."""
    files: dict[str, bool] = {}
    for rec in recs:
        name = rec.path.split("#", 1)[0] if rec.frame else rec.path  # a frame's file
        if rec.type == "dicom" and name not in files:
            files[name] = os.path.isfile(rec.abspath) and burned_in_text(dicom_header(rec.abspath))
    return sorted(name for name, shows in files.items() if shows)


def export_folder(row: dict, aside: list[str]) -> str:
    """The folder a row is exported to: ``cluster_<id>``; ``set_aside`` for an image left out of the clustering
    by ``--exclude`` (cluster -1 with one of the ``aside`` flags); ``noise`` for DBSCAN's or ``--outliers``'."""
    set_aside = is_set_aside(row["cluster"], row.get(FLAGS_COLUMN), aside)
    return SET_ASIDE if set_aside else folder_name(int(row["cluster"]))


def _write_plan(root: Path, plan: dict[str, list[str]], records: dict, mode: str, salt: str | None,
                done: dict[str, list[str]], clusters: dict[str, int], strata: dict[str, str]) -> dict[str, int]:
    """Write every cluster folder and ``export.csv`` under ``root``; files per cluster folder."""
    mapping = []
    counts = {}
    for name in sorted(plan, key=lambda f: (f in (folder_name(-1), SET_ASIDE), f == SET_ASIDE, len(f), f)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        names = destination_names([_export_path(records[p]) for p in plan[name]])
        for p in plan[name]:
            rec = records[p]
            dest = folder / names[_export_path(rec)]
            if rec.frame:
                _write_frame_png(rec, dest)
            else:
                done.setdefault(_place(rec, dest, mode, salt), []).append(p)
            mapping.append({"path": p, "cluster": clusters[p], "file": f"{name}/{escape_name(dest.name)}",
                            "stratum": strata.get(p, "")})
        counts[name] = len(plan[name])
    atomic_write_csv(root / "export.csv", ["path", "cluster", "file"] + (["stratum"] if strata else []),
                     sorted(mapping, key=lambda m: m["path"]))
    return counts


def _export_path(rec) -> str:
    """Relative path an image is exported under: the file itself, or ``FILE#FRAME`` as a PNG."""
    if not rec.frame:
        return unescape_name(rec.path)
    safe = unescape_name(rec.path).replace("#", "_").replace("=", "-")
    return safe + ".png"


def _write_frame_png(rec, dest: Path) -> None:
    """Write one frame/slice of a multi-image file as an 8-bit PNG (min-max scaled)."""
    import io

    import numpy as np
    from PIL import Image

    from brainclust.io.scan import load_record
    from brainclust.io.atomic import atomic_write_bytes

    a = np.asarray(load_record(rec), dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    u8 = ((a - lo) / (hi - lo) * 255).round().astype(np.uint8) if hi > lo else np.zeros(a.shape, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    atomic_write_bytes(dest, buf.getvalue())


def _place(rec, dest: Path, mode: str, strip: str | None = None) -> str:
    """Copy or link the file of ``rec`` to ``dest`` (inside the export's temporary folder, so no temporary name);
    ``strip`` (the export's salt): the copy is de-identified (:func:`~brainclust.io.deidentify.deidentified_copy`).
    Returns what was done: ``"dicom"``, ``"raster"``, ``"kept"`` (metadata that could not be removed) or ``""``.

    ``rec.abspath`` is the real path checked by :func:`_plan_records`: it is linked as it is (not resolved
    again), and copied without following a link that took its place since, hashing the bytes as they are
    written: bytes other than the run's refuse the export (nothing is published)."""
    if mode != "copy":
        os.symlink(rec.abspath, dest)
        return ""
    kind = ""
    digest = hashlib.sha256()
    held: list[bytes] = []
    try:  # no link followed, no FIFO waited on (O_NONBLOCK), the mode and times of the very file read
        fd = os.open(rec.abspath, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"export: '{shown_name(rec.path, clip=True)}' is no longer a regular file; "
                                 "nothing was exported")
            with open(dest, "xb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    if strip:
                        held.append(chunk)
                    else:
                        out.write(chunk)
                if held and digest.hexdigest() == rec.sha256:  # only the run's own bytes are read and written
                    data, kind = deidentified_copy(b"".join(held), rec.path, strip)
                    out.write(data)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError as exc:
        raise InputError(f"export: '{shown_name(rec.path, clip=True)}' cannot be copied ({exc.strerror or exc}); "
                         "nothing was exported") from None
    if digest.hexdigest() != rec.sha256:
        raise InputError(f"export: '{shown_name(rec.path, clip=True)}' changed while it was exported (its bytes are "
                         "not the run's); nothing was exported")
    return kind
