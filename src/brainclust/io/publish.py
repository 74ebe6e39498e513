"""Publishing a folder of outputs (a run, a prediction, an export, a rebuilt report): all or nothing.

:func:`publish` is the one way such a folder is written. Under :func:`~brainclust.io.atomic.folder_lock`
it first restores or removes what a killed writer left beside the target
(:func:`~brainclust.io.atomic.recover_leftovers`), checks the target again, fills a staging folder
next to it (``fill``, then ``finish``: the report is built there too, from the staged files), and
only then swaps the staging folder in (:func:`~brainclust.io.atomic.swap_folder`). A failure, an
exception, SIGTERM or a full disk anywhere before the swap removes the staging folder; a kill -9
leaves it for the next writer to remove. Either way the previous folder stays exactly as it was.
A full disk, a read-only file system, a quota or a refused permission raised by any writer inside
(pyarrow, matplotlib, our own) is one :class:`~brainclust.errors.OutputError` naming the target.

:func:`check_out` is the rule of which folders may be replaced: a run folder only when every
entry, at every depth, is one a run writes (:data:`~brainclust.io.outputs.RUN_ENTRIES` and
:data:`~brainclust.io.outputs.RUN_NESTED`, regular files and real folders, no links); an export
target only when empty. A folder inside a run folder is never a target (the next run there would
delete it). :func:`prepare_out` runs the recovery and the check at the start of a command, before
any work.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from brainclust.errors import BrainclustError, OutputError, ParameterError
from brainclust.io.atomic import (folder_lock, output_errors, recover_leftovers, remove_tree, sibling_temp_dir,
                                  swap_folder, walk_entries)
from brainclust.io.outputs import CHECK_PAGE, RUN_ENTRIES, RUN_NESTED, RunFolder, escape_name, shown_name

log = logging.getLogger(__name__)

#: The temporary file an atomic write leaves when killed: ``.NAME.<pid>-<random>.tmp``.
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.\d+-[A-Za-z0-9_]+\.tmp\Z")
#: How :func:`check_out` ends the refusal of a run folder holding a file a run does not write.
RUN_ADVICE = "a run replaces its whole folder: move it out, or choose a new or empty folder (or a previous run's)"


def _matches(name: str, patterns: Collection[str]) -> bool:
    m = _TEMP_FILE.match(name)
    return any(fnmatch.fnmatchcase(name, p) or (m is not None and fnmatch.fnmatchcase(m.group("name"), p))
               for p in patterns)


def run_wrote(folder: str | os.PathLike, rel: str, entries: Collection[str] = RUN_ENTRIES,
              nested: Mapping[str, Collection[str]] = RUN_NESTED) -> bool:
    """Whether the entry ``rel`` (a relative POSIX path under ``folder``) is one a run writes.

    A run writes the regular files of ``entries`` and, in the folders ``nested`` names (real folders,
    never links), the regular files matching their patterns; the temporary file of a killed atomic
    write of one of these counts as one. Nothing deeper, no links, no other kinds of file.
    """
    parts = rel.split("/")
    nested = {k: v for k, v in nested.items() if k in entries}  # a folder counts only where it is an entry
    try:
        mode = os.lstat(Path(folder) / rel).st_mode
    except OSError:
        return False
    if len(parts) == 1:
        if parts[0] in nested:
            return stat.S_ISDIR(mode)
        return stat.S_ISREG(mode) and _matches(parts[0], [e for e in entries if e not in nested])
    return len(parts) == 2 and parts[0] in nested and stat.S_ISREG(mode) and _matches(parts[1], nested[parts[0]])


def foreign_entry(folder: str | os.PathLike, entries: Collection[str] = RUN_ENTRIES,
                  nested: Mapping[str, Collection[str]] = RUN_NESTED) -> str | None:
    """The first entry under ``folder`` (sorted, at any depth, links not followed) that a run does not
    write (:func:`run_wrote`), or ``None`` when it holds only a run's files."""
    for rel in walk_entries(folder):
        if not run_wrote(folder, rel, entries, nested):
            return rel
    return None


def foreign_refusal(head: str, out, foreign: str, advice: str) -> ParameterError:
    """The one-line refusal of a folder that holds ``foreign`` (:func:`foreign_entry`), which a whole-folder swap
    would lose; a run's file kept as a symbolic link (a git-annex or DVC checkout) is named as such."""
    shown, what = shown_name(escape_name(str(out))), shown_name(escape_name(foreign))
    if Path(out, foreign).is_symlink() and Path(foreign).parts[0] in RUN_ENTRIES:
        return ParameterError(f"{head}: '{shown}' holds '{what}' as a symbolic link (a git-annex or DVC checkout?), "
                              "which replacing the folder whole would not keep: copy it to a plain folder first "
                              "(cp -rL) and use the copy")
    if foreign == CHECK_PAGE:
        return ParameterError(f"{head}: '{shown}' holds '{what}': it is the folder of a 'brainclust check', which "
                              "this command does not replace; choose a new or empty folder")
    return ParameterError(f"{head}: '{shown}' holds '{what}', which is not a brainclust output; {advice}")


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The brainclust run folder (a folder holding ``manifest.json`` and ``assignments.csv``) that ``path``
    lies inside, if any (``path`` resolved, links followed; ``path`` itself does not count)."""
    for parent in Path(os.path.realpath(path)).parents:
        f = RunFolder(parent)
        if f.manifest.is_file() and f.assignments.is_file():
            return parent
    return None


def _inside(a: Path, b: Path) -> bool:
    """Whether folder ``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def check_out(out, *, option: str = "--out", data=None, data_name: str = "the input folder", model_dir=None,
              allowed: frozenset = RUN_ENTRIES, nested: Mapping[str, Collection[str]] = RUN_NESTED,
              foreign: Callable[[Path], str | None] | None = None, advice: str = RUN_ADVICE) -> None:
    """Fail before any work when ``out`` cannot become the published folder (nothing is created).

    Refused: an empty name; a path that is not valid UTF-8; the working folder or one holding it; a file; a
    symbolic link or a mount point (neither can be swapped); a folder that cannot be created or written;
    ``out`` equal to, inside or around ``data`` (a rerun would cluster the outputs, or the swap would delete the
    images) or ``model_dir``; ``out`` inside a brainclust run folder (the next run there replaces that folder
    whole); an existing folder holding an entry, at any depth, that is not one a run writes
    (``allowed`` at the top, ``nested`` below; an empty ``allowed``: the folder must be empty; ``foreign``, when
    given, finds that entry instead: a command whose folder holds deeper trees), which the swap would otherwise
    delete. Each refusal is one line naming ``option``; ``advice`` ends the refusal of a foreign entry.
    """
    if out is None:
        return
    if not str(out).strip():
        raise ParameterError(f"{option}: empty; name a folder")
    try:  # the outputs name their folder to pyarrow and the report as text
        os.path.abspath(out).encode("utf-8")
    except UnicodeEncodeError:
        raise ParameterError(f"{option}: '{escape_name(str(out))}' (or a folder above it) has a name that is not "
                             "valid UTF-8; choose a folder whose path is") from None
    p = Path(out)
    try:
        cwd = Path.cwd().resolve()
    except FileNotFoundError:  # the working folder was deleted: nothing to pull from under anyone
        cwd = None
    if cwd is not None and _inside(cwd, p.resolve()):  # the swap would pull the working folder from under the shell
        raise ParameterError(f"{option}: '{escape_name(str(out))}' is or holds the working folder, which cannot be "
                             "replaced; name a new folder inside it")
    if p.is_symlink():  # the folder is replaced whole: the link would become a plain folder beside its target
        raise ParameterError(f"{option}: '{escape_name(str(out))}' is a symbolic link; give the folder it points "
                             "to, or a new folder")
    if p.exists() and not p.is_dir():
        raise ParameterError(f"{option}: '{escape_name(str(out))}' exists and is not a folder")
    if os.path.ismount(p):  # cannot be swapped for the staged folder (EBUSY after all the work)
        raise ParameterError(f"{option}: '{escape_name(str(out))}' is a mount point, which cannot be replaced; "
                             "choose a new folder inside it")
    for other, what in ((data, data_name), (model_dir, "the model folder")):
        if other is None:
            continue
        o, r = Path(other).resolve(), p.resolve()
        if _inside(r, o) or _inside(o, r):
            raise ParameterError(f"{option}: '{escape_name(str(out))}' must be outside {what} "
                                 f"'{escape_name(str(other))}' (and not contain it); choose another folder")
    run = enclosing_run(p)
    if run is not None:
        raise ParameterError(f"{option}: '{escape_name(str(out))}' lies inside the brainclust run folder "
                             f"'{escape_name(str(run))}', which a run replaces whole; choose a folder outside it")
    if p.is_dir():
        _check_contents(out, option, allowed, foreign or (lambda f: foreign_entry(f, allowed, nested)), advice)
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ParameterError(f"{option}: '{escape_name(str(out))}' cannot be created: '{anc}' is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ParameterError(f"{option}: '{escape_name(str(out))}' is not writable (no write permission on "
                             f"'{anc}')")


def _check_contents(out, option: str, allowed: frozenset, foreign: Callable[[Path], str | None], advice: str) -> None:
    """The folder rule of :func:`check_out` on the existing folder ``out``."""
    if not allowed:
        first = next(iter(sorted(os.listdir(out))), None)
        if first is not None:
            raise ParameterError(f"{option}: '{escape_name(str(out))}' exists and is not an empty folder (it "
                                 f"holds '{escape_name(first)}'); choose a new folder")
        return
    entry = foreign(Path(out))
    if entry in RUN_ENTRIES - allowed:  # a run's file where a check writes: another command's folder
        raise ParameterError(f"{option}: '{escape_name(str(out))}' holds '{escape_name(entry)}', which a "
                             "brainclust run writes: a run's folder is not replaced by this command; choose "
                             "a new or empty folder")
    if entry is not None:
        raise foreign_refusal(option, out, entry, advice)


def recover_out(out) -> None:
    """Restore or remove, under the folder lock, what a killed writer of ``out`` left beside it (one warning
    line when there was something); nothing happens when ``out``'s parent folder does not exist yet."""
    parent = Path(out).absolute().parent
    if not parent.is_dir():
        return
    try:
        with folder_lock(out):
            recover_leftovers(out)
    except PermissionError:  # the folder cannot be written at all: check_out says so in its words
        return


def prepare_out(out, **check) -> None:
    """At the start of a command that will publish ``out``: :func:`recover_out`, then :func:`check_out`
    (``check``: its keyword arguments). Nothing is created."""
    if out is None:
        return
    recover_out(out)
    check_out(out, **check)


def publish(out, fill: Callable[[Path], None], *, check: Callable[[], None] | None = None,
            finish: Callable[[Path], None] | None = None, option: str = "--out") -> Path:
    """Write a whole folder: ``fill(staging)`` then ``finish(staging)`` in a sibling folder, then swap it in.

    Under :func:`~brainclust.io.atomic.folder_lock` (a second writer of ``out`` waits): leftovers of
    a killed writer are recovered and ``check()`` runs again first (the folder may have changed while
    the work ran). ``finish`` (e.g. the report) reads and completes the staged folder; it is part of
    the all-or-nothing publish. On any failure, SIGTERM included, the staging folder is removed and
    ``out`` is left as it was; a full or read-only disk is an OutputError naming ``out``.
    """
    out = Path(out)
    def waiting() -> None:  # the lock is the parent folder's: a sibling being published holds it too
        log.info("waiting for another brainclust process publishing a folder in '%s'", out.absolute().parent)

    with folder_lock(out, on_wait=waiting):
        recover_leftovers(out)
        if check is not None:
            check()
        try:
            staging = sibling_temp_dir(out)
        except OSError as exc:
            if isinstance(exc, OutputError):
                raise
            raise ParameterError(f"{option}: cannot create folder '{out}': {exc.strerror or exc}") from None
        try:
            with output_errors(out):
                fill(staging)
                if finish is not None:
                    finish(staging)
            swap_folder(staging, out)
        except BrainclustError as exc:  # its message names the file of the folder being published, not staging
            remove_tree(staging)
            if str(staging) not in str(exc):
                raise
            raise renamed(exc, str(staging), str(out)) from None
        except BaseException:
            remove_tree(staging)
            raise
    return out


def renamed(exc: BrainclustError, old: str, new: str) -> BrainclustError:
    """A copy of ``exc`` whose message (and ``path``) says ``new`` where it said ``old``."""
    if isinstance(exc, OutputError):
        return OutputError(exc.message.replace(old, new), exc.errno, exc.path and exc.path.replace(old, new))
    e = copy.copy(exc)
    e.args = tuple(a.replace(old, new) if isinstance(a, str) else a for a in e.args)
    for attr in ("message", "reason", "path"):
        if isinstance(getattr(e, attr, None), str):
            setattr(e, attr, getattr(e, attr).replace(old, new))
    return e


def stage_copy(src: str | os.PathLike, staging: str | os.PathLike, skip: Collection[str] = ()) -> None:
    """Fill the empty folder ``staging`` with the entries of the run folder ``src``, except the top-level
    names in ``skip``: folders re-created, files hard-linked (copied where a link cannot be made).

    Every writer replaces a file (a new inode), never writes into it, so the linked files of the
    previous folder are never changed. Call it on a folder :func:`foreign_entry` accepted.
    """
    src, staging = Path(src), Path(staging)
    for rel in walk_entries(src):
        if rel.split("/")[0] in skip:
            continue
        s, d = src / rel, staging / rel
        if s.is_dir() and not s.is_symlink():
            d.mkdir()
            continue
        try:
            os.link(s, d, follow_symlinks=False)
        except OSError:
            shutil.copy2(s, d, follow_symlinks=False)
