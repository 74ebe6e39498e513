"""Export a finished run as one folder per cluster.

``export_clusters(out_dir, to)`` reads ``assignments.csv`` and the data root
from ``manifest.json`` and puts every image in exactly one folder:
``cluster_0/``, ``cluster_1/``, ... and ``noise/`` for DBSCAN noise (``-1``).
Images are copied (default) or symbolically linked.

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

The export is all-or-nothing: it is published like a run folder
(:func:`brainclust.io.outputs.publish`: built in a temporary sibling folder of ``to`` under a
lock, then swapped in; removed on any failure), and ``to`` follows the same rule as a run's
``--out`` (:func:`brainclust.io.outputs.check_out`), except that it must be new or empty. File
names are the images' own (``assignments.csv`` holds them escaped, see
:func:`brainclust.io.outputs.escape_name`; ``export.csv`` too); a name that
would exceed 255 bytes with its tag is shortened before the tag.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from brainclust.errors import InputError, ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_csv
from brainclust.io.outputs import RunFolder, check_out, escape_name, publish, read_assignments, read_json, unescape_name
from brainclust.io.slicefile import read_slices

log = logging.getLogger(__name__)

MODES = ("copy", "symlink")
#: Longest file name (bytes) most Linux file systems accept.
NAME_MAX = 255


@dataclass
class ExportResult:
    """What :func:`export_clusters` wrote: target folder, files per cluster folder, mode."""

    to: Path
    counts: dict[str, int]
    mode: str

    @property
    def n_files(self) -> int:
        return sum(self.counts.values())


def record_of_row(root: Path, row: dict):
    """The :class:`~brainclust.io.scan.ImageRecord` an ``assignments.csv`` row stands for.

    A plain image's ``path`` is its file. A 2-D image inside a multi-image file
    (NIfTI slice, DICOM frame) is ``FILE#FRAME``: ``FILE#axial=45`` (NIfTI,
    the frame id itself) or ``FILE#frame=N`` (DICOM, 1-based).
    """
    from brainclust.io.scan import ImageRecord

    path = row["path"]  # escaped text (see brainclust.io.outputs.escape_name)
    rel, sep, suffix = path.partition("#")
    frame = ""
    if sep and not (root / unescape_name(path)).is_file():
        frame = suffix
        if row.get("type") == "dicom" and suffix.startswith("frame="):
            from brainclust.io.formats import dicom

            frame = dicom.frame_id(int(suffix.split("=", 1)[1]) - 1)
    else:
        rel = path

    def num(key: str) -> int:
        try:
            return int(row.get(key) or 0)
        except ValueError:
            return 0

    return ImageRecord(path=path, abspath=str(root / unescape_name(rel)), name=unescape_name(row.get("name", "")),
                       type=row.get("type", ""), size=num("size"), width=num("width"), height=num("height"),
                       sha256="", label=unescape_name(row.get("label", "") or ""), frame=frame)


def folder_name(cluster: int) -> str:
    """``cluster_<id>``, or ``noise`` for ``-1``."""
    return "noise" if cluster == -1 else f"cluster_{cluster}"


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


def _read_run(folder: RunFolder) -> tuple[list[dict], Path]:
    """The rows of ``assignments.csv`` (a unit run's: the slices of each unit, from ``slices.csv``) and the
    data root named in ``manifest.json``."""
    manifest = read_json(folder.manifest, folder.root)
    rows = read_assignments(folder.assignments, folder.root)
    if rows and "unit" in rows[0] and folder.slices.is_file():  # a unit run: every slice, in its unit's cluster
        slices = read_slices(folder.slices) or {}
        rows = [{**s, "cluster": r.get("cluster", "")} for r in rows for s in slices.get(r.get("unit") or "", [])]
    if not manifest.get("input"):
        raise ModelFileError(f"'{folder.manifest}' does not name the input folder")
    return rows, Path(unescape_name(manifest["input"]))


def export_clusters(out_dir, to, mode: str = "copy") -> ExportResult:
    """Write one folder per cluster under ``to`` holding every image of ``assignments.csv`` once.

    Parameters
    ----------
    out_dir : path-like
        The ``--out`` folder of a finished ``brainclust run`` (or ``predict``).
    to : path-like
        Target folder; must not exist yet or be empty.
    mode : {"copy", "symlink"}, default "copy"
        Copy the files, or create symbolic links to their absolute paths.

    Returns
    -------
    ExportResult

    Raises
    ------
    ParameterError
        Unknown ``mode``, a non-empty target folder, or one inside the run's input folder.
    ModelFileError
        The run's outputs are missing or damaged.
    InputError
        An image listed in ``assignments.csv`` no longer exists; nothing is written.
    """
    if mode not in MODES:
        raise ParameterError(f"--mode: must be one of {', '.join(MODES)}, got '{mode}'")
    folder, to = RunFolder(out_dir), Path(to)
    rows, root = _read_run(folder)

    def check() -> None:  # a later run would cluster copies inside the input folder
        check_out(to, option="--to", data=root, data_name="the run's input folder", allowed=frozenset())

    check()
    try:
        items = [(r["path"], int(r["cluster"])) for r in rows]
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"'{folder.assignments}' has a bad 'path' or 'cluster' column ({exc})") from None
    records = {r["path"]: record_of_row(root, r) for r in rows}
    missing = [p for p, _ in items if not Path(records[p].abspath).is_file()]
    if missing:
        raise InputError(f"export: {len(missing)} image(s) of {folder.assignments.name} are missing under '{root}', "
                         f"e.g. '{missing[0]}'; nothing was exported")
    plan: dict[int, list[str]] = {}
    for p, c in items:
        plan.setdefault(c, []).append(p)
    counts: dict[str, int] = {}
    publish(to, lambda staging: counts.update(_write_plan(staging, plan, records, mode)), check=check,
            option="--to")
    log.info("export: %d images into %d folders under %s (%s)", len(items), len(counts), to, mode)
    return ExportResult(to=to, counts=counts, mode=mode)


def _write_plan(root: Path, plan: dict[int, list[str]], records: dict, mode: str) -> dict[str, int]:
    """Write every cluster folder and ``export.csv`` under ``root``; files per cluster folder."""
    mapping = []
    counts = {}
    for c in sorted(plan, key=lambda v: (v == -1, v)):
        folder = root / folder_name(c)
        folder.mkdir(parents=True, exist_ok=True)
        names = destination_names([_export_path(records[p]) for p in plan[c]])
        for p in plan[c]:
            rec = records[p]
            dest = folder / names[_export_path(rec)]
            if rec.frame:
                _write_frame_png(rec, dest)
            else:
                _place(Path(rec.abspath), dest, mode)
            mapping.append({"path": p, "cluster": c, "file": f"{folder_name(c)}/{escape_name(dest.name)}"})
        counts[folder_name(c)] = len(plan[c])
    atomic_write_csv(root / "export.csv", ["path", "cluster", "file"], sorted(mapping, key=lambda m: m["path"]))
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


def _place(src: Path, dest: Path, mode: str) -> None:
    """Copy or link ``src`` to ``dest`` (inside the export's temporary folder, so no temporary name)."""
    if mode == "copy":
        shutil.copy2(src, dest)
    else:
        os.symlink(src.resolve(), dest)
