"""The strict BIDS name parser and the entity filter."""

from __future__ import annotations

import pytest

from brainclust.errors import ParameterError
from brainclust.io import bids


def test_parse_name_reads_entities_suffix_and_extension():
    n = bids.parse_name("sub-01_ses-2_acq-fast_ce-gadolinium_run-03_T1w.nii.gz")
    assert n.entity_map == {"sub": "01", "ses": "2", "acq": "fast", "ce": "gadolinium", "run": "03"}
    assert (n.suffix, n.extension) == ("T1w", ".nii.gz")


@pytest.mark.parametrize("bad", [
    "T1w.nii.gz",                          # no sub
    "sub-01_T1w",                          # no extension
    "sub-01_foo-bar_T1w.nii.gz",           # unknown entity
    "sub-01_acq-a_b_T1w.nii.gz",           # a label with '_' inside
    "sub-01_acq-x_acq-y_T1w.nii.gz",       # repeated entity
    "sub-0.1_T1w.nii.gz",                  # label with a dot
    "sub-01_T1w.nii.gz\n",                 # a trailing newline ('$' of a regular expression accepts it)
])
def test_parse_name_refuses_what_is_not_a_bids_name(bad):
    assert bids.parse_name(bad) is None


def test_parse_path_checks_the_folders_against_the_name():
    f = bids.parse_path("sub-01/ses-a/anat/sub-01_ses-a_FLAIR.nii.gz")
    assert (f.subject, f.session, f.datatype, f.name.suffix) == ("sub-01", "ses-a", "anat", "FLAIR")
    assert bids.parse_path("sub-01/anat/sub-02_T1w.nii.gz") is None     # folder and name disagree
    assert bids.parse_path("sub-01/ses-a/anat/sub-01_ses-b_T1w.nii") is None
    assert bids.parse_path("sub-01/anat/sub-01_ses-a_T1w.nii") is None  # ses in the name, no ses folder
    assert bids.parse_path("sub-01/sub-01_T1w.nii.gz") is None          # no datatype folder


def test_name_columns_give_subject_entities_and_a_sequence_without_repetition_entities():
    f = bids.parse_path("sub-07/ses-1/anat/sub-07_ses-1_ce-gd_run-2_T1w.nii.gz")
    cols = bids.name_columns(f)
    assert cols == {"subject": "sub-07", "session": "ses-1", "ce": "gd", "run": "2", "suffix": "T1w",
                    "datatype": "anat", "sequence": "ce-gd_T1w"}


def test_filter_parsing_long_names_alternatives_and_index_entities():
    filt = bids.parse_filter("suffix=T1w|FLAIR, subject=01,run=1, extension=nii.gz")
    assert filt == {"suffix": frozenset({"T1w", "FLAIR"}), "sub": frozenset({"01"}), "run": frozenset({"1"}),
                    "extension": frozenset({".nii.gz"})}
    assert bids.parse_filter("suffix=T1w,suffix=T2w") == {"suffix": frozenset({"T1w", "T2w"})}
    assert bids.parse_filter({"datatype": ["func"]}) == {"datatype": frozenset({"func"})}
    assert bids.parse_filter(None) == {} == bids.parse_filter("")


@pytest.mark.parametrize("bad, words", [("colour=red", "unknown key 'colour'"), ("suffix", "KEY=VALUE"),
                                        ("suffix=", "key 'suffix' has an empty value in 'suffix='"),
                                        ("suffix=T1w|", "key 'suffix' has an empty value"),
                                        ("ce=", "--exclude-files '*_ce-*' leaves out the files that have the key"),
                                        ("acquisition=,suffix=T1w", "(acq=VALUE); --exclude-files '*_acq-*'")])
def test_filter_errors_name_the_option_and_the_value(bad, words):
    with pytest.raises(ParameterError, match="--bids-filter") as exc:
        bids.parse_filter(bad)
    assert words in str(exc.value)


def test_matches_applies_the_default_datatype_and_numeric_runs():
    anat = bids.parse_path("sub-01/anat/sub-01_run-01_T1w.nii.gz")
    func = bids.parse_path("sub-01/func/sub-01_task-rest_bold.nii.gz")
    assert bids.matches(anat, {}) and not bids.matches(func, {})           # anat only by default
    assert bids.matches(func, bids.parse_filter("datatype=func"))
    assert bids.matches(anat, bids.parse_filter("run=1"))                  # run-01 == 1
    assert not bids.matches(anat, bids.parse_filter("acq=fast"))           # no acq entity: no match
    assert not bids.matches(anat, bids.parse_filter("suffix=FLAIR"))


def test_parse_path_never_takes_a_session_or_other_non_datatype_folder_as_the_datatype():
    assert bids.parse_path("sub-01/ses-a/sub-01_T1w.nii.gz") is None   # ses folder, no datatype folder
    assert bids.parse_path("sub-01/anat_old/sub-01_T1w.nii.gz") is None  # not a datatype (lower-case letters)
    assert bids.parse_path("sub-01/dwi/sub-01_dwi.nii.gz").datatype == "dwi"


@pytest.mark.parametrize("name, expected", [("sub-01", True), ("sub-A2b", True), ("sub-01 copy", False),
                                            ("sub-01_old", False), ("sub-", False), ("sub-01\n", False),
                                            ("Sub-01", False), ("sub-01-02", False)])
def test_a_subject_folder_label_is_letters_and_digits_only(name, expected):
    assert bids.is_subject_folder(name) is expected


def test_folders_named_almost_like_subjects_do_not_make_a_bids_data_set(tmp_path):
    for name in ("sub-01 copy", "sub-01_old", "sub-", "sub-01\n"):  # a newline: "$" of a regex accepts it
        (tmp_path / name).mkdir()
    assert not bids.is_bids_root(tmp_path)
    (tmp_path / "sub-01").write_text("a file, not a folder")
    assert not bids.is_bids_root(tmp_path)
    (tmp_path / "sub-02").mkdir()
    assert bids.is_bids_root(tmp_path)
