"""Typed exceptions of brainclust.

Library code raises these; only the CLI turns them into an exit code (2)
and one line on stderr. Every message names the file or parameter, the
rule that was broken and the offending value.
"""

from __future__ import annotations


class BrainclustError(Exception):
    """Base class of every error brainclust raises on purpose."""


class InputError(BrainclustError):
    """The input data cannot be used (missing folder, no readable image...)."""


class ParameterError(BrainclustError, ValueError):
    """A parameter has a value outside its allowed range or set."""


class WeightsUnavailableError(BrainclustError):
    """A backbone's pre-trained weights cannot be found or loaded."""


class ImageReadError(BrainclustError):
    """One image file cannot be decoded. The pipeline skips such files."""


class ModelFileError(BrainclustError):
    """A saved model directory is missing, incomplete or inconsistent."""
