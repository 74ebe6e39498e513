"""Image descriptors: intensity statistics against a hand computation, and per record."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainclust.io.descriptors import INTENSITY_COLUMNS, describe_records, intensity_stats
from brainclust.io.scan import scan


def test_intensity_stats_by_hand():
    img = np.zeros((10, 10), np.float32)
    img[:, 5:] = 100.0  # half the picture is tissue
    s = intensity_stats(img)
    assert s["intensity_mean"] == pytest.approx(50.0) and s["intensity_std"] == pytest.approx(50.0)
    assert s["intensity_p01"] == 0.0 and s["intensity_p99"] == 100.0
    assert s["foreground_fraction"] == pytest.approx(0.5)
    assert intensity_stats(np.full((4, 4), 7.0))["foreground_fraction"] == 0.0
    assert set(intensity_stats(np.array([[np.nan]])).values()) == {None}


def test_describe_records_decodes_each_record_and_leaves_failures_empty(tmp_path, caplog):
    Image.fromarray(np.full((6, 8), 30, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(tmp_path / "b.png")
    recs = scan(tmp_path).records
    assert [r.meta["aspect"] for r in recs] == [round(8 / 6, 4)] * 2  # width / height, 4 decimals
    (tmp_path / "b.png").write_bytes(b"gone")  # changed after the scan: cannot be decoded any more
    cols = describe_records(recs, progress=False)
    assert list(cols) == list(INTENSITY_COLUMNS)
    assert cols["intensity_mean"] == [30.0, None] and "1 image could not be decoded" in caplog.text
