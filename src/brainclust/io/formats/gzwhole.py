"""A gzipped NIfTI volume read whole, once, so that its checksum is compared (:func:`read_whole`).

nibabel stops reading a gzip stream once it has the voxels the header asks for, so the CRC-32 at the end is
never compared and a file damaged in the middle decodes as garbage. Reading the stream to its end here costs
no second decompression: nibabel then reads the decompressed bytes.
"""

from __future__ import annotations

import gzip
import io
import zlib

import numpy as np

from brainclust.errors import ImageReadError

#: Bytes read past the end of the voxels a header declares before a gzipped file is left to nibabel's stream.
GZIP_SLACK = 1 << 20


def data_end(head: bytes, max_voxels: int) -> int | None:
    """Where the voxels of a NIfTI header (the first 540 decompressed bytes) end, for a single volume within
    ``max_voxels``; ``None`` for anything else (a 4-D series, too large, unreadable)."""
    import nibabel as nib

    klass = nib.Nifti2Header if head[4:8] in (b"n+2\x00", b"ni2\x00") else nib.Nifti1Header
    try:
        hdr = klass.from_fileobj(io.BytesIO(head))
        shape = [int(v) for v in hdr.get_data_shape()]
        n = int(np.prod(shape, dtype=np.int64))
        if len(shape) < 2 or any(v > 1 for v in shape[3:]) or not 0 < n <= max_voxels:
            return None
        return int(hdr.get_data_offset()) + n * hdr.get_data_dtype().itemsize
    except Exception:  # noqa: BLE001 - nibabel raises many types; its own reader says why
        return None


def read_whole(source, max_voxels: int):
    """A gzipped single volume (path or buffer) as a buffer of its decompressed bytes, read once to the end so
    that its checksum is compared: nibabel stops once it has the voxels the header asks for, so a stream
    damaged in the middle decoded as garbage. The header is read first: a 4-D series, a volume above
    ``max_voxels`` or an unreadable header is returned as it is (nibabel streams it, or refuses it), as is
    a file that goes on :data:`GZIP_SLACK` bytes past its voxels, and anything not gzipped."""
    buffer = hasattr(source, "read")
    fh = source if buffer else open(source, "rb")
    try:
        fh.seek(0)
        if fh.read(2) != b"\x1f\x8b":
            return source
        fh.seek(0)
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            out = io.BytesIO(gz.read(540))
            end = data_end(out.getvalue(), max_voxels)
            if end is None:
                return source
            out.seek(0, io.SEEK_END)
            while out.tell() < end and (chunk := gz.read(min(1 << 22, end - out.tell()))):
                out.write(chunk)
            try:  # on to the end of the stream: its checksum is compared there
                while chunk := gz.read(1 << 20):
                    out.write(chunk)
                    if out.tell() > end + GZIP_SLACK:
                        return source
            except gzip.BadGzipFile as exc:  # bytes after a whole member whose checksum passed: as gzip reads it
                if out.tell() < end or "Not a gzipped file" not in str(exc):
                    raise
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ImageReadError(f"damaged gzip stream ({str(exc)[:120] or type(exc).__name__})") from None
    finally:
        if buffer:
            fh.seek(0)
        else:
            fh.close()
    out.seek(0)
    return out
