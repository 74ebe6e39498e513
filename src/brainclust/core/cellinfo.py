"""The info line of one fit (DBSCAN's eps, a refinement round, the ``--k auto`` vote): info in a run, debug in a
study.

A study (benchmark, sensitivity, ablation) fits the same steps in many cells (data set x method x seed), so each
fit's own info line would repeat once per cell; the cells' numbers are in the study's tables instead.
:func:`cell_info` logs at ``INFO``, or at ``DEBUG`` inside :func:`cells_at_debug` (which
:func:`brainclust.analysis.common.cells_said_once` enters around a study's cells).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging

_LEVEL: contextvars.ContextVar[int] = contextvars.ContextVar("brainclust_cell_info_level", default=logging.INFO)


def cell_info(log: logging.Logger, msg: str, *args) -> None:
    """``log.info(msg, *args)``, or ``log.debug(msg, *args)`` inside :func:`cells_at_debug`."""
    log.log(_LEVEL.get(), msg, *args, stacklevel=2)  # the caller's file and line


@contextlib.contextmanager
def cells_at_debug():
    """Around a study's cells: their :func:`cell_info` lines at ``DEBUG`` (shown with ``--debug``)."""
    token = _LEVEL.set(logging.DEBUG)
    try:
        yield
    finally:
        _LEVEL.reset(token)
