"""End to end: BIDS volumes and subjects, the metadata table, associations.csv checked against an independent
computation, ``report --metadata``, ``predict`` on units, and no planted PHI in any output (report included)."""

from __future__ import annotations

import csv
import json
import re
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_mutual_info_score

import brainclust
from brainclust.cli import main

pytestmark = pytest.mark.slow  # whole runs (pixels backbone, the report)
nib = pytest.importorskip("nibabel")

SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04")
SEQUENCES = ("T1w", "FLAIR")
#: Planted protected health information: none of it may reach any output or the terminal.
PHI = ("Waylon", "Smithers", "2019-03-04", "555-0123", "Springfield", "Mustermann", "1951-07-12", "MRN-4471")
FAST = dict(backbone="pixels@16", workers=0, progress=False)


def head(seq: str, seed: int, shape=(20, 24, 16)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum((g / 0.75) ** 2 for g in grid))
    inside = 100 + 40 * grid[0] + rng.normal(0, 4, shape)
    if seq == "FLAIR":  # another contrast: bright rim, dark centre
        inside = 60 + 120 * r + rng.normal(0, 4, shape)
    return np.where(r < 1, inside, 0).astype(np.float32)


def write_bids(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    (root / "participants.tsv").write_text(
        "participant_id\tsite\tage\tpatient_name\tscan_date\tnotes\n"
        + "".join(f"{s}\t{'AB'[i % 2]}\t{30 + 7 * i}\tWaylon Smithers {i}\t2019-03-04\tcall 555-0123\n"
                  for i, s in enumerate(SUBJECTS)))
    (root / "T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3, "InstitutionName": "Springfield"}))
    for i, s in enumerate(SUBJECTS):
        anat = root / s / "anat"
        anat.mkdir(parents=True)
        for j, q in enumerate(SEQUENCES):
            nib.save(nib.Nifti1Image(head(q, 10 * i + j), np.eye(4)), str(anat / f"{s}_{q}.nii.gz"))
            (anat / f"{s}_{q}.json").write_text(json.dumps({
                "EchoTime": 0.01 * (j + 1), "PatientName": "Smithers^Waylon", "PatientBirthDate": "1951-07-12",
                "AcquisitionDateTime": "2019-03-04T10:00:00", "InstitutionName": "Springfield"}))
        func = root / s / "func"
        func.mkdir()
        nib.save(nib.Nifti1Image(np.stack([head("T1w", 99)] * 2, -1), np.eye(4)),
                 str(func / f"{s}_task-rest_bold.nii.gz"))
        (func / f"{s}_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "rest"}))
    return root


def write_table(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("units")
    root = write_bids(base / "bids")
    table = write_table(base / "clinical.csv", ["participant_id", "group", "PatientName", "mrn"],
                        [[s, "patient" if i < 2 else "control", f"Max Mustermann {i}", f"MRN-4471-{i}"]
                         for i, s in enumerate(SUBJECTS)])
    return {"root": root, "table": table, "cache": str(base / "cache"), "base": base}


def rows_of(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def independent_score(rows: list[dict], column: str, level: str, statistic: str) -> tuple[float, int]:
    """The association of ``column`` with ``level`` recomputed from assignments.csv's text."""
    pairs = [(r[column].strip(), r[level]) for r in rows if r[column].strip().lower() not in ("", "n/a", "nan")]
    values, groups = [p[0] for p in pairs], [p[1] for p in pairs]
    if statistic == "AMI":
        return adjusted_mutual_info_score(values, groups), len(pairs)
    assert statistic == "AMI_quintiles"  # pandas' quintile bins, duplicate edges dropped
    return adjusted_mutual_info_score(pd.qcut(np.array(values, dtype=float), 5, labels=False, duplicates="drop"),
                                      groups), len(pairs)


def check_associations_agree(out: Path) -> list[dict]:
    rows, ranked = rows_of(out / "assignments.csv"), rows_of(out / "associations.csv")
    assert ranked, "associations.csv holds no row"
    for a in ranked:
        score, n = independent_score(rows, a["column"], a["level"], a["statistic"])
        assert float(a["score"]) == pytest.approx(score, abs=1e-9), a
        assert int(a["n"]) == n and 0 < float(a["p_value"]) <= 1
    return ranked


def test_volume_and_subject_runs_give_one_row_per_unit_with_every_metadata_column(data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="brainclust")
    out = tmp_path / "vol"
    res = brainclust.run(data["root"], out, unit="volume", slices="axial:4", k=2, metadata=str(data["table"]),
                         cache_dir=data["cache"], **FAST)
    rows = rows_of(out / "assignments.csv")
    assert len(rows) == len(SUBJECTS) * len(SEQUENCES) == res.metrics["n_images"]
    assert {r["path"] for r in rows} == {f"{s}/anat/{s}_{q}.nii.gz" for s in SUBJECTS for q in SEQUENCES}
    assert all(r["unit"] == r["path"] and r["n_slices"] == "4" for r in rows)
    cols = list(rows[0])
    assert cols[cols.index("cluster") + 11:cols.index("cluster") + 13] == ["unit", "n_slices"]  # after the levels
    for c in ("subject", "sequence", "site", "age", "group", "echo_time_ms", "field_strength_t", "intensity_mean"):
        assert c in cols, c
    assert not {"patient_name", "scan_date", "notes", "PatientName", "mrn"} & set(cols)
    r1 = next(r for r in rows if r["path"] == "sub-01/anat/sub-01_FLAIR.nii.gz")
    assert (r1["subject"], r1["site"], r1["group"], r1["sequence"]) == ("sub-01", "A", "patient", "FLAIR")
    slices = rows_of(out / "slices.csv")
    assert len(slices) == 32 and {s["unit"] for s in slices} == {r["path"] for r in rows}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"] == {"unit": "volume", "n_rows": 8, "n_images": 32}
    assert manifest["metadata"]["key"] == "participant_id" and manifest["metadata"]["rows_matched"] == 32
    assert "func" in manifest["scan"]["summary"] and manifest["settings"]["unit"] == "volume"
    # sidecars do not flood the log: no line names a JSON file; one summary line for the scan
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if ".json" in m]
    assert len([m for m in messages if m.startswith("scan: BIDS data set")]) == 1
    check_associations_agree(out)

    sub = tmp_path / "sub"
    brainclust.run(data["root"], sub, unit="subject", slices="axial:4", k=2, cache_dir=data["cache"], **FAST)
    srows = rows_of(sub / "assignments.csv")
    assert [r["path"] for r in srows] == list(SUBJECTS) and all(r["n_slices"] == "8" for r in srows)
    assert [r["site"] for r in srows] == ["A", "B", "A", "B"] and {r["sequence"] for r in srows} == {"mixed"}
    check_associations_agree(sub)


def test_labels_score_against_a_metadata_column(data, tmp_path):
    out = tmp_path / "lab"
    res = brainclust.run(data["root"], out, slices="axial:4", k=2, labels="sequence", cache_dir=data["cache"], **FAST)
    rows = rows_of(out / "assignments.csv")
    assert {r["label"] for r in rows} == set(SEQUENCES) and all(r["label"] == r["sequence"] for r in rows)
    from sklearn.metrics import adjusted_rand_score

    assert res.metrics["ari"] == pytest.approx(adjusted_rand_score([r["label"] for r in rows],
                                                                   [r["cluster"] for r in rows]))


def test_predict_assigns_new_units_with_the_runs_rule(data, tmp_path):
    out = tmp_path / "vol"
    brainclust.run(data["root"], out, unit="volume", slices="axial:4", k=2, cache_dir=data["cache"], **FAST)
    same = brainclust.predict(out, data["root"], tmp_path / "p1", cache_dir=data["cache"], workers=0)
    assert [(r.path, int(c)) for r, c in zip(same.records, same.labels)] == \
        [(r["path"], int(r["cluster"])) for r in rows_of(out / "assignments.csv")]
    new = tmp_path / "new"
    shutil.copytree(data["root"], new, ignore=shutil.ignore_patterns("sub-03", "sub-04"))
    got = brainclust.predict(out, new, tmp_path / "p2", cache_dir=data["cache"], workers=0)
    prow = rows_of(tmp_path / "p2" / "assignments.csv")
    assert len(prow) == 4 and all(r["n_slices"] == "4" for r in prow) and len(got.labels) == 4
    assert (tmp_path / "p2" / "slices.csv").is_file() and (tmp_path / "p2" / "associations.csv").is_file()


def test_bids_off_is_recorded_and_predict_follows_the_run(data, tmp_path, capsys):
    out = tmp_path / "plain"
    res = brainclust.run(data["root"], out, slices="axial:2", k=2, bids="off", cache_dir=data["cache"], **FAST)
    files = {r.path.split("#")[0] for r in res.records}
    assert {f"{s}/func/{s}_task-rest_bold.nii.gz" for s in SUBJECTS} <= files  # no anatomical-only rule
    assert "subject" not in rows_of(out / "assignments.csv")[0]  # no BIDS column
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["bids"] == "off" and manifest["scan"]["bids"] is False
    got = brainclust.predict(out, data["root"], tmp_path / "p", cache_dir=data["cache"], workers=0)
    assert {r.path.split("#")[0] for r in got.records} == files  # the run's --bids off
    auto = brainclust.predict(out, data["root"], tmp_path / "p2", cache_dir=data["cache"], workers=0, bids="auto")
    assert not any("/func/" in r.path for r in auto.records)
    assert json.loads((tmp_path / "p2" / "manifest.json").read_text())["inputs"]["bids"] == "auto"
    filtered = tmp_path / "filtered"  # a run with a BIDS filter, predicted with --bids off: the filter is not kept
    brainclust.run(data["root"], filtered, slices="axial:2", k=2, bids_filter="suffix=T1w", cache_dir=data["cache"],
                   **FAST)
    off = brainclust.predict(filtered, data["root"], tmp_path / "p3", cache_dir=data["cache"], workers=0, bids="off")
    assert {r.path.split("#")[0] for r in off.records} == files
    assert main(["check", str(data["root"]), "--out", str(tmp_path / "chk"), "--bids", "off", "--workers", "0",
                 "--slices", "axial:2"]) == 0
    assert "24 images checked" in capsys.readouterr().out  # 4 subjects x 3 files (func too) x 2 slices
    assert json.loads((tmp_path / "chk" / "manifest.json").read_text())["settings"]["scan"]["bids"] == "off"


def test_a_column_added_afterwards_that_reproduces_the_clusters_ranks_first(data, tmp_path, capsys):
    out = tmp_path / "slices"
    brainclust.run(data["root"], out, slices="axial:8", k=3, cache_dir=data["cache"], descriptors="off", **FAST)
    rows = rows_of(out / "assignments.csv")
    assert len(rows) == 64
    rng = np.random.default_rng(7)
    table = write_table(tmp_path / "later.csv", ["path", "reader_group", "coin"],
                        [[r["path"], f"g{r['cluster']}", "HT"[int(rng.integers(2))]] for r in rows])
    assert main(["report", str(out), "--metadata", str(table)]) == 0
    assert "metadata: 2 columns added" in capsys.readouterr().out
    ranked = [a for a in check_associations_agree(out) if a["level"] == "cluster"]
    assert ranked[0]["column"] == "reader_group" and float(ranked[0]["score"]) == pytest.approx(1.0)
    coin = next(a for a in ranked if a["column"] == "coin")
    assert abs(float(coin["score"])) < 0.15
    after = rows_of(out / "assignments.csv")
    assert [r["path"] for r in after] == [r["path"] for r in rows] and all(r["reader_group"] for r in after)
    import pyarrow.parquet as pq

    emb = pq.read_table(out / "embeddings.parquet").to_pydict()
    assert emb["reader_group"] == [r["reader_group"] for r in after]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metadata_added"][0]["columns"] == ["reader_group", "coin"]
    html = (out / "report.html").read_text()
    assert "clusters follow: reader_group (AMI 1.00)" in html


def all_output_text(out: Path) -> str:
    """Every file under ``out`` as text (Parquet decoded, since its strings may be compressed)."""
    import pyarrow.parquet as pq

    parts = []
    for p in sorted(out.rglob("*")):
        if p.is_file():
            parts.append(p.read_bytes().decode("utf-8", "replace"))
            if p.suffix == ".parquet":
                parts.append(json.dumps(pq.read_table(p).to_pydict(), default=str))
    return "\n".join(parts)


def test_no_planted_phi_reaches_any_output_or_the_terminal(data, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="brainclust")
    out = tmp_path / "phi"
    code = main(["run", str(data["root"]), "--out", str(out), "--unit", "volume", "--slices", "axial:4", "--k", "2",
                 "--metadata", str(data["table"]), "--backbone", "pixels@16", "--workers", "0",
                 "--cache-dir", data["cache"], "--embeddings-features", "--color-by", "site"])
    assert code == 0 and (out / "report.html").is_file()
    assert re.search(r"<h3>Cluster \d+: \d+ volumes \(", (out / "report.html").read_text())  # counted as units
    later = write_table(tmp_path / "later.csv", ["subject", "PatientName", "diagnosis_date", "arm"],
                        [[s, "Waylon Smithers", "2019-03-04", "x" if i % 2 else "y"] for i, s in enumerate(SUBJECTS)])
    assert main(["report", str(out), "--metadata", str(later)]) == 0
    text = all_output_text(out)
    cap = capsys.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in PHI:
        assert secret not in text, secret
        assert secret not in cap.out + cap.err + logs, secret
    assert "arm" in rows_of(out / "assignments.csv")[0]  # the harmless column of the same table is kept


def test_a_unit_run_names_its_rows_units_when_it_steers(data, tmp_path, caplog):
    """--unit volume --remove site counted "images per stratum" where they were volumes (a walk's find)."""
    caplog.set_level(logging.INFO, logger="brainclust")
    brainclust.run(data["root"], tmp_path / "rm", unit="volume", slices="axial:4", k=2, remove="site",
                   cache_dir=data["cache"], **FAST)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--remove site")]
    assert len(said) == 1 and "units per stratum A: 4, B: 4" in said[0], said
