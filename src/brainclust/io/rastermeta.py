"""PNG, JPEG and TIFF copies without their metadata (``brainclust export``, copy mode).

A PNG or JPEG file can carry text that is not pixels: PNG ``tEXt``/``zTXt``/``iTXt`` chunks, EXIF and
XMP, JPEG comments and application segments; viewers and converters write patient names, dates and
accession numbers there. A copy keeps only what the pixels need, by a whitelist, without decoding
them again (the compressed data is copied byte for byte):

- PNG (:func:`stripped_png`): the chunks of :data:`PNG_KEEP` (image header, palette of a palette image,
  image data, transparency, gamma and colour space, physical size), each cut to the length its kind
  has for the image's colour type (:func:`_png_size`), and the image data as one ``IDAT`` chunk that
  ends where its compressed stream ends. An animated PNG becomes its still image;
- JPEG (:func:`stripped_jpeg`): every marker segment but the application segments ``APP0``-``APP15``,
  comments and ``DNL``, except a JFIF ``APP0`` (rewritten to its 14 bytes: no thumbnail, which is a
  picture of its own) and an Adobe ``APP14`` (its 12 bytes), which tell how the colours are coded;
- both: an EXIF orientation (or XMP's), which brainclust applies when it reads the file, is written
  back as a new EXIF block holding that one tag. Bytes after the end of the image go.

A copy is kept only when it decodes to the same pixels as the file (Pillow, EXIF orientation applied,
as the scan reads it; a TIFF: every page); otherwise, or when the file's structure cannot be followed,
:func:`stripped` returns ``None`` and the caller copies the file as it is and says so. Not found: bytes
hidden inside a JPEG's entropy-coded data, which a decoder skips (telling them apart needs the Huffman
decoding).

A TIFF (:func:`stripped_tiff`), whose tags (``ImageDescription``, ``Artist``, IPTC, XMP...) can hold text
anywhere in the file, is written anew by Pillow from its decoded pixels as shown, page by page: each page in
its own mode, turned by its own orientation, with no tag but its own image tags; the compression the pages
share when it is lossless (else LZW), and none when that would change a page's mode (Pillow reads a
compressed ``YCbCr`` or big-endian 16-bit page back as ``RGB`` or ``I;16``). The scan reads the first page; the
copy is kept only when every page decodes to the same mode and pixels, so a TIFF with a page Pillow cannot
decode or write (a damaged page, a mode it does not save) is left to the caller. BMP files hold no text and
are not handled here.
"""

from __future__ import annotations

import io
import warnings
import zlib

#: PNG chunks a copy keeps (``PLTE`` in palette images only; ``IDAT`` rewritten as one chunk).
PNG_KEEP = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
                      b"pHYs"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes of the PNG chunks of one size, and of those whose size depends on the colour type (0 grey, 2 RGB,
#: 3 palette, 4 grey + alpha, 6 RGB + alpha; absent: not allowed for that type).
PNG_FIXED = {b"IHDR": 13, b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9, b"IEND": 0}
PNG_BY_COLOUR = {b"sBIT": {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}, b"bKGD": {0: 2, 2: 6, 3: 1, 4: 2, 6: 6},
                 b"tRNS": {0: 2, 2: 6, 3: 256}}
#: JPEG markers: start and end of image, start of scan, define number of lines, comment; EXIF orientation tag.
SOI, EOI, SOS, DNL, COM, ORIENTATION = 0xD8, 0xD9, 0xDA, 0xDC, 0xFE, 0x0112
#: JPEG application segments kept, cut to their defined bytes: JFIF without its thumbnail, Adobe.
JPEG_APP_KEEP = {0xE0: (b"JFIF\0", 14), 0xEE: (b"Adobe", 12)}


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def _png_size(kind: bytes, colour: int, size: int, palette: int) -> int | None:
    """The bytes a kept chunk keeps (at most ``size``), or ``None`` to leave it out."""
    if kind in PNG_FIXED:
        return PNG_FIXED[kind] if size >= PNG_FIXED[kind] else None
    if kind == b"PLTE":
        return size - size % 3 if colour == 3 else None
    want = PNG_BY_COLOUR.get(kind, {}).get(colour)
    if want is None:
        return None
    if kind == b"tRNS" and colour == 3:
        return min(size, palette)  # one alpha per palette entry, at most
    return want if size >= want else None


def _exif_payload(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()  # b"Exif\0\0" + a TIFF block holding the one tag


def stripped_png(data: bytes, orientation: int | None = None) -> bytes:
    """The PNG file ``data`` with the chunks of :data:`PNG_KEEP` only, each cut to its length, the image data
    one ``IDAT`` chunk up to the end of its compressed stream, and an ``eXIf`` chunk holding ``orientation``
    when it is given and not 1; ``ValueError`` if its chunks cannot be followed to ``IEND``."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, pos, colour, palette, idat = [PNG_SIGNATURE], len(PNG_SIGNATURE), -1, 0, []
    while pos + 12 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        end = pos + 12 + size
        if end > len(data):
            raise ValueError("a chunk runs past the end of the file")
        payload = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR" and size >= 13:
            colour = payload[9]
        if kind == b"PLTE":
            palette = size // 3
        if kind == b"IDAT":
            idat.append(payload)
        elif idat and kind != b"IEND":
            pass  # chunks after the image data carry nothing the pixels need
        elif kind == b"IEND":
            stream, whole = zlib.decompressobj(), b"".join(idat)
            rest = whole
            while rest and not stream.eof:  # a megabyte of pixels at a time: only where the stream ends matters
                stream.decompress(rest, 1 << 20)
                rest = stream.unconsumed_tail
            if not stream.eof:
                raise ValueError("the image data does not end")
            if orientation not in (None, 1):
                out.append(_chunk(b"eXIf", _exif_payload(int(orientation))[6:]))
            out += [_chunk(b"IDAT", whole[:len(whole) - len(stream.unused_data)]), _chunk(b"IEND", b"")]
            return b"".join(out)
        elif kind in PNG_KEEP and (keep := _png_size(kind, colour, size, palette)) is not None:
            out.append(_chunk(kind, payload[:keep]))
        pos = end
    raise ValueError("no IEND chunk")


def _exif_segment(orientation: int) -> bytes:
    payload = _exif_payload(orientation)
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _kept_segment(marker: int, payload: bytes) -> bytes | None:
    """The payload a copy keeps of a JPEG segment, or ``None``."""
    if marker in JPEG_APP_KEEP:
        name, size = JPEG_APP_KEEP[marker]
        if not payload.startswith(name) or len(payload) < size:
            return None
        return payload[:12] + b"\0\0" if marker == 0xE0 else payload[:size]  # JFIF: thumbnail 0 x 0
    return None if 0xE0 <= marker <= 0xEF or marker in (COM, DNL) else payload


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
    """The JPEG file ``data`` without application segments (but JFIF and Adobe, cut), comments and ``DNL``, with
    a new EXIF block holding ``orientation`` when it is given and not 1; ``ValueError`` if its segments cannot
    be followed to the end of the image."""
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
        kept = _kept_segment(marker, data[pos + 2:pos + size])
        if kept is not None:
            out.append(bytes((0xFF, marker)) + (len(kept) + 2).to_bytes(2, "big") + kept)
        pos += size
        if marker == SOS:
            end = _scan_end(data, pos)
            out.append(data[pos:end])
            pos = end


#: TIFF compressions written again as they are (lossless); any other becomes LZW.
TIFF_LOSSLESS = frozenset({"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"})


def stripped_tiff(data: bytes, orientation: int | None = None, compression: str | None = None) -> bytes:
    """The TIFF file ``data`` written again page by page from its pixels as the scan shows them (each page turned by
    its own orientation, so none is written: ``orientation`` is not needed), each page in its own mode, with no tag
    but each page's own image tags. ``compression``: the one of every page (Pillow's name), by default the one the
    pages share when it is lossless, else LZW. Pillow's errors (a damaged page, a mode it cannot write, a page
    above its decompression-bomb limit, or all pages together above it) pass."""
    from PIL import Image, ImageOps, ImageSequence

    from brainclust.io.content import guard_pixels

    pages, kinds, total = [], set(), 0
    with Image.open(io.BytesIO(data)) as im:
        for page in ImageSequence.Iterator(im):
            total = guard_pixels(page, total)  # Pillow checks the first page's size only
            kinds.add(page.info.get("compression", "raw"))
            copy = ImageOps.exif_transpose(page)  # the pixels as shown, a new image without the file's tags
            copy.info = {}  # nor its ICC profile, resolution, description or XMP
            pages.append(copy)
    if compression is None:
        compression = kinds.pop() if len(kinds) == 1 and kinds <= TIFF_LOSSLESS else "tiff_lzw"
    out = io.BytesIO()
    more = {"save_all": True, "append_images": pages[1:]} if len(pages) > 1 else {}
    pages[0].save(out, format="TIFF", compression=compression, **more)
    return out.getvalue()


def _pixels(data: bytes, every: bool = False) -> list:
    """``(mode, pixels)`` of the image as the scan shows it: its first page, or every page when ``every``."""
    import numpy as np
    from PIL import Image, ImageOps, ImageSequence

    with Image.open(io.BytesIO(data)) as im:
        pages = ImageSequence.Iterator(im) if every else [im]
        return [(shown.mode, np.asarray(shown)) for shown in map(ImageOps.exif_transpose, pages)]


def _same(a: list, b: list) -> bool:
    import numpy as np

    return len(a) == len(b) and all(ma == mb and np.array_equal(pa, pb) for (ma, pa), (mb, pb) in zip(a, b))


def stripped(data: bytes) -> tuple[str, bytes | None]:
    """``(format, copy)``: ``format`` ``"png"``, ``"jpeg"``, ``"tiff"`` or ``""`` (another format: nothing done);
    ``copy`` the file without its metadata, or ``None`` when it cannot be made or does not decode to the same
    pixels."""
    from PIL import Image

    kind = ("png" if data.startswith(PNG_SIGNATURE) else "jpeg" if data[:3] == b"\xff\xd8\xff" else
            "tiff" if data[:4] in (b"II*\0", b"MM\0*") else "")
    if not kind:
        return "", None
    strip = {"png": stripped_png, "jpeg": stripped_jpeg, "tiff": stripped_tiff}[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings about odd EXIF blocks are not for the terminal
            with Image.open(io.BytesIO(data)) as im:
                orientation = im.getexif().get(ORIENTATION)  # EXIF's, else XMP's
            orientation = orientation if isinstance(orientation, int) else None
            every = kind == "tiff"  # a TIFF: every page (an animated PNG becomes its still image)
            shown, copy = _pixels(data, every), strip(data, orientation)
            same = _same(shown, _pixels(copy, every))
            if every and not same:  # a compression that changes a page's mode (I;16B, YCbCr): none
                copy = stripped_tiff(data, compression="raw")
                same = _same(shown, _pixels(copy, every))
    except Exception:  # noqa: BLE001 - a structure not followed, or bytes Pillow refuses: the caller copies as is
        return kind, None
    return kind, (copy if same else None)
