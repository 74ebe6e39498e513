"""``brainclust report RUN``: rebuild a finished run's report, all or nothing.

The run folder is republished whole (:func:`brainclust.io.publish.publish`): a staging folder
beside it receives the run's files (hard links: no data is copied, and no file of the old
folder is ever written, since every writer replaces a file rather than writing into it), the
report is built there from those files (:func:`brainclust.report.build.build_report`), and the
staging folder then replaces the run folder in one step. A failure, a full disk, SIGTERM or a
kill -9 at any point leaves the run folder exactly as it was (its previous ``report.html`` and
``figures/`` included). The folder is only replaced when every entry in it is one a run writes
(:func:`brainclust.io.publish.foreign_entry`); a read-only folder is one line, exit 2.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from brainclust.errors import ModelFileError, OutputError
from brainclust.io.atomic import DISK_ERRORS
from brainclust.io.outputs import RunFolder, escape_name
from brainclust.io.publish import foreign_entry, foreign_refusal, publish, recover_out, stage_copy
from brainclust.io.runfolder import check_run_dir
from brainclust.report.build import ReportInfo, build_report

#: What a rebuild makes anew; every other entry of the run folder is carried over unchanged.
REBUILT = ("report.html", "figures")


def check_rebuildable(out: Path) -> None:
    """Before any work: ``out`` is a run folder holding only a run's entries, and it can be replaced."""
    check_run_dir(out, "report")
    if not RunFolder(out).manifest.is_file():
        raise ModelFileError(f"'{escape_name(str(out))}' is not a finished brainclust run (no manifest.json); "
                             "'brainclust report' needs the --out folder of a 'brainclust run'")
    foreign = foreign_entry(out)
    if foreign is not None:
        raise foreign_refusal("report", out, foreign, "rebuilding the report replaces the run folder whole: move "
                              "it out first")
    for path in (out, out.absolute().parent):
        if not os.access(path, os.W_OK | os.X_OK):
            code = errno.EROFS if _read_only_fs(path) else errno.EACCES
            raise OutputError(f"cannot rebuild the report of '{escape_name(str(out))}': '{escape_name(str(path))}' "
                              f"is not writable: {DISK_ERRORS[code]}; the run folder is unchanged", code, path)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def rebuild_report(out_dir, *, command: str = "brainclust report", prepare=None, **options) -> ReportInfo:
    """Rebuild ``report.html`` and ``figures/`` of the run folder ``out_dir`` and publish them atomically.

    ``options`` are :func:`~brainclust.report.build.build_report`'s (``max_map_points``...).
    ``prepare(staging)``, when given, changes the staged copy before the report is built (``report
    --metadata`` adds its columns there): published with the report, or not at all. It must replace
    files, never write into them (they are hard links to the run folder's).
    Returns its :class:`~brainclust.report.build.ReportInfo` (``path`` names the published report).

    Raises
    ------
    ModelFileError
        The folder is not a finished run, or its files are missing or damaged.
    ParameterError
        The folder holds an entry a run does not write (it would be lost in the swap).
    OutputError
        The folder or the disk cannot be written (read-only, full, no permission).
    """
    check_run_dir(out_dir, "report")  # first: a folder that cannot be entered is one line, not a PermissionError
    out = Path(out_dir)
    if out.is_symlink():  # a link to a run (e.g. 'latest'): the run it points to is rebuilt, the link stays
        out = Path(os.path.realpath(out))
    recover_out(out)
    check_rebuildable(out)
    got: dict = {}

    def fill(staging: Path) -> None:
        stage_copy(out, staging, skip=REBUILT)
        if prepare is not None:
            prepare(staging)
        got["info"] = build_report(staging, command=command, final_dir=out, **options)

    publish(out, fill, check=lambda: check_rebuildable(out), option="report")
    return got["info"]
