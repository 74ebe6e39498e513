"""Decoders read a file once: the hash they return is that of the bytes they decoded; only regular files."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
from PIL import Image

from brainclust.errors import ImageReadError
from brainclust.io import content, scan as scan_mod
from brainclust.io.atomic import file_sha256
from brainclust.io.scan import load_gray, read_record, scan

from conftest import make_image
from corpus import brain_volume, write_dicom, write_nifti


def _finishes(fn, timeout=20.0):
    """Run ``fn`` in a thread; (finished, result or exception)."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["value"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive(), box.get("value")


def test_fifo_and_device_links_are_skipped_unread(tmp_path):
    root = tmp_path / "data"
    make_image(root / "ok.png", "L", size=(16, 16))
    os.mkfifo(root / "pipe.png")
    os.symlink("/dev/zero", root / "zero.png")
    done, found = _finishes(lambda: scan(root))
    if not done:  # unblock the reader before failing
        with open(root / "pipe.png", "wb"):
            pass
    assert done, "the scan blocked on a FIFO"
    reasons = {s["path"]: s["reason"] for s in found.skipped}
    assert reasons["pipe.png"].startswith("not a regular file (a FIFO)")
    assert reasons["zero.png"].startswith("not a regular file (a device)")
    assert [r.path for r in found.records] == ["ok.png"]


def test_a_file_replaced_by_a_fifo_after_the_scan_is_refused_without_blocking(tmp_path):
    root = tmp_path / "data"
    make_image(root / "a.png", "L", size=(16, 16))
    rec = scan(root).records[0]
    (root / "a.png").unlink()
    os.mkfifo(root / "a.png")
    done, got = _finishes(lambda: read_record(rec))
    if not done:
        with open(root / "a.png", "wb"):
            pass
    assert done, "decoding blocked on a FIFO"
    assert isinstance(got, ImageReadError) and "not a regular file" in str(got)


def test_the_hash_is_that_of_the_decoded_bytes(tmp_path):
    root = tmp_path / "data"
    png = make_image(root / "a.png", "L", size=(20, 18), seed=3)
    write_dicom(root / "b.dcm", np.arange(400, dtype=np.uint16).reshape(20, 20))
    write_nifti(root / "c.nii.gz", brain_volume())
    found = scan(root)
    assert len(found.records) == 3
    for rec in found.records:
        digest, img = read_record(rec)
        assert digest == rec.sha256 == file_sha256(rec.abspath)
        assert img.ndim == 2 and np.isfinite(img).all()
    digest, img = read_record(next(r for r in found.records if r.name == "a.png"))
    np.testing.assert_array_equal(img, load_gray(png))


def test_large_files_are_hashed_again_after_decoding(tmp_path, monkeypatch):
    """Above SINGLE_READ_MAX the bytes are not kept: a change while decoding is an error, not a mix."""
    root = tmp_path / "data"
    make_image(root / "a.png", "L", size=(20, 20), seed=1)
    make_image(root / "b.png", "L", size=(20, 20), seed=2)
    rec = next(r for r in scan(root).records if r.name == "a.png")
    monkeypatch.setattr(content, "SINGLE_READ_MAX", 16)
    assert content.read_content(rec.abspath).data is None
    digest, _ = read_record(rec)
    assert digest == rec.sha256
    real = scan_mod.gray_from

    def decode_then_change(source):
        out = real(source)
        (root / "a.png").write_bytes((root / "b.png").read_bytes())
        return out

    monkeypatch.setattr(scan_mod, "gray_from", decode_then_change)
    with pytest.raises(ImageReadError, match="changed while it was being read"):
        read_record(rec)


def test_a_multi_page_tiff_is_reported(tmp_path, caplog):
    root = tmp_path / "data"
    root.mkdir()
    pages = [Image.fromarray(np.full((16, 16), 8 * i, np.uint8)) for i in range(1, 31)]
    pages[0].save(root / "stack.tif", save_all=True, append_images=pages[1:])
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        found = scan(root)
    assert len(found.records) == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert any("stack.tif" in m and "30 pages" in m and "first page" in m for m in msgs), msgs
