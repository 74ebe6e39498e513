"""Malformed and odd inputs: every file gives rows or a skip with a reason; the loader never crashes."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import brainclust
from brainclust.errors import ImageReadError
from brainclust.io.scan import load_record, probe, scan

from corpus import brain_volume, make_corpus, write_dicom, write_nifti

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "data"
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory):
    root, expect = corpus
    out = tmp_path_factory.mktemp("corpus-out") / "out"
    brainclust.run(root, out, backbone="efficientnet_lite0", k=2, method="kmeans", workers=0, pca=5,
                   cache_dir=str(tmp_path_factory.mktemp("cache")))
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows, json.loads((out / "manifest.json").read_text())


def test_corpus_has_at_least_20_kinds(corpus):
    _, expect = corpus
    assert len(expect) >= 20
    assert sum(v == "skip" for v in expect.values()) >= 10 and sum(v != "skip" for v in expect.values()) >= 10


def test_every_file_gives_its_rows_or_is_skipped_with_a_reason(corpus, corpus_run):
    _, expect = corpus
    _, rows, man = corpus_run
    rows_per_file: dict[str, int] = {}
    for r in rows:
        f = r["path"].split("#")[0]
        rows_per_file[f] = rows_per_file.get(f, 0) + 1
    skipped = {s["path"]: s["reason"] for s in man["skipped"]}
    assert all(reason.strip() and "\n" not in reason for reason in skipped.values())
    got = {f: rows_per_file.get(f, "skip" if f in skipped else "lost") for f in expect}
    assert got == expect
    # the accounting, per file: rows' files + skipped files == files found, with no overlap
    assert not set(rows_per_file) & set(skipped)
    assert len(rows_per_file) + len(skipped) == man["n_files_scanned"] == len(expect)
    assert man["n_images"] == len(rows) == sum(v for v in expect.values() if v != "skip")


def test_corpus_rows_carry_the_right_meta_attributes(corpus_run):
    _, rows, man = corpus_run
    by_path = {r["path"]: r for r in rows}
    assert (by_path["images/exif_rotated.jpg"]["width"], by_path["images/exif_rotated.jpg"]["height"]) == ("40", "48")
    assert by_path["images/png_named_as.jpg"]["type"] == "png"
    assert by_path["images/<img src=x onerror=alert(1)>.png"]["name"] == "<img src=x onerror=alert(1)>.png"
    assert "images/name with spaces é ü 脑.png" in by_path
    assert {by_path["dicom/multiframe.dcm#frame=3"]["type"], by_path["nifti/four_d.nii.gz#axial=8&t=0"]["type"]} \
        == {"dicom", "nifti"}
    reasons = {s["path"]: s["reason"] for s in man["skipped"]}
    assert "decompression-bomb" in reasons["images/bomb_error.png"]
    assert "decompression-bomb" in reasons["images/bomb_warning.png"]
    assert "truncated" in reasons["images/truncated.jpg"] and "truncated" in reasons["images/truncated.png"]
    assert "symbolic link" in reasons["images/loop_a"] and "not followed" in reasons["images/loop_dir"]


def test_unreadable_file_is_skipped_unless_running_as_root(corpus):
    root, _ = corpus
    found = scan(root / "images")
    paths = {r.path for r in found.records}
    if os.access(root / "images" / "unreadable.png", os.R_OK):
        pytest.skip("running as root: chmod 000 does not stop reading, the file is an ordinary image here")
    assert "unreadable.png" not in paths
    assert "Permission denied" in {s["path"]: s["reason"] for s in found.skipped}["unreadable.png"]


def test_decompression_bomb_limit_holds_in_probe_and_load(tmp_path):
    from corpus import bomb_png

    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(10000, 10000))
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        probe(p)
    from brainclust.io.scan import load_gray

    with pytest.raises(ImageReadError, match="decompression-bomb"):
        load_gray(p)


# --------------------------------------------------------------------------- fuzzing
def _valid_files() -> dict[str, bytes]:
    """Small valid files of each kind, as bytes, to mutate."""
    import tempfile

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    out = {}
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"), (".tif", "TIFF")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        write_dicom(Path(d) / "a.dcm", rng.integers(0, 4096, (2, 6, 5), dtype=np.uint16), center=100, width=50)
        write_nifti(Path(d) / "v.nii", brain_volume((6, 7, 5)))
        write_nifti(Path(d) / "v.nii.gz", brain_volume((6, 7, 5)))
        for name, key in (("a.dcm", ".dcm"), ("v.nii", ".nii"), ("v.nii.gz", ".nii.gz")):
            out[key] = (Path(d) / name).read_bytes()
    return out


VALID = _valid_files()
#: Examples per fuzz test; raise it for a long local session (e.g. BRAINCLUST_FUZZ_EXAMPLES=5000).
FUZZ_EXAMPLES = int(os.environ.get("BRAINCLUST_FUZZ_EXAMPLES", "150"))


def _check_loader(path: Path) -> None:
    """probe/scan/load_record may only ever raise ImageReadError for a bad file."""
    try:
        probe(path)
    except ImageReadError:
        pass
    found = scan(path.parent)
    assert len({r.path.split("#")[0] for r in found.records}) + len(found.skipped) == found.n_files == 1
    for rec in found.records:
        try:
            img = load_record(rec)
        except ImageReadError:
            continue
        assert img.ndim == 2 and img.dtype == np.float32 and img.size > 0


@settings(max_examples=FUZZ_EXAMPLES // 2, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=600),
       suffix=st.sampled_from([".png", ".jpg", ".dcm", ".nii", ".nii.gz", ""]),
       dicm=st.booleans())
def test_random_bytes_only_raise_image_read_errors(tmp_path_factory, data, suffix, dicm):
    d = tmp_path_factory.mktemp("fuzz")
    if dicm:  # make it look like DICOM Part 10 so that pydicom has to parse the rest
        data = b"\x00" * 128 + b"DICM" + data
    p = d / f"f{suffix}"
    p.write_bytes(data)
    _check_loader(p)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(VALID)), seed=st.integers(0, 2**32 - 1),
       n_flips=st.integers(1, 8), cut=st.floats(0.0, 1.0))
def test_mutated_valid_files_only_raise_image_read_errors(tmp_path_factory, kind, seed, n_flips, cut):
    rng = np.random.default_rng(seed)
    buf = bytearray(VALID[kind])
    for pos in rng.integers(0, len(buf), n_flips):
        buf[pos] = int(rng.integers(0, 256))
    if cut < 0.3:  # also truncate some
        buf = buf[: int(len(buf) * (cut / 0.3))]
    d = tmp_path_factory.mktemp("mut")
    p = d / f"m{kind}"
    p.write_bytes(bytes(buf))
    _check_loader(p)


# --------------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("extra, needle", [
    (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    (["--workers", "-1"], "--workers (num_workers): must be an integer from 0 to 64 (or unset), got -1"),
    (["--pca", "-3"], "--pca (n_components): "),
    (["--clip", "99,1"], "--clip: clip percentiles must satisfy 0 <= low < high <= 100"),
    (["--slices", "top:3"], "--slices: 'top:3' must be PLANE:mid"),
    (["--volume-index", "-1"], "--volume-index: must be an integer >= 0, got -1"),
    (["--out-is-a-file"], "exists and is not a folder"),
    (["--out-under-a-file"], "is not a folder"),
])
def test_bad_settings_give_one_line_exit_2_and_no_output(tmp_path, capsys, make_image, extra, needle):
    from brainclust.cli import main

    data = tmp_path / "data"
    for i in range(3):
        make_image(data / f"{i}.png", "L", seed=i)
    out = tmp_path / "out"
    if extra == ["--out-is-a-file"]:
        out.write_text("keep me")
        extra = []
    elif extra == ["--out-under-a-file"]:
        (tmp_path / "f").write_text("keep me")
        out, extra = tmp_path / "f" / "out", []
    code = main(["run", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--k", "2", *extra])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("brainclust: error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not out.is_dir() and not (tmp_path / "c").exists()


def test_decompression_bomb_limit_holds_whatever_the_warning_filters(tmp_path, monkeypatch):
    """Another thread may have reset the warning filters (``catch_warnings`` is process-wide): the limit holds."""
    import warnings

    from corpus import bomb_png

    from brainclust.checks.decode import decode
    from brainclust.io.atomic import file_sha256
    from brainclust.io.scan import ImageRecord, load_gray

    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(10000, 10000))                      # above the limit, below twice it: Pillow only warns
    monkeypatch.setattr(warnings, "simplefilter", lambda *a, **k: None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        for read in (probe, load_gray):
            with pytest.raises(ImageReadError, match="decompression-bomb"):
                read(p)
        rec = ImageRecord(path="bomb.png", abspath=str(p), name="bomb.png", type="png", size=p.stat().st_size,
                          width=10000, height=10000, sha256=file_sha256(p))
        with pytest.raises(ImageReadError, match="decompression-bomb"):   # the checks' own colour-aware decode
            decode(rec)
