"""``brainclust export``: one folder per cluster, every image of assignments.csv exactly once."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from test_report import IMG_NAME, SCRIPT_PATH, fake_run

from brainclust.cli import main
from brainclust.errors import InputError, ParameterError
from brainclust.report.export import destination_names, export_clusters
from brainclust.io.atomic import atomic_write_csv


def rows_of(out: Path) -> list[dict]:
    with open(out / "assignments.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def exported_files(to: Path) -> list[Path]:
    return sorted(p for p in to.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != "export.csv")


@pytest.fixture
def run_with_clashes(tmp_path):
    """A run whose cluster 0 holds a/x.png and b/X.png (same name), plus hostile names and noise."""
    out = fake_run(tmp_path, n_per=6, k=2, method="kmeans",
                   extra_paths=("a/x.png", "b/X.png", SCRIPT_PATH, IMG_NAME))
    rows = rows_of(out)
    for r in rows:
        if r["path"] in ("a/x.png", "b/X.png"):
            r["cluster"] = "0"
    rows[0]["cluster"] = "-1"
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    return out, tmp_path / "data"


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_every_image_exactly_once(run_with_clashes, tmp_path, mode):
    out, data = run_with_clashes
    res = export_clusters(out, tmp_path / "by_cluster", mode=mode, dicom_headers="keep" if mode == "symlink" else None)
    rows = rows_of(out)
    files = exported_files(tmp_path / "by_cluster")
    assert len(files) == len(rows) == res.n_files
    assert {p.parent.name for p in files} == {"cluster_0", "cluster_1", "noise"}
    with open(tmp_path / "by_cluster" / "export.csv", newline="") as fh:
        mapping = {m["path"]: m for m in csv.DictReader(fh)}
    assert sorted(mapping) == sorted(r["path"] for r in rows)
    for r in rows:
        dest = tmp_path / "by_cluster" / mapping[r["path"]]["file"]
        folder = "noise" if r["cluster"] == "-1" else f"cluster_{r['cluster']}"
        assert dest.parent.name == folder
        assert dest.read_bytes() == (data / r["path"]).read_bytes()
        assert dest.is_symlink() == (mode == "symlink")
    assert len({m["file"] for m in mapping.values()}) == len(rows)
    assert (tmp_path / "by_cluster" / "cluster_0" / "script>.png").exists()
    assert (tmp_path / "by_cluster" / mapping[IMG_NAME]["file"]).name == IMG_NAME


@pytest.mark.parametrize("swap", ["link", "bytes", "fifo"])
def test_a_file_swapped_after_its_check_is_not_exported(run_with_clashes, tmp_path, monkeypatch, swap):
    """The bytes are checked, then copied much later: a file replaced in between (by a link to a secret, or by
    other bytes) must refuse the export rather than copy what took its place."""
    import brainclust.report.export as ex

    out, data = run_with_clashes
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-BYTES")
    victim = data / rows_of(out)[1]["path"]
    checked = ex._plan_records

    def check_then_swap(*args):
        records = checked(*args)
        victim.unlink()
        if swap == "link":
            os.symlink(secret, victim)
        elif swap == "fifo":  # opening it for reading would wait for a writer forever
            os.mkfifo(victim)
        else:
            victim.write_bytes(b"\x89PNG other bytes")
        return records

    monkeypatch.setattr(ex, "_plan_records", check_then_swap)
    with pytest.raises(InputError, match="nothing was exported"):
        export_clusters(out, tmp_path / "by_cluster", mode="copy")
    assert not (tmp_path / "by_cluster").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p != secret
                and p.read_bytes() == b"SECRET-BYTES"]


def test_name_clashes_are_resolved_deterministically():
    paths = ["a/x.png", "b/X.png", "c/y.png"]
    names = destination_names(paths)
    assert names["c/y.png"] == "y.png"
    assert names["a/x.png"] != names["b/X.png"]
    assert names["a/x.png"].startswith("x-") and names["a/x.png"].endswith(".png")
    assert destination_names(list(reversed(paths))) == names
    assert len({n.casefold() for n in names.values()}) == 3


def test_tagged_name_that_equals_a_plain_name_is_lengthened():
    clash = destination_names(["a/x.png", "b/x.png"])["a/x.png"]      # e.g. x-1a2b3c4d.png
    names = destination_names(["a/x.png", "b/x.png", f"c/{clash}"])
    assert len({n.casefold() for n in names.values()}) == 3


def test_refuses_non_empty_target_and_missing_images(run_with_clashes, tmp_path):
    out, data = run_with_clashes
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ParameterError, match="--to: .* not an empty folder"):
        export_clusters(out, tmp_path / "full")
    with pytest.raises(ParameterError, match="--mode"):
        export_clusters(out, tmp_path / "t", mode="move")
    os.remove(data / "a" / "x.png")
    with pytest.raises(InputError, match="1 image.* missing .*a/x.png"):
        export_clusters(out, tmp_path / "t2")
    assert not (tmp_path / "t2").exists()


def test_cli_export(run_with_clashes, tmp_path, capsys):
    out, _ = run_with_clashes
    assert main(["export", str(out), "--to", str(tmp_path / "e"), "--mode", "symlink", "--dicom-headers", "keep"]) == 0
    assert "exported 16 images (symlink; headers and metadata kept, patient data included) into 3 folders" in \
        capsys.readouterr().out
    assert main(["export", str(out), "--to", str(tmp_path / "e")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--to", str(tmp_path / "e3")]) == 2


def test_symlink_export_says_which_images_became_png_files(tmp_path, capsys, make_image):
    from corpus import brain_volume, write_nifti

    from brainclust.pipeline import run

    data = tmp_path / "data"
    write_nifti(data / "vol.nii.gz", brain_volume())
    for i in range(4):
        make_image(data / f"img{i}.png", seed=i)
    run(data, tmp_path / "out", backbone="pixels@16", k=2, pca=3, slices="all-planes:2", workers=0,
        cache_dir=str(tmp_path / "cache"), checks="off")
    n_slices = sum("#" in r["path"] for r in rows_of(tmp_path / "out"))
    assert n_slices >= 4
    capsys.readouterr()
    assert main(["export", str(tmp_path / "out"), "--to", str(tmp_path / "e"), "--mode", "symlink"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the PNG files would be linked: the line names one
    assert len(err) == 1 and "--mode symlink: 'img" in err[0] and "would be linked" in err[0], err
    assert "--dicom-headers keep" in err[0] and not (tmp_path / "e").exists()
    assert main(["export", str(tmp_path / "out"), "--to", str(tmp_path / "e"), "--mode", "symlink",
                 "--dicom-headers", "keep"]) == 0
    said = capsys.readouterr().out
    assert f"exported {n_slices + 4} images (symlink; {n_slices} frames or slices as PNG files" in said
    files = exported_files(tmp_path / "e")
    assert sum(p.is_symlink() for p in files) == 4 and sum(p.suffix == ".png" and not p.is_symlink()
                                                          for p in files) == n_slices


@pytest.mark.parametrize("asked", [[], ["--dicom-headers", "strip"]])
def test_symlink_of_a_run_of_nifti_slices_alone_writes_its_png_files(tmp_path, capsys, asked):
    """Every image of the run is a NIfTI slice, written as a new PNG in either mode: no link is made, so no header
    can reach the folder. ``--mode symlink`` was refused all the same (add --dicom-headers keep); now it exports."""
    from corpus import brain_volume, write_nifti

    from brainclust.pipeline import run

    data = tmp_path / "data"
    write_nifti(data / "vol.nii.gz", brain_volume())
    run(data, tmp_path / "out", backbone="pixels@16", k=2, pca=3, slices="all-planes:2", workers=0,
        cache_dir=str(tmp_path / "cache"), checks="off")
    n = len(rows_of(tmp_path / "out"))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "out"), "--to", str(tmp_path / "e"), "--mode", "symlink", *asked]) == 0
    assert f"exported {n} images (PNG files) into" in capsys.readouterr().out
    files = exported_files(tmp_path / "e")
    assert len(files) == n and not any(p.is_symlink() for p in files) and all(p.suffix == ".png" for p in files)


def test_keep_says_patient_data_is_included_only_when_a_file_was_copied_or_linked_as_it_is(tmp_path):
    """A run of NIfTI slices exports every image as a PNG written anew: no header, no metadata. With
    --dicom-headers keep the line said 'headers and metadata kept, patient data included' all the same."""
    from brainclust.report.export import ExportResult

    def said(n_png):
        return ExportResult(tmp_path, {"cluster_0": 3, "cluster_1": 2}, "copy", n_png=n_png,
                            dicom_headers="keep").summary()

    assert said(5).startswith("exported 5 images (PNG files) into 2 folders")
    assert "(copy; 2 frames or slices as PNG files; headers and metadata kept, patient data included)" in said(2)


def test_the_export_line_counts_one_of_a_kind_in_the_singular(tmp_path):
    """A run of 2 images at --k 1 said 'exported 2 images (...) into 1 folders'."""
    from brainclust.report.export import ExportResult

    one = ExportResult(tmp_path, {"cluster_0": 1}, "copy", n_png=0, n_deidentified=1).summary()
    assert one.startswith("exported 1 image (copy; 1 DICOM file de-identified) into 1 folder under ")
    two = ExportResult(tmp_path, {"cluster_0": 2}, "copy", n_png=1, n_stripped=1).summary()
    assert "(copy; 1 frame or slice as a PNG file; 1 PNG/JPEG/TIFF file without its metadata) into 1 folder " in two


def test_a_run_on_links_out_of_its_folder_is_refused_with_the_way_out(tmp_path, capsys):
    """A subset made of links (a natural way to try a few images) clusters, but export follows no link out of the
    input folder: the scan and the refusal both say what to do instead."""
    import numpy as np
    from PIL import Image

    real, subset = tmp_path / "real", tmp_path / "subset"
    real.mkdir()
    subset.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(real / f"i{i}.png")
        os.symlink(real / f"i{i}.png", subset / f"i{i}.png")
    out = tmp_path / "out"
    assert main(["run", str(subset), "--out", str(out), "--backbone", "pixels@16", "--pca", "2", "--k", "2",
                 "--workers", "0", "--no-report", "--checks", "off"]) == 0
    assert "run on the folder the links point into, or on copies of the files" in capsys.readouterr().err
    assert main(["export", str(out), "--to", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "through a symbolic link" in err and "run on the folder the links point into" in err
    assert not (tmp_path / "exp").exists()


def test_messages_name_a_file_as_it_is_called_not_as_the_csv_guards_it(tmp_path):
    """'-2.png' is written '\\x2d2.png' in assignments.csv (no cell a spreadsheet runs); a refusal names '-2.png'."""
    out = fake_run(tmp_path, n_per=3, k=2, method="kmeans", extra_paths=("-2.png",))
    assert "\\x2d2.png" in [r["path"] for r in rows_of(out)]
    (tmp_path / "data" / "-2.png").unlink()
    with pytest.raises(InputError) as err:
        export_clusters(out, tmp_path / "by_cluster")
    assert "e.g. '-2.png'" in str(err.value) and "x2d" not in str(err.value)


def test_a_volume_whose_name_nears_the_limit_is_exported(tmp_path, capsys, make_image):
    """``NAME#axial=10`` of a 248-byte ``NAME.nii.gz`` is longer than a file name may be: checking whether such a
    file exists raised (ENAMETOOLONG) and ended report, export and view with an internal error (a probe's find)."""
    from corpus import brain_volume, write_nifti

    from brainclust.pipeline import run

    data = tmp_path / "data"
    write_nifti(data / ("n" * 248 + ".nii.gz"), brain_volume())
    for i in range(4):
        make_image(data / f"img{i}.png", seed=i)
    run(data, tmp_path / "out", backbone="pixels@16", k=2, pca=3, slices="axial:3", workers=0,
        cache_dir=str(tmp_path / "cache"), checks="off")
    assert main(["export", str(tmp_path / "out"), "--to", str(tmp_path / "e")]) == 0
    assert "exported 7 images (copy; 3 frames or slices as PNG files" in capsys.readouterr().out
    assert len(exported_files(tmp_path / "e")) == 7
