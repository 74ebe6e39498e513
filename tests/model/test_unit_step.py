"""The unit step (``--unit``) inside the model, its persistence, and the new run settings (no backbone)."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.cli import build_parser, config_from_args
from brainclust.errors import ModelFileError, NotFittedError, ParameterError
from brainclust.features.unitpool import UnitPool, UnitRecord, slice_rows, unit_records
from brainclust.io.outputs import assignment_rows, column_name, meta_columns
from brainclust.io.scan import ImageRecord
from brainclust.model.composite import Batch
from brainclust.model.config import RunConfig, build_steps
from brainclust.model.enrich import with_labels
from brainclust.model.persist import STEP_CLASSES


def slice_rec(vol: str, z: int, *, subject: str, seq: str, width: int = 8, label: str = "") -> ImageRecord:
    return ImageRecord(path=f"{vol}#axial={z}", abspath=f"/d/{vol}", name=vol.rsplit("/", 1)[-1], type="nifti",
                       size=100, width=width, height=8, sha256=f"{vol}-hash", label=label, frame=f"axial={z}",
                       meta={"subject": subject, "sequence": seq, "slice_index": z, "intensity_mean": float(z),
                             "label": "reserved"})


@pytest.fixture
def slices():
    recs, rows = [], []
    rng = np.random.default_rng(0)
    for s in ("sub-01", "sub-02"):
        for q in ("T1w", "FLAIR"):
            for z in (3, 5, 7):
                recs.append(slice_rec(f"{s}/anat/{s}_{q}.nii.gz", z, subject=s, seq=q))
                rows.append(rng.normal(size=6))
    return recs, np.asarray(rows, dtype=np.float32)


def unit_norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_volume_step_pools_rows_by_the_documented_rule(slices):
    recs, X = slices
    step = UnitPool(unit="volume")
    out = step.fit_batch(Batch(recs, X))
    assert [u.path for u in out.records] == ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz",
                                             "sub-02/anat/sub-02_T1w.nii.gz", "sub-02/anat/sub-02_FLAIR.nii.gz"]
    expected = unit_norm(np.stack([unit_norm(X[i:i + 3]).mean(0) for i in range(0, 12, 3)]))
    np.testing.assert_allclose(out.X, expected, rtol=1e-5, atol=1e-6)
    u = out.records[0]
    assert (u.unit, u.kind, u.n_slices, len(u.members)) == (u.path, "volume", 3, 3)
    assert u.meta["sequence"] == "T1w" and u.meta["subject"] == "sub-01"
    assert "slice_index" not in u.meta and u.meta["intensity_mean"] == pytest.approx(5.0)  # mean of 3, 5, 7
    # predict: the same rule on new rows, and the fitted width is enforced
    again = step.transform_batch(Batch(recs[:3], X[:3]))
    np.testing.assert_allclose(again.X, expected[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ParameterError, match="--unit volume: 5 features per slice"):
        step.transform_batch(Batch(recs[:3], X[:3, :5]))


def test_subject_units_and_rows_of_the_outputs(slices):
    recs, X = slices
    units = unit_records(recs, ["sub-01"] * 6 + ["sub-02"] * 6, "subject")
    assert [(u.path, u.n_slices, u.meta["sequence"], u.type) for u in units] == [
        ("sub-01", 6, "mixed", "nifti"), ("sub-02", 6, "mixed", "nifti")]
    assert units[0].size == 200  # two distinct files of 100 bytes
    rows = assignment_rows(units, np.array([0, 1]), None)
    assert list(rows[0])[:10] == ["path", "name", "type", "size", "width", "height", "label", "cluster", "unit",
                                  "n_slices"]
    assert rows[0]["unit"] == "sub-01" and rows[0]["n_slices"] == 6
    # a metadata column named like a run column is written with the prefix, in both places
    assert "meta_label" in rows[0] and column_name("label") == "meta_label" and "meta_label" in meta_columns(units)
    assert [r["path"] for r in slice_rows(units)][:2] == [recs[0].path, recs[1].path]
    assert {r["unit"] for r in slice_rows(units)} == {"sub-01", "sub-02"}


def test_labels_come_from_any_column_and_a_missing_one_is_an_error(slices):
    recs, _ = slices
    got = with_labels(recs, "sequence")
    assert [r.label for r in got[:4]] == ["T1w", "T1w", "T1w", "FLAIR"]
    with pytest.raises(Exception, match="--labels: no row has a value in column 'site'; metadata columns"):
        with_labels(recs, "site")
    with pytest.raises(Exception, match="column 'PatientName' \\(a column whose name marks patient data is never "):
        with_labels(recs, "PatientName")


def test_labels_that_cannot_be_scored_are_warned(caplog):
    """--labels on an identifier (NMI 0.45 against a value per image) or a constant (FMI 0.58) was taken
    silently (a probe's find); a column of classes is not warned."""
    from brainclust.io.scan import ImageRecord

    def recs(values):
        return [ImageRecord(path=f"{i}.png", abspath=f"/d/{i}.png", name=f"{i}.png", type="png", size=1, width=8,
                            height=8, sha256=str(i), meta={"c": v}) for i, v in enumerate(values)]

    with caplog.at_level("WARNING", logger="brainclust"):
        with_labels(recs([str(i) for i in range(10)]), "c")
        with_labels(recs(["a"] * 10), "c")
        with_labels(recs(["a", "b"] * 5), "c")
    said = [r.getMessage() for r in caplog.records]
    assert said == ["--labels c: 10 values for 10 labelled rows (an identifier or a continuous number?); the label "
                    "scores say little: name a column of classes",
                    "--labels c: one value in every labelled row; the label scores say nothing"]


def test_the_step_saves_and_loads_and_refuses_an_unfitted_use(tmp_path, slices):
    recs, X = slices
    with pytest.raises(NotFittedError):
        UnitPool().transform_batch(Batch(recs, X))
    step = UnitPool(unit="subject")
    step.fit_batch(Batch(recs, X))
    entry = step.save_step(tmp_path)
    assert entry["class"] == "UnitPool" and entry["params"] == {"unit": "subject"} and entry["n_features_in"] == 6
    assert STEP_CLASSES["UnitPool"] is UnitPool
    back = UnitPool.load_step(tmp_path, entry)
    np.testing.assert_allclose(back.transform_batch(Batch(recs, X)).X, step.transform_batch(Batch(recs, X)).X)
    with pytest.raises(ModelFileError, match="n_features_in"):
        UnitPool.load_step(tmp_path, {**entry, "n_features_in": "6"})
    with pytest.raises(ModelFileError, match="--unit"):
        UnitPool.load_step(tmp_path, {**entry, "params": {"unit": "patient"}})


def test_build_steps_puts_the_unit_step_before_the_reducer():
    assert [n for n, _ in build_steps(RunConfig(unit="volume"))] == ["extractor", "checks", "units", "reducer",
                                                                     "clusterer"]
    assert [n for n, _ in build_steps(RunConfig())] == ["extractor", "checks", "reducer", "clusterer"]
    assert [n for n, _ in build_steps(RunConfig(unit="volume", checks="off"))] == ["extractor", "units", "reducer",
                                                                                   "clusterer"]


@pytest.mark.parametrize("settings, message", [
    ({"unit": "patient"}, "--unit: must be one of slice, volume, series, subject"),
    ({"metadata_key": "path"}, "--metadata-key: would be ignored"),
    ({"labels": "site", "labels_from_folders": True}, "--labels and --labels-from-folders: choose one"),
    ({"include": ("[ab",)}, "--include"),
    ({"bids_filter": "suffix"}, "--bids-filter"),
    ({"permutations": -1}, "--permutations: must be an integer from 0 to 100000"),
    ({"descriptors": "maybe"}, "--descriptors: must be one of on, off"),
    ({"unit": "volume", "auto": True}, "--unit volume: not available with --auto"),
])
def test_new_settings_are_checked_by_the_library(settings, message):
    with pytest.raises(ParameterError) as err:
        RunConfig(**settings).validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_repeatable_options_parse_into_tuples():
    run = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    cfg = config_from_args(run.parse_args(["d", "--out", "o", "--include", "**/anat/*", "--include", "*.dcm",
                                           "--exclude-files", "localizer/", "--unit", "subject", "--labels",
                                           "site", "--metadata", "m.csv", "--metadata-key", "participant_id"]))
    assert cfg.include == ("**/anat/*", "*.dcm") and cfg.exclude_files == ("localizer/",)
    assert (cfg.unit, cfg.labels, cfg.metadata, cfg.metadata_key) == ("subject", "site", "m.csv", "participant_id")
    assert config_from_args(run.parse_args(["d", "--out", "o"])).include == ()


def test_unit_record_is_what_the_outputs_need():
    u = UnitRecord(path="sub-01", abspath="/d/x", name="sub-01", type="nifti", size=1, width=2, height=3,
                   sha256="ab", unit="sub-01", kind="subject", n_slices=4)
    assert u.key == "ab" and assignment_rows([u], [0], None)[0]["n_slices"] == 4


def test_a_unit_whose_slices_disagree_or_are_partly_labelled_has_no_label(slices):
    from dataclasses import replace

    recs, X = slices
    recs = [replace(r, meta={**r.meta, "grade": ("HGG" if r.meta["subject"] == "sub-01" else
                                                  ("LGG" if r.meta["slice_index"] == 3 else None))}) for r in recs]
    units = UnitPool(unit="subject").fit_batch(Batch(recs, X)).records
    assert [u.meta["grade"] for u in units] == ["HGG", "mixed"]          # sub-02: one slice of three labelled
    assert [u.label for u in with_labels(units, "grade")] == ["HGG", ""]
    assert [r.label for r in with_labels(recs, "grade")][:4] == ["HGG"] * 4   # slices keep their own values


def test_a_label_column_that_varies_within_every_unit_is_said_to_give_no_score(slices, caplog):
    """--unit subject --labels sequence: every subject mixes sequences, so no unit has a label; a new user's probe
    got no score and no word about why."""
    import logging

    recs, X = slices
    units = UnitPool(unit="subject").fit_batch(Batch(recs, X)).records
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        assert [u.label for u in with_labels(units, "sequence")] == ["", ""]
    assert "--labels sequence: no unit has one value of it" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        with_labels(units, "subject")
    assert "no unit has one value" not in caplog.text


def test_a_dicom_series_of_several_planes_is_one_unit_with_one_warning(caplog):
    """A localizer holds axial, coronal and sagittal slices under one SeriesInstanceUID."""
    def rec(series: str, i: int, plane: str) -> ImageRecord:
        return ImageRecord(path=f"{series}/im{i}.dcm", abspath=f"/d/{series}/im{i}.dcm", name=f"im{i}.dcm",
                           type="dicom", size=10, width=8, height=8, sha256=f"{series}{i}", meta={"plane": plane})

    recs = [rec("loc", i, p) for i, p in enumerate(["axial", "coronal", "sagittal"])]
    recs += [rec("t1", i, "axial") for i in range(3)]
    with caplog.at_level("WARNING", logger="brainclust"):
        units = unit_records(recs, ["loc"] * 3 + ["t1"] * 3, "series")
    assert [(u.path, u.meta["plane"]) for u in units] == [("loc", "mixed"), ("t1", "axial")]
    warned = [r.getMessage() for r in caplog.records]
    assert (len(warned) == 1 and "1 DICOM series hold slices of more than one plane" in warned[0]
            and "'loc'" in warned[0])
    caplog.clear()
    with caplog.at_level("WARNING", logger="brainclust"):
        unit_records(recs, ["s"] * 6, "subject")  # a subject's series may differ in plane: nothing to say
    assert not caplog.records
