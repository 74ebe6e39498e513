"""Stage 1: scanning folders, meta-attributes, labels, skipped files, decoding."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from brainclust.errors import ImageReadError, InputError, ParameterError
from brainclust.io.scan import load_gray, probe, scan

FORMAT_TYPE = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "BMP": "bmp"}


# -- scan order ----------------------------------------------------------------
def test_scan_order_is_sorted_relative_posix_paths(tmp_path, make_image):
    # Names chosen so that os.walk order, per-directory order and plain
    # string order of the relative paths disagree.
    rels = ["z.png", "a/b/c.png", "a/a.png", "a.png", "a-b.png", "a/b.png", "B.png", "a/b/a/deep.png", "m/n.png"]
    for i, rel in enumerate(rels):
        make_image(tmp_path / rel, "L", size=(8 + i, 8), seed=i)
    res = scan(tmp_path)
    got = [r.path for r in res.records]
    assert got == sorted(rels)
    assert res.skipped == []
    # the absolute path points at the same file
    for r in res.records:
        assert os.path.samefile(r.abspath, tmp_path / r.path)
        assert os.path.isabs(r.abspath)


def test_scan_is_deterministic(image_folder, image_folder_spec):
    a = scan(image_folder, labels_from_folders=True)
    b = scan(image_folder, labels_from_folders=True)
    assert a.records == b.records
    assert len(a.records) == len(image_folder_spec)


# -- meta-attributes ---------------------------------------------------------------
def test_meta_attributes(image_folder, image_folder_spec):
    res = scan(image_folder)
    assert res.skipped == []
    by_path = {r.path: r for r in res.records}
    assert set(by_path) == set(image_folder_spec)
    for rel, (_mode, (w, h), fmt) in image_folder_spec.items():
        r = by_path[rel]
        full = image_folder / rel
        assert r.name == full.name
        assert r.type == FORMAT_TYPE[fmt]
        assert r.size == os.path.getsize(full)
        assert isinstance(r.size, int)
        assert (r.width, r.height) == (w, h)
        assert len(r.sha256) == 64


def test_upper_case_extension_is_found(image_folder):
    res = scan(image_folder)
    rec = [r for r in res.records if r.name == "a3_rgb.JPG"]
    assert len(rec) == 1 and rec[0].type == "jpeg"


def test_probe_returns_format_and_size(tmp_path, make_image):
    p = make_image(tmp_path / "x.bmp", "RGB", size=(21, 13))
    assert probe(p) == ("BMP", 21, 13)


def test_format_from_content_not_extension(tmp_path, make_image):
    # a PNG named .jpg is still a PNG
    make_image(tmp_path / "liar.jpg", "L", size=(10, 12), fmt="PNG")
    res = scan(tmp_path)
    assert [(r.type, r.width, r.height) for r in res.records] == [("png", 10, 12)]


def test_unsupported_format_is_skipped(tmp_path, make_image):
    make_image(tmp_path / "ok.png", "L")
    make_image(tmp_path / "anim.gif", "L", fmt="GIF")
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["ok.png"]
    assert [s["path"] for s in res.skipped] == ["anim.gif"]
    assert "GIF" in res.skipped[0]["reason"]


# -- labels ------------------------------------------------------------------------
def test_labels_from_first_subfolder(tmp_path, make_image):
    make_image(tmp_path / "root.png", "L")
    make_image(tmp_path / "tumour" / "t1.png", "L")
    make_image(tmp_path / "tumour" / "deep" / "deeper" / "t2.png", "L")
    make_image(tmp_path / "healthy" / "sub" / "h1.png", "L")
    res = scan(tmp_path, labels_from_folders=True)
    labels = {r.path: r.label for r in res.records}
    assert labels == {
        "root.png": "",
        "tumour/t1.png": "tumour",
        "tumour/deep/deeper/t2.png": "tumour",
        "healthy/sub/h1.png": "healthy",
    }
    assert res.labels == [labels[r.path] for r in res.records]


def test_no_labels_by_default(image_folder, image_folder_spec):
    res = scan(image_folder)
    assert res.labels == [""] * len(image_folder_spec)


def test_image_folder_labels(image_folder, image_folder_spec):
    res = scan(image_folder, labels_from_folders=True)
    assert res.labels == [rel.split("/")[0] for rel in sorted(image_folder_spec)]


# -- bad files -----------------------------------------------------------------------
def test_bad_files_are_skipped_with_reason(tmp_path, make_image):
    make_image(tmp_path / "good.png", "L")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["good.png"]
    skipped = {s["path"]: s["reason"] for s in res.skipped}
    assert set(skipped) == {"empty.png", "text.png", "notes.txt"}
    for reason in skipped.values():
        assert isinstance(reason, str) and reason.strip()
    assert "empty" in skipped["empty.png"] or "0 bytes" in skipped["empty.png"]


def test_truncated_jpeg_fails_to_decode(tmp_path, make_image):
    full = make_image(tmp_path / "full.jpg", "RGB", size=(64, 64), quality=95)
    data = full.read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    res = scan(tmp_path)
    # scan's header probe may or may not notice; either way the file is accounted for
    paths = [r.path for r in res.records] + [s["path"] for s in res.skipped]
    assert sorted(paths) == ["full.jpg", "truncated.jpg"]
    with pytest.raises(ImageReadError):
        load_gray(bad)
    assert load_gray(full).shape == (64, 64)


def test_truncated_png_fails_to_decode(tmp_path, make_image):
    full = make_image(tmp_path / "full.png", "L", size=(64, 64))
    data = full.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        load_gray(bad)


def test_load_gray_of_non_image_raises(tmp_path):
    p = tmp_path / "x.png"
    p.write_text("nope")
    with pytest.raises(ImageReadError):
        load_gray(p)
    with pytest.raises(ImageReadError):
        probe(p)


def test_broken_symlink_is_skipped(tmp_path, make_image):
    make_image(tmp_path / "good.png", "L")
    try:
        os.symlink(tmp_path / "does-not-exist.png", tmp_path / "dangling.png")
    except (OSError, NotImplementedError):
        pytest.skip("symlinks not supported here")
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["good.png"]
    assert [s["path"] for s in res.skipped] == ["dangling.png"]


def test_hidden_files_and_folders_ignored(tmp_path, make_image):
    make_image(tmp_path / "visible.png", "L")
    make_image(tmp_path / ".hidden.png", "L")
    make_image(tmp_path / ".git" / "inside.png", "L")
    make_image(tmp_path / "a" / ".secret" / "x.png", "L")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01junk")
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["visible.png"]
    assert res.skipped == []


def test_missing_folder_raises_input_error(tmp_path):
    with pytest.raises(InputError):
        scan(tmp_path / "nope")


def test_file_instead_of_folder_raises_input_error(tmp_path, make_image):
    p = make_image(tmp_path / "x.png", "L")
    with pytest.raises(InputError):
        scan(p)


def test_empty_folder_gives_empty_result(tmp_path):
    res = scan(tmp_path)
    assert res.records == [] and res.skipped == []


def test_sha256_equal_for_identical_content(tmp_path, make_image):
    a = make_image(tmp_path / "one" / "a.png", "L", seed=3)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "copy.png").write_bytes(a.read_bytes())
    make_image(tmp_path / "other.png", "L", seed=4)
    res = scan(tmp_path)
    h = {r.path: r.sha256 for r in res.records}
    assert h["one/a.png"] == h["two/copy.png"]
    assert h["other.png"] != h["one/a.png"]
    import hashlib

    assert h["other.png"] == hashlib.sha256((tmp_path / "other.png").read_bytes()).hexdigest()


# -- decoding --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "P"])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_each_mode_decodes_to_2d_float32(tmp_path, make_image, mode, ext):
    p = make_image(tmp_path / f"img{ext}", mode, size=(37, 23))
    arr = load_gray(p)
    assert arr.ndim == 2
    assert arr.shape == (23, 37)
    assert arr.dtype == np.float32
    assert np.isfinite(arr).all()
    assert arr.std() > 0  # not a blank image


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_rgb_jpeg_and_bmp_decode(tmp_path, make_image, ext):
    p = make_image(tmp_path / f"img{ext}", "RGB", size=(40, 30))
    arr = load_gray(p)
    assert arr.shape == (30, 40) and arr.dtype == np.float32


def test_image_folder_all_decode(image_folder, image_folder_spec):
    for rel, (_mode, (w, h), _fmt) in image_folder_spec.items():
        arr = load_gray(image_folder / rel)
        assert arr.shape == (h, w) and arr.dtype == np.float32


def test_sixteen_bit_values_preserved(tmp_path, make_image):
    arr = np.array([[0, 1, 255, 256], [1000, 40000, 65535, 12345]], dtype=np.uint16)
    for ext in (".png", ".tif"):
        p = make_image(tmp_path / f"deep{ext}", arr)
        out = load_gray(p)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, arr.astype(np.float32))
        assert out[1, 1] == 40000.0


def test_eight_bit_values_preserved(tmp_path, make_image):
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    p = make_image(tmp_path / "g.png", arr)
    np.testing.assert_array_equal(load_gray(p), arr.astype(np.float32))


def test_rgb_to_luminance(tmp_path, make_image):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0] = 255  # pure red
    out = load_gray(make_image(tmp_path / "red.png", arr))
    # ITU-R 601-2 luma: L = R * 299/1000 -> 76
    np.testing.assert_allclose(out, 76.0, atol=1.0)


def test_transparent_pixels_become_zero(tmp_path, make_image):
    arr = np.full((4, 6, 4), 255, np.uint8)
    arr[:, :3, 3] = 0  # left half fully transparent white
    out = load_gray(make_image(tmp_path / "a.png", arr))
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[:, :3], 0.0)
    np.testing.assert_array_equal(out[:, 3:], 255.0)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20), np.uint8)  # 20 wide, 10 high
    arr[:, :5] = 255
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = tmp_path / "rot.jpg"
    im.save(p, format="JPEG", exif=exif, quality=95)
    out = load_gray(p)
    assert out.shape == (20, 10)


def test_links_to_files_outside_the_folder_are_read_and_warned_once(tmp_path, make_image, caplog):
    """The scan follows a file link out of DATA; export, report and view will not, so it says so once."""
    make_image(tmp_path / "elsewhere" / "a.png")
    make_image(tmp_path / "elsewhere" / "b.png", seed=1)
    make_image(tmp_path / "data" / "inside.png", seed=2)
    for name in ("a.png", "b.png"):
        os.symlink(tmp_path / "elsewhere" / name, tmp_path / "data" / name)
    os.symlink(tmp_path / "data" / "inside.png", tmp_path / "data" / "again.png")  # a link inside: no warning
    with caplog.at_level("WARNING", logger="brainclust"):
        found = scan(tmp_path / "data", progress=False)
    assert sorted(r.path for r in found.records) == ["a.png", "again.png", "b.png", "inside.png"]
    warned = [r.getMessage() for r in caplog.records if "symbolic links to files outside" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("scan: 2 symbolic links")


def test_a_multipage_tiff_is_named_by_its_path_under_the_folder(tmp_path, caplog):
    import logging

    from PIL import Image

    from brainclust.io.scan import scan

    pages = [Image.fromarray(np.full((8, 8), 40 * i, np.uint8)) for i in range(3)]
    (tmp_path / "sub").mkdir()
    pages[0].save(tmp_path / "sub" / "multi.tif", save_all=True, append_images=pages[1:])
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        got = scan(tmp_path)
    assert [r.path for r in got.records] == ["sub/multi.tif"]
    said = [m for m in caplog.messages if "pages" in m]
    assert said == ["sub/multi.tif: a TIFF of 3 pages; only its first page is used"]
    assert str(tmp_path) not in caplog.text


def test_hidden_entries_are_counted_as_left_out_not_lost(tmp_path):
    """Every file gives a row or is accounted for: '.name' files and hidden folders are left out and counted."""
    for rel in ("a.png", ".hidden.png", ".cache/b.png", ".cache/c.png", "sub/.d.png", "sub/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(len(rel)).integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / rel)
    res = scan(tmp_path)
    assert sorted(r.path for r in res.records) == ["a.png", "sub/e.png"]
    hidden = {k: v for k, v in res.excluded.items() if k.startswith("hidden")}
    assert list(hidden.values()) == [3]  # .hidden.png, the .cache folder (once), sub/.d.png
    assert res.n_files == len(res.records) + len(res.skipped) + res.metadata_files + sum(res.excluded.values())


def test_labels_from_folders_take_the_class_below_a_split_folder(tmp_path, make_image):
    from brainclust.model.enrich import with_labels

    for rel in ["Training/glioma/a.png", "Testing/notumor/b.png", "Testing/c.png", "healthy/d.png",
                "Training/glio#ma/e.png", "test/sub-01/anat/f.png"]:
        make_image(tmp_path / rel, "L")
    res = scan(tmp_path, labels_from_folders=True)
    want = {"Training/glioma/a.png": "glioma", "Testing/notumor/b.png": "notumor", "Testing/c.png": "",
            "healthy/d.png": "healthy", "Training/glio#ma/e.png": "glio#ma",
            "test/sub-01/anat/f.png": ""}  # a subject below a split is not a class
    assert {r.path: r.label for r in res.records} == want
    # the run's label column ('folder') reads the same classes; 'folder' itself stays the split
    assert {r.path: r.label for r in with_labels(res.records, "folder")} == want
    assert {r.path: (r.meta["folder"], r.meta.get("class_folder")) for r in res.records} == {
        "Training/glioma/a.png": ("Training", "glioma"), "Testing/notumor/b.png": ("Testing", "notumor"),
        "Testing/c.png": ("Testing", None), "healthy/d.png": ("healthy", None),
        "Training/glio#ma/e.png": ("Training", "glio#ma"), "test/sub-01/anat/f.png": ("test", None)}


@pytest.mark.parametrize("names, warned", [
    (["Doe^John/a.png", "Doe^John/b.png", "x/p_19700101.png"], 2),  # a DICOM person name; a date in a name
    (["glioma/Tr-gl_0010.png", "1.2.840.113619.2.55.3.604688119.969.1268071029.320.png", "2019/x.png"], 0),
    (["DOE_JANE_MRN123456.png", "scan_01JAN1970.png", "p_3-mar-71.png", "dob_x.png", "x.png"], 4),
    (["t1_mprage_sag.png", "sub-01_run-1_T1w.png", "axial10may.png", "adobe_logo.png", "Y158.JPG",
      "no 98.jpg", "dec_1.png", "slice_12.png"], 0),  # month-like words without a day, 'dob' inside a word
])
def test_names_that_look_like_patient_data_are_warned_once_without_showing_them(tmp_path, make_image, caplog, names,
                                                                                  warned):
    for n in names:
        make_image(tmp_path / n, "L")
    with caplog.at_level("WARNING", logger="brainclust"):
        scan(tmp_path, labels_from_folders=True)
    lines = [r.getMessage() for r in caplog.records if "look like" in r.getMessage() or "looks like" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)
    if warned:
        assert lines[0].startswith(f"scan: {warned} file or folder names with what looks like a person's name")
        assert "Doe" not in lines[0] and "1970" not in lines[0]


@pytest.mark.parametrize("root", ["DOE^JOHN", "scan_1970-01-01"])
def test_a_data_folder_whose_own_name_looks_like_patient_data_is_warned_of(tmp_path, make_image, caplog, root):
    """report.html and (since 2026-12-07) checks.html name the data folder by its own name: the scan looked at the
    names under it only, so ``brainclust check DOE^JOHN`` put the name on the page without a word."""
    make_image(tmp_path / root / "a.png", "L")
    with caplog.at_level("WARNING", logger="brainclust"):
        scan(tmp_path / root)
    lines = [r.getMessage() for r in caplog.records if "looks like" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("scan: 1 file or folder name with what looks like")
    assert root not in lines[0]


def test_slices_for_a_folder_without_nifti_is_said_to_change_nothing(tmp_path, make_image, caplog):
    make_image(tmp_path / "a.png", "L")
    with caplog.at_level("WARNING", logger="brainclust"):
        scan(tmp_path)
        assert "changes nothing" not in caplog.text  # the default: nothing to say
        scan(tmp_path, slices="coronal:3")
        scan(tmp_path, volume_index=2)  # a walk's find: it was accepted without a word
        scan(tmp_path, volume_index=2, told=("slices",))  # predict: the run's setting, not the user's
    assert "--slices coronal:3: no NIfTI volume was found, so it changes nothing" in caplog.text
    assert caplog.text.count("--volume-index 2: no NIfTI volume was found, so it changes nothing") == 1
    caplog.clear()
    (tmp_path / "v.nii.gz").write_bytes(b"not a volume")  # found, but skipped: the options did not change nothing
    with caplog.at_level("WARNING", logger="brainclust"):
        scan(tmp_path, slices="coronal:3", volume_index=2)
    assert "skipped v.nii.gz" in caplog.text and "changes nothing" not in caplog.text


def test_a_volume_index_where_every_nifti_file_is_3d_is_said_to_change_nothing(tmp_path, caplog):
    """A walk (2026-12-07): `brainclust run brain_mri_volumes_dev --volume-index 1` (twenty 3-D volumes) ran as
    with 0 without a word; a 4-D file among them makes it count."""
    from corpus import brain_volume, write_nifti

    write_nifti(tmp_path / "a.nii.gz", brain_volume())
    said = "--volume-index 1: every NIfTI file found is 3-D (one volume), so it changes nothing"
    with caplog.at_level("WARNING", logger="brainclust"):
        scan(tmp_path, volume_index=1)
        scan(tmp_path, volume_index=1, told=("slices",))  # predict: the run's setting, not the user's
    assert caplog.text.count(said) == 1
    caplog.clear()
    write_nifti(tmp_path / "b.nii.gz", np.stack([brain_volume(seed=1), brain_volume(seed=2)], axis=-1))
    with caplog.at_level("WARNING", logger="brainclust"):
        res = scan(tmp_path, volume_index=1)
    assert said not in caplog.text and any(r.path.startswith("b.nii.gz") for r in res.records)


def test_a_root_that_is_a_list_or_a_file_is_one_line_saying_so(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(img)
    with pytest.raises(ParameterError, match=r"^root: expected a folder path, got list \(several folders: scan "):
        scan([tmp_path])
    with pytest.raises(InputError, match=r"a\.png' is a file, not a folder: pass the folder that holds the images$"):
        scan(img)
    with pytest.raises(InputError, match="does not exist or is not a folder"):
        scan(tmp_path / "nothing")


def test_a_file_named_like_a_slice_of_another_is_skipped_with_its_reason(tmp_path, make_image):
    """A PNG literally named ``v.nii.gz#axial=N`` beside ``v.nii.gz`` would give two rows of one path (``check``
    wrote both, ``run`` refused its own output after all the work): the scan skips the file and says why."""
    from corpus import brain_volume, write_nifti

    write_nifti(tmp_path / "v.nii.gz", brain_volume())
    make_image(tmp_path / "a.png", seed=1)
    first = scan(tmp_path, slices="axial:3").records
    twin = next(r.path for r in first if r.path.startswith("v.nii.gz#"))
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / twin, format="PNG")
    res = scan(tmp_path, slices="axial:3")
    assert [r.path for r in res.records] == [r.path for r in first]
    assert all(r.abspath != str(tmp_path / twin) for r in res.records)
    assert res.skipped == [{"path": twin, "reason": f"its image '{twin}' has the same name as an image of "
                            "'v.nii.gz' (a '#' in a file name names a frame or slice): rename it"}]


def test_a_folder_that_cannot_be_listed_is_skipped_not_lost(tmp_path, make_image, monkeypatch):
    """``os.walk`` drops a folder it cannot list unless told; the scan lists it as skipped (as root, chmod 000
    does not stop a listing, so the refusal is made by the walk here)."""
    import brainclust.io.walk as walk_mod

    make_image(tmp_path / "a.png", seed=1)
    make_image(tmp_path / "locked" / "b.png", seed=2)
    real_walk = os.walk

    def walk(top, onerror=None, **kw):
        for dirpath, dirnames, filenames in real_walk(top, onerror=onerror, **kw):
            if "locked" in dirnames:
                dirnames.remove("locked")
                onerror(PermissionError(13, "Permission denied", os.path.join(dirpath, "locked")))
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(walk_mod.os, "walk", walk)
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["a.png"]
    assert res.skipped == [{"path": "locked", "reason": "cannot list folder: Permission denied; its files are not "
                            "read"}]
    assert res.skipped_text() == "1 folder"
    assert res.n_files == 2


def test_the_skipped_entries_are_named_files_and_folders():
    from brainclust.io.walk import LINKED_FOLDER, skipped_text

    file, link = {"path": "a.png", "reason": "empty file (0 bytes)"}, {"path": "l", "reason": LINKED_FOLDER}
    assert [skipped_text(s) for s in ([], [file], [file, file], [link], [file, link, link])] == [
        "0 files", "1 file", "2 files", "1 folder", "1 file and 2 folders"]


def test_an_empty_folder_name_is_refused_not_read_as_the_working_folder():
    with pytest.raises(InputError, match="input folder '': empty"):
        scan("")


@pytest.mark.parametrize("value", ["no", 0, None])
def test_labels_from_folders_takes_only_true_or_false(image_folder, value):
    with pytest.raises(ParameterError, match=rf"^labels_from_folders: must be True or False, got {value!r}$"):
        scan(image_folder, labels_from_folders=value)  # "no" read the folders as labels
    assert {r.label for r in scan(image_folder, labels_from_folders=np.bool_(False)).records} == {""}


def test_brainclust_output_folders_are_not_read_as_images(tmp_path, make_image):
    """A walk (2026-12-07): ``brainclust run demo_out`` clustered the demo's report figures with its slices (6 "not
    MRI"), and ``brainclust check my_run`` checked a run's figures; an output folder inside the data is skipped with
    its reason, and one given as the data folder is refused in one line naming it."""
    make_image(tmp_path / "data" / "a.png", seed=1)
    for folder, page in (("results", "assignments.csv"), ("checks", "checks.html")):
        (tmp_path / folder / "figures").mkdir(parents=True)
        (tmp_path / folder / "manifest.json").write_text("{}")
        (tmp_path / folder / page).write_text("")
        make_image(tmp_path / folder / "figures" / "montages.png", seed=2)
    make_image(tmp_path / "plain" / "b.png", seed=3)
    (tmp_path / "plain" / "manifest.json").write_text("{}")  # a data set's own manifest: still data
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["data/a.png", "plain/b.png"]
    assert [(s["path"], s["reason"]) for s in res.skipped] == [
        ("checks", "a brainclust output folder (manifest.json, checks.html): its figures are not data; not read"),
        ("results", "a brainclust output folder (manifest.json, assignments.csv): its figures are not data; not read")]
    assert res.n_files == len(res.records) + len(res.skipped) + res.metadata_files + sum(res.excluded.values())
    assert res.skipped_text() == "2 folders"  # counted as what they are (the summary said "2 files skipped")
    with pytest.raises(InputError, match=r"^input folder '.*results' is a brainclust output folder \(manifest.json, "
                                         r"assignments.csv\), not a folder of images: pass the folder of images"):
        scan(tmp_path / "results")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="no FIFOs or /dev/zero")
def test_a_fifo_or_a_device_named_as_metadata_is_skipped_never_opened(tmp_path, make_image, monkeypatch):
    """A FIFO named ``x.json`` or ``t.tsv`` in the data folder made the scan wait for ever (until 2026-12-07: the
    test of a metadata file, a same-stem sidecar and a BIDS table opened it), and a link named ``y.json`` to
    ``/dev/zero`` was read without end as ``y.png``'s sidecar. Neither is opened now: each is skipped as an image
    file would be. (Any open of such a file fails this test at once instead of hanging it.)"""
    import builtins
    import io
    import stat

    make_image(tmp_path / "x.png", seed=1)
    make_image(tmp_path / "y.png", seed=2)
    os.mkfifo(tmp_path / "x.json")
    os.mkfifo(tmp_path / "t.tsv")
    os.symlink("/dev/zero", tmp_path / "y.json")
    real_open = builtins.open

    def no_special(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.exists(file):
            mode = os.stat(file).st_mode
            assert not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)), f"opened {file}"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_special)
    monkeypatch.setattr(io, "open", no_special)
    res = scan(tmp_path)
    assert [r.path for r in res.records] == ["x.png", "y.png"]
    assert [(s["path"], s["reason"]) for s in res.skipped] == [
        ("t.tsv", "not a regular file (a FIFO); not read"), ("x.json", "not a regular file (a FIFO); not read"),
        ("y.json", "not a regular file (a device); not read")]
    from brainclust.io.bidstables import read_json, read_tsv  # BIDS sidecars and tables (participants.tsv)

    assert read_tsv(tmp_path / "t.tsv") is None and read_json(tmp_path / "x.json") is None
    assert read_json(tmp_path / "y.json") is None
