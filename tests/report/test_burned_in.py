"""DICOM images that may show patient text in their pixels (BurnedInAnnotation YES, a screen save) get no
thumbnail in the report or ``view``: a placeholder is drawn instead."""

from __future__ import annotations

import numpy as np
import pytest
from corpus import write_dicom

from brainclust.checks.rules import burned_in_text
from brainclust.io.content import content_sha256
from brainclust.report.thumbnails import Thumbnails

pytest.importorskip("pydicom")


def test_burned_in_text_rule():
    assert burned_in_text({"BurnedInAnnotation": "YES"}) and burned_in_text({"BurnedInAnnotation": " yes "})
    assert burned_in_text({"ImageType": ("DERIVED", "SECONDARY", "SCREEN SAVE")})
    assert burned_in_text({"ImageType": "DERIVED\\SECONDARY\\SCREEN SAVE"})
    assert not burned_in_text({"BurnedInAnnotation": "NO", "ImageType": ("ORIGINAL", "PRIMARY")})
    assert not burned_in_text({})
    sc, mr = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.4"  # Secondary Capture; MR Image
    assert burned_in_text({"SOPClassUID": sc}) and burned_in_text({"SOPClassUID": sc + ".4"})
    assert not burned_in_text({"SOPClassUID": sc, "BurnedInAnnotation": "NO"})
    assert not burned_in_text({"SOPClassUID": mr}) and not burned_in_text({"SOPClassUID": sc + "0"})


def test_thumbnails_withhold_them_and_show_the_others(tmp_path):
    pix = np.random.default_rng(0).integers(0, 3000, (32, 32), dtype=np.uint16)
    write_dicom(tmp_path / "plain.dcm", pix, uid=1, BurnedInAnnotation="NO")
    write_dicom(tmp_path / "burned.dcm", pix, uid=2, BurnedInAnnotation="YES")
    write_dicom(tmp_path / "screen.dcm", pix, uid=3, ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"])
    rows = [{"path": name, "type": "dicom"} for name in ("plain.dcm", "burned.dcm", "screen.dcm")]
    thumbs = Thumbnails(tmp_path, rows, [content_sha256(tmp_path / r["path"]) for r in rows])
    assert thumbs.array(0) is not None and thumbs.array(1) is None and thumbs.array(2) is None
    assert thumbs.n_withheld == 2 and thumbs.n_missing == 0 and thumbs.n_refused == 0
    assert thumbs.small(1, 32).shape == (32, 32)  # the placeholder


def test_the_header_is_read_only_from_the_files_the_run_clustered(tmp_path):
    """The burned-in rule reads a DICOM header: never of a row without a recorded hash, of a file whose bytes
    changed, or of a FIFO (a report or view blocked on one)."""
    import os

    from brainclust.report.thumbnails import load_image

    pix = np.random.default_rng(1).integers(0, 3000, (32, 32), dtype=np.uint16)
    write_dicom(tmp_path / "burned.dcm", pix, uid=2, BurnedInAnnotation="YES")
    os.mkfifo(tmp_path / "pipe.dcm")
    for row, sha in (({"path": "pipe.dcm", "type": "dicom"}, "0" * 64), ({"path": "burned.dcm", "type": "dicom"}, None),
                     ({"path": "burned.dcm", "type": "dicom"}, "1" * 64)):
        refused, withheld = set(), set()
        assert load_image(tmp_path, row, sha, refused, 0, withheld) is None
        assert refused == {0} and withheld == set()  # refused unread, not withheld after a read


@pytest.mark.slow
def test_export_warns_of_the_images_that_may_show_text(tmp_path, capsys):
    """The report and view draw a placeholder; export writes the pixels as the run read them (de-identifying
    the header, not the pixels), so it says which images may show text (a walk's Secondary Capture was
    exported without a word)."""
    from brainclust.cli import main

    data = tmp_path / "data"
    rng = np.random.default_rng(2)
    for i in range(6):
        write_dicom(data / f"plain{i}.dcm", rng.integers(0, 3000, (32, 32), dtype=np.uint16), uid=10 + i,
                    BurnedInAnnotation="NO")
    write_dicom(data / "burned.dcm", rng.integers(0, 3000, (2, 32, 32), dtype=np.uint16), uid=2,  # two frames
                BurnedInAnnotation="YES")
    assert main(["run", str(data), "--out", str(tmp_path / "run"), "--k", "2", "--backbone", "pixels@16",
                 "--workers", "0", "--no-report", "-q"]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "exp")]) == 0
    err = capsys.readouterr().err
    assert "export: 1 DICOM file may show patient text burned into the pixels" in err
    assert "first 'burned.dcm'" in err


def test_view_answers_a_withheld_image_403_and_a_missing_one_404(tmp_path):
    """`view` answered a DICOM image withheld for its burned-in text 404, as if it did not exist: it exists but
    is not shown, 403 (as a refused path is), with the placeholder; an image that is gone stays 404."""
    import csv
    import threading
    import urllib.error
    import urllib.request

    from conftest import record_hashes
    from explorer_fixtures import make_run, read_rows

    from brainclust.report import server as srv
    from brainclust.report.thumbnails import jpeg_bytes, placeholder

    out = make_run(tmp_path, n_per=4, with_map=True, hostile=False)
    pix = np.random.default_rng(3).integers(0, 3000, (32, 32), dtype=np.uint16)
    write_dicom(tmp_path / "data" / "class0" / "burned.dcm", pix, uid=2, BurnedInAnnotation="YES")
    rows = read_rows(out)
    rows[0].update(path="class0/burned.dcm", name="burned.dcm", type="dicom")
    with open(out / "assignments.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    record_hashes(out, tmp_path / "data")
    (tmp_path / "data" / rows[1]["path"]).unlink()  # gone after the run
    server, ex = srv.make_server(out, port=0, cache_dir=tmp_path / "cache", point_limit=20)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def get(i: int) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{server.server_address[1]}/thumb/{i}?px=64"
        try:
            with urllib.request.urlopen(url, timeout=30) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        assert get(0) == (403, jpeg_bytes(placeholder(64)))
        assert get(1) == (404, jpeg_bytes(placeholder(64)))
        status, body = get(2)
        assert status == 200 and body != jpeg_bytes(placeholder(64))
        assert get(len(rows))[0] == 404  # no such row
    finally:
        server.shutdown()
        server.server_close()
        ex.close()
