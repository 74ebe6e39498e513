"""Builders of small DICOM and NIfTI files, and the robustness corpus.

:func:`write_dicom` and :func:`write_nifti` write tiny synthetic files the way
TorchIO's tests do (pydicom ``Dataset`` + file meta, nibabel ``Nifti1Image``).
:func:`make_corpus` writes more than 20 kinds of odd or broken input into a
folder and returns what each file must give: a number of rows or a skip.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: What every test DICOM carries as patient data; must never reach an output or a log.
PHI = {"PatientName": "SECRET^NAME", "PatientID": "PID-777-SECRET", "PatientBirthDate": "19421111",
       "PatientAddress": "1 Hidden Lane", "InstitutionName": "Secret Hospital", "AccessionNumber": "ACC99999"}
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root


def brain_volume(shape=(20, 24, 16), seed: int = 0) -> np.ndarray:
    """A float32 ellipsoid 'head' with texture on a zero background (RAS index order)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum((g / 0.7) ** 2 for g in grid))
    vol = np.where(r < 1, 100 + 50 * grid[0] + 30 * grid[2] + rng.normal(0, 5, shape), 0)
    return vol.astype(np.float32)


def write_nifti(path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` as NIfTI-1 (``.nii`` or ``.nii.gz`` from the name)."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    nib.save(img, str(path))
    return path


def write_dicom(path, pixels: np.ndarray | None, *, uid: int = 1, photometric: str = "MONOCHROME2",
                slope: float | None = None, intercept: float | None = None,
                center: float | None = None, width: float | None = None,
                sop_class: str = "1.2.840.10008.5.1.4.1.1.4", transfer_syntax: str | None = None,
                pixel_bytes: bytes | None = None, preamble: bool = True, phi: bool = True,
                **attrs) -> Path:
    """Write a small DICOM file with explicit VR little endian (unless told otherwise).

    ``pixels`` is 2-D (one frame) or 3-D (frames, rows, cols), uint16/int16/uint8;
    ``None`` writes an object without pixel data (e.g. a structured report).
    ``pixel_bytes`` overrides the pixel data (truncated or compressed data).
    """
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UID

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(f"{_UID_ROOT}{uid}")
    meta.TransferSyntaxUID = UID(transfer_syntax or ExplicitVRLittleEndian)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = UID(f"{_UID_ROOT}1000")
    ds.SeriesInstanceUID = UID(f"{_UID_ROOT}2000")
    ds.Modality = "MR" if pixels is not None else "SR"
    ds.SeriesNumber = 3
    ds.InstanceNumber = uid
    if phi:
        for k, v in PHI.items():
            setattr(ds, k, v)
    if pixels is not None:
        arr = np.asarray(pixels)
        frames = arr.shape[0] if arr.ndim == 3 else 1
        ds.Rows, ds.Columns = arr.shape[-2:]
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
        ds.PixelData = pixel_bytes if pixel_bytes is not None else arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        if slope is not None:
            ds.RescaleSlope = slope
        if intercept is not None:
            ds.RescaleIntercept = intercept
        if center is not None:
            ds.WindowCenter = center
        if width is not None:
            ds.WindowWidth = width
    with warnings.catch_warnings(), config.disable_value_validation():  # odd values on purpose
        warnings.simplefilter("ignore")
        for k, v in attrs.items():
            setattr(ds, k, v)
    if preamble:
        ds.preamble = b"\x00" * 128
        ds.save_as(path, enforce_file_format=True)
    else:  # a bare data set: no preamble, no 'DICM', no file meta (old exports)
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, True
        del ds.file_meta
        write_dataset(fp, ds)
        path.write_bytes(fp.getvalue())
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` grey pixels (the data is one short row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _img_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_corpus(root) -> dict[str, int | str]:
    """Write the robustness corpus under ``root``.

    Returns
    -------
    dict
        Relative path -> number of rows the file must give (>= 1), or
        ``"skip"`` when it must be skipped with a reason.
    """
    from pydicom.uid import JPEGLSLossless
    from pydicom.encaps import encapsulate

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    png = _img_bytes(Image.fromarray(noise), "PNG")
    jpg = _img_bytes(Image.fromarray(noise), "JPEG", quality=90)
    expect: dict[str, int | str] = {}

    def put(rel: str, data: bytes, outcome: int | str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expect[rel] = outcome
        return p

    put("images/ok_gray.png", png, 1)
    put("images/zero_byte.png", b"", "skip")
    put("images/truncated.jpg", jpg[: len(jpg) // 2], "skip")
    put("images/truncated.png", png[: len(png) // 2], "skip")
    put("images/png_named_as.jpg", png, 1)  # wrong extension: content decides
    put("images/notes_named.png", b"scanner notes, not an image\n" * 4, "skip")
    put("images/bomb_error.png", bomb_png(20000, 20000), "skip")  # > 2x MAX_IMAGE_PIXELS: Pillow error
    put("images/bomb_warning.png", bomb_png(10000, 10000), "skip")  # > MAX_IMAGE_PIXELS: warning made an error
    put("images/cmyk.jpg", _img_bytes(Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8),
                                                      mode="CMYK"), "JPEG"), 1)
    put("images/sixteen_bit.png", _img_bytes(Image.fromarray(
        rng.integers(0, 65536, (30, 34), dtype=np.uint16)), "PNG"), 1)
    pal = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).quantize(colors=8)
    put("images/palette_transparent.png", _img_bytes(pal, "PNG", transparency=0), 1)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    put("images/exif_rotated.jpg", _img_bytes(Image.fromarray(noise), "JPEG", exif=exif.tobytes()), 1)
    put("images/one_by_one.png", _img_bytes(Image.fromarray(np.array([[7]], np.uint8)), "PNG"), 1)
    big = np.tile(noise, (50, 50))  # 2000 x 2400: large but within the limit
    put("images/large_2400x2000.png", _img_bytes(Image.fromarray(big), "PNG", compress_level=1), 1)
    put("images/constant.png", _img_bytes(Image.fromarray(np.full((32, 32), 90, np.uint8)), "PNG"), 1)
    put("images/animation.gif", _img_bytes(Image.fromarray(noise), "GIF"), "skip")  # unsupported format
    put("images/name with spaces é ü 脑.png", png, 1)
    put("images/<img src=x onerror=alert(1)>.png", png, 1)
    unreadable = put("images/unreadable.png", png, 1)
    os.chmod(unreadable, 0)
    if os.access(unreadable, os.R_OK):  # root reads anything: the file is then simply an image
        expect["images/unreadable.png"] = 1
    else:
        expect["images/unreadable.png"] = "skip"
    os.symlink("loop_b", root / "images" / "loop_a")
    os.symlink("loop_a", root / "images" / "loop_b")
    expect["images/loop_a"] = expect["images/loop_b"] = "skip"
    os.symlink("does_not_exist.png", root / "images" / "dangling.png")
    expect["images/dangling.png"] = "skip"
    os.symlink(".", root / "images" / "loop_dir")  # a folder link that loops: not followed
    expect["images/loop_dir"] = "skip"
    os.symlink("ok_gray.png", root / "images" / "link_to_ok.png")
    expect["images/link_to_ok.png"] = 1

    pix = rng.integers(0, 4096, (16, 20), dtype=np.uint16)
    write_dicom(root / "dicom/series/IM0001", pix, uid=11)  # no extension, found by the DICM marker
    expect["dicom/series/IM0001"] = 1
    write_dicom(root / "dicom/series/IM0002.dcm", pix[::-1], uid=12, photometric="MONOCHROME1")
    expect["dicom/series/IM0002.dcm"] = 1
    write_dicom(root / "dicom/multiframe.dcm", rng.integers(0, 4096, (3, 16, 20), dtype=np.uint16), uid=13)
    expect["dicom/multiframe.dcm"] = 3
    write_dicom(root / "dicom/report_sr.dcm", None, uid=14, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    expect["dicom/report_sr.dcm"] = "skip"
    write_dicom(root / "dicom/truncated.dcm", pix, uid=15, pixel_bytes=pix.tobytes()[:100])
    expect["dicom/truncated.dcm"] = "skip"
    write_dicom(root / "dicom/headerless.dcm", pix, uid=16, preamble=False)
    expect["dicom/headerless.dcm"] = 1
    write_dicom(root / "dicom/jpegls.dcm", pix, uid=17, transfer_syntax=JPEGLSLossless,
                pixel_bytes=encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 40 + b"\xff\xd9"]))
    expect["dicom/jpegls.dcm"] = "skip"  # no decoder, or garbage for the decoder if the extra is installed

    vol = brain_volume()
    write_nifti(root / "nifti/t1.nii.gz", vol)
    expect["nifti/t1.nii.gz"] = 1
    nan = vol.copy()
    nan[vol == 0] = np.nan
    write_nifti(root / "nifti/with_nans.nii", nan)
    expect["nifti/with_nans.nii"] = 1
    write_nifti(root / "nifti/four_d.nii.gz", np.stack([vol, vol * 2, vol + 5], axis=-1))
    expect["nifti/four_d.nii.gz"] = 1
    write_nifti(root / "nifti/constant.nii.gz", np.full((8, 8, 8), 3.0, np.float32))
    expect["nifti/constant.nii.gz"] = "skip"
    write_nifti(root / "nifti/all_nan.nii", np.full((8, 8, 8), np.nan, np.float32))
    expect["nifti/all_nan.nii"] = "skip"
    gz = (root / "nifti/t1.nii.gz").read_bytes()
    put("nifti/truncated.nii.gz", gz[: len(gz) // 3], "skip")
    return expect
