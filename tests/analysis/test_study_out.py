"""benchmark, sensitivity and ablation: --out on a run's rules, k against the images, options before any write."""

import pytest

from brainclust.analysis import ablation as ab
from brainclust.cli import main
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import InputError
from brainclust.features.extractor import FeatureExtractor

PIXELS = ["--backbone", "pixels@16", "--workers", "0"]


def no_extraction(self, records):
    raise AssertionError("extracted features before refusing k")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """12 demo images (3 planes x 4), in a folder of their own."""
    return make_demo_dataset(tmp_path_factory.mktemp("study") / "data", n_per_class=4, size=64)


def study(command, data, out, *more):
    if command == "sensitivity":
        return ["sensitivity", str(data), "--out", str(out), "--seeds", "1", "--settings", "pca", *PIXELS, *more]
    return ["benchmark", str(data), "--out", str(out), "--seeds", "1", "--methods", "kmeans", *PIXELS, *more]


def one_error_line(capsys, *parts):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("brainclust: error: "), err
    for part in parts:
        assert part in err, err
    return err


@pytest.mark.parametrize("command", ["sensitivity", "benchmark"])
def test_out_inside_the_data_folder_is_refused_before_any_work(command, demo, capsys):
    out = demo / "study_out"
    assert main(study(command, demo, out)) == 2
    one_error_line(capsys, "--out:", "must be outside the data folder")
    assert not out.exists()


@pytest.mark.parametrize("command", ["sensitivity", "benchmark"])
def test_out_holding_other_files_is_refused(command, demo, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    assert main(study(command, demo, tmp_path / "x")) == 2
    one_error_line(capsys, "--out:", "'notes.txt'", f"'brainclust {command}' replaces its whole --out folder")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


def test_ablation_out_holding_other_files_is_refused_before_the_demo_set_is_written(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    assert main(["ablation", "--out", str(tmp_path / "x"), "--datasets", "demo", "--seeds", "1"]) == 2
    one_error_line(capsys, "--out:", "'notes.txt'", "'brainclust ablation'")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


def test_ablation_out_inside_the_data_root_is_refused(demo, tmp_path, capsys):
    root = tmp_path / "root"
    (root / "brain_tumor_yes_no").mkdir(parents=True)
    out = root / "ablation_out"
    assert main(["ablation", "--out", str(out), "--datasets", "brain_tumor_yes_no", "--data-root", str(root),
                 "--seeds", "1"]) == 2
    one_error_line(capsys, "--out:", "must be outside the data folder")
    assert not out.exists()


def test_an_earlier_output_is_replaced_whole_and_another_study_is_not(demo, tmp_path, capsys):
    out = tmp_path / "sens"
    assert main(["sensitivity", str(demo), "--out", str(out), "--seeds", "1", "--settings", "pca,clip", *PIXELS]) == 0
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["sensitivity_clip.png", "sensitivity_pca.png"]
    assert main(study("sensitivity", demo, out)) == 0  # its own earlier output: replaced, no stale plot left
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["sensitivity_pca.png"]
    capsys.readouterr()
    assert main(study("benchmark", demo, out)) == 2
    one_error_line(capsys, "'brainclust sensitivity' writes", "not replaced by 'brainclust benchmark'")
    assert not (out / "results.csv").exists()


def test_ablation_keeps_its_demo_set_and_refuses_a_foreign_file_in_it(tmp_path, capsys):
    out = tmp_path / "ab"
    run = dict(seeds=(0,), methods=("kmeans",), configs=(("no SSL", ()),), backbone="pixels@16", workers=0,
               cache_dir=str(tmp_path / "cache"))
    sets = ab.ablation_datasets(None, ["demo"], out / "demo_data")
    ab.run_ablation(sets, out, **run)
    assert sorted(p.name for p in out.iterdir()) == ["ablation.json", "ablation.md", "demo_data"]
    n_images = len(list((out / "demo_data").rglob("*.png")))
    ab.run_ablation(sets, out, **run)  # its own earlier output, the demo set kept
    assert len(list((out / "demo_data").rglob("*.png"))) == n_images == 120
    (out / "demo_data" / "axial" / "mine.png").write_bytes(b"")
    assert main(["ablation", "--out", str(out), "--datasets", "demo", "--seeds", "1"]) == 2
    one_error_line(capsys, "'demo_data/axial/mine.png'", "'brainclust ablation'")


def test_sensitivity_k_must_be_below_the_images_each_seed_clusters(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(FeatureExtractor, "fit_extract", no_extraction)
    out = tmp_path / "s"
    assert main(study("sensitivity", demo, out, "--k", "12", "--subsample", "1")) == 2  # 12 images, 12 clusters
    one_error_line(capsys, "--k: 12 clusters requested", "only 12 images to cluster")
    # 0.3 of 12 images = 4 per seed: k = 2..8 cannot all be formed
    args = ["sensitivity", str(demo), "--out", str(out), "--seeds", "1", "--settings", "k", "--subsample", "0.3",
            *PIXELS]
    assert main(args) == 2
    one_error_line(capsys, "--settings k", "8 clusters requested", "--subsample 0.3 of the 12 images",
                   "only 4 images")
    assert not out.exists()


def test_benchmark_k_above_the_images_is_refused_up_front(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(FeatureExtractor, "fit_extract", no_extraction)
    out = tmp_path / "b"
    assert main(study("benchmark", demo, out, "--k", "500")) == 2
    one_error_line(capsys, "--k: 500 clusters requested", "only 12 images")
    assert main(["benchmark", str(demo), "--out", str(out), "--seeds", "1", "--methods", "spectral", "--k", "11",
                 *PIXELS]) == 2
    one_error_line(capsys, "--k: spectral clustering needs at least k + 2 = 13 images", "has 12")
    assert not out.exists()


def test_ablation_options_are_checked_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "a4"
    assert main(["ablation", "--out", str(out), "--datasets", "demo", "--seeds", "0"]) == 2
    one_error_line(capsys, "--seeds")
    assert not out.exists()
    assert main(["ablation", "--out", str(out), "--datasets", "demo", "--methods", "", "--seeds", "1"]) == 2
    one_error_line(capsys, "--methods")
    assert main(["ablation", "--out", str(out), "--datasets", "demo", "--data-root", str(tmp_path),
                 "--seeds", "1"]) == 2
    one_error_line(capsys, "--data-root:", "would be ignored")
    assert not out.exists()
    with pytest.raises(InputError, match="brain_tumor_yes_no"):  # a missing set: the demo set is not generated first
        ab.ablation_datasets(tmp_path, ["demo", "brain_tumor_yes_no"], out / "demo_data")
    assert not out.exists()


def test_benchmark_refuses_k_auto_with_self_supervision_as_run_does(demo, tmp_path, monkeypatch, capsys):
    """benchmark --k auto --self-supervised trained the heads for a k of its own choosing, where run refuses the
    combination: one rule (selfsup.stage.check_k), the same line, before any extraction."""
    monkeypatch.setattr(FeatureExtractor, "fit_extract", no_extraction)
    ssl = ["--self-supervised", "contrastive", "--ssl-epochs", "1"]
    assert main(["run", str(demo), "--out", str(tmp_path / "r"), "--k", "auto", *ssl, *PIXELS]) == 2
    refused = one_error_line(capsys, "--k: 'auto' cannot be combined with --self-supervised")
    assert main(study("benchmark", demo, tmp_path / "b", "--k", "auto", *ssl)) == 2
    assert one_error_line(capsys) == refused
    assert not (tmp_path / "b").exists()


def test_ablation_takes_the_runs_precision_and_says_which_it_used(demo, tmp_path, monkeypatch):
    """ablation had no --precision (the run has one): `make ablation` measured other features than the table's
    bf16 ones, and nothing said which. The option passes through to the runs, defaults as the run's, and the
    features' precision heads ablation.md."""
    from brainclust.model.config import RunConfig

    asked = []
    real = ab.run_ablation
    monkeypatch.setattr(ab, "run_ablation", lambda sets, out, **kw: asked.append(kw["precision"]))
    for extra in ([], ["--precision", "fp32"]):
        assert main(["ablation", "--out", str(tmp_path / "a"), "--datasets", "demo", "--seeds", "1", *extra]) == 0
    assert asked == [RunConfig().precision, "fp32"]
    got = real({"d": demo}, tmp_path / "b", seeds=(0,), methods=("kmeans",), configs=(("no SSL", ()),), workers=0,
               cache_dir=str(tmp_path / "cache"), precision="fp32")
    assert got["precision"] == {"requested": "fp32", "used": ["fp32"]}
    assert "backbone efficientnet_lite0 (frozen, `head` mode, fp32 features); " in (tmp_path / "b" / "ablation.md"
                                                                                     ).read_text()
