"""``brainclust check``'s page, ``checks.html``: a gallery per flag and the duplicate groups side by side.

Built in the staged check folder from the files just written there (``quality.csv``, ``leakage.csv``,
``manifest.json``), as a run's report section is (:func:`brainclust.report.checks.checks_context`). The
thumbnails are those of the report (:class:`~brainclust.report.thumbnails.Thumbnails`): each shown file is
read again from the data folder and shown only when its bytes still hash to what the scan recorded; a
DICOM image that may show patient text in its pixels is withheld. The page is self-contained (images as
``data:`` URIs, no script, a Content-Security-Policy that loads nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_text
from brainclust.io.outputs import CHECK_PAGE, LEAKAGE_FILE, QUALITY_FILE, escape_name
from brainclust.report.checks import QUALITY_KEPT, checks_context, read_table, tile_maker
from brainclust.report.render import render
from brainclust.report.thumbnails import Thumbnails

#: Longer side of the thumbnails, in pixels.
THUMB_PX = 96


class _Rows:
    """The rows :class:`Thumbnails` reads (``path``, ``type``), made on demand: no copy per image of a large check."""

    def __init__(self, quality: list[dict], records: Sequence):
        self.quality, self.records = quality, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return {"path": self.quality[i]["path"], "type": self.records[i].type}


def write_check_page(folder: str | os.PathLike, data: str | os.PathLike, records: Sequence,
                     px: int = THUMB_PX) -> Path:
    """Write ``checks.html`` in the check folder ``folder`` (its ``quality.csv`` holds one row per record of
    ``records``, the scan of ``data``, in order); returns its path. The page names the data folder by its own name,
    as the report does (the full path, which may name a patient above it, stays in ``manifest.json``)."""
    folder = Path(folder)
    quality = read_table(folder / QUALITY_FILE, QUALITY_KEPT)
    if quality is None:
        raise ModelFileError(f"'{folder / QUALITY_FILE}' is missing: not a check folder")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{folder / 'manifest.json'}' cannot be read ({exc})") from None
    if len(quality) != len(records) or any(q["path"] != escape_name(r.path) for q, r in zip(quality, records)):
        raise ModelFileError(f"'{folder / QUALITY_FILE}' does not list the images checked")
    thumbs = Thumbnails(Path(data).resolve(), _Rows(quality, records), [r.sha256 for r in records], memo=256)
    tile = tile_maker({q["path"]: i for i, q in enumerate(quality)}, thumbs, px, rows=False)
    checks = checks_context(quality, read_table(folder / LEAKAGE_FILE) or [], manifest.get("checks") or {}, tile,
                            clustered=False)
    html = render("check.html.j2", {"checks": checks, "n_files": manifest.get("n_files_scanned"),
                                    "input": escape_name(Path(data).resolve().name),  # no full path: mailable
                                    "skipped": manifest.get("skipped") or [],
                                    "n_withheld": thumbs.n_withheld, "n_refused": thumbs.n_refused,
                                    "n_missing": thumbs.n_missing - thumbs.n_refused,
                                    "version": manifest.get("brainclust", "")})
    path = folder / CHECK_PAGE
    atomic_write_text(path, html)
    return path
