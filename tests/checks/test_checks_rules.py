"""Pixel rules (blank, noise, tiny, not_mri) on planted images, and the non-image DICOM rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclust.checks.decode import decode
from brainclust.checks.descriptors import describe, slot
from brainclust.checks.flags import Thresholds
from brainclust.checks.rules import non_image_dicom, not_mri_reasons, pixel_flags
from brainclust.io.atomic import file_sha256
from brainclust.io.scan import ImageRecord

from checks_planting import document, head_slice, save, screenshot


def record(path) -> ImageRecord:
    """A record of ``path`` as the scan makes it (the decoders refuse bytes the scan did not hash)."""
    p = str(path)
    return ImageRecord(p, p, "x", "", 0, 0, 0, file_sha256(p))


def flags_of(path) -> set[str]:
    vec, _ = describe(decode(record(path)))
    masks = pixel_flags(vec, Thresholds())
    return {k for k, m in masks.items() if m[0]}


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_head_slices_are_clean(tmp_path, seed):
    assert flags_of(save(tmp_path / "h.png", head_slice(seed))) == set()


@pytest.mark.parametrize("value", [0, 255, 97])
def test_constant_images_are_blank(tmp_path, value):
    assert flags_of(save(tmp_path / "c.png", np.full((80, 120), value, np.uint8))) == {"blank"}
    assert flags_of(save(tmp_path / "c.jpg", np.full((80, 120, 3), value, np.uint8))) == {"blank"}


def test_an_almost_empty_image_is_blank(tmp_path):
    a = np.zeros((200, 200), np.uint8)
    a[50:53, 60:63] = 255
    assert flags_of(save(tmp_path / "speck.png", a)) == {"blank"}


def test_a_faint_structured_slice_is_not_blank(tmp_path):
    # three grey levels only (as in some public sets): the rules read the image's own range
    a = (head_slice(1).astype(np.float32) / 255 * 2.99).astype(np.uint8)
    assert flags_of(save(tmp_path / "faint.png", a)) == set()


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "colour", "jpeg", "one_level_sd", "low_counts"])
def test_noise_images_are_noise_and_nothing_else(tmp_path, kind):
    rng = np.random.default_rng(0)
    if kind == "colour":
        a = rng.integers(0, 256, (150, 180, 3), dtype=np.uint8)
    elif kind == "gaussian":
        a = np.clip(rng.normal(128, 40, (150, 180)), 0, 255).astype(np.uint8)
    elif kind == "one_level_sd":  # a few levels, one of them dominant (mode_fraction ~0.4), independent pixels
        a = np.clip(np.rint(128 + rng.normal(0, 1, (150, 180))), 0, 255).astype(np.uint8)
    elif kind == "low_counts":  # Poisson counts of mean 0.5: most pixels 0
        a = rng.poisson(0.5, (150, 180)).astype(np.uint8)
    else:
        a = rng.integers(0, 256, (150, 180), dtype=np.uint8)
    p = save(tmp_path / ("n.jpg" if kind == "jpeg" else "n.png"), a, **({"quality": 85} if kind == "jpeg" else {}))
    assert flags_of(p) == {"noise"}


def test_tiny_images_are_tiny_and_not_called_not_mri(tmp_path):
    rng = np.random.default_rng(0)
    assert flags_of(save(tmp_path / "t.png", rng.integers(0, 255, (10, 10, 3), dtype=np.uint8))) == {"tiny"}
    assert flags_of(save(tmp_path / "t1.png", rng.integers(0, 255, (30, 24), dtype=np.uint8))) == {"tiny"}  # not noise
    assert flags_of(save(tmp_path / "t2.png", head_slice(0, 160).copy()[::8, ::8])) == {"tiny"}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "page", "text", "moon"])
def test_skimage_photographs_and_documents_are_not_mri(tmp_path, name):
    import skimage.data as skd

    a = getattr(skd, name)()
    assert flags_of(save(tmp_path / f"{name}.png", a)) == {"not_mri"}


def test_generated_documents_and_screenshots_are_not_mri(tmp_path):
    for seed in range(3):
        assert flags_of(save(tmp_path / f"d{seed}.png", document(seed))) == {"not_mri"}
        assert flags_of(save(tmp_path / f"s{seed}.png", screenshot(seed))) == {"not_mri"}


def test_colour_is_measured_before_the_grey_conversion(tmp_path):
    a = np.asarray(Image.open(save(tmp_path / "c.png", np.dstack([head_slice(2)] * 3))))
    vec, _ = describe(decode(record(tmp_path / "c.png")))
    assert vec[slot("colourfulness")] == 0.0  # grey stored as RGB has no colour
    tinted = a.astype(np.int16)
    tinted[..., 0] = np.clip(tinted[..., 0] + 90, 0, 255)
    p2 = save(tmp_path / "tint.png", tinted.astype(np.uint8))
    vec2, _ = describe(decode(record(p2)))
    assert vec2[slot("colourfulness")] > Thresholds().colourfulness


@pytest.mark.parametrize("header, expected", [
    ({"Modality": "RTDOSE"}, "Modality RTDOSE"),
    ({"Modality": "seg"}, "Modality SEG"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.22"}, "SOP class Structured Report"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.481.2"}, "SOP class RT Dose"),
    ({"Modality": "OT", "ImageType": "DERIVED\\SECONDARY\\SCREEN SAVE"}, "ImageType SCREEN SAVE"),
    ({"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "ImageType": ("ORIGINAL", "PRIMARY", "M")}, ""),
    ({"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.66"}, "SOP class Raw Data"),
    ({}, ""),
])
def test_non_image_dicom_rule_reads_modality_sop_class_and_image_type(header, expected):
    assert non_image_dicom(header) == expected


def test_enhanced_mr_is_not_confused_with_raw_data():
    assert non_image_dicom({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4.1"}) == ""
    assert non_image_dicom({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.66.4"}) == "SOP class Segmentation"


def test_grey_levels_counts_a_label_in_a_few_pixels_and_stops_at_the_cap():
    from brainclust.checks.descriptors import LEVELS_CAP, grey_levels

    labels = np.zeros((512, 512), np.float32)
    labels[100:300, 100:300], labels[150:200, 150:200] = 1, 2
    labels[401, 403] = 4  # one pixel: missed by the strided sample, counted on every pixel
    assert grey_levels(labels) == 4
    assert grey_levels(np.random.default_rng(0).random((512, 512), dtype=np.float32)) == LEVELS_CAP


def test_a_segmentation_volume_beside_the_images_is_not_mri_and_the_images_are_not(tmp_path):
    """A BraTS folder holds *_seg.nii.gz (labels 0, 1, 2, 4) beside the sequences; its slices are not images."""
    nib = pytest.importorskip("nibabel")
    from scipy.ndimage import gaussian_filter

    from brainclust.checks.stage import check_folder

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[-1:1:48j, -1:1:64j, -1:1:64j]
    head = (x ** 2 + y ** 2 + 1.3 * z ** 2) < 0.7
    tissue = gaussian_filter(rng.normal(size=head.shape), 2) * 300 + 800
    image = np.where(head, tissue, 0).astype(np.float32).transpose(2, 1, 0)  # (x, y, z)
    seg = np.zeros(head.shape, np.uint8)
    seg[((x - 0.2) ** 2 + y ** 2 + z ** 2) < 0.15], seg[((x - 0.2) ** 2 + y ** 2 + z ** 2) < 0.06] = 2, 4
    seg[((x - 0.2) ** 2 + y ** 2 + z ** 2) < 0.02] = 1
    for name, vol in (("case_t1.nii.gz", image), ("case_seg.nii.gz", seg.transpose(2, 1, 0))):
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / name)
    res = check_folder(tmp_path, progress=False, slices="axial:5")
    flags = {p: f for p, f in zip(res.paths, res.flags)}
    assert sum(1 for p in flags if p.startswith("case_seg")) == 5
    assert all("not_mri" in f for p, f in flags.items() if p.startswith("case_seg") and "blank" not in f)
    assert any("not_mri" in f for p, f in flags.items() if p.startswith("case_seg"))
    assert not any("not_mri" in f for p, f in flags.items() if p.startswith("case_t1"))
    seg_rows = [i for i, p in enumerate(res.paths) if p.startswith("case_seg") and "blank" not in res.flags[i]]
    reasons = not_mri_reasons(res.descriptors.vectors[seg_rows], Thresholds(), np.ones(len(seg_rows), bool))
    assert reasons["labels"].all() and not np.logical_or.reduce(  # no other rule sees them
        [m for k, m in reasons.items() if k != "labels"]).any()


def dense_page(width: int = 620, height: int = 820) -> Image.Image:
    """A page filled with small text in a TrueType font: almost none of its variance survives an 8x8 block
    average, its neighbours are loosely correlated (about 0.3), and a third of its pixels are the white ground."""
    import matplotlib
    from PIL import ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"), 11)
    im = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(im)
    words = "of the cohort median signal in axial slices measured per scanner and protocol".split()
    rng = np.random.default_rng(0)
    for y in range(6, height - 12, 12):
        draw.text((8, y), " ".join(rng.choice(words, 20)), fill=0, font=font)
    return im


def line_plot() -> Image.Image:
    """A chart as matplotlib draws it: thin curves, axes, ticks and a legend on a white ground."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    t = np.linspace(0, 10, 400)
    for k in range(4):
        ax.plot(t, np.sin(t * (1 + k / 3)) + k / 4, linewidth=0.8, label=f"run {k}")
    ax.legend()
    fig.canvas.draw()
    im = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).convert("L")
    plt.close(fig)
    return im


@pytest.mark.parametrize("make", [dense_page, line_plot])
def test_a_page_of_text_or_a_line_plot_is_not_mri_not_noise(tmp_path, make):
    """Both keep little variance at 8x8 and have loosely correlated neighbours, as noise, but most of their pixels
    are the white ground; noise has no dominant level (rule noise_mode_fraction, the render planting's finding)."""
    p = save(tmp_path / "page.png", make())
    vec, _ = describe(decode(record(p)))
    before = pixel_flags(vec, Thresholds(noise_mode_fraction=1.0))  # the rule without the dominant level
    assert before["noise"][0] and not before["not_mri"][0]
    assert flags_of(p) == {"not_mri"}


def on_black(im: Image.Image) -> Image.Image:
    """The picture in negative: white strokes on a black ground (a terminal, a dark-theme chart)."""
    from PIL import ImageOps

    return ImageOps.invert(im.convert("L"))


@pytest.mark.parametrize("make", [dense_page, line_plot])
def test_text_or_a_line_plot_on_a_dark_ground_is_not_mri_for_its_strokes(tmp_path, make):
    """On black they have the dark ground of a slice, so no_air does not hold; most of their non-air pixels lie in
    strokes a few pixels wide, where a slice's head is solid (rule strokes_fraction; the render planting's misses)."""
    p = save(tmp_path / "dark.png", on_black(make()))
    vec, _ = describe(decode(record(p)))
    reasons = not_mri_reasons(vec, Thresholds())
    assert reasons["strokes"][0] and not reasons["no_air"][0]
    assert flags_of(p) == {"not_mri"}
    assert not pixel_flags(vec, Thresholds(strokes_fraction=1.0))["not_mri"][0]
    assert not not_mri_reasons(vec, Thresholds(), np.ones(1, bool))["strokes"][0]  # a volume slice is scanned


def test_strokes_on_a_noisy_ground_are_not_text(tmp_path):
    """A slice's air holds noise: thin bright specks over a ground that is not one level. The same page of text on
    black with Gaussian noise in its ground keeps its strokes, but its air is no longer flat (rule strokes_flat_air;
    a review found noisy slices of small heads and slices under a steep window with strokes 0.7-0.9)."""
    page = np.asarray(on_black(dense_page()), np.float64)
    noisy = np.clip(page + np.random.default_rng(0).normal(0, 12, page.shape), 0, 255).astype(np.uint8)
    vec, _ = describe(decode(record(save(tmp_path / "noisy.png", Image.fromarray(noisy)))))
    clean, _ = describe(decode(record(save(tmp_path / "clean.png", on_black(dense_page())))))
    assert clean[slot("flat_air")] >= 0.9 > vec[slot("flat_air")]
    assert not not_mri_reasons(vec, Thresholds())["strokes"][0] and not_mri_reasons(clean, Thresholds())["strokes"][0]


def test_a_faint_few_level_slice_is_not_strokes(tmp_path):
    """A head outline stored at grey levels 0-2 (as brain_tumor_yes_no's slices) is thin specks once stretched; its
    span is under a quarter of the full scale, so strokes does not apply; the same outline at full scale is
    flagged."""
    yy, xx = np.mgrid[:240, :240]
    r = np.hypot(yy - 120, xx - 120)
    outline = ((r > 90) & (r < 92)) | ((np.abs(yy - 120) < 1) & (r < 60))
    faint = save(tmp_path / "faint.png", Image.fromarray((outline * 2).astype(np.uint8)))
    full = save(tmp_path / "full.png", Image.fromarray((outline * 255).astype(np.uint8)))
    assert "not_mri" not in flags_of(faint)
    assert not not_mri_reasons(describe(decode(record(faint)))[0], Thresholds())["strokes"][0]
    assert not_mri_reasons(describe(decode(record(full)))[0], Thresholds())["strokes"][0]
