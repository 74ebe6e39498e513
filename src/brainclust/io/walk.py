"""The files a scan reads: the folder walked (hidden names, links to folders, folders that cannot be listed,
brainclust's own output folders), and the files whose images would repeat another's path (:func:`drop_colliding`)."""

from __future__ import annotations

import os
from pathlib import Path

from brainclust.io.outputs import CHECK_PAGE, RunFolder
from brainclust.terminal import count_text

#: Reason of a skipped symbolic link to a folder.
LINKED_FOLDER = "symbolic link to a folder; not followed (it could loop)"
#: How the reasons of a folder that cannot be listed and of a brainclust output folder begin.
UNLISTED_FOLDER, OUTPUT_FOLDER = "cannot list folder:", "a brainclust output folder"
#: How the reasons of the skipped folders begin (the scan's other skipped entries are files).
FOLDER_REASONS = (LINKED_FOLDER, UNLISTED_FOLDER, OUTPUT_FOLDER)


def skipped_text(skipped) -> str:
    """``1 file``, ``2 folders``, ``3 files and 1 folder`` (``0 files`` when none): what the scan's skipped entries
    (``[{"path", "reason"}]``, a manifest's ``skipped``) are; a folder is told by its reason (:data:`FOLDER_REASONS`:
    a folder that could not be listed, a brainclust output folder, a link to a folder)."""
    folders = sum(1 for s in skipped if isinstance(s, dict) and str(s.get("reason", "")).startswith(FOLDER_REASONS))
    files = len(skipped) - folders
    return " and ".join(([count_text(files, "file")] if files or not folders else [])
                        + ([count_text(folders, "folder")] if folders else []))


def output_folder_files(folder: Path) -> str | None:
    """``manifest.json, assignments.csv`` (a run or predict folder) or ``manifest.json, checks.html`` (a check's)
    when ``folder`` holds what brainclust writes, else ``None``: its figures and pages are not images of the data
    (a walk, 2026-12-07: ``brainclust run demo_out`` clustered the demo's figures with its slices)."""
    run = RunFolder(folder)
    if not run.manifest.is_file():
        return None
    page = next((f for f in (run.assignments, folder / CHECK_PAGE) if f.is_file()), None)
    return None if page is None else f"manifest.json, {page.name}"


def walk_folder(root: Path) -> tuple[list[Path], list[Path], int, list[dict[str, str]]]:
    """Non-hidden files under ``root``, symbolic links to folders (not followed: they may loop), the number
    of hidden entries (``.git``, ``._x.jpg``: names starting with ``.``, not entered) and the folders that could
    not be listed or are brainclust outputs (:func:`output_folder_files`; ``{"path", "reason"}``, as the scan's
    skipped files). Lists sorted by relative POSIX path."""
    found: list[Path] = []
    linked_dirs: list[Path] = []
    unlisted: list[dict[str, str]] = []
    hidden = 0

    def cannot_list(exc: OSError) -> None:
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        unlisted.append({"path": rel, "reason": f"{UNLISTED_FOLDER} {exc.strerror or exc}; its files are not read"})

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=cannot_list):
        hidden += sum(n.startswith(".") for n in dirnames) + sum(n.startswith(".") for n in filenames)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        linked_dirs.extend(Path(dirpath) / d for d in dirnames if (Path(dirpath) / d).is_symlink())
        outputs = {d: files for d in dirnames if not (Path(dirpath) / d).is_symlink()
                   and (files := output_folder_files(Path(dirpath) / d))}
        unlisted.extend({"path": (Path(dirpath) / d).relative_to(root).as_posix(),
                         "reason": f"{OUTPUT_FOLDER} ({files}): its figures are not data; not read"}
                        for d, files in outputs.items())
        dirnames[:] = [d for d in dirnames if d not in outputs]
        found.extend(Path(dirpath) / fn for fn in filenames if not fn.startswith("."))
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    linked_dirs.sort(key=lambda p: p.relative_to(root).as_posix())
    return found, linked_dirs, hidden, unlisted


def drop_colliding(result) -> None:
    """Skip the files whose image paths repeat an earlier one: a file named like a frame or slice of another
    (``m.dcm#frame=2`` beside a two-frame ``m.dcm``) would give two rows no output could tell apart.
    ``result``: a :class:`~brainclust.io.scan.ScanResult` (its ``records`` and ``skipped`` are changed)."""
    if len({r.path for r in result.records}) == len(result.records):  # the usual case, O(n): no path twice
        return

    def file_of(r) -> str:  # ~10 us a call: only when some path repeats
        return Path(r.abspath).relative_to(result.root).as_posix()

    seen: dict[str, str] = {}
    clash: dict[str, str] = {}
    for r in result.records:
        if seen.setdefault(r.path, file_of(r)) != file_of(r):
            clash.setdefault(file_of(r), r.path)
    if clash:
        result.records = [r for r in result.records if file_of(r) not in clash]
        result.skipped.extend({"path": file, "reason": f"its image '{shown}' has the same name as an image of "
                               f"'{seen[shown]}' (a '#' in a file name names a frame or slice): rename it"}
                              for file, shown in clash.items())
