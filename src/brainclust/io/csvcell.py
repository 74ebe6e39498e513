"""The one rule for a text cell of any CSV brainclust writes: no cell a spreadsheet runs as a formula."""

from __future__ import annotations

#: First characters that make a spreadsheet read a cell as a formula (tab and CR, also on OWASP's list of
#: CSV injection, are control characters, which the outputs escape anyway).
FORMULA_START = frozenset("=+-@")


def formula_safe(text):
    """``text`` as a CSV cell no spreadsheet evaluates: a first character of :data:`FORMULA_START` (in text
    that is not a number, ``-3.5``, nor the character alone, ``-``) is written ``\\xNN``, which
    :func:`brainclust.io.outputs.unescape_name` reverses. Anything but text is returned as it is."""
    if not (isinstance(text, str) and len(text) > 1 and text[0] in FORMULA_START):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return f"\\x{ord(text[0]):02x}{text[1:]}"
