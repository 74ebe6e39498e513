"""What a run says on stderr: warnings only for what the user chose or must act on (``-q`` keeps only those),
and refusals as early as what they depend on is known."""

from __future__ import annotations

import pytest

from brainclust.cli import main
from conftest import two_group_images


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def strata(tmp_path_factory):
    """Two folders of 40 images each: more images per folder than the 32 features of --backbone histogram."""
    root = tmp_path_factory.mktemp("strata") / "data"
    two_group_images(root / "a", n=40, seed=1)
    two_group_images(root / "b", n=40, seed=2)
    return root


@pytest.mark.parametrize("within", [[], ["--within", "folder"]])
def test_the_default_pca_on_narrow_features_is_no_warning_and_a_given_one_names_the_features(capsys, strata,
                                                                                             tmp_path, within):
    """--backbone histogram has 32 features: the default --pca 50 is capped without a word under -q (the user never
    set it); --pca 50 given is a warning that names the 32 features (not the images of the strata)."""
    common = ["-q", "run", strata, "--k", "2", "--backbone", "histogram", "--checks", "off", "--no-report",
              "--descriptors", "off", "--permutations", "0", "--cache-dir", tmp_path / "c", *within]
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "default")
    assert code == 0 and "--pca" not in err, err
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "given", "--pca", "50")
    said = [ln for ln in err.splitlines() if "--pca" in ln]
    prefix = "brainclust: --within: " if within else "brainclust: "
    assert code == 0 and said == [f"{prefix}--pca 50 is more than the 32 features allow; using 32"
                                  + (" in 2 strata" if within else "")], err


@pytest.mark.parametrize("k, message", [("5", "--k: 5 clusters requested but"),
                                        ("auto", "--k auto: needs at least 3 images to compare k = 2..15, but")])
def test_a_k_that_two_images_cannot_give_is_refused_before_any_model_is_built(capsys, tmp_path, monkeypatch, k,
                                                                              message):
    """--k auto on two images was refused only after the scan, the extraction and a PCA warning; now, as --k 5,
    in one line once the scan has counted the images, before any model is built."""
    from brainclust import pipeline

    data = two_group_images(tmp_path / "two", n=2)
    monkeypatch.setattr(pipeline, "build_model", lambda *a, **kw: pytest.fail("a model was built"))
    code, _, err = run_cli(capsys, "run", data, "--out", tmp_path / "o", "--k", k, "--cache-dir", tmp_path / "c")
    assert code == 2 and err.splitlines() == [f"brainclust: error: {message} '{data}' has only 2 images (found by "
                                              "the scan, decodable or not)"]
    assert not (tmp_path / "o").exists()


def test_the_early_k_check_does_not_call_an_image_that_cannot_be_decoded_readable(capsys, tmp_path, monkeypatch):
    """A PNG whose header reads but whose pixels do not decode counts in the scan: --k 3 on it and one good image
    said the folder 'has only 2 readable image(s)' (one is), and --k 2 warned '2 readable image(s)' before the
    extraction refused '1 decodable image(s)'."""
    from brainclust import pipeline

    data = two_group_images(tmp_path / "two", n=1)
    good = next(data.rglob("*.png"))
    (data / "x.png").write_bytes(good.read_bytes()[:60])  # signature and header, then cut: cannot be decoded
    monkeypatch.setattr(pipeline, "build_model", lambda *a, **kw: pytest.fail("a model was built"))
    code, _, err = run_cli(capsys, "run", data, "--out", tmp_path / "o", "--k", "3", "--cache-dir", tmp_path / "c")
    assert code == 2 and err.splitlines()[-1] == (f"brainclust: error: --k: 3 clusters requested but '{data}' has only "
                                                  "2 images (found by the scan, decodable or not)")
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "run", data, "--out", tmp_path / "o", "--k", "2", "--checks", "off", "--descriptors",
                           "off", "--backbone", "histogram", "--cache-dir", tmp_path / "c")
    assert code == 2 and "readable" not in err and "clustering needs 2 decodable images; " in err and "has 1" in err


def test_a_k_equal_to_the_number_of_images_is_one_warning(capsys, tmp_path):
    """--k 4 on 4 images makes every image its own cluster: said once (it was said twice, then not at all)."""
    data = two_group_images(tmp_path / "four", n=4)
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "4", "--checks", "off",
                             "--no-report", "--descriptors", "off", "--permutations", "0", "--backbone", "histogram",
                             "--cache-dir", tmp_path / "c")
    assert code == 0 and "4 images, 4 clusters" in out
    assert err.splitlines() == [f"brainclust: --k 4: '{data}' has 4 images (found by the scan, decodable or not): "
                                "every image is a cluster of its own (no silhouette)"], err


def test_a_k_equal_to_the_distinct_contents_is_one_warning(capsys, tmp_path):
    """--k 3 on 4 images, one a copy of another (3 distinct contents), made each content a cluster of its own without
    a word, as --k 4 on 4 images said (--k 4 there is refused: identical files share one point)."""
    data = two_group_images(tmp_path / "three", n=3)
    (data / "copy.png").write_bytes((data / "img00.png").read_bytes())
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "3", "--checks", "off",
                             "--no-report", "--descriptors", "off", "--permutations", "0", "--backbone", "histogram",
                             "--cache-dir", tmp_path / "c")
    assert code == 0 and "4 images, 3 clusters" in out
    assert err.splitlines() == [f"brainclust: --k 3: only 3 of the 4 images in '{data}' have distinct contents "
                                "(identical files share one point): every distinct image is a cluster of its own"], err


def test_a_k_equal_to_the_images_decoded_is_one_warning(capsys, tmp_path):
    """--k 3 on 4 images one of which cannot be decoded made every image its own cluster without a word: the early
    check counts the scan's 4 images, and nothing counted the 3 decoded."""
    data = two_group_images(tmp_path / "three", n=3)
    (data / "x.png").write_bytes(next(data.rglob("*.png")).read_bytes()[:60])  # a PNG header, then cut
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "3", "--checks", "off",
                             "--no-report", "--descriptors", "off", "--permutations", "0", "--backbone", "histogram",
                             "--cache-dir", tmp_path / "c")
    said = [ln for ln in err.splitlines() if "--k 3" in ln]
    assert code == 0 and "3 images, 3 clusters" in out
    assert said == ["brainclust: --k 3: only 3 images could be decoded: every image is a cluster of its own (no "
                    "silhouette)"], err


def test_a_k_equal_to_the_images_left_after_exclude_is_one_warning(capsys, tmp_path):
    """With --exclude the images are counted again once the checks set some aside: --k 4 on 4 images and 2 blanks
    warns there, and not before (it warned about the 6 images first, a review found)."""
    import numpy as np
    from PIL import Image

    data = two_group_images(tmp_path / "six", n=4)
    for i in range(2):
        Image.fromarray(np.full((64, 64), 255 * i, np.uint8)).save(data / f"blank_{i}.png")
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "4", "--exclude", "blank",
                             "--no-report", "--descriptors", "off", "--permutations", "0", "--backbone", "histogram",
                             "--cache-dir", tmp_path / "c")
    said = [ln for ln in err.splitlines() if "--k 4" in ln]
    assert code == 0 and len(said) == 1 and "4 images are left after the" in said[0], err


def test_quiet_says_nothing_of_the_default_backbone_choice(capsys, tmp_path, monkeypatch):
    """Offline, --backbone auto is efficientnet_lite0: the documented default, nothing to act on, so -q shows no
    line about Inception V3 (it printed a warning on every run)."""
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no Inception V3 weights cached
    data = two_group_images(tmp_path / "d", n=6)
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "2", "--checks", "off",
                             "--no-report", "--descriptors", "off", "--permutations", "0", "--runtime", "torch",
                             "--workers", "0", "--cache-dir", tmp_path / "c")
    assert code == 0 and "6 images, 2 clusters" in out
    assert err == "", err


@pytest.mark.parametrize("unit", ["volume", "subject"])
@pytest.mark.parametrize("k, message", [("3", "--k: 3 clusters requested but"),
                                        ("auto", "--k auto: needs at least 3 {unit}s to compare k = 2..15, but")])
def test_a_k_that_two_units_cannot_give_is_refused_before_any_model_is_built(capsys, tmp_path, monkeypatch, unit, k,
                                                                             message):
    """--unit clusters the units: 2 subjects of one volume each, 8 slices, were let through by the early check (it
    counted the slices) and refused after the extraction; now one line that counts the units."""
    nib = pytest.importorskip("nibabel")
    import numpy as np
    from brainclust import pipeline

    data = tmp_path / "two"
    for i, subject in enumerate(("s1", "s2")):
        (data / subject).mkdir(parents=True)
        volume = np.random.default_rng(i).random((16, 16, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(data / subject / "t1.nii.gz"))
    monkeypatch.setattr(pipeline, "build_model", lambda *a, **kw: pytest.fail("a model was built"))
    code, _, err = run_cli(capsys, "run", data, "--out", tmp_path / "o", "--k", k, "--unit", unit, "--slices",
                           "axial:4", "--descriptors", "off", "--cache-dir", tmp_path / "c")
    assert code == 2 and err.splitlines() == [f"brainclust: error: {message.format(unit=unit)} '{data}' has only "
                                              f"2 {unit}s (--unit {unit})"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("unit", ["volume", "subject"])
def test_a_k_equal_to_the_units_decoded_is_one_warning(capsys, tmp_path, unit):
    """--unit: 3 subjects of one NIfTI volume each and a fourth whose only image cannot be decoded, --k 3: the
    failure left 3 units, every one its own cluster, without a word (the slice case warns); now the same line."""
    nib = pytest.importorskip("nibabel")
    import numpy as np

    data = tmp_path / "four"
    for i, subject in enumerate(("s1", "s2", "s3")):
        (data / subject).mkdir(parents=True)
        volume = np.random.default_rng(i).random((16, 16, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(data / subject / "t1.nii.gz"))
    (data / "s4").mkdir()
    png = two_group_images(tmp_path / "png", n=1)
    (data / "s4" / "x.png").write_bytes(next(png.rglob("*.png")).read_bytes()[:60])  # a PNG header, then cut
    code, out, err = run_cli(capsys, "-q", "run", data, "--out", tmp_path / "o", "--k", "3", "--unit", unit,
                             "--slices", "axial:4", "--checks", "off", "--no-report", "--descriptors", "off",
                             "--permutations", "0", "--backbone", "histogram", "--cache-dir", tmp_path / "c")
    said = [ln for ln in err.splitlines() if "--k 3" in ln]
    assert code == 0 and f"3 {unit}s from 12 images, 3 clusters" in out, out + err
    assert said == [f"brainclust: --k 3: only 3 {unit}s could be decoded: every {unit} is a cluster of its own (no "
                    "silhouette)"], err


def test_a_k_equal_to_the_images_is_one_warning_with_an_exclude_that_sets_none_aside(capsys, tmp_path):
    """--exclude blank on 4 images none of which is blank, --k 4: every image its own cluster without a word (the
    count waits for the rows left, and nothing counted them when none was set aside); now as without --exclude."""
    data = two_group_images(tmp_path / "four", n=4)
    common = ["-q", "run", data, "--k", "4", "--no-report", "--descriptors", "off", "--permutations", "0",
              "--backbone", "histogram", "--cache-dir", tmp_path / "c"]
    code, _, plain = run_cli(capsys, *common, "--out", tmp_path / "plain")
    assert code == 0 and len(plain.splitlines()) == 1 and "every image is a cluster of its own" in plain, plain
    code, out, err = run_cli(capsys, *common, "--out", tmp_path / "o", "--exclude", "blank")
    assert code == 0 and "--exclude blank: no image carries these flags" in out
    assert err == plain, err
