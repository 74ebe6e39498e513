"""End to end on DICOM: series become volumes (``--unit volume``), header fields reach the rows and no patient
data reaches any output; the feature-cache counts add up to the images when one cannot be decoded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from corpus import PHI, write_dicom

from brainclust.cli import main

pytestmark = pytest.mark.slow
pytest.importorskip("pydicom")

UID = "1.2.826.0.1.3680043.8.498."


def series(folder: Path, sid: str, n: int, seed: int, **attrs) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3000, (24, 20), dtype=np.uint16)
    for i in range(n):
        pix = (base + rng.integers(0, 200, base.shape)).astype(np.uint16)
        write_dicom(folder / f"{sid}_{i}.dcm", pix, uid=seed * 100 + i + 1, SeriesInstanceUID=UID + sid,
                    Manufacturer="SIEMENS", MagneticFieldStrength="3", **attrs)


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcm") / "data"
    series(root / "p1", "11", 3, 1, SeriesDescription="AX T2 FLAIR", ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    series(root / "p1", "12", 2, 2, SeriesDescription="Smithers brain scan",
           ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    series(root / "p2", "21", 3, 3, SeriesDescription="SAG T1", ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    frames = np.random.default_rng(4).integers(0, 3000, (3, 24, 20), dtype=np.uint16)
    write_dicom(root / "p2" / "multi.dcm", frames, uid=900, SeriesInstanceUID=UID + "22")
    from pydicom.encaps import encapsulate  # a JPEG object whose pixels cannot be decoded: read, then skipped

    write_dicom(root / "p2" / "broken.dcm", np.zeros((24, 20), np.uint8), uid=901, SeriesInstanceUID=UID + "23",
                transfer_syntax="1.2.840.10008.1.2.4.50", pixel_bytes=encapsulate([b"\xff\xd8garbage\xff\xd9"]))
    return root


def rows_of(path):
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_dicom_series_become_volumes_without_patient_data(dicom_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(dicom_folder), "--out", str(out), "--unit", "volume", "--k", "2", "--backbone",
                 "pixels@16", "--workers", "0", "--cache-dir", str(tmp_path / "c")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    rows = rows_of(out / "assignments.csv")
    by_id = {r["path"]: r for r in rows}
    # series are numbered per folder in path order: p2's second series (broken.dcm) has no decodable image
    assert sorted(by_id) == ["p1#series=1", "p1#series=2", "p2#series=1", "p2#series=3"]
    assert [by_id[k]["n_slices"] for k in sorted(by_id)] == ["3", "2", "3", "3"]
    assert by_id["p1#series=1"]["series_description"] == "AX T2 FLAIR" and by_id["p1#series=1"]["plane"] == "axial"
    assert by_id["p1#series=2"]["series_description"] == ""  # a name in it: withheld
    assert [by_id[k]["manufacturer"] for k in sorted(by_id)] == ["SIEMENS"] * 3 + [""]  # multi.dcm names none
    assert by_id["p2#series=1"]["plane"] == "sagittal"
    # the summary line counts every image once: 11 decoded (hits + misses), 1 could not be decoded
    assert "4 volumes from 11 images" in cap.out
    assert "feature cache: 0 hits, 11 misses (1 image could not be decoded)" in cap.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cache"]["hits"] + manifest["cache"]["misses"] == manifest["n_images"] == 11
    assert manifest["cache"]["failed"] == 1
    text = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file())
    import pyarrow.parquet as pq

    text += json.dumps(pq.read_table(out / "embeddings.parquet").to_pydict(), default=str)
    for secret in [*PHI.values(), "Smithers", UID]:
        assert secret not in text and secret not in cap.out + cap.err, secret


def test_a_series_slices_follow_their_instance_numbers(tmp_path):
    """Files named by UID come in no useful order: a series' strip and slices.csv follow InstanceNumber."""
    from brainclust.features.unitpool import in_slice_order
    from brainclust.io.scan import scan

    rng = np.random.default_rng(0)
    for sid in ("5", "6"):
        for name, number in (("1.2.9", 1), ("1.2.10", 3), ("1.2.8", 2)):  # name order: 1.2.10, 1.2.8, 1.2.9
            write_dicom(tmp_path / "s" / sid / name, rng.integers(0, 3000, (24, 20), dtype=np.uint16),
                        uid=number + 10 * int(sid), SeriesInstanceUID=UID + sid, InstanceNumber=number)
    recs = scan(tmp_path / "s").records
    assert [r.path for r in recs[:3]] == ["5/1.2.10", "5/1.2.8", "5/1.2.9"]
    assert [r.meta["instance_number"] for r in in_slice_order(recs[:3])] == [1, 2, 3]
    twice = [recs[0], recs[0]]  # one number twice (the frames of one object): the scan's order is kept
    assert in_slice_order(twice) == twice
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s"), "--out", str(out), "--unit", "series", "--k", "2", "--backbone",
                 "pixels@16", "--workers", "0", "--no-report", "--cache-dir", str(tmp_path / "c")]) == 0
    order = [r["path"] for r in rows_of(out / "slices.csv")]
    assert order == ["5/1.2.9", "5/1.2.8", "5/1.2.10", "6/1.2.9", "6/1.2.8", "6/1.2.10"]
