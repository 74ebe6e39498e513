"""Scanning a BIDS data set: entity columns, sidecars, participants/sessions, the default datatype, filters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from brainclust.errors import InputError, ParameterError
from brainclust.io.metadata import record_columns
from brainclust.io.scan import scan

nib = pytest.importorskip("nibabel")


def head(shape=(16, 18, 12), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum((g / 0.7) ** 2 for g in grid))
    return np.where(r < 1, 100 + rng.normal(0, 5, shape), 0).astype(np.float32)


def put_nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


def put_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def bids_tree(tmp_path) -> Path:
    root = tmp_path / "ds"
    put_json(root / "dataset_description.json", {"Name": "tiny", "BIDSVersion": "1.9.0"})
    (root / "participants.tsv").write_text(
        "participant_id\tsite\tage\tpatient_name\tscan_date\tnotes\n"
        "sub-01\tA\t34\tJohn Doe\t2019-03-04\tx\n"
        "sub-02\tB\t95\tJane Roe\t2020-01-02\ty\n")
    (root / "README").write_text("tiny data set\n")
    put_json(root / "T1w.json", {"MagneticFieldStrength": 3, "RepetitionTime": 2.3, "InstitutionName": "Secret"})
    for i, sub in enumerate(("sub-01", "sub-02")):
        put_nifti(root / sub / "anat" / f"{sub}_T1w.nii.gz", head(seed=i))
        put_nifti(root / sub / "anat" / f"{sub}_ce-gd_T1w.nii.gz", 2 * head(seed=i + 5))
        put_json(root / sub / "anat" / f"{sub}_T1w.json",
                 {"EchoTime": 0.003, "SeriesDescription": "T1 MPRAGE", "PatientName": "Doe^John",
                  "AcquisitionDateTime": "2019-03-04T10:00:00"})
        put_json(root / sub / "anat" / f"{sub}_ce-gd_T1w.json", {"ContrastBolusIngredient": "GADOLINIUM"})
        put_nifti(root / sub / "func" / f"{sub}_task-rest_bold.nii.gz",
                  np.stack([head(seed=9)] * 3, axis=-1))
        put_json(root / sub / "func" / f"{sub}_task-rest_bold.json", {"RepetitionTime": 2.0, "TaskName": "rest"})
    put_nifti(root / "derivatives" / "masks" / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz", head())
    return root


def by_path(found):
    return {r.path: r for r in found.records}


def test_default_is_anat_only_with_one_summary_line_and_no_skipped_sidecars(bids_tree, caplog):
    caplog.set_level(logging.INFO, logger="brainclust")
    found = scan(bids_tree, slices="axial:2")
    files = sorted({r.path.split("#")[0] for r in found.records})
    assert files == ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_ce-gd_T1w.nii.gz",
                     "sub-02/anat/sub-02_T1w.nii.gz", "sub-02/anat/sub-02_ce-gd_T1w.nii.gz"]
    assert found.bids and found.skipped == []
    # 8 JSON + participants.tsv + README are metadata; 2 func files and 1 derivative left out
    assert found.metadata_files == 10
    assert sum(found.excluded.values()) == 3
    assert len({r.path.split("#")[0] for r in found.records}) + found.metadata_files + 3 == found.n_files
    lines = [rec.getMessage() for rec in caplog.records]
    assert sum("metadata file" in m for m in lines) == 1
    assert not any(".json" in m for m in lines)  # no sidecar is listed by name
    assert any("datatype func" in m for m in lines) and any("derivatives/" in m for m in lines)


def test_include_does_not_count_the_metadata_files_it_still_reads_as_left_out(bids_tree):
    """--include of the anat images said '13 file(s) left out' though participants.tsv, dataset_description.json
    and the sidecars were still read as metadata (site, age, echo time): they are not images left out."""
    found = scan(bids_tree, slices="axial:1", include=["sub-*/anat/*.nii.gz"])
    assert found.metadata_files == 10 and found.excluded == {"--include/--exclude-files": 3}  # func x2, derivative
    assert "10 metadata files" in found.summary and "3 files left out: --include" in found.summary
    t1 = next(r for r in found.records if r.path.startswith("sub-01/anat/sub-01_T1w"))
    assert (t1.meta["site"], t1.meta["echo_time_ms"]) == ("A", pytest.approx(3.0))


def test_entities_sidecar_inheritance_and_participants_columns(bids_tree):
    recs = by_path(scan(bids_tree, slices="axial:1"))
    t1 = next(r for p, r in recs.items() if p.startswith("sub-01/anat/sub-01_T1w"))
    ce = next(r for p, r in recs.items() if p.startswith("sub-02/anat/sub-02_ce-gd_T1w"))
    assert t1.meta["subject"] == "sub-01" and t1.meta["sequence"] == "T1w" and t1.meta["suffix"] == "T1w"
    assert ce.meta["ce"] == "gd" and ce.meta["sequence"] == "ce-gd_T1w"
    # root T1w.json (3 T, TR 2.3 s) and the subject's sub-XX_T1w.json (TE 3 ms) apply to both T1w files;
    # the ce file's own sidecar adds the contrast agent as yes/no
    assert t1.meta["field_strength_t"] == 3 and t1.meta["repetition_time_ms"] == pytest.approx(2300)
    assert t1.meta["echo_time_ms"] == pytest.approx(3.0) and t1.meta["series_description"] == "T1 MPRAGE"
    assert ce.meta["echo_time_ms"] == pytest.approx(3.0) and ce.meta["contrast_agent"] == "yes"
    assert "contrast_agent" not in t1.meta
    # participants.tsv: site kept, age > 89 written as 90, name/date/notes columns dropped
    assert (t1.meta["site"], t1.meta["age"]) == ("A", "34")
    assert (ce.meta["site"], ce.meta["age"]) == ("B", "90")
    text = repr(list(recs.values()))
    for secret in ("John Doe", "Jane Roe", "2019-03-04", "Secret", "Doe^John", "patient_name", "scan_date"):
        assert secret not in text


def test_sessions_tsv_is_joined_by_session(tmp_path):
    root = tmp_path / "ds"
    put_json(root / "dataset_description.json", {"Name": "s", "BIDSVersion": "1.9.0"})
    for ses in ("pre", "post"):
        put_nifti(root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T2w.nii.gz", head())
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tweek\tacq_time\n"
                                                         "ses-pre\t0\t2020-01-01T10:00\nses-post\t12\t2020-03-01\n")
    recs = scan(root).records
    assert {(r.meta["session"], r.meta["week"]) for r in recs} == {("ses-pre", "0"), ("ses-post", "12")}
    assert all("acq_time" not in r.meta for r in recs)


def test_session_labels_that_are_dates_are_warned_once_without_the_date(tmp_path, caplog):
    root = tmp_path / "ds"
    put_json(root / "dataset_description.json", {"Name": "s", "BIDSVersion": "1.9.0"})
    for ses in ("20190315", "20200412"):
        put_nifti(root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T2w.nii.gz", head())
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        scan(root)
    said = [r.getMessage() for r in caplog.records if "session labels are calendar dates" in r.getMessage()]
    assert len(said) == 1 and "2019" not in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        for ses in ("pre", "post"):
            put_nifti(tmp_path / "p" / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T2w.nii.gz", head())
        put_json(tmp_path / "p" / "dataset_description.json", {"Name": "s", "BIDSVersion": "1.9.0"})
        scan(tmp_path / "p")
    assert "calendar dates" not in caplog.text


def test_filters_select_and_a_filter_matching_nothing_is_an_error(bids_tree):
    ce = scan(bids_tree, bids_filter="ce=gd")
    assert {r.meta["sequence"] for r in ce.records} == {"ce-gd_T1w"}
    func = scan(bids_tree, bids_filter="datatype=func")
    assert {r.meta["datatype"] for r in func.records} == {"func"}
    assert all(r.frame.endswith("&t=0") for r in func.records)  # a 4-D file: one volume by default
    assert func.records[0].meta["repetition_time_ms"] == pytest.approx(2000)
    with pytest.raises(InputError, match="selects none of its 6 BIDS data file"):
        scan(bids_tree, bids_filter="suffix=FLAIR")
    # the values there, so that a wrong case or form is seen at once (a walk's suffix=t1w, sub=sub-01)
    with pytest.raises(InputError, match=r"\(their values: suffix: T1w, bold; ce: \(none\), gd\)$"):
        scan(bids_tree, bids_filter="suffix=t1w,ce=gd")


def test_bids_filter_needs_a_bids_folder(tmp_path):
    put_nifti(tmp_path / "plain" / "a.nii.gz", head())
    with pytest.raises(ParameterError, match="not a BIDS data set"):
        scan(tmp_path / "plain", bids_filter="suffix=T1w")


def test_table_of_columns_from_records_is_rectangular(bids_tree):
    found = scan(bids_tree, slices="axial:2")
    cols = record_columns(found.records)
    assert all(len(v) == len(found.records) for v in cols.values())
    assert {"folder", "subject", "sequence", "site", "plane", "slice_index", "voxel_z_mm"} <= set(cols)
    assert set(cols["voxel_z_mm"]) == {2.0}  # the affine's z spacing, in canonical axis order
    assert set(cols["ce"]) == {None, "gd"}
    # ce, which only some files have, stays beside the name's other columns, not after every column the first
    # file has (it came after the pixel descriptors in assignments.csv)
    from brainclust.io.outputs import meta_columns

    for order in (list(cols), meta_columns(found.records)):
        assert order.index("subject") < order.index("ce") < order.index("suffix") < order.index("folder"), order


def test_meta_keys_put_a_late_key_after_its_neighbour_in_its_own_record():
    from types import SimpleNamespace

    from brainclust.io.outputs import meta_keys

    recs = [SimpleNamespace(meta={"subject": 1, "suffix": 2, "aspect": 3}), SimpleNamespace(meta=None),
            SimpleNamespace(meta={"subject": 1, "ce": 2, "suffix": 3, "aspect": 4, "late": 5}),
            SimpleNamespace(meta={"first": 0, "subject": 1})]
    assert meta_keys(recs) == ["first", "subject", "ce", "suffix", "aspect", "late"]


#: Files under sub-<label>/ that are not BIDS data files: no BIDS name, a name whose subject is not its folder's,
#: no datatype folder (the probe's cases and one more).
NOT_BIDS = ("sub-01/func/rest_run1.nii.gz", "sub-02/anat/extra_scan.nii.gz", "sub-01/anat/sub-02_T2w.nii.gz",
            "sub-02/sub-02_T1w.nii.gz")
#: Images outside any sub-<label>/ folder: at the top, in another folder, in folders named almost like subjects
#: (a label is letters and digits only). Not BIDS data files either: the same rule.
OUTSIDE = ("extra.nii.gz", "extra/x.nii.gz", "sub-01 copy/anat/sub-01_T1w.nii.gz",
           "sub-01_old/anat/sub-01_T1w.nii.gz")
ANAT = {"sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_ce-gd_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz",
        "sub-02/anat/sub-02_ce-gd_T1w.nii.gz"}


@pytest.fixture
def misnamed_tree(bids_tree) -> Path:
    for rel in NOT_BIDS + OUTSIDE:
        data = np.stack([head(seed=3)] * 3, axis=-1) if "/func/" in rel else head(seed=4 + len(rel))
        put_nifti(bids_tree / rel, data)
    return bids_tree


def files_of(found) -> set[str]:
    return {r.path.split("#")[0] for r in found.records}


def test_files_that_are_not_bids_data_files_are_left_out_counted_and_warned_once(misnamed_tree, caplog):
    with caplog.at_level(logging.INFO, logger="brainclust"):
        found = scan(misnamed_tree, slices="axial:2")
    assert files_of(found) == ANAT
    reason = next(k for k in found.excluded if k.startswith("name not BIDS"))
    n = len(NOT_BIDS) + len(OUTSIDE)
    assert found.excluded[reason] == n and found.skipped == []
    assert len(ANAT) + found.metadata_files + sum(found.excluded.values()) == found.n_files
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "not BIDS" in r.getMessage()]
    assert len(said) == 1 and f"{n} files left out" in said[0] and any(rel in said[0] for rel in NOT_BIDS + OUTSIDE)
    assert f"{n} files left out: name not BIDS" in found.summary


def test_a_bids_filter_does_not_let_files_without_a_bids_name_through(misnamed_tree):
    func = scan(misnamed_tree, bids_filter="datatype=func")
    assert files_of(func) == {"sub-01/func/sub-01_task-rest_bold.nii.gz", "sub-02/func/sub-02_task-rest_bold.nii.gz"}
    anat = scan(misnamed_tree, bids_filter="suffix=T2w|T1w")
    assert files_of(anat) == ANAT


def test_folders_named_almost_like_subjects_alone_are_ordinary_folders(tmp_path):
    root = tmp_path / "copies"  # no dataset_description.json, no sub-<label> folder: not a BIDS data set
    for rel in OUTSIDE[2:]:
        put_nifti(root / rel, head())
    found = scan(root)
    assert not found.bids and found.excluded == {}
    assert files_of(found) == set(OUTSIDE[2:])
    assert {r.meta.get("subject") for r in found.records} == {None}  # no BIDS column is guessed


def test_subject_units_keep_their_subject_and_participants_columns(misnamed_tree):
    from brainclust.features.units import group, unit_columns, unit_ids

    recs = [r for r in scan(misnamed_tree, slices="axial:2").records if r.path.startswith("sub-")]
    idx = group(unit_ids(recs, "subject"))
    cols = unit_columns({c: [r.meta.get(c) for r in recs] for c in ("subject", "site", "age")}, idx)
    assert idx.ids == ["sub-01", "sub-02"]
    assert (cols["subject"], cols["site"], cols["age"]) == (["sub-01", "sub-02"], ["A", "B"], ["34", "90"])


def test_subject_folders_without_any_bids_named_file_are_read_as_ordinary_folders(tmp_path, caplog):
    root = tmp_path / "subjects"  # detected as BIDS (sub-<label> folders), but no file has a BIDS name
    put_nifti(root / "sub-01" / "t1.nii.gz", head())
    put_nifti(root / "sub-02" / "anat" / "t1.nii.gz", head(seed=1))
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        found = scan(root)
    assert {r.path.split("#")[0] for r in found.records} == {"sub-01/t1.nii.gz", "sub-02/anat/t1.nii.gz"}
    assert found.excluded == {} and "not BIDS" not in caplog.text


def test_bids_off_reads_a_bids_data_set_as_ordinary_folders(misnamed_tree):
    found = scan(misnamed_tree, slices="axial:2", bids="off")
    files = files_of(found)
    assert not found.bids and "BIDS" not in found.summary and found.excluded == {}
    # every image: the anatomical ones, func, derivatives, and the files that are not BIDS data files
    assert ANAT | set(NOT_BIDS) | set(OUTSIDE) <= files
    assert {"sub-01/func/sub-01_task-rest_bold.nii.gz",
            "derivatives/masks/sub-01/anat/sub-01_desc-brain_mask.nii.gz"} <= files
    assert not any("subject" in r.meta or "suffix" in r.meta or "site" in r.meta for r in found.records)
    t1 = next(r for r in found.records if r.path.startswith("sub-01/anat/sub-01_T1w.nii.gz"))
    assert t1.meta["echo_time_ms"] == pytest.approx(3.0)  # its same-stem sidecar, as for any folder
    assert "field_strength_t" not in t1.meta  # the data set's T1w.json is not inherited outside BIDS
    assert files_of(scan(misnamed_tree, slices="axial:2", bids="auto")) == ANAT


@pytest.mark.parametrize("kwargs, message", [
    ({"bids": "off", "bids_filter": "suffix=T1w"}, "--bids-filter: would be ignored with --bids off"),
    ({"bids": "maybe"}, "--bids: must be one of auto, off"),
])
def test_bids_mode_errors_are_one_line(bids_tree, kwargs, message):
    with pytest.raises(ParameterError, match=message) as err:
        scan(bids_tree, **kwargs)
    assert "\n" not in str(err.value)


def test_labels_from_folders_on_a_bids_data_set_warns_that_they_are_the_subjects(bids_tree, caplog):
    """A walk: --labels-from-folders on a BIDS data set scored against sub-01, sub-02... without a word."""
    from brainclust.model.steercolumns import check_label_column

    with caplog.at_level(logging.WARNING, logger="brainclust"):
        check_label_column("folder", scan(bids_tree, labels_from_folders=True, slices="axial:2").records)
    said = [r.getMessage() for r in caplog.records if "--labels-from-folders" in r.getMessage()]
    assert said == ["--labels-from-folders: the first-level folders of a BIDS data set are its subjects (sub-01, "
                    "sub-02), so the clusters are scored against the subjects; to score against a column the file "
                    "names give, use --labels COLUMN instead (here: sequence, ce)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brainclust"):  # read as ordinary folders: the folders are classes
        check_label_column("folder", scan(bids_tree, labels_from_folders=True, slices="axial:2", bids="off").records)
    assert "--labels-from-folders" not in caplog.text
