"""Sentences of the report read from a run's ``manifest.json``: what was clustered out of the files found (the
summary's first row).

The file is untrusted input: a field of the wrong type is left out of the sentence (an older run folder
lacks some: no clause), never an error. The text reaches the page through autoescaping.
"""

from __future__ import annotations

from brainclust.report.render import plural
from brainclust.report.run import int_or_zero

__all__ = ["FILTER_REASON", "clustered_text", "files_text"]

#: The scan's reason (``manifest["scan"]["left_out"]``) for the files ``--include``/``--exclude-files`` left out.
FILTER_REASON = "--include/--exclude-files"


def _left_out(scan: dict) -> list[tuple[str, int]]:
    """``(reason, files)`` of the scan's left-out counts (older manifests: none)."""
    left = scan.get("left_out")
    if not isinstance(left, dict):
        return []
    return [(str(reason), int_or_zero(n)) for reason, n in left.items() if int_or_zero(n) > 0]


def files_text(manifest: dict, n_skipped: int) -> str:
    """``22 files (2 of them metadata, 0 skipped)``, or with files left out by the scan (``--include``,
    ``--exclude-files``, a BIDS rule, hidden names) ``4 of 22 files (18 left out by --include/--exclude-files,
    0 skipped)``: the files found, those read and why the others were not."""
    scan = manifest.get("scan") if isinstance(manifest.get("scan"), dict) else {}
    n_files, n_meta = int_or_zero(manifest.get("n_files_scanned")), int_or_zero(scan.get("metadata_files"))
    left = _left_out(scan)
    n_left = sum(n for _, n in left)
    skipped = f"{n_skipped} skipped"
    if not left or n_left > n_files:  # nothing left out (or counts that do not add up: the plain count)
        return f"{n_files} files ({f'{n_meta} of them metadata, ' if n_meta else ''}{skipped})"
    used = n_files - n_left
    why = [f"{n} left out " + (f"by {reason}" if reason == FILTER_REASON else f"({reason.split(' (')[0]})")
           for reason, n in sorted(left, key=lambda item: (item[0] != FILTER_REASON, item[0]))]
    meta = [f"{n_meta} of the {used} metadata"] if n_meta else []
    return f"{used} of {n_files} files ({', '.join(why + meta + [skipped])})"


def clustered_text(unit: str, n_rows: int, n_set_aside: int, n_slice_images: int, files: str) -> str:
    """The summary's "Images clustered" row: the rows, what a unit row is made of, the files they come from
    (:func:`files_text`), and the rows ``--exclude`` set aside, said once (``200 images from 200 files (0
    skipped): 188 clustered, 12 set aside by --exclude (not clustered)``)."""
    rows = f"{n_rows} {plural(unit)}"
    if unit != "slice":
        rows += f" (one row each: the mean of their slices' features) made of {n_slice_images} images"
    aside = (f": {n_rows - n_set_aside} clustered, {n_set_aside} set aside by --exclude (not clustered)"
             if n_set_aside else "")
    return f"{rows} from {files}{aside}"

