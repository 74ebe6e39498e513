"""Typed exceptions of brainclust.

Library code raises these; only the CLI turns them into an exit code (2)
and one line on stderr. Every message names the file or parameter, the
rule that was broken and the offending value.
"""

from __future__ import annotations

import functools
import os

from brainclust.terminal import count_text


class BrainclustError(Exception):
    """Base class of every error brainclust raises on purpose."""


class InputError(BrainclustError):
    """The input data cannot be used (missing folder, no readable image...)."""

    @classmethod
    def no_images(cls, data, skipped: str, excluded=None) -> "InputError":
        """The error of a scan that found no readable image (``run``, ``predict``, ``check``); ``skipped``: what
        the scan skipped (``1 file``, ``0 files``, ``2 files and 1 folder``: ``ScanResult.skipped_text``);
        ``excluded``: the scan's files left out on purpose, by reason (``--include``/``--exclude-files``...)."""
        left = "".join(f"; {count_text(n, 'file')} left out: {why}" for why, n in sorted((excluded or {}).items()))
        return cls(f"input folder '{data}' contains no readable image ({skipped} skipped{left})")


class ParameterError(BrainclustError, ValueError):
    """A parameter has a value outside its allowed range or set."""


class WeightsUnavailableError(BrainclustError):
    """A backbone's pre-trained weights cannot be found or loaded."""


class ImageReadError(BrainclustError):
    """One image file cannot be decoded. The pipeline skips such files.

    ``reason`` says why; ``path`` names the file (set by :func:`names_file` at
    every public reader, so the message always names it).
    """

    def __init__(self, reason: str, path=None):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else os.fsdecode(path)

    def __str__(self) -> str:
        return f"'{self.path}': {self.reason}" if self.path else self.reason


def names_file(path_of=lambda first: first):
    """Decorator: an :class:`ImageReadError` leaving the function names the file it was reading.

    ``path_of`` maps the function's first argument to the file's path (default: it is the path).
    """
    def wrap(func):
        @functools.wraps(func)
        def reader(first, *args, **kwargs):
            try:
                return func(first, *args, **kwargs)
            except ImageReadError as exc:
                if exc.path is None:
                    exc.path = os.fsdecode(path_of(first))
                raise
        return reader
    return wrap


class ModelFileError(BrainclustError):
    """A saved model directory is missing, incomplete or inconsistent."""


class NotFittedError(BrainclustError):
    """An estimator's ``transform`` or ``predict`` was called before ``fit`` (or ``load``)."""


class NumericalError(BrainclustError):
    """A computation gave values that cannot be used (NaN or infinite features from a network)."""


class OutputError(BrainclustError, OSError):
    """An output cannot be written: the disk is full, the file system is read-only, a quota or a permission
    refuses it. The message names the path; the previous outputs are left as they were.

    Also an :class:`OSError` (``errno`` is the system's), so code that degrades on OS errors (the feature
    store turning itself off on a read-only folder) keeps doing so.
    """

    def __init__(self, message: str, errno: int | None = None, path=None):
        OSError.__init__(self, errno, message)
        self.message = message
        self.path = None if path is None else os.fsdecode(path)

    def __str__(self) -> str:
        return self.message


class UnsafePathError(InputError):
    """A path read from untrusted input (a run folder's table, a manifest) leaves the folder it must stay in."""

    #: What to do about symbolic links out of the input folder (said by the refusal and by the scan's warning).
    LINKS_OUT_HINT = "run on the folder the links point into, or on copies of the files"


class EngineError(BrainclustError):
    """An execution engine cannot be used: a Ray cluster that cannot be reached or fails during a run."""
