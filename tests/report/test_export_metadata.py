"""``export`` copies PNG, JPEG and TIFF files without their metadata: text chunks, EXIF, XMP, comments and tags go."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, ImageSequence, PngImagePlugin

from brainclust.cli import main
from brainclust.io.rastermeta import stripped, stripped_jpeg, stripped_png, stripped_tiff

SECRET = "John SECRET Doe 19700101"
RUN = ["--backbone", "pixels@16", "--pca", "2", "--k", "2", "--workers", "0", "--no-report", "-q"]
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "brain_tumor_4class_dev"


def head(seed: int, size=(48, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size[0], :size[1]]
    disc = ((y - size[0] / 2) / (size[0] / 2.4)) ** 2 + ((x - size[1] / 2) / (size[1] / 2.4)) ** 2 < 1
    return (disc * (120 + rng.integers(0, 100, size))).astype(np.uint8)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def png_with_text(pixels: np.ndarray) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", SECRET)
    info.add_text("Author", SECRET, zip=True)
    info.add_itxt("Description", SECRET)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    at = data.index(b"IDAT") - 4  # private and dated chunks before the image data, bytes after IEND
    extra = chunk(b"prVt", SECRET.encode()) + chunk(b"tIME", b"\x07\xb2\x01\x01\x00\x00\x00")
    return data[:at] + extra + data[at:] + SECRET.encode()


def jpeg_with_text(pixels: np.ndarray, orientation: int = 6, **save) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = SECRET  # Artist
    exif[0x010E] = SECRET  # ImageDescription
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90, exif=exif.tobytes(), comment=SECRET.encode(),
                                 **save)
    data = buf.getvalue()
    xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>" + SECRET.encode() + b"</x:xmpmeta>"
    app13 = b"Photoshop 3.0\0" + SECRET.encode()
    segs = b"".join(b"\xff" + m + (len(p) + 2).to_bytes(2, "big") + p for m, p in ((b"\xe1", xmp), (b"\xed", app13)))
    return data[:2] + segs + data[2:] + SECRET.encode()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im))


def test_a_png_copy_keeps_its_pixels_and_loses_every_text_chunk():
    data = png_with_text(head(0))
    assert data.count(SECRET.encode()) >= 4
    kind, copy = stripped(data)
    assert kind == "png" and copy is not None
    assert SECRET.encode() not in copy and b"tIME" not in copy and b"prVt" not in copy
    assert b"zTXt" not in copy and b"iTXt" not in copy and copy.endswith(chunk(b"IEND", b""))
    assert np.array_equal(decoded(copy), decoded(data))


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"restart_marker_blocks": 1}])
def test_a_jpeg_copy_keeps_its_pixels_and_orientation_and_loses_exif_xmp_and_comments(save):
    data = jpeg_with_text(head(1, (40, 56)), **save)
    kind, copy = stripped(data)
    assert kind == "jpeg" and copy is not None
    assert SECRET.encode() not in copy and b"Photoshop" not in copy and b"xmpmeta" not in copy
    with Image.open(io.BytesIO(copy)) as im:
        assert dict(im.getexif()) == {0x0112: 6}  # the orientation the scan applies, alone
        assert im.size == (56, 40)
    assert decoded(copy).shape == (56, 40)  # rotated as the scan reads it
    assert np.array_equal(decoded(copy), decoded(data))
    assert stripped_jpeg(data, None).count(b"Exif") == 0  # without an orientation no EXIF block is written



def test_text_hidden_in_kept_chunks_and_segments_does_not_pass():
    """A review's cases: bytes after a kept chunk's defined length, a palette on an RGB image, bytes after the
    compressed stream or in an extra IDAT, a PNG orientation; a JFIF thumbnail, an Adobe segment's tail, DNL."""
    png = png_with_text(head(4))
    chunks = []
    pos = 8
    while pos < len(png) and png[pos + 4:pos + 8] != b"IEND":
        n = int.from_bytes(png[pos:pos + 4], "big")
        chunks.append((png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]))
        pos += 12 + n
    ihdr = next(c for c in chunks if c[0] == b"IHDR")
    idat = b"".join(c[1] for c in chunks if c[0] == b"IDAT")
    s = SECRET.encode()
    crafted = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr[1] + s) + chunk(b"gAMA", b"\0\0\xb1\x8f" + s)
               + chunk(b"PLTE", s[:21]) + chunk(b"IDAT", idat + s) + chunk(b"IDAT", s) + chunk(b"IEND", s))
    kind, copy = stripped(crafted)
    assert kind == "png" and copy is not None and s not in copy
    assert np.array_equal(decoded(copy), decoded(png))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = SECRET
    buf = io.BytesIO()
    Image.fromarray(head(5, (30, 50))).save(buf, format="PNG", exif=exif.tobytes())
    kind, copy = stripped(buf.getvalue())  # the orientation is kept alone, so the copy is still turned
    assert copy is not None and s not in copy and decoded(copy).shape == (50, 30)
    thumb = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x02\x02" + s[:12]  # a 2 x 2 RGB thumbnail
    adobe = b"Adobe\0\x64\0\0\0\0\x01" + s
    jpg = jpeg_with_text(head(6), orientation=1)
    jpg = (jpg[:2] + b"\xff\xe0" + (len(thumb) + 2).to_bytes(2, "big") + thumb
           + b"\xff\xee" + (len(adobe) + 2).to_bytes(2, "big") + adobe + jpg[2:])
    kind, copy = stripped(jpg)
    assert kind == "jpeg" and copy is not None and s[:12] not in copy and s not in copy

@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "jpeg"])
def test_a_tiff_copy_is_written_from_its_pixels_without_its_tags(compression):
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112], tags[0x013B], tags[0x010E] = 8, SECRET, SECRET  # orientation, Artist, ImageDescription
    buf = io.BytesIO()
    Image.fromarray(head(7, (30, 44))).save(buf, format="TIFF", compression=compression, tiffinfo=tags)
    data = buf.getvalue()
    assert SECRET.encode() in data
    kind, copy = stripped(data)
    assert kind == "tiff" and copy is not None and SECRET.encode() not in copy
    assert np.array_equal(decoded(copy), decoded(data)) and decoded(copy).shape == (44, 30)  # orientation 8 kept


TIFF_TEXT = (0x010E, 0x013B, 700, 33723)  # ImageDescription, Artist, XMP, IPTC


def tiff_pages_with_tags(pages: list, compressions: list) -> bytes:
    """A TIFF of ``pages`` (each with its compression and an orientation of its own, 8, 6, 1...) and a name in
    ``TIFF_TEXT`` on every page."""
    from PIL import TiffImagePlugin

    for page, compression, orientation in zip(pages, compressions, (8, 6, 1, 3)):
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[0x0112], tags[0x013B], tags[0x010E] = orientation, SECRET, SECRET
        tags[700], tags[33723] = f"<x:xmpmeta>{SECRET}</x:xmpmeta>".encode(), SECRET.encode()
        page.encoderinfo = {"tiffinfo": tags, "compression": compression}
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def tiff_pages(data: bytes) -> list:
    """``(mode, pixels as shown, tags)`` of every page of a TIFF."""
    with Image.open(io.BytesIO(data)) as im:
        return [(page.mode, np.asarray(ImageOps.exif_transpose(page)), dict(page.tag_v2))
                for page in ImageSequence.Iterator(im)]


def test_a_tiff_of_several_pages_is_written_again_page_by_page_without_its_tags():
    rng = np.random.default_rng(5)
    pages = [Image.fromarray(head(8, (30, 44))), Image.fromarray(rng.integers(0, 65535, (20, 10), dtype=np.uint16)),
             Image.fromarray(rng.integers(0, 255, (12, 14, 3), dtype=np.uint8))]
    data = tiff_pages_with_tags(pages, ["tiff_lzw", "raw", "packbits"])
    before = tiff_pages(data)
    assert all(key in tags for *_, tags in before for key in TIFF_TEXT)  # a name on every page
    kind, copy = stripped(data)
    assert kind == "tiff" and copy is not None and SECRET.encode() not in copy
    after = tiff_pages(copy)
    assert [mode for mode, *_ in after] == ["L", "I;16", "RGB"] == [mode for mode, *_ in before]
    assert all(np.array_equal(a, b) for (_, a, _), (_, b, _) in zip(after, before))
    assert [a.shape for _, a, _ in after] == [(44, 30), (10, 20), (12, 14, 3)]  # each page's orientation applied
    assert not any(key in tags for *_, tags in after for key in (*TIFF_TEXT, 0x0112, 0x0131, 0x0132))
    assert np.array_equal(decoded(copy), decoded(data))  # the first page, which the scan reads


def test_a_page_whose_mode_a_compression_would_change_is_written_uncompressed():
    rng = np.random.default_rng(6)
    ycc = Image.fromarray(rng.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert("YCbCr")
    data = tiff_pages_with_tags([ycc, Image.fromarray(head(9, (12, 14)))], ["raw", "tiff_lzw"])
    assert [mode for mode, *_ in tiff_pages(stripped_tiff(data))] == ["RGB", "L"]  # LZW: YCbCr read back as RGB
    kind, copy = stripped(data)
    assert kind == "tiff" and copy is not None and SECRET.encode() not in copy
    assert [(m, a.tobytes()) for m, a, _ in tiff_pages(copy)] == [(m, a.tobytes()) for m, a, _ in tiff_pages(data)]


def test_a_tiff_with_a_page_that_does_not_decode_is_left_to_the_caller():
    pages = [Image.fromarray(head(10 + i)) for i in range(2)]
    data = tiff_pages_with_tags(pages, ["raw", "raw"])
    with Image.open(io.BytesIO(data)) as im:
        im.seek(1)
        start, size = im.tag_v2[273][0], im.tag_v2[279][0]  # the second page's pixels
    cut = data[:start + size // 2]
    with pytest.raises(OSError):
        stripped_tiff(cut)
    assert stripped(cut) == ("tiff", None)


def test_a_later_page_above_the_pixel_limit_is_not_decoded(monkeypatch):
    data = tiff_pages_with_tags([Image.fromarray(head(11, (8, 8))), Image.fromarray(head(12))], ["raw", "raw"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the first page's 64 pixels pass, the second's 1,920 not
    with pytest.raises(Image.DecompressionBombError):
        stripped_tiff(data)
    assert stripped(data) == ("tiff", None)


def test_pages_that_together_pass_the_pixel_limit_are_not_all_decoded(monkeypatch):
    data = tiff_pages_with_tags([Image.fromarray(head(20 + i, (20, 20))) for i in range(3)], ["raw"] * 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 400 pixels a page: each passes, the three do not
    with pytest.raises(Image.DecompressionBombError, match="the pages hold more than 1000 pixels"):
        stripped_tiff(data)
    assert stripped(data) == ("tiff", None)


def test_files_whose_structure_is_not_followed_are_left_to_the_caller():
    png = png_with_text(head(2))
    cut = png[:png.index(b"IEND") - 4]  # no IEND
    with pytest.raises(ValueError):
        stripped_png(cut)
    assert stripped(cut) == ("png", None)
    jpg = jpeg_with_text(head(3))
    with pytest.raises(ValueError):
        stripped_jpeg(jpg[:len(jpg) // 2])
    assert stripped(b"BM" + b"\0" * 60) == ("", None)  # not PNG or JPEG: nothing done


@pytest.mark.skipif(not REAL.is_dir(), reason="the shared data folder (brain_tumor_4class_dev) is not beside the "
                    "repository")
def test_real_slices_copy_to_the_same_pixels():
    files = [p for d in sorted(REAL.iterdir()) if d.is_dir() for p in sorted(d.glob("*.jpg"))[:5]]
    for f in files:
        data = f.read_bytes()
        kind, copy = stripped(data)
        assert kind == "jpeg" and copy is not None, f.name
        assert np.array_equal(decoded(copy), decoded(data)) and len(copy) <= len(data)


def test_export_writes_no_metadata_and_keeps_it_only_when_asked(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    for i in range(4):
        (data / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        (data / f"g{i % 2}" / f"p{i}.png").write_bytes(png_with_text(head(i) + 60 * (i % 2)))
        (data / f"g{i % 2}" / f"j{i}.jpg").write_bytes(jpeg_with_text(head(10 + i) + 60 * (i % 2), orientation=1))
    Image.fromarray(head(20)).save(data / "g0" / "t.tif", tiffinfo={270: SECRET})  # ImageDescription
    pages = [Image.fromarray(head(21 + i)) for i in range(2)]
    pages[0].save(data / "g1" / "pages.tif", save_all=True, append_images=pages[1:], tiffinfo={270: SECRET})
    assert main(["run", str(data), "--out", str(out), *RUN]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--to", str(tmp_path / "exp")]) == 0
    said = capsys.readouterr()
    assert "10 PNG/JPEG/TIFF files without their metadata" in said.out
    assert "is kept, which may hold patient data" not in said.err  # the TIFF of pages too
    copies = sorted(p for p in (tmp_path / "exp").rglob("*") if p.suffix in (".png", ".jpg", ".tif"))
    assert len(copies) == 10
    for p in copies:
        assert SECRET.encode() not in p.read_bytes(), p.name
        assert np.array_equal(decoded(p.read_bytes()), decoded(next(data.rglob(p.name)).read_bytes()))
    paged = [(m, a.tobytes()) for m, a, _ in tiff_pages(next((tmp_path / "exp").rglob("pages.tif")).read_bytes())]
    assert paged == [(m, a.tobytes()) for m, a, _ in tiff_pages((data / "g1" / "pages.tif").read_bytes())]
    assert main(["export", str(out), "--to", str(tmp_path / "kept"), "--dicom-headers", "keep"]) == 0
    assert "headers and metadata kept, patient data included" in capsys.readouterr().out
    assert all(SECRET.encode() in p.read_bytes() for p in (tmp_path / "kept").rglob("*.png"))
