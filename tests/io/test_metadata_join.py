"""--metadata FILE: reading CSV/TSV, the key column, clear errors, the PHI filter, column names."""

from __future__ import annotations

import logging

import pytest

from brainclust.errors import InputError
from brainclust.io import metadata
from brainclust.io.scan import ImageRecord

ROWS = [{"path": "sub-01/anat/sub-01_T1w.nii.gz#axial=40", "subject": "sub-01"},
        {"path": "sub-01/anat/sub-01_T1w.nii.gz#axial=60", "subject": "sub-01"},
        {"path": "sub-02/anat/sub-02_T2w.nii.gz#axial=40", "subject": "sub-02"},
        {"path": "png/a b.png"}]


def table(tmp_path, text, name="meta.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return metadata.read_table(p)


def test_path_key_matches_files_with_or_without_the_slice_part(tmp_path):
    t = table(tmp_path, "path,grade\n./sub-01/anat/sub-01_T1w.nii.gz,II\npng\\a b.png,IV\n"
                        "sub-02/anat/sub-02_T2w.nii.gz#axial=40,III\n")
    j = metadata.join_table(t, ROWS)
    assert (j.key, j.kind, j.n_matched, j.n_unused) == ("path", "path", 4, 0)
    assert j.columns == {"grade": ["II", "II", "III", "IV"]}


def test_tsv_subject_key_short_labels_and_partial_match_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    t = table(tmp_path, "participant_id\tgroup\tage\n01\tpatient\t91\nsub-09\tcontrol\t30\n", "p.tsv")
    j = metadata.join_table(t, ROWS)
    assert j.kind == "subject" and j.columns == {"group": ["patient", "patient", "", ""],
                                                 "age": ["90", "90", "", ""]}  # ages over 89 -> 90
    assert "2 of 4 rows of the run have no match" in caplog.text and "no match for 1 table row" in caplog.text


def test_name_key_and_the_key_with_most_matches_wins(tmp_path):
    t = table(tmp_path, "file,subject,x\nsub-02_T2w.nii.gz,sub-05,1\na b.png,sub-06,2\n")
    j = metadata.join_table(t, ROWS)
    assert (j.key, j.kind) == ("file", "name") and j.columns["x"] == ["", "", "1", "2"]
    assert j.columns["subject"] == ["", "", "sub-05", "sub-06"]


def test_explicit_key_of_any_name_and_unit_rows(tmp_path):
    t = table(tmp_path, "vol,score\nsub-01/anat/sub-01_T1w.nii.gz,7\n")
    rows = [{"path": "x", "unit": "sub-01/anat/sub-01_T1w.nii.gz"}, {"path": "y", "unit": "other"}]
    j = metadata.join_table(t, rows, key="vol")
    assert j.columns == {"score": ["7", ""]} and j.kind in ("path", "unit")


@pytest.mark.parametrize("text, key, message", [
    ("a,b\n1,2\n", None, "no key column; name one of: path"),
    ("path,b\n1,2\n", "pid", "key column 'pid' not found; columns: path, b"),
    ("path,b\npng/a b.png,1\npng/a b.png,2\n", None, "1 duplicate value (first at line 3)"),
    ("path,b\nnothing/here.png,1\n", None, "no row of the run matches key column 'path'"),
    ("", None, "empty"),
    ("path,path\nx,y\n", None, "'path' appears more than once"),
    ('path,age\n"png/a b.png,50\nsub-01,60\n', None, "not a valid CSV file (unexpected end of data)"),
    ("path,age\npng/a b.png,50,EXTRA\n", None, "line 2 has 3 fields and the header 2"),
])
def test_errors_are_one_line_and_name_the_file(tmp_path, text, key, message):
    with pytest.raises(InputError) as exc:
        metadata.join_table(table(tmp_path, text), ROWS, key=key)
    assert message in str(exc.value) and "meta.csv" in str(exc.value) and "\n" not in str(exc.value)


def test_no_match_says_every_kind_tried_with_the_runs_own_path_as_example(tmp_path):
    """--metadata-key folder on a DICOM run said only '(compared as paths relative to the data folder, e.g.
    sub-01/anat/sub-01_T1w.nii.gz)': a BIDS path the run does not have, and one of the four kinds it tried."""
    rows = [{"path": "series1/IM0001"}, {"path": "rt/dose.dcm#frame=1"}]
    with pytest.raises(InputError) as exc:
        metadata.join_table(table(tmp_path, "folder,kind\nseries1,t1\n"), rows, key="folder")
    assert str(exc.value).endswith("no row of the run matches key column 'folder' (compared as paths relative to "
                                   "the data folder, e.g. series1/IM0001, unit ids of the run, file names and BIDS "
                                   "subjects (sub-01) or unit ids)")
    with pytest.raises(InputError) as exc:  # a column named for one kind: that kind alone
        metadata.join_table(table(tmp_path, "path,kind\nnothing.png,t1\n"), rows)
    assert str(exc.value).endswith("(compared as paths relative to the data folder, e.g. series1/IM0001)")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        metadata.read_table(tmp_path / "nope.csv")


def test_columns_that_may_hold_phi_are_dropped_with_a_warning_naming_the_column(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    t = table(tmp_path, "path,PatientName,visit,comment,diagnosis\n"
                        "png/a b.png,Doe^Jane,2021-02-03,,glioma\n"
                        "sub-02/anat/sub-02_T2w.nii.gz,Roe^Rick,2020-11-30,\"long free text about the patient "
                        "that was typed by someone and goes on\",meningioma\n")
    j = metadata.join_table(t, ROWS)
    assert list(j.columns) == ["diagnosis"] and sorted(j.dropped) == ["PatientName", "comment", "visit"]
    assert "'visit'" in caplog.text and "Doe" not in caplog.text and "2021" not in caplog.text


def test_reserved_run_columns_get_the_prefix_and_the_table_replaces_scan_columns(caplog):
    caplog.set_level(logging.WARNING)
    recs = [ImageRecord("a.png", "/x/a.png", "a.png", "png", 1, 2, 2, "h", meta={"label": "x", "site": "A"}),
            ImageRecord("b.png", "/x/b.png", "b.png", "png", 1, 2, 2, "h", meta={"cluster": 3})]
    cols = metadata.record_columns(recs)
    assert cols == {"meta_label": ["x", None], "site": ["A", None], "meta_cluster": [None, 3]}
    merged = metadata.merge_columns(cols, {"site": ["B", "C"], "level_2": ["p", "q"]})
    assert merged["site"] == ["B", "C"] and merged["meta_level_2"] == ["p", "q"]
    assert "replaces" in caplog.text and "written as 'meta_label'" in caplog.text
    assert "--metadata: column 'level_2' is written as 'meta_level_2'" in caplog.text   # a table's column too
    assert metadata.folder_of("sub-01/anat/x.nii#axial=3") == "sub-01" and metadata.folder_of("x.png") == ""


def test_a_table_that_lists_some_rows_keeps_the_scans_values_in_the_others(caplog):
    """A --metadata table covering sub-01..03 must not blank the BIDS subject of sub-04 and sub-05."""
    caplog.set_level(logging.WARNING)
    merged = metadata.merge_columns({"subject": ["01", "02", "04", "05"], "sequence": ["T1", "T2", "T1", "T2"]},
                                    {"subject": ["01", "2", None, ""], "group": ["a", "b", None, None]})
    assert merged["subject"] == ["01", "2", "04", "05"] and merged["sequence"] == ["T1", "T2", "T1", "T2"]
    assert merged["group"] == ["a", "b", None, None]
    assert "its own value kept in 2 rows the table gives none" in caplog.text


def test_record_rows_give_the_join_keys():
    recs = [ImageRecord("d/a\n.png", "/x", "a\n.png", "png", 1, 2, 2, "h", meta={"subject": "sub-01"})]
    assert metadata.record_rows(recs, ["u1"]) == [{"path": "d/a\\x0a.png", "subject": "sub-01", "unit": "u1"}]


def test_typed_and_text_columns_for_the_outputs():
    cols = {"n": [1, 2.5, None], "s": ["a", None, "b\n"], "mixed": [1, "x", None]}
    typed = metadata.typed_columns(cols)
    assert typed == {"n": ("float64", [1.0, 2.5, None]), "s": ("string", ["a", None, "b\n"]),
                     "mixed": ("string", ["1", "x", None])}
    assert metadata.text_columns(cols) == {"n": ["1", "2.5", ""], "s": ["a", "", "b\\x0a"],
                                           "mixed": ["1", "x", ""]}


def test_a_file_name_key_that_names_files_in_several_folders_is_warned(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    rows = [{"path": "a/x.png"}, {"path": "b/x.png"}, {"path": "a/y.png"}, {"path": "v.nii.gz#axial=1"},
            {"path": "v.nii.gz#axial=2"}]
    j = metadata.join_table(table(tmp_path, "filename,grade\nx.png,high\ny.png,low\nv.nii.gz,mid\n"), rows)
    assert j.columns["grade"] == ["high", "high", "low", "mid", "mid"]
    assert "key column 'filename' has 1 value naming files in more than one folder (e.g. 'x.png')" in caplog.text


def test_trailing_empty_fields_lose_no_value_and_are_read(tmp_path):
    assert table(tmp_path, "path,age\na/x.png,50,,\n").rows == [{"path": "a/x.png", "age": "50"}]


def test_keys_whose_first_character_the_outputs_escape_still_join(tmp_path):
    """'-v.nii.gz' is written '\\x2dv.nii.gz' (no cell a spreadsheet runs): a table naming it joins by path, by
    unit and by name, and so do the raw rows of a run folder written before that rule (report --metadata)."""
    rows_now = [{"path": "\\x2dv.nii.gz#axial=3", "unit": "\\x2dv.nii.gz"}, {"path": "d/@.png", "unit": "d"}]
    rows_old = [{"path": "-v.nii.gz#axial=3", "unit": "-v.nii.gz"}, {"path": "d/@.png", "unit": "d"}]
    for rows in (rows_now, rows_old):
        for key in ("path", "unit"):
            j = metadata.join_table(table(tmp_path, f"{key},grade\n-v.nii.gz,II\n"), rows, key)
            assert j.columns == {"grade": ["II", ""]}, (rows, key)
        j = metadata.join_table(table(tmp_path, "file_name,grade\n@.png,IV\n"), rows, "file_name")
        assert j.kind == "name" and j.columns == {"grade": ["", "IV"]}


def test_a_cell_holding_a_line_break_stays_in_its_row(tmp_path):
    """str.splitlines broke rows at U+2028, form feeds and quoted newlines: 'A\\u2028B' became 'A' and a stray row
    'B,g' (a probe's find); the csv module reads the records as csv, pandas and spreadsheets do."""
    from brainclust.io.metadata import read_table

    p = tmp_path / "m.csv"
    p.write_text('path,site,grp\r\na.jpg,A\u2028B,g\r\nb.jpg,"B\nX",h\r\nc.jpg,C\x85D,i\n', encoding="utf-8",
                 newline="")
    t = read_table(p)
    assert t.rows == [{"path": "a.jpg", "site": "A\u2028B", "grp": "g"}, {"path": "b.jpg", "site": "B\nX", "grp": "h"},
                      {"path": "c.jpg", "site": "C\x85D", "grp": "i"}]
    p.write_text('path,site\na.jpg,"two\nlines"\nb.jpg,B,extra\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 4 has 3 fields and the header 2"):
        read_table(p)


def test_a_table_with_old_mac_line_ends_reads_as_lines_and_hashes_its_bytes(tmp_path):
    """The table is read as bytes (report --metadata records their SHA-256) and then as text with universal line
    ends, as before: a CR-only file is two rows, not one line whose tab makes it a TSV."""
    import hashlib

    from brainclust.io.metadata import read_table

    raw = b"path,site\rimg1.png,A\tx\rimg2.png,B\r"
    (tmp_path / "cr.csv").write_bytes(raw)
    table = read_table(tmp_path / "cr.csv")
    assert table.header == ["path", "site"] and [r["site"] for r in table.rows] == ["A\tx", "B"]
    assert table.sha256 == hashlib.sha256(raw).hexdigest()
