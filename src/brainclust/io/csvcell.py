"""The one rule for a text cell of any CSV brainclust writes: no cell a spreadsheet runs as a formula."""

from __future__ import annotations

import re

#: Characters that make a spreadsheet read a cell as a formula (and their full-width forms, which some
#: spreadsheets take for them).
FORMULA_START = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
#: What a spreadsheet may skip before that character: spaces, tab, CR, LF, a byte-order mark, invisible spaces.
_LEADING = re.compile("[\\s\ufeff\u200b\u200c\u200d\u2060]*")
#: A number (ASCII digits only): ``-3.5``, ``+1e3``; the same pattern as the explorer's ``csvCell``.
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def formula_safe(text):
    """``text`` as a CSV cell no spreadsheet evaluates. When the first character after leading blanks
    (:data:`_LEADING`) is one of :data:`FORMULA_START` and the text is not a number (``-3.5``) nor that character
    alone (``-``), the cell's first character is written ``\\xNN`` (``\\uNNNN`` above U+007F), which
    :func:`brainclust.io.outputs.unescape_name` reverses. Anything but text is returned as it is."""
    if not isinstance(text, str):
        return text
    lead = _LEADING.match(text).end()
    if len(text) - lead < 2 or text[lead] not in FORMULA_START or NUMBER.fullmatch(text):
        return text
    c = text[0]
    return (f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}") + text[1:]
