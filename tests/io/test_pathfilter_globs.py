"""--include / --exclude-files: glob rules over relative paths, and their effect on a scan."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainclust.errors import ParameterError
from brainclust.io.pathfilter import PathFilter, compile_glob
from brainclust.io.scan import scan


@pytest.mark.parametrize("pattern, yes, no", [
    ("*.dcm", ["a.dcm", "x/y/b.dcm"], ["a.dcm.bak", "a.png"]),
    ("sub-*/anat/*", ["sub-01/anat/x.nii.gz"], ["sub-01/func/x.nii.gz", "sub-01/anat/deep/x.nii"]),
    ("**/anat/*.nii.gz", ["anat/a.nii.gz", "sub-01/ses-1/anat/a.nii.gz"], ["sub-01/anat/a.nii"]),
    ("derivatives/", ["derivatives/a.png", "derivatives/x/y.png"], ["a/derivatives.png"]),
    ("localizer/", ["s1/localizer/a.dcm", "localizer/b.dcm"], ["s1/localizers/a.dcm"]),
    ("scan?.png", ["scan1.png", "d/scanA.png"], ["scan10.png"]),
    ("[!a]*.png", ["b.png"], ["a.png"]),
    ("img[0-9].png", ["img3.png"], ["imgx.png"]),
])
def test_glob_rules(pattern, yes, no):
    rx = compile_glob(pattern)
    assert all(rx.match(p) for p in yes), [p for p in yes if not rx.match(p)]
    assert not any(rx.match(p) for p in no), [p for p in no if rx.match(p)]


@pytest.mark.parametrize("bad", ["", "  ", "/abs/*.png", "a[bc.png"])
def test_bad_patterns_are_parameter_errors_naming_the_option(bad):
    with pytest.raises(ParameterError, match="--exclude-files"):
        PathFilter(exclude=[bad])


def test_include_and_exclude_in_a_scan_are_counted_not_skipped(tmp_path):
    px = np.zeros((8, 8), np.uint8)
    px[2:6, 2:6] = 200
    for rel in ("a/x1.png", "a/x2.png", "a/localizer/l.png", "b/y.png", "b/y.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(tmp_path / rel)
    found = scan(tmp_path, include=["*.png"], exclude=["localizer/", "b/*"])
    assert [r.path for r in found.records] == ["a/x1.png", "a/x2.png"]
    assert found.skipped == [] and found.excluded == {"--include/--exclude-files": 3}
    assert "3 files left out: --include/--exclude-files" in found.summary
    assert PathFilter()("anything") and not PathFilter()


def test_a_string_is_one_pattern_not_its_characters(tmp_path):
    px = np.zeros((8, 8), np.uint8)
    px[2:6, 2:6] = 200
    for rel in ("a/x.png", "a/x.jpg", "b/y.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(tmp_path / rel)
    assert [r.path for r in scan(tmp_path, include="*.png").records] == ["a/x.png"]  # '*' alone matched all
    assert [r.path for r in scan(tmp_path, include="a/*").records] == ["a/x.jpg", "a/x.png"]
    assert [r.path for r in scan(tmp_path, exclude="a/*").records] == ["b/y.jpg"]
    assert PathFilter("*.png", "b/").include == ("*.png",) and PathFilter(None, "b/").exclude == ("b/",)
    with pytest.raises(ParameterError, match=r"^--include: expected a pattern or a list of patterns, got 3$"):
        PathFilter(include=3)


def test_check_data_reads_a_string_include_as_one_pattern(tmp_path):
    """brainclust.checks.stage.check_data made a tuple of the string itself: '*' matched every file (review)."""
    import numpy as np
    from PIL import Image

    from brainclust.checks.stage import check_data

    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.jpg"):
        Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype("uint8")).save(tmp_path / "a" / name)
    assert check_data(tmp_path, None, include="*.png", progress=False).paths == ["a/x.png"]
