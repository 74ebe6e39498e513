"""What the clusters follow: scores agree with independent computations from assignments.csv."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from brainclust.analysis import associations as A
from brainclust.cluster.mutualinfo import ami
from brainclust.errors import ParameterError


def quintile_ami_by_hand(values, groups):
    """pandas' quintile bins (duplicate edges dropped), then scikit-learn's AMI: independent of the module's code."""
    bins = pd.qcut(np.array(values, dtype=float), 5, labels=False, duplicates="drop")
    return adjusted_mutual_info_score(bins, groups)


@pytest.fixture
def assignments_csv(tmp_path):
    rng = np.random.default_rng(7)
    n = 240
    cluster = rng.integers(0, 4, n)
    rows = []
    for i in range(n):
        c = int(cluster[i])
        rows.append({
            "path": f"img{i}.png", "name": f"img{i}.png", "type": "png", "size": str(1000 + i),
            "width": "64", "height": "64", "label": "", "cluster": str(c), "level_1": "0",
            "level_2": str(int(c >= 2)), "level_3": str(min(c, 2)),
            "copy": ["glioma", "meningioma", "pituitary", "none"][c],             # reproduces the clusters
            "noise": ["a", "b", "c"][rng.integers(0, 3)],                           # independent of them
            "site": ["2013", "2014", "CBICA"][(c + (i % 7 == 0)) % 3],             # partly related
            "age": f"{40 + 10 * c + rng.normal(0, 3):.3f}",                         # numeric, depends on c
            "rand_num": f"{rng.normal():.5f}",                                      # numeric, independent
            "tesla": ["1.5", "3"][rng.integers(0, 2)],                              # numeric, 2 values: categorical
            "sparse": "" if i % 4 else ["x", "y"][c % 2],                           # mostly missing
            "same": ["g", "m", "p", "n"][c],                                        # same partition as copy
        })
    path = tmp_path / "assignments.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_score_agrees_with_an_independent_computation(assignments_csv, tmp_path):
    rows = A.from_assignments(assignments_csv, permutations=99, random_state=0)
    out = tmp_path / "associations.csv"
    A.write_associations(out, rows)
    with open(out, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["column"] for r in written] == [r["column"] for r in rows] and list(written[0]) == A.ASSOCIATION_COLUMNS
    assert {r["level"] for r in written} == {"cluster", "level_2", "level_3"}  # level_1 has one group
    assert {r["column"] for r in written} == {"copy", "noise", "site", "age", "rand_num", "tesla", "sparse",
                                              "same", "size"}  # identifiers and partitions are not ranked
    for r in written:
        have = [a for a in assignments_csv if a[r["column"]] != ""]
        col, grp = [a[r["column"]] for a in have], [a[r["level"]] for a in have]
        if r["statistic"] == "AMI":
            expect = adjusted_mutual_info_score(col, grp)
        else:
            expect = quintile_ami_by_hand(col, grp)
        assert float(r["score"]) == pytest.approx(expect, abs=1e-8), r
        assert int(r["n"]) == len(have)
    kinds = {r["column"]: r["kind"] for r in written}
    assert kinds["age"] == kinds["rand_num"] == kinds["size"] == "numeric"
    assert kinds["tesla"] == kinds["site"] == "categorical"


def test_a_column_reproducing_the_clusters_ranks_first_and_a_random_one_scores_near_zero(assignments_csv):
    rows = [r for r in A.from_assignments(assignments_csv, permutations=199) if r["level"] == "cluster"]
    top = rows[0]
    assert top["column"] in ("copy", "same") and top["score"] == pytest.approx(1.0) and top["rank"] == 1
    assert top["p_value"] == pytest.approx(1 / 200)
    by = {r["column"]: r for r in rows}
    assert by["same"]["same_as"] == "copy" or by["copy"]["same_as"] == "same"
    assert abs(by["noise"]["score"]) < 0.05 and by["noise"]["p_value"] > 0.01
    assert abs(by["rand_num"]["score"]) < 0.05 and by["rand_num"]["p_value"] > 0.01
    # quintiles never align exactly with the clusters, so a clean numeric dependence stays below 1
    assert by["age"]["score"] > 0.5 and by["age"]["p_value"] == pytest.approx(1 / 200)
    assert [r["column"] for r in rows][2] == "age"  # next after the two copies of the clusters
    assert by["sparse"]["n"] == 60
    line = A.headline(rows)
    assert line.startswith("clusters follow: copy (AMI 1.00), then age") and "same (" not in line


def test_p_value_on_a_tiny_case_matches_exact_enumeration():
    # 6 rows, 2 groups of 3; the column equals the groups. Of the 20 ways to place the column's 3 'x',
    # 2 give the maximal mutual information: exact p = 0.1
    rows = A.rank_associations({"c": list("xxxyyy")}, {"cluster": [0, 0, 0, 1, 1, 1]}, permutations=4999,
                               random_state=3)
    assert rows[0]["p_value"] == pytest.approx(0.1, abs=0.015)


def test_permutations_on_a_sample_above_the_row_limit(monkeypatch):
    monkeypatch.setattr(A, "PERMUTATION_ROWS", 50)
    g = np.arange(400) % 3
    rows = A.rank_associations({"c": [str(x) for x in g]}, {"cluster": g}, permutations=19)
    assert rows[0]["perm_rows"] == 50 and rows[0]["n"] == 400 and rows[0]["p_value"] == pytest.approx(0.05)


def test_headline_says_plainly_when_nothing_is_followed_and_tree_summary():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, 90)
    rows = A.rank_associations({"noise": [str(x) for x in rng.integers(0, 2, 90)]},
                               {"cluster": g, "level_2": g % 2}, permutations=99)
    assert "do not follow the one metadata column clearly (noise (AMI" in A.headline(rows)
    two = A.rank_associations({"noise": [str(x) for x in rng.integers(0, 2, 90)],
                               "more": [str(x) for x in rng.integers(0, 3, 90)]}, {"cluster": g}, permutations=99)
    assert "follow none of the 2 metadata columns clearly (highest: " in A.headline(two)
    site = [str(x) for x in rng.integers(0, 3, 90)]  # 'folder' is the same partition as 'subject': name one
    same = A.rank_associations({"subject": site, "folder": list(site)}, {"cluster": g}, permutations=99)
    assert {r["column"]: r["same_as"] for r in same} == {"subject": "", "folder": "subject"}
    assert "(highest: subject (AMI" in A.headline(same)
    assert A.tree_summary(rows) == ["level 2: nothing clearly"]  # the headline's rule: no column at p > 0.05
    assert A.headline([], "cluster") == ("clusters: no metadata column could be ranked (each is constant, different "
                                         "in every row, or has fewer than 3 values)")


def test_a_significant_but_weak_column_is_not_named():
    """p <= 0.05 is easy with many rows; a score below MIN_NAMED (0.05) is not named (the yes/no set's headline
    was 'clusters follow: intensity_mean (AMI 0.04, quintiles)')."""
    def row(column, score, p):
        return {"level": "cluster", "column": column, "statistic": "AMI", "score": score, "p_value": p,
                "same_as": "", "coarser_of": ""}

    weak = [row("intensity_mean", 0.04, 0.005), row("site", 0.01, 0.3)]
    assert A.headline(weak) == ("clusters follow none of the 2 metadata columns clearly (highest: intensity_mean "
                                "(AMI 0.04), p = 0.005; a score below 0.05: too weak to name)")
    assert A.headline([row("site", 0.06, 0.005)] + weak) == "clusters follow: site (AMI 0.06)"
    assert A.headline(weak, min_score=0.0) == "clusters follow: intensity_mean (AMI 0.04)"


def test_a_column_known_for_some_images_says_for_how_many():
    """A probe's mixed folder read "clusters follow: modality (AMI 1.00)" from its 10 DICOM rows of 69; the
    headline now says so, against the most rows any column has (the file's own columns are never missing)."""
    def row(column, score, n):
        return {"level": "cluster", "column": column, "statistic": "AMI", "score": score, "p_value": 0.001,
                "same_as": "", "coarser_of": "", "n": n}

    rows = [row("modality", 1.0, 10), row("size", 0.3, 69)]
    assert A.headline(rows) == ("clusters follow: modality (AMI 1.00, 10 of 69 images), then size (file, bytes) "
                                "(AMI 0.30)")
    as_read = [{k: str(v) for k, v in r.items()} for r in rows]  # associations.csv read back
    assert A.headline(as_read) == A.headline(rows)


def test_inputs_are_validated():
    with pytest.raises(ParameterError, match="permutations must be an integer >= 0"):
        A.rank_associations({"a": ["x"]}, {"cluster": [0]}, permutations=-1)
    with pytest.raises(ParameterError, match="column 'a' has 1 values for 2 rows"):
        A.rank_associations({"a": ["x"]}, {"cluster": [0, 1]})
    assert A.prepare("id", [f"u{i}" for i in range(10)]) is None      # a different value in every row
    assert A.prepare("few", ["a", "b", "c", "d", "d"]).kind == "categorical"  # 5 subjects, 4 groups
    assert A.prepare("const", ["a"] * 10) is None
    assert A.prepare("few", ["a", "", "b"]) is None                   # fewer than 3 rows with a value


def test_five_units_a_column_reproducing_the_clusters_still_ranks_first():
    clusters = ["0", "1", "2", "3", "3"]
    rows = A.rank_associations({"grp": ["a", "b", "c", "d", "d"], "site": ["s1", "s2", "s3", "s4", "s5"]},
                               {"cluster": clusters}, permutations=999)  # exact p: 6 / 60 = 0.1
    assert [r["column"] for r in rows] == ["grp"] and rows[0]["score"] == pytest.approx(1.0)
    assert rows[0]["p_value"] > 0.05 and "do not follow the one metadata column clearly" in A.headline(rows)


def test_equal_columns_get_equal_p_values_whatever_comes_before_them():
    rng = np.random.default_rng(3)
    clusters = rng.integers(0, 3, 120)
    site = [f"s{v}" for v in rng.integers(0, 4, 120)]          # unrelated to the clusters: a p-value far from 0
    noise = [f"n{v}" for v in rng.integers(0, 5, 120)]
    both = A.rank_associations({"noise": noise, "site": site, "site_copy": list(site)}, {"cluster": clusters},
                               permutations=99)
    p = {r["column"]: r["p_value"] for r in both}
    assert p["site"] == p["site_copy"] and p["site"] > 0.05
    alone = A.rank_associations({"site": site}, {"cluster": clusters}, permutations=99)
    assert alone[0]["p_value"] == p["site"]                     # no other column changes its draws


def test_rows_set_aside_by_exclude_are_not_a_cluster():
    rng = np.random.default_rng(5)
    rows = [{"path": f"{i}.png", "cluster": str(i % 2), "flags": "", "site": "ab"[i % 2]} for i in range(40)]
    rows += [{"path": f"d{i}.png", "cluster": "-1", "flags": "duplicate", "site": "c"} for i in range(10)]
    rows += [{"path": f"n{i}.png", "cluster": "-1", "flags": "", "site": "ab"[int(rng.integers(2))]} for i in range(5)]
    every = A.from_assignments(rows, permutations=9)
    kept = A.from_assignments(rows, permutations=9, aside_flags=["duplicate", "blank"])
    n = {r["column"]: r["n"] for r in kept if r["level"] == "cluster"}
    assert n["site"] == 45                                            # the 10 set aside left out, noise (-1) kept
    assert {r["column"]: r["n"] for r in every if r["level"] == "cluster"}["site"] == 55


def test_without_permutations_nothing_is_claimed_and_no_nan_is_written(tmp_path):
    g = np.repeat([0, 1, 2], 20)
    rows = A.rank_associations({"site": [str(v) for v in g], "noise": [str(v % 2) for v in range(60)]},
                               {"cluster": g}, permutations=0)
    line = A.headline(rows)
    assert line.startswith("clusters, strongest columns (untested: --permutations 0): site (AMI 1.00)")
    A.write_associations(tmp_path / "a.csv", rows)
    with open(tmp_path / "a.csv", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert {r["p_value"] for r in written} == {""} and "nan" not in (tmp_path / "a.csv").read_text().lower()
    assert A.headline(written) == line                                    # the same when read back


def test_the_labels_column_is_named_rather_than_its_copy_label():
    g = np.repeat([0, 1], 30)
    grade = ["HGG" if v else "LGG" for v in g]
    rows = A.rank_associations({"label": grade, "grade": list(grade)}, {"cluster": g}, permutations=19)
    same = {r["column"]: r["same_as"] for r in rows}
    assert same == {"grade": "", "label": "grade"} and A.headline(rows).startswith("clusters follow: grade (AMI")


def test_the_headline_says_whose_height_and_size():
    """``height`` is the image's, in pixels; ``size`` the file's bytes (a reader took them for the patient's)."""
    g = np.repeat([0, 1, 2], 20)
    rows = A.rank_associations({"height": [str(155 + 85 * (x == 0)) for x in g],
                                "size": [str(1000 * x + i) for i, x in enumerate(g)]}, {"cluster": g}, permutations=19)
    line = A.headline(rows)
    assert "height (image, px) (AMI" in line and "size (file, bytes) (AMI " in line and ", quintiles)" in line


def test_in_a_within_run_columns_the_stratum_determines_are_not_ranked_and_a_real_factor_is_found():
    """--within plane: the image height is fixed inside each plane, so it must not be ranked as what the
    clusters follow (it was, at AMI 0 and p = 1, until 2026-12-07); the sequence that splits each plane is; a
    random split of each plane ranks nothing."""
    rng = np.random.default_rng(3)
    plane = np.repeat(["axial", "coronal", "sagittal"], 120)
    seq = rng.choice(["T1", "T2"], len(plane))
    table = {"height": np.where(plane == "axial", "240", "155").tolist(), "sequence": seq.tolist(),
             "suffix": np.where(plane == "axial", "a", "b").tolist()}
    clusters = [f"{p}-{q}" for p, q in zip(plane, seq)]
    plain = {r["column"]: r for r in A.rank_associations(table, {"cluster": clusters}, permutations=99)}
    assert plain["height"]["score"] > 0.3 and plain["height"]["p_value"] <= 0.02  # what the old ranking said
    rows = {r["column"]: r for r in A.rank_associations(table, {"cluster": clusters}, permutations=99,
                                                        strata=plane.tolist())}
    assert rows["sequence"]["rank"] == 1 and rows["sequence"]["score"] == pytest.approx(1.0)
    assert set(rows) == {"sequence"}  # height and suffix are constant inside each plane
    split = [f"{p}-{rng.integers(2)}" for p in plane]
    rand = {r["column"]: r for r in A.rank_associations(table, {"cluster": split}, permutations=99,
                                                        strata=plane.tolist())}
    assert abs(rand["sequence"]["score"]) < 0.05 and rand["sequence"]["p_value"] > 0.05
    # assignments.csv of a --within run: its stratum column makes the scores within strata
    recs = [{"path": f"{i}.png", "cluster": c, "stratum": p, **{k: v[i] for k, v in table.items()}}
            for i, (c, p) in enumerate(zip(clusters, plane))]
    read_back = {r["column"]: r["score"] for r in A.from_assignments(recs, permutations=0)}
    assert read_back == {k: rows[k]["score"] for k in read_back}


def test_a_column_grouping_the_rows_as_the_strata_is_not_ranked_in_a_within_run():
    """--within site where each subject has its own site: subject and folder are the site again (each constant
    in its stratum: AMI 0, p = 1); they were ranked and led the headline ("highest: subject (AMI 0.00)", the
    walk of 2026-12-07). A column with one value missing, constant inside each stratum all the same, is not
    ranked either."""
    rng = np.random.default_rng(5)
    site = np.repeat(["s1", "s2", "s3", "s4", "s5"], 8)
    subject = np.char.add("sub-", site)
    seq = rng.choice(["T1", "T2", "FLAIR"], len(site))
    part = np.where(np.arange(len(site)) == 0, "", subject)
    table = {"subject": subject.tolist(), "folder": subject.tolist(), "sequence": seq.tolist(),
             "part": part.tolist()}
    clusters = [f"{s}-{q == 'T1'}" for s, q in zip(site, seq)]
    rows = A.rank_associations(table, {"cluster": clusters}, permutations=19, strata=site.tolist())
    assert {r["column"] for r in rows} == {"sequence"}
    assert A.headline(rows).startswith("clusters follow: sequence (AMI")
    plain = A.rank_associations(table, {"cluster": clusters}, permutations=19)  # without strata: ranked
    assert {r["column"] for r in plain} == {"subject", "folder", "sequence", "part"}


def test_a_within_run_whose_other_columns_the_strata_determine_says_so(tmp_path):
    """A BIDS set --within sequence: ``suffix`` is a coarser copy of ``sequence`` (T1w for T1w and ce-gadolinium_T1w)
    and ``site`` is the same everywhere but one sequence: constant inside every stratum, they say nothing of what the
    clusters follow there. suffix was ranked at AMI 0 and the headline read "clusters do not follow the one metadata
    column clearly (suffix (AMI 0.00), p = 1)"; nothing is ranked now, and the headline says why within the strata.
    A column that varies inside one stratum only is still ranked."""
    seq = np.repeat(["FLAIR", "T1w", "T2w", "ce-gadolinium_T1w"], 6)
    table = {"suffix": [s.split("_")[-1] for s in seq], "site": np.where(seq == "T2w", "", "2013").tolist()}
    clusters = np.char.add(seq, np.tile(["a", "a", "a", "b", "b", "b"], 4)).tolist()
    rows = A.rank_associations(table, {"cluster": clusters}, permutations=19, strata=seq.tolist())
    assert rows == []
    line = A.headline(rows, groups=8, within="sequence")
    assert line.startswith("clusters: no metadata column could be ranked within each sequence (each is constant "
                           "inside every sequence"), line
    from brainclust.report.associations import read_summary  # the report's line, from the file written

    A.write_associations(tmp_path / "associations.csv", rows)
    assert read_summary(tmp_path / "associations.csv", groups=8, within="sequence")[0] == line
    some = {**table, "coil": np.where(seq == "T2w", np.tile(["x", "y"], 12), "c").tolist()}
    ranked = A.rank_associations(some, {"cluster": clusters}, permutations=19, strata=seq.tolist())
    assert [r["column"] for r in ranked] == ["coil"]


def test_each_tree_level_names_a_column_only_when_the_headline_would():
    """Level lines read 'level 3: suffix (AMI 0.04) (p = 0.57)' down to level 10; now the headline's rule."""
    def row(level, column, score, p, same_as=""):
        return {"level": level, "column": column, "statistic": "AMI", "score": score, "p_value": p,
                "same_as": same_as, "coarser_of": ""}

    rows = [row("level_2", "plane", 0.8, 0.005), row("level_2", "site", 0.9, 0.005, same_as="plane"),
            row("level_3", "subject", 0.0, 1.0), row("level_3", "suffix", 0.04, 0.57),
            row("level_4", "weak", 0.04, 0.005), row("level_4", "site", 0.02, 0.3),
            row("level_5", "noise", 0.3, 0.2), row("level_5", "seq", 0.1, 0.01)]
    assert A.tree_summary(rows) == ["level 2: plane (AMI 0.80)", "levels 3-4: nothing clearly",
                                    "level 5: seq (AMI 0.10)"]  # consecutive levels that follow nothing: one line
    gap = [r for r in rows if r["level"] != "level_4"] + [row("level_6", "subject", 0.0, 1.0)]
    assert A.tree_summary(gap) == ["level 2: plane (AMI 0.80)", "level 3: nothing clearly",
                                   "level 5: seq (AMI 0.10)", "level 6: nothing clearly"]
    untested = [row("level_2", "plane", 0.8, ""), row("level_2", "site", 0.1, "")]  # --permutations 0
    assert A.tree_summary(untested) == ["level 2: plane (AMI 0.80)"]


def test_strata_of_the_wrong_length_are_refused():
    with pytest.raises(ParameterError, match="strata"):
        A.rank_associations({"x": ["a", "b"] * 6}, {"cluster": [0, 1] * 6}, strata=["s"] * 5)


def test_the_ami_equals_scikit_learns_on_random_tables():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(2, 200))
        a, b = rng.integers(0, int(rng.integers(1, 12)), n), rng.integers(0, int(rng.integers(1, 12)), n)
        if rng.random() < 0.3:
            b = (a + rng.integers(0, 2, n)) % 5
        assert ami(a, b) == pytest.approx(adjusted_mutual_info_score(a, b), abs=1e-10)


def test_quintiles_give_ties_at_either_end_a_bin_of_their_own():
    from brainclust.cluster.mutualinfo import quintiles

    mid = np.arange(1, 71, dtype=float)
    assert np.bincount(quintiles(np.r_[np.zeros(30), mid])).tolist() == [30, 10, 20, 20, 20]  # many zeros
    assert np.bincount(quintiles(np.r_[mid, np.full(30, 99.0)])).tolist() == [20, 20, 20, 10, 30]
    assert np.bincount(quintiles(np.r_[np.zeros(85), np.arange(1, 16)])).tolist() == [85, 15]
    plain = np.random.default_rng(0).normal(size=200)  # no ties: pandas' quintiles exactly
    assert (quintiles(plain) == pd.qcut(plain, 5, labels=False)).all()
    with pytest.raises(ParameterError, match="finite"):
        quintiles([1.0, np.nan, 2.0])


def test_strata_too_small_to_say_anything_are_left_out():
    """Two rows in two groups score AMI 1 whatever the column: 30 such strata ranked pure noise first."""
    rng = np.random.default_rng(0)
    strata, g = np.repeat(np.arange(30), 2), np.tile([0, 1], 30)
    table = {"noise": [f"{x:.5f}" for x in rng.normal(size=60)], "c": [str(x) for x in rng.integers(0, 3, 60)]}
    assert A.rank_associations(table, {"cluster": g}, permutations=19, strata=strata) == []
    big = np.repeat(np.arange(3), 20)  # strata of 20 rows still rank, and noise stays near 0 there
    rows = A.rank_associations(table, {"cluster": rng.integers(0, 2, 60)}, permutations=19, strata=big)
    assert {r["column"] for r in rows} == {"noise", "c"} and all(abs(r["score"]) < 0.2 for r in rows)


def test_a_coarser_copy_of_a_listed_column_is_not_listed_again(tmp_path):
    """cluster = plane: the image height (one per plane, two planes share it) is a coarser copy of the plane and
    said nothing more; the headline named it second (the same for the BIDS suffix after the sequence)."""
    rng = np.random.default_rng(0)
    plane = np.repeat(["axial", "coronal", "sagittal"], 30)
    table = {"plane": list(plane), "height": ["240" if p == "axial" else "155" for p in plane],
             "scanner": [str(x) for x in rng.integers(0, 2, 90)]}
    rows = A.rank_associations(table, {"cluster": plane}, permutations=99)
    by = {r["column"]: r for r in rows}
    assert by["height"]["coarser_of"] == "plane" and by["plane"]["coarser_of"] == ""
    assert by["height"]["score"] > 0.5 and by["height"]["p_value"] <= 0.05  # still ranked and significant
    line = A.headline(rows)
    assert line.startswith("clusters follow: plane (AMI 1.00)") and "height" not in line
    from brainclust.report.associations import read_summary  # the report reads the same line back from the file

    A.write_associations(tmp_path / "associations.csv", rows)
    assert read_summary(tmp_path / "associations.csv")[0] == line
    # ranked above the finer column, a coarser copy is listed (it is what the clusters follow first)
    two = np.where(plane == "axial", 0, 1)
    assert A.headline(A.rank_associations(table, {"cluster": two}, permutations=99)).startswith(
        "clusters follow: height (image, px) (AMI 1.00), then plane")


def test_one_cluster_is_named_as_the_reason_nothing_is_ranked():
    assert A.headline([], groups=1) == "clusters: only one, so no metadata column can be ranked against them"
    assert "constant, different in every row" in A.headline([], groups=3)  # with clusters, the columns are why
    assert A.headline([], groups=0).startswith("clusters: none (every image is noise or set aside)")


def test_a_slice_index_is_ranked_within_its_plane_not_as_a_copy_of_the_plane(tmp_path):
    """A slice's index counts along its plane (index 100 of an axial and of a sagittal slice are different
    places): the three planes' indices lie in different ranges, so quintiles taken over every row were mostly
    the plane again, and a slice index that says nothing within a plane was named in the headline. It is now
    binned and scored within each plane (``within``: plane); a copy of it under another name is not."""
    rng = np.random.default_rng(5)
    plane = np.repeat(["axial", "coronal", "sagittal"], 150)
    index = np.select([plane == "axial", plane == "coronal"], [0, 80], 160) + rng.integers(0, 78, len(plane))
    seq = rng.choice(["T1", "T2"], len(plane))
    table = {"plane": list(plane), "slice_index": [str(v) for v in index], "index_copy": [str(v) for v in index],
             "sequence": list(seq)}
    rows = A.rank_associations(table, {"cluster": [f"{p}-{s}" for p, s in zip(plane, seq)]}, permutations=199)
    by = {r["column"]: r for r in rows}
    assert by["index_copy"]["score"] > 0.4 and by["index_copy"]["p_value"] <= 0.01  # the plane, read again
    assert abs(by["slice_index"]["score"]) < 0.02 and by["slice_index"]["p_value"] > 0.05
    assert by["index_copy"].get("within", "") == "" and by["slice_index"].get("within", "") == "plane"
    assert "slice_index" not in A.headline(rows)
    # clusters that follow the height within each plane: found, and named as scored
    half = [f"{p}-{int(v - v0 >= 39)}" for p, v, v0 in zip(plane, index, np.select(
        [plane == "axial", plane == "coronal"], [0, 80], 160))]
    rows = A.rank_associations(table, {"cluster": half}, permutations=199)
    by = {r["column"]: r for r in rows}
    assert by["slice_index"]["score"] > 0.4 and by["slice_index"]["p_value"] <= 0.01
    assert "slice_index (AMI 0.4" in A.headline(rows) and "quintiles within plane)" in A.headline(rows)
    A.write_associations(tmp_path / "associations.csv", rows)  # the report reads the same back
    from brainclust.report.associations import read_associations, read_summary

    assert read_summary(tmp_path / "associations.csv")[0] == A.headline(rows)
    shown = {r["column"]: r["statistic"] for r in read_associations(tmp_path / "associations.csv")}
    assert shown["slice_index"] == "AMI, quintiles, within plane" and shown["index_copy"] == "AMI, quintiles"


def test_a_dicom_instance_number_is_ranked_within_its_series():
    """A DICOM file's InstanceNumber counts along its series (1..N in each): over every row, series of different
    lengths make high numbers a mark of the long series, so clusters that follow the series (and nothing along
    it) gave the number a significant score. It is scored within ``series_id``, as a slice index within its
    plane; clusters that follow each series' lower and upper half are still found."""
    rng = np.random.default_rng(7)
    series = np.repeat(["a#series=1", "a#series=2", "b#series=1"], [60, 120, 90])
    number = np.concatenate([np.arange(1, 61), np.arange(1, 121), np.arange(1, 91)])
    table = {"series_id": list(series), "instance_number": [str(v) for v in number],
             "number_copy": [str(v) for v in number]}
    seq = rng.choice(["T1", "T2"], len(series))
    by = {r["column"]: r for r in A.rank_associations(table, {"cluster": [f"{s}-{q}" for s, q in zip(series, seq)]},
                                                      permutations=99)}
    assert by["instance_number"]["within"] == "series_id" and by["number_copy"].get("within", "") == ""
    assert by["number_copy"]["p_value"] <= 0.01  # the series, read again from the numbers' range
    assert abs(by["instance_number"]["score"]) < 0.02 and by["instance_number"]["p_value"] > 0.05
    size = np.array([{"a#series=1": 60, "a#series=2": 120, "b#series=1": 90}[s] for s in series])
    halves = [f"{s}-{int(v > n // 2)}" for s, v, n in zip(series, number, size)]
    by = {r["column"]: r for r in A.rank_associations(table, {"cluster": halves}, permutations=99)}
    assert by["instance_number"]["score"] > 0.4 and by["instance_number"]["p_value"] <= 0.01
    # files without a series UID are a series each, and short series hold one number per file: scored within them
    # nothing would be left (a value per row), so the numbers are scored over every row, as before
    for per, number in ((1, lambda i: i % 60 + 1), (3, lambda i: i % 3 + 1), (5, lambda i: i % 5 + 1),
                        (10, lambda i: i % 10 + 1)):
        n = 120 // per * per
        short = {"series_id": [f"s{i // per}" for i in range(n)], "instance_number": [str(number(i)) for i in range(n)]}
        low = [str(int(number(i) <= (30 if per == 1 else per / 2))) for i in range(n)]
        by = {r["column"]: r for r in A.rank_associations(short, {"cluster": low}, permutations=99)}
        assert by["instance_number"].get("within", "") == "", per
        assert by["instance_number"]["score"] > 0.4 and by["instance_number"]["p_value"] <= 0.01, per


def test_a_slice_index_of_one_plane_or_inside_plane_strata_is_scored_as_any_column():
    rng = np.random.default_rng(2)
    index, groups = [str(v) for v in rng.integers(0, 150, 90)], rng.integers(0, 3, 90)
    one = {"plane": ["axial"] * 90, "slice_index": index, "index_copy": index}
    by = {r["column"]: r for r in A.rank_associations(one, {"cluster": groups}, permutations=19)}
    assert by["slice_index"].get("within", "") == "" and by["slice_index"]["score"] == by["index_copy"]["score"]
    plane = np.repeat(["axial", "coronal", "sagittal"], 30)  # --within plane: the strata are the planes already
    three = {"plane": list(plane), "slice_index": index, "index_copy": index}
    by = {r["column"]: r for r in A.rank_associations(three, {"cluster": groups}, permutations=19, strata=plane)}
    assert by["slice_index"].get("within", "") == "" and by["slice_index"]["score"] == by["index_copy"]["score"]
    assert by["slice_index"]["p_value"] == by["index_copy"]["p_value"]
    by = {r["column"]: r for r in A.rank_associations(three, {"cluster": groups}, permutations=19,
                                                      strata=np.tile(["a", "b"], 45))}  # other strata: both
    assert by["slice_index"].get("within", "") == "plane" and by["slice_index"]["score"] != by["index_copy"]["score"]
