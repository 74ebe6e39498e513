"""``not_mri`` by likeness (brainclust.checks.likeness): a grey picture without air, unlike the folder's slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclust.checks.descriptors import DESCRIPTOR_NAMES, slot
from brainclust.checks.flags import Thresholds
from brainclust.checks.likeness import REFERENCE_MIN, likeness_scores, revise_not_mri, unlike
from brainclust.checks.stage import check_folder, run_checks
from brainclust.errors import ParameterError
from checks_planting import head_slice

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FOUR = DATA / "brain_tumor_4class_dev"


def grey_photo(name: str, crop: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Image.Image:
    import skimage.data as skd

    a = getattr(skd, name)()
    h, w = a.shape[:2]
    a = a[int(crop[1] * h):int(crop[3] * h), int(crop[0] * w):int(crop[2] * w)]
    return Image.fromarray(a).convert("L")


def test_grey_photographs_without_air_are_not_mri_among_synthetic_slices(tmp_path):
    for i in range(30):
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i:02d}.png")
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    grey_photo("coins", (0.1, 0.1, 0.7, 0.8)).save(tmp_path / "coins_crop.jpg")
    res = check_folder(tmp_path, progress=False)
    flags = dict(zip(res.paths, res.flags))
    z = dict(zip(res.paths, res.likeness_z))
    for photo in ("astronaut.png", "coins_crop.jpg"):
        assert "not_mri" in flags[photo], (photo, z[photo])
        assert z[photo] < Thresholds().likeness_unlike_below
    slices = [p for p in res.paths if p.startswith("slice_")]
    assert [p for p in slices if "not_mri" in flags[p]] == []
    # references: scored too (leave-one-out), well above their own threshold
    assert all(z[p] > Thresholds().likeness_reference_below for p in slices)


def test_the_rule_is_a_threshold_that_can_be_moved(tmp_path):
    for i in range(30):
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i:02d}.png")
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    res = check_folder(tmp_path, progress=False,
                       thresholds=Thresholds(likeness_unlike_below=-1e6, likeness_picture_below=-1e9))
    flags = dict(zip(res.paths, res.flags))
    assert np.isfinite(res.likeness_z[res.paths.index("astronaut.png")])
    assert "not_mri" not in flags["astronaut.png"]


def test_nothing_is_scored_with_too_few_references(tmp_path):
    for i in range(REFERENCE_MIN - 1):
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i:02d}.png")
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    res = check_folder(tmp_path, progress=False)
    assert np.isnan(res.likeness_z).all()


def test_slices_of_volumes_alone_mean_no_features(monkeypatch, tmp_path):
    """No candidate and every reference a slice of a volume or series (never judged): nothing to extract."""
    from brainclust.features import extractor

    def fail(*a, **k):
        raise AssertionError("features computed with nothing to judge")

    monkeypatch.setattr(extractor.FeatureExtractor, "transform", fail)
    vectors = np.zeros((30, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:, slot("air_border")] = 0.9  # every image has air: all references, no candidate
    vectors[:, slot("main_object")] = 1.0  # one object each (a head)
    z = likeness_scores([object()] * 30, vectors, np.ones(30, bool), np.zeros(30, bool), np.ones(30, bool),
                        Thresholds()).z
    assert np.isnan(z).all()


def test_the_verdicts_read_their_thresholds_and_never_act_on_nan():
    t = Thresholds(likeness_unlike_below=-7.0, likeness_alike_above=-4.0)
    z = np.array([-7.5, -6.9, np.nan, 3.0, -7.5, -5.0, -3.0, np.nan])
    assert unlike(z, t).tolist() == [True, False, False, False, True, False, False, False]
    pixel = np.array([False] * 4 + [True] * 4)  # the last four: suspected by the pixel rules (no air, scene)
    revised = revise_not_mri(pixel, z, pixel, t)
    assert revised.tolist() == [True, False, False, False, True, True, False, True]
    off = Thresholds(likeness_unlike_below=-1e9, likeness_alike_above=1e9)
    assert revise_not_mri(pixel, z, pixel, off).tolist() == pixel.tolist()
    # references (never suspected) answer to their own, lower threshold
    ref_z = np.array([-9.6, -9.4, -7.5, np.nan])
    reference = np.ones(4, bool)
    assert unlike(ref_z, t, reference).tolist() == [True, False, False, False]
    assert revise_not_mri(np.zeros(4, bool), ref_z, np.zeros(4, bool), t, reference).tolist() == \
        [True, False, False, False]
    assert not unlike(ref_z, Thresholds(likeness_reference_below=-1e9), reference).any()


@pytest.mark.parametrize("text, name", [("likeness_alike_above=-8", "likeness_alike_above"),
                                        ("likeness_unlike_below=nan", "likeness_unlike_below"),
                                        ("likeness_air_border=1.5", "likeness_air_border")])
def test_bad_likeness_thresholds_are_refused(text, name):
    with pytest.raises(ParameterError, match=name):
        Thresholds.from_text(text)


@pytest.mark.skipif(not FOUR.is_dir(), reason=f"real data not found at {DATA}")
def test_a_grey_product_shot_among_real_slices_is_not_mri(tmp_path):
    """matplotlib's gift-box picture, grey: missed by every pixel rule (its white ground and shadow look like
    neither air nor a scene); the held-out planting of benchmarks/checks_planted.py missed it (2026-12-05)."""
    import shutil

    import matplotlib

    files = sorted(FOUR.rglob("*.jpg"))[::10]
    for p in files:
        shutil.copyfile(p, tmp_path / p.name)
    box = Path(matplotlib.get_data_path()) / "sample_data" / "Minduka_Present_Blue_Pack.png"
    Image.open(box).convert("RGB").convert("L").save(tmp_path / "present.png")
    res = check_folder(tmp_path, progress=False)
    flags = dict(zip(res.paths, res.flags))
    assert "not_mri" in flags["present.png"]
    assert [p for p in res.paths if p != "present.png" and "not_mri" in flags[p]] == []



def test_identical_references_do_not_make_an_ordinary_candidate_unlike_them(monkeypatch):
    """25 identical references leave their scores no spread: the MAD floor keeps a candidate at cosine 0.85
    (an ordinary slice-to-slice similarity) from being called unlike them; one at 0.3 still is."""
    from brainclust.checks.likeness import MAD_FLOOR
    from brainclust.features import extractor

    n_ref = 25
    ref = np.zeros(8, np.float32)
    ref[0] = 1.0

    def at_cosine(c):
        v = np.zeros(8, np.float32)
        v[0], v[1] = c, np.sqrt(1 - c * c)
        return v

    feats = np.vstack([np.tile(ref, (n_ref, 1)), at_cosine(0.85), at_cosine(0.3)])
    monkeypatch.setattr(extractor.FeatureExtractor, "transform", lambda self, records: feats[:len(records)])
    vectors = np.zeros((n_ref + 2, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:n_ref, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0  # one object each (a head)
    none = np.zeros(n_ref + 2, bool)
    z = likeness_scores([object()] * (n_ref + 2), vectors, np.ones(n_ref + 2, bool), none, none, Thresholds()).z
    assert np.abs(z[:n_ref]).max() < 1e-3  # each as close to the others as they are to each other
    assert z[n_ref] == pytest.approx(-0.15 / MAD_FLOOR, rel=1e-3)
    assert unlike(z, Thresholds()).tolist() == [False] * n_ref + [False, True]


def tight_crop(a: np.ndarray) -> np.ndarray:
    """Crop to the head (pixels above a tenth of the maximum), then 5 % further in on every side."""
    ys, xs = np.nonzero(a > 0.1 * a.max())
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    dy, dx = int(0.05 * (y1 - y0)), int(0.05 * (x1 - x0))
    return a[y0 + dy:y1 - dy + 1, x0 + dx:x1 - dx + 1]


@pytest.mark.skipif(not FOUR.is_dir(), reason=f"real data not found at {DATA}")
def test_slices_cropped_tight_to_the_head_are_cleared_and_documents_are_not(tmp_path):
    """Cropped inside the skull, these 4-class slices are ``no_air`` or a ``scene`` to the pixel rules (found by
    cropping every other slice of the set, 2026-12-05); among the set's other slices their CNN features clear
    them. Text pages, also ``no_air``, stay ``not_mri``."""
    import shutil

    from checks_planting import document

    from brainclust.checks.descriptors import describe_records
    from brainclust.checks.rules import certain_not_mri, pixel_flags
    from brainclust.io.scan import scan

    for p in sorted(FOUR.rglob("*.jpg"))[::10]:
        shutil.copyfile(p, tmp_path / p.name)
    cropped = ["meningioma/Tr-me_0251", "meningioma/Tr-me_0673", "notumor/Te-no_0074", "pituitary/Tr-pi_0110"]
    for name in cropped:
        a = np.asarray(Image.open(FOUR / f"{name}.jpg").convert("L"))
        Image.fromarray(tight_crop(a)).save(tmp_path / f"tight_{Path(name).name}.png")
    for j in range(3):
        document(j).save(tmp_path / f"page_{j}.png")
    records = scan(tmp_path).records
    vectors = describe_records(records).vectors
    t = Thresholds()
    suspected = pixel_flags(vectors, t)["not_mri"] & ~certain_not_mri(vectors, t)
    named = {r.path for r, s in zip(records, suspected) if s}
    assert {f"tight_{Path(n).name}.png" for n in cropped} | {f"page_{j}.png" for j in range(3)} <= named
    res = check_folder(tmp_path, progress=False)
    flagged = {p for p, f in zip(res.paths, res.flags) if "not_mri" in f}
    assert flagged == {f"page_{j}.png" for j in range(3)}


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _fake_features(monkeypatch, whole, crops, calls):
    """Features by view: ``whole`` for the records' own pictures, ``crops`` (one row per reference) for the
    ``tight_crop`` view; ``calls`` records which views were asked for."""
    from brainclust.features import extractor

    def transform(self, records):
        calls.append(self.view)
        if self.view is None:
            return whole[[r for r in records]]
        assert self.view == "tight_crop"
        return crops[[r for r in records]]

    monkeypatch.setattr(extractor.FeatureExtractor, "transform", transform)


def _references(n, rng, axis):
    """``n`` unit vectors scattered about the basis ``axis`` (cosine to it ~0.9)."""
    v = np.zeros((n, 16), np.float32)
    v[:, axis] = 1.0
    return _unit(v + 0.25 * rng.standard_normal((n, 16)).astype(np.float32))


def test_a_tight_crop_is_cleared_by_the_references_crops_and_a_photograph_is_not(monkeypatch):
    """The references' own features point along axis 0 and their crops' along axis 1. A candidate along axis
    1 (a slice cropped tight) is unlike the whole slices but like their crops; one along axis 2 (a photograph)
    is unlike both. One atypical reference (axis 3: a picture the pixel rules let through) lends no crop: a
    candidate like its crop (axis 4) stays unlike. The crops are computed only because a verdict is at stake."""
    rng = np.random.default_rng(0)
    n_ref = 41
    e = np.eye(16, dtype=np.float32)
    whole = np.vstack([_references(n_ref - 1, rng, 0), e[3], _unit(e[1] + 0.05), _unit(e[2] + 0.05), e[4]])
    crops = np.vstack([_references(n_ref - 1, rng, 1), e[4], np.zeros((3, 16), np.float32)])
    calls = []
    _fake_features(monkeypatch, whole, crops, calls)
    n = n_ref + 3
    vectors = np.zeros((n, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:n_ref, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0  # one object each (a head)
    t = Thresholds()
    none = np.zeros(n, bool)
    z = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t).z
    assert calls == [None, "tight_crop"]
    assert (z[:n_ref - 1] > t.likeness_alike_above).all()
    assert z[n_ref - 1] < t.likeness_alike_above  # the atypical reference is judged too (not unlike enough here)
    assert z[n_ref] > t.likeness_alike_above  # the tight crop: as close to the crops as slices to each other
    assert z[n_ref + 1] < t.likeness_unlike_below  # the photograph
    reference = np.arange(n) < n_ref
    assert unlike(z, t, reference).tolist() == [False] * (n_ref + 1) + [True, True]


def test_the_references_are_not_cropped_when_no_verdict_is_at_stake(monkeypatch):
    rng = np.random.default_rng(1)
    n_ref = 40
    refs = _references(n_ref, rng, 0)
    whole = np.vstack([refs, _unit(refs[:3].mean(axis=0))])  # an ordinary candidate, like the references
    calls = []
    _fake_features(monkeypatch, whole, np.zeros_like(whole), calls)
    vectors = np.zeros((n_ref + 1, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:n_ref, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0  # one object each (a head)
    none = np.zeros(n_ref + 1, bool)
    z = likeness_scores(list(range(n_ref + 1)), vectors, np.ones(n_ref + 1, bool), none, none, Thresholds()).z
    assert calls == [None]
    assert z[n_ref] > Thresholds().likeness_alike_above


def test_the_features_have_the_precision_and_runtime_asked_for(monkeypatch):
    """A bf16 run's checks ask for bf16 on the run's runtime (its features, shared through the store), for the
    references' crops too; the extraction itself is faked, so this runs on any CPU."""
    from brainclust.features import extractor

    rng = np.random.default_rng(2)
    n_ref = 40
    whole = np.vstack([_references(n_ref, rng, 0), _unit(np.eye(16, dtype=np.float32)[2] + 0.05)])
    seen = []

    def transform(self, records):
        seen.append((self.view, self.precision, self.runtime))
        return whole[list(records)]

    monkeypatch.setattr(extractor.FeatureExtractor, "fit", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(extractor.FeatureExtractor, "transform", transform)
    vectors = np.zeros((n_ref + 1, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:n_ref, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0  # one object each (a head)
    suspected = np.arange(n_ref + 1) == n_ref  # flagged by the pixel rules, unlike the references: at stake
    none = np.zeros(n_ref + 1, bool)
    args = (list(range(n_ref + 1)), vectors, ~suspected, suspected, none, Thresholds())
    z = likeness_scores(*args, precision="bf16", runtime="openvino").z
    assert seen == [(None, "bf16", "openvino"), ("tight_crop", "bf16", "openvino")]
    assert z[n_ref] < Thresholds().likeness_alike_above
    seen.clear()
    likeness_scores(*args)
    assert seen == [(None, "fp32", "auto"), ("tight_crop", "fp32", "auto")]


def test_the_manifest_says_how_the_likeness_features_were_extracted(tmp_path):
    from brainclust.checks.stage import checks_record
    from brainclust.io.scan import scan

    for i in range(3):  # too few references: nothing is extracted, on any CPU
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i}.png")
    records = scan(tmp_path, progress=False).records
    assert checks_record(run_checks(records, progress=False))["likeness_features"] == {
        "backbone": "efficientnet_lite0", "precision": "fp32", "runtime": "auto"}
    bf16 = run_checks(records, progress=False, likeness_precision="bf16", likeness_runtime="torch")
    assert checks_record(bf16)["likeness_features"]["precision"] == "bf16"


def test_int8_likeness_features_are_refused():
    n = 30
    with pytest.raises(ParameterError, match="precision must be one of fp32, bf16, got 'int8'"):
        likeness_scores([object()] * n, np.zeros((n, len(DESCRIPTOR_NAMES)), np.float32), np.ones(n, bool),
                        np.zeros(n, bool), np.zeros(n, bool), Thresholds(), precision="int8")


def _native_bf16() -> bool:
    from brainclust.features import openvino_runtime as ovr

    return ovr.openvino_available() and ovr.native_bf16()


@pytest.mark.skipif(not _native_bf16(), reason="this CPU has no native bf16 (AMX or AVX512-BF16) for OpenVINO")
def test_bf16_likeness_features_give_the_fp32_verdicts(tmp_path):
    """On a CPU with native bf16: the same folder checked with the likeness features in bf16 (as a bf16 run
    does) gets the same flags as in fp32, and the scores move by much less than the thresholds' margins."""
    for i in range(30):
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i:02d}.png")
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    grey_photo("coffee", (0.2, 0.1, 0.8, 0.9)).save(tmp_path / "coffee.png")
    data = sorted(tmp_path.iterdir())
    from brainclust.io.scan import scan

    records = scan(tmp_path, progress=False).records
    fp32 = run_checks(records, progress=False)
    bf16 = run_checks(records, progress=False, likeness_precision="bf16", likeness_runtime="openvino")
    assert fp32.flags == bf16.flags and len(data) == len(records)
    assert "not_mri" in fp32.flags[fp32.paths.index("astronaut.png")]
    scored = np.isfinite(fp32.likeness_z)
    assert scored.any() and np.isfinite(bf16.likeness_z[scored]).all()
    assert np.abs(fp32.likeness_z[scored] - bf16.likeness_z[scored]).max() < 1.0


VOLUMES = DATA / "brain_mri_volumes_dev"


@pytest.mark.skipif(not VOLUMES.is_dir(), reason=f"real data not found at {DATA}")
def test_skull_stripped_slices_cropped_tight_are_not_mri_only_without_the_crops_step(monkeypatch, tmp_path):
    """BraTS slices (skull-stripped) exported as PNG, and tight crops of the eleven that the stress test of
    ``benchmarks/checks_tight_crops.py`` on the cut ``plane`` set flagged before step 5 (2026-12-05): brain
    tissue filling the frame, no air, no skull. With the references' crops none is ``not_mri``; without
    them some are. A grey photograph stays ``not_mri`` either way."""
    from brainclust.checks import likeness
    from brainclust.io.formats import nifti

    seqs = {"T1": "T1w", "T1C": "ce-gadolinium_T1w", "T2": "T2w", "FLAIR": "FLAIR"}
    crop = {("sub-01", "T1", "coronal", 68), ("sub-01", "T1", "coronal", 78), ("sub-01", "T1", "coronal", 89),
            ("sub-01", "FLAIR", "coronal", 57), ("sub-01", "FLAIR", "coronal", 78), ("sub-01", "T2", "coronal", 68),
            ("sub-01", "T1", "axial", 79), ("sub-03", "T1C", "axial", 115), ("sub-03", "T2", "axial", 115),
            ("sub-04", "T1", "axial", 83), ("sub-04", "T1", "axial", 92)}
    for sub in ("sub-01", "sub-03", "sub-04"):
        for short, seq in seqs.items():
            vol = nifti.load_volume(VOLUMES / sub / "anat" / f"{sub}_{seq}.nii.gz")
            top = float(np.percentile(vol[vol > 0], 99.5))
            for plane in ("axial", "coronal"):
                first, last = nifti.brain_range(vol, plane)
                wanted = {int(v) for v in np.linspace(first + 0.1 * (last - first), last - 0.1 * (last - first), 6)}
                for idx in sorted(wanted | {i for s, q, p, i in crop if (s, q, p) == (sub, short, plane)}):
                    a = np.round(np.clip(nifti.cut(vol, plane, idx) / top, 0, 1) * 255).astype(np.uint8)
                    tight = (sub, short, plane, idx) in crop
                    name = f"{'tight_' if tight else ''}{sub}_{short}_{plane}_{idx:03d}.png"
                    Image.fromarray(tight_crop(a) if tight else a).save(tmp_path / name)
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    res = check_folder(tmp_path, progress=False)
    flagged = {p for p, f in zip(res.paths, res.flags) if "not_mri" in f}
    assert sum(p.startswith("tight_") for p in res.paths) == len(crop)
    assert flagged == {"astronaut.png"}
    monkeypatch.setattr(likeness, "_crops", lambda *args: np.zeros((0, 0), np.float32))
    res = check_folder(tmp_path, progress=False)
    flagged = {p for p, f in zip(res.paths, res.flags) if "not_mri" in f}
    assert "astronaut.png" in flagged and any(p.startswith("tight_") for p in flagged)



def test_a_fragmented_picture_with_air_is_a_candidate_not_a_reference(monkeypatch):
    """Dark air all round but many objects (a star field): scored against the slices, not one of them."""
    from brainclust.features import extractor

    n_ref = 25
    feats = np.zeros((n_ref + 1, 8), np.float32)
    feats[:n_ref, 0] = 1.0
    feats[n_ref, 1] = 1.0  # unlike every reference
    monkeypatch.setattr(extractor.FeatureExtractor, "transform", lambda self, records: feats[:len(records)])
    vectors = np.zeros((n_ref + 1, len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0
    vectors[n_ref, slot("main_object")] = 0.1
    none = np.zeros(n_ref + 1, bool)
    z = likeness_scores([object()] * (n_ref + 1), vectors, np.ones(n_ref + 1, bool), none, none, Thresholds()).z
    t = Thresholds()
    assert (z[:n_ref] > t.likeness_alike_above).all() and z[n_ref] < t.likeness_unlike_below
    # at a share the threshold lets through, it is a reference again: judged on the references' threshold
    loose = Thresholds(likeness_main_object=0.05)
    z = likeness_scores([object()] * (n_ref + 1), vectors, np.ones(n_ref + 1, bool), none, none, loose).z
    assert z[n_ref] < loose.likeness_reference_below


@pytest.mark.skipif(not (FOUR.is_dir() and (DATA / "brain_tumor_yes_no").is_dir()),
                    reason=f"real data not found at {DATA}")
def test_a_star_field_and_a_logo_on_black_among_real_slices_are_not_mri(tmp_path):
    """Grey pictures on a dark ground have the air ring of a slice; their many objects (stars, letters) make
    them candidates (the `grey` planting's misses, 2026-12-06). The yes/no slices, three-level masks many of
    which are fragmented too, stay unflagged."""
    import shutil

    import matplotlib

    files = sorted(FOUR.rglob("*.jpg"))[::10] + sorted((DATA / "brain_tumor_yes_no").rglob("*.[jJ]*"))[::4]
    for i, p in enumerate(files):
        shutil.copyfile(p, tmp_path / f"{i:03d}{p.suffix}")
    grey_photo("hubble_deep_field").save(tmp_path / "stars.png")
    logo = Path(matplotlib.get_data_path()) / "sample_data" / "logo2.png"
    Image.open(logo).convert("RGB").convert("L").save(tmp_path / "logo.png")
    res = check_folder(tmp_path, progress=False)
    flags = dict(zip(res.paths, res.flags))
    z = dict(zip(res.paths, res.likeness_z))
    assert "not_mri" in flags["stars.png"] and "not_mri" in flags["logo.png"], (z["stars.png"], z["logo.png"])
    assert [p for p in res.paths if p not in ("stars.png", "logo.png") and "not_mri" in flags[p]] == []


def _references_with(monkeypatch, pictures: np.ndarray, n_ref: int = 40, seed: int = 3):
    """Fake features: ``n_ref`` slice-like references (axis 0) followed by ``pictures``, all references by their
    pixels; returns the descriptor vectors and the batches of rows the extractor was asked for."""
    from brainclust.features import extractor

    whole = np.vstack([_references(n_ref, np.random.default_rng(seed), 0), pictures])
    batches = []

    def transform(self, records):
        batches.append(list(records))
        return whole[list(records)]

    monkeypatch.setattr(extractor.FeatureExtractor, "transform", transform)
    vectors = np.zeros((len(whole), len(DESCRIPTOR_NAMES)), np.float32)
    vectors[:, slot("air_border")] = 0.9
    vectors[:, slot("main_object")] = 1.0
    return vectors, batches


def test_a_copy_of_a_picture_does_not_vouch_for_it(monkeypatch):
    """A picture taken for a reference (dark ground, one object) and its copy: each is the other's nearest
    neighbour, but in one duplicate group, so neither counts for the other and both are ``not_mri``."""
    e = np.eye(16, dtype=np.float32)
    photo = _unit(e[2] - e[0])  # far from every reference (axis 0)
    vectors, _ = _references_with(monkeypatch, np.vstack([photo, photo]))
    n = len(vectors)
    none, t = np.zeros(n, bool), Thresholds()
    group = np.arange(n)
    group[n - 1] = n - 2  # the copy's representative: the picture
    z = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t, group=group).z
    assert (z[n - 2:] < t.likeness_reference_below).all()
    assert (z[:n - 2] > t.likeness_alike_above).all()
    alone = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t).z  # copies not known
    assert (alone[n - 2:] > z[n - 2:]).all()


def test_references_outside_the_sample_are_judged_in_chunks(monkeypatch):
    """Above REFERENCE_MAX references, those outside the seeded sample are scored against it, a chunk at a
    time; a picture among them is ``not_mri`` wherever the sample falls."""
    from brainclust.checks import likeness

    monkeypatch.setattr(likeness, "REFERENCE_MAX", 25)
    monkeypatch.setattr(likeness, "JUDGE_CHUNK", 7)
    e = np.eye(16, dtype=np.float32)
    photo = _unit(e[2] - e[0])  # far from every reference (axis 0)
    vectors, batches = _references_with(monkeypatch, photo[None])
    n = len(vectors)
    none, t = np.zeros(n, bool), Thresholds()
    z = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t).z
    assert np.isfinite(z).all()
    assert z[n - 1] < t.likeness_reference_below and (z[:n - 1] > t.likeness_reference_below).all()
    assert [len(b) for b in batches] == [25, 7, 7, 2]  # the sample, then the other 16 in chunks
    assert sorted(sum(batches, [])) == list(range(n))


@pytest.mark.skipif(not FOUR.is_dir(), reason=f"real data not found at {DATA}")
def test_a_grey_picture_that_passes_for_a_slice_among_real_slices_is_not_mri(tmp_path):
    """scikit-image's colour wheel, grey: a disc on a dark ground, a reference by its pixels (the ``grey``
    planting's miss, z -10.5 there); its features are unlike every real slice's. None of the real slices is
    flagged."""
    import shutil

    for p in sorted(FOUR.rglob("*.jpg"))[::10]:
        shutil.copyfile(p, tmp_path / p.name)
    grey_photo("colorwheel").save(tmp_path / "wheel.png")
    res = check_folder(tmp_path, progress=False)
    flags = dict(zip(res.paths, res.flags))
    z = dict(zip(res.paths, res.likeness_z))
    assert "not_mri" in flags["wheel.png"], z["wheel.png"]
    assert z["wheel.png"] < Thresholds().likeness_reference_below
    assert [p for p in res.paths if p != "wheel.png" and "not_mri" in flags[p]] == []


@pytest.mark.skipif(not FOUR.is_dir(), reason=f"real data not found at {DATA}")
def test_a_grey_photograph_pasted_on_a_dark_canvas_is_a_candidate_and_not_mri(tmp_path):
    """scikit-image's horse and brick pictures, grey, centred on a black canvas (a photograph on a dark slide):
    air around one object, but the object is a rectangle (``box_edge`` ~1), so they are candidates, not
    references, and unlike the real slices. None of the real slices is flagged."""
    import shutil

    for p in sorted(FOUR.rglob("*.jpg"))[::10]:
        shutil.copyfile(p, tmp_path / p.name)
    for name in ("horse", "brick"):
        picture = grey_photo(name)
        picture.thumbnail((150, 150))
        canvas = Image.new("L", (256, 256), 8)
        canvas.paste(picture, ((256 - picture.width) // 2, (256 - picture.height) // 2))
        canvas.save(tmp_path / f"slide_{name}.png")
    res = check_folder(tmp_path, progress=False)
    flags = dict(zip(res.paths, res.flags))
    box = res.descriptors.vectors[:, slot("box_edge")]
    for name in ("slide_horse.png", "slide_brick.png"):
        i = res.paths.index(name)
        assert box[i] > Thresholds().likeness_box_edge and not res.likeness_reference[i]
        assert "not_mri" in flags[name], res.likeness_z[i]
    assert [p for p in res.paths if not p.startswith("slide_") and "not_mri" in flags[p]] == []


def test_a_picture_with_more_copies_than_neighbours_is_still_judged(monkeypatch):
    """25 copies of one picture in the sample (one duplicate group): every one of a picture's nearest references
    is its own copy, yet it is scored against the slices outside its group, and all 25 are ``not_mri``."""
    e = np.eye(16, dtype=np.float32)
    photo = _unit(e[2] - e[0])
    vectors, _ = _references_with(monkeypatch, np.tile(photo, (25, 1)), n_ref=300)  # copies: a few % of them
    n = len(vectors)
    group = np.arange(n)
    group[n - 25:] = n - 25  # one group: the first copy is its head
    none, t = np.zeros(n, bool), Thresholds()
    z = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t, group=group).z
    assert np.isfinite(z).all()
    assert (z[n - 25:] < t.likeness_reference_below).all() and (z[:n - 25] > t.likeness_reference_below).all()


def test_quality_csv_says_why_an_image_is_not_mri_and_which_threshold_its_score_answers_to(tmp_path):
    """A colour photograph is ``not_mri`` for its colour, a grey photograph without air for ``no_air`` and its
    likeness; the slices are references with no reason."""
    import csv

    for i in range(30):
        Image.fromarray(head_slice(i)).save(tmp_path / f"slice_{i:02d}.png")
    import skimage.data as skd

    Image.fromarray(skd.coffee()).save(tmp_path / "coffee.png")
    grey_photo("astronaut").save(tmp_path / "astronaut.png")
    res = check_folder(tmp_path, progress=False, out=tmp_path.parent / "out")
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path.parent / "out" / "quality.csv", newline=""))}
    assert "colour" in rows["coffee.png"]["not_mri_reason"].split(";")
    assert "likeness" in rows["astronaut.png"]["not_mri_reason"].split(";")
    assert rows["astronaut.png"]["likeness_role"] == "candidate"
    slices = [p for p in res.paths if p.startswith("slice_")]
    assert {rows[p]["not_mri_reason"] for p in slices} == {""}
    assert {rows[p]["likeness_role"] for p in slices} == {"reference"}


def test_step_7_calls_a_reference_near_the_picture_bank_a_picture_and_a_rare_slice_not(monkeypatch):
    """Synthetic features: 40 slices about axis 0, a bank of pictures about axis 2. Two references unlike the
    slices (z well below ``likeness_picture_z``): one between the slices and a direction no picture takes (axis 5:
    a rare kind of slice), one towards the bank (a picture on a dark ground). Only the latter is a picture; the
    picture score is computed for none of the typical slices, nor for an image of a few grey levels (a mask);
    ``likeness_picture_below=-1e9`` turns it off. (The threshold is -1 here: with 16-d features and 30 pictures
    the regularised scores stay small.)"""
    from brainclust.checks import likeness

    rng = np.random.default_rng(1)
    e = np.eye(16, dtype=np.float32)
    rare, picture = _unit(e[0] + 4.0 * e[5]), _unit(0.1 * e[0] + e[2])
    vectors, _ = _references_with(monkeypatch, np.vstack([rare, picture]))
    bank = _unit(np.vstack([e[2 + i % 2] + 0.2 * rng.standard_normal(16) for i in range(30)]))
    monkeypatch.setattr(likeness, "picture_bank", lambda: bank)
    vectors[:, slot("grey_levels")] = 64
    n = len(vectors)
    none, t = np.zeros(n, bool), Thresholds(likeness_picture_below=-1.0)
    out = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t)
    assert (out.z[n - 2:] < t.likeness_picture_z).all()
    assert np.isnan(out.picture[out.z >= t.likeness_picture_z]).all()
    assert out.picture[n - 1] < t.likeness_picture_below < out.picture[n - 2]
    assert likeness.pictured(out.picture, t).tolist() == [False] * (n - 1) + [True]
    revised = revise_not_mri(np.zeros(n, bool), out.z, none, t, np.ones(n, bool), out.picture)
    assert revised[n - 1] and not revised[n - 2]
    off = Thresholds(likeness_picture_below=-1e9, likeness_reference_below=-1e9)
    assert not revise_not_mri(np.zeros(n, bool), out.z, none, off, np.ones(n, bool), out.picture).any()
    vectors[n - 1, slot("grey_levels")] = t.label_levels
    assert np.isnan(likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t).picture[n - 1])


def test_the_picture_bank_ships_with_the_package_and_leaves_out_what_it_is_told(monkeypatch):
    from brainclust.checks import likeness

    bank = likeness.picture_bank()
    assert bank.shape[1] == 1280 and len(bank) >= 100
    assert np.allclose(np.linalg.norm(bank, axis=1), 1.0, atol=1e-2)
    with np.load(likeness.BANK_FILE) as f:
        names, backbone = f["name"], str(f["backbone"])
    assert backbone == likeness.BACKBONE
    monkeypatch.setattr(likeness, "BANK_LEAVE_OUT", frozenset({"astronaut", "moon"}))
    assert len(likeness.picture_bank()) == len(bank) - int(np.isin(names, ["astronaut", "moon"]).sum()) < len(bank)


def test_copies_of_a_picture_inside_and_outside_the_sample_get_one_picture_score(monkeypatch):
    """Above REFERENCE_MAX references, six copies of one picture (one duplicate group), some in the seeded sample,
    some judged in chunks outside it: every copy is scored by the classifier fitted without the group's fold (no
    copy vouches for another), so all six get the same score; a bank that does not fit the features, or none,
    leaves the rule unscored with a warning instead of failing the check."""
    from brainclust.checks import likeness

    monkeypatch.setattr(likeness, "REFERENCE_MAX", 25)
    monkeypatch.setattr(likeness, "JUDGE_CHUNK", 7)
    rng = np.random.default_rng(2)
    e = np.eye(16, dtype=np.float32)
    vectors, batches = _references_with(monkeypatch, np.tile(_unit(0.1 * e[0] + e[2]), (6, 1)))
    vectors[:, slot("grey_levels")] = 64
    bank = _unit(np.vstack([e[2 + i % 2] + 0.2 * rng.standard_normal(16) for i in range(30)]))
    monkeypatch.setattr(likeness, "picture_bank", lambda: bank)
    n = len(vectors)
    group = np.arange(n)
    group[n - 6:] = n - 6
    none, t = np.zeros(n, bool), Thresholds(likeness_picture_below=-1.0)
    out = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t, group=group)
    sampled = set(batches[0])
    assert any(i in sampled for i in range(n - 6, n)) and not all(i in sampled for i in range(n - 6, n))
    assert np.isfinite(out.picture[n - 6:]).all()
    assert np.ptp(out.picture[n - 6:]) < 1e-5 and out.picture[n - 1] < t.likeness_picture_below
    monkeypatch.setattr(likeness, "picture_bank", lambda: np.zeros((3, 8), np.float32))
    unfit = likeness_scores(list(range(n)), vectors, np.ones(n, bool), none, none, t, group=group)
    assert np.isnan(unfit.picture).all() and np.isfinite(unfit.z).all()


@pytest.mark.skipif(not FOUR.is_dir(), reason=f"real data not found at {DATA}")
def test_a_picture_faded_to_a_dark_edge_is_not_mri_by_its_picture_score(tmp_path, monkeypatch):
    """scikit-image's clock, grey, faded to black towards its edges (the picture bank's ``vignette`` view), among
    100 real slices, the clock left out of the bank, steps 4 and 6 turned off: step 7 alone calls it a picture.
    ``quality.csv`` gives its picture score and the reason ``picture``; no real slice is flagged."""
    import csv
    import shutil

    from brainclust.checks import likeness

    monkeypatch.setattr(likeness, "BANK_LEAVE_OUT", frozenset({"clock"}))
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(FOUR.rglob("*.jpg"))[::10]:
        shutil.copyfile(p, data / p.name)
    clock = np.asarray(grey_photo("clock").resize((256, 256)), float)
    y, x = np.mgrid[-1:1:256j, -1:1:256j]
    Image.fromarray((clock * np.clip(1.2 - np.hypot(x, y), 0, 1) ** 1.5).astype(np.uint8)).save(data / "clock.png")
    out = tmp_path / "out"
    t = Thresholds(likeness_unlike_below=-1e9, likeness_reference_below=-1e9)
    res = check_folder(data, out, progress=False, thresholds=t)
    i = res.paths.index("clock.png")
    assert res.likeness_z[i] < t.likeness_picture_z
    assert "not_mri" in res.flags[i] and res.not_mri_reason[i] == "picture"
    rows = {r["path"]: r for r in csv.DictReader(open(out / "quality.csv", encoding="utf-8"))}
    assert float(rows["clock.png"]["picture_score"]) < t.likeness_picture_below
    assert rows["clock.png"]["not_mri_reason"] == "picture"
    assert [p for j, p in enumerate(res.paths) if j != i and "not_mri" in res.flags[j]] == []
