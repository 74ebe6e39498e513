"""PNG and JPEG copies without their metadata (``brainclust export``, copy mode).

A PNG or JPEG file can carry text that is not pixels: PNG ``tEXt``/``zTXt``/``iTXt`` chunks, EXIF and
XMP, JPEG comments and application segments; viewers and converters write patient names, dates and
accession numbers there. A copy keeps only what the pixels need, by a whitelist, without decoding
them again (the compressed data is copied byte for byte):

- PNG (:func:`stripped_png`): the chunks of :data:`PNG_KEEP` (image header, palette, image data,
  transparency, gamma and colour space, physical size, the frames of an animated PNG), up to ``IEND``;
- JPEG (:func:`stripped_jpeg`): every marker segment but the application segments ``APP0``-``APP15``
  and comments, except a JFIF ``APP0`` and an Adobe ``APP14`` (they tell how the colours are coded);
  an EXIF orientation, which brainclust applies when it reads the file, is written back as a new EXIF
  block holding that one tag. Bytes after the end of the image go.

A copy is kept only when it decodes to the same pixels as the file (Pillow, EXIF orientation applied,
as the scan reads it); otherwise, or when the file's structure cannot be followed, :func:`stripped`
returns ``None`` and the caller copies the file as it is and says so. TIFF and BMP files are not
handled here (TIFF tags can hold text too: they are copied as they are, and the export says so).
"""

from __future__ import annotations

import io

#: PNG chunks a copy keeps.
PNG_KEEP = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
                      b"pHYs", b"acTL", b"fcTL", b"fdAT"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG markers: start and end of image, start of scan, comment, EXIF orientation tag.
SOI, EOI, SOS, COM, ORIENTATION = 0xD8, 0xD9, 0xDA, 0xFE, 0x0112


def stripped_png(data: bytes) -> bytes:
    """The PNG file ``data`` with the chunks of :data:`PNG_KEEP` only; ``ValueError`` if its chunks cannot be
    followed to ``IEND``."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        end = pos + 12 + size
        if end > len(data):
            raise ValueError("a chunk runs past the end of the file")
        if kind in PNG_KEEP:
            out.append(data[pos:end])
        if kind == b"IEND":
            return b"".join(out)
        pos = end
    raise ValueError("no IEND chunk")


def _exif_segment(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" + a TIFF block holding the one tag
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _keeps(marker: int, payload: bytes) -> bool:
    if marker == 0xE0:
        return payload.startswith(b"JFIF\0")
    if marker == 0xEE:
        return payload.startswith(b"Adobe")
    return not (0xE0 <= marker <= 0xEF or marker == COM)


def _scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data that starts at ``pos`` ends: the next marker that is not a stuffed zero,
    a restart marker or a fill byte."""
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= len(data):
            raise ValueError("the image data has no end")
        nxt = data[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            pos = i + 1 if nxt == 0xFF else i + 2
            continue
        return i


def stripped_jpeg(data: bytes, orientation: int | None = None) -> bytes:
    """The JPEG file ``data`` without application segments (but JFIF and Adobe) and comments, with a new EXIF
    block holding ``orientation`` when it is given and not 1; ``ValueError`` if its segments cannot be
    followed to the end of the image."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    out, pos, exif = [data[:2]], 2, orientation not in (None, 1)
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise ValueError("a marker was expected")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            raise ValueError("the file ends inside a marker")
        marker, pos = data[pos], pos + 1
        if marker == EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            out.append(bytes((0xFF, marker)))
            continue
        size = int.from_bytes(data[pos:pos + 2], "big")
        if size < 2 or pos + size > len(data):
            raise ValueError("a segment runs past the end of the file")
        if exif and marker != 0xE0:  # the orientation goes right after SOI and a JFIF APP0
            out.append(_exif_segment(int(orientation)))
            exif = False
        if _keeps(marker, data[pos + 2:pos + size]):
            out.append(bytes((0xFF, marker)) + data[pos:pos + size])
        pos += size
        if marker == SOS:
            end = _scan_end(data, pos)
            out.append(data[pos:end])
            pos = end


def _pixels(data: bytes):
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im)
        return im.mode, np.asarray(im)


def stripped(data: bytes) -> tuple[str, bytes | None]:
    """``(format, copy)``: ``format`` ``"png"``, ``"jpeg"`` or ``""`` (another format: nothing done); ``copy``
    the file without its metadata, or ``None`` when it cannot be made or does not decode to the same pixels."""
    import numpy as np
    from PIL import Image

    kind = "png" if data.startswith(PNG_SIGNATURE) else "jpeg" if data[:3] == b"\xff\xd8\xff" else ""
    if not kind:
        return "", None
    try:
        if kind == "png":
            copy = stripped_png(data)
        else:
            with Image.open(io.BytesIO(data)) as im:
                orientation = im.getexif().get(ORIENTATION)
            copy = stripped_jpeg(data, orientation if isinstance(orientation, int) else None)
        (mode_a, a), (mode_b, b) = _pixels(data), _pixels(copy)
    except Exception:  # noqa: BLE001 - a structure not followed, or bytes Pillow refuses: the caller copies as is
        return kind, None
    return kind, (copy if mode_a == mode_b and np.array_equal(a, b) else None)
