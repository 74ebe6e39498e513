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
