"""Unusual NIfTI and DICOM inputs the readers must read as the format means them, or skip with a clear reason."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from brainclust.io.formats import nifti
from brainclust.io.scan import scan

from corpus import brain_volume, write_nifti

pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def test_nibabel_log_lines_never_reach_the_terminal(tmp_path, caplog, capfd):
    path = write_nifti(tmp_path / "zp.nii", brain_volume())
    raw = bytearray(path.read_bytes())
    raw[80:92] = struct.pack("<3f", 0, 0, 0)           # pixdim[1..3] = 0: nibabel logs "should be non-zero"
    raw[252:256] = struct.pack("<hh", 0, 0)            # no qform, no sform: the affine comes from pixdim
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.DEBUG):
        found = scan(tmp_path)
        nifti.header_fields(path)
    assert [r.path for r in found.records] == ["zp.nii#axial=8"] and not found.skipped
    assert "pixdim" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    assert not logging.getLogger("nibabel.global").disabled  # turned off only while nibabel reads
