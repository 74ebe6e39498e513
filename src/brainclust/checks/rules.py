"""The per-image flag rules: each a function of the descriptor vector or of a few DICOM header fields.

Rules and why (``docs/checks.md`` has the measurements behind each threshold):

- ``tiny``: shorter side < ``min_side``. Too few pixels to carry anatomy (a 10x10 dose grid).
- ``blank``: constant or almost empty: ``mode_fraction >= blank_mode_fraction`` or
  ``foreground_fraction < blank_foreground_fraction``. Both are on the image's own range, so a
  faint but structured slice (some public sets hold 8-bit slices with three grey levels) is
  not blank, and an empty slice of any scale is.
- ``noise``: not blank nor tiny (an 8x8 block average says little about a few blocks), ``structure <
  noise_structure`` and ``neighbour_correlation <
  noise_correlation``: neighbouring pixels of an anatomical image are strongly correlated and most
  of its variance survives an 8x8 block average; independent noise keeps ~1/64 of it. Not a picture
  with a ground: ``mode_fraction >= noise_mode_fraction`` *and* ``neighbour_correlation >=
  noise_ground_correlation`` (a page of text or a line plot keeps little variance at 8x8 too, but most of
  its pixels are its ground and its strokes are lines: ``not_mri`` if a reason holds); noise of few levels
  (low counts, a floor at zero) has a dominant level too, but independent pixels, and stays ``noise``.
- ``not_mri`` (only when neither blank, noise nor tiny, which explain the image better), any of
  (:func:`not_mri_reasons` names which):

  - ``colour``: a colour image (``colourfulness >= colourfulness`` and ``colour_fraction >=
    colour_fraction``), or a colour picture on a dark background (``foreground_colour_fraction >=
    foreground_colour_fraction`` and ``colourfulness >= foreground_colourfulness``);
  - ``no_air``: no dark background at all (``dark_fraction < dark_fraction``: MRI slices are
    surrounded by air, which is dark in every sequence), or a bright frame around a mostly bright
    image (``border_level >= border_level`` with ``dark_fraction < 2 * dark_fraction``);
  - ``graphic``: a two-level picture (``extreme_fraction >= graphic_extreme`` and ``two_level >=
    graphic_balance``): silhouettes, masks, patterns, line art;
  - ``labels``: a slice of a volume or a DICOM frame (``sliced``) with at most ``label_levels`` distinct grey
    values (``grey_levels``): a segmentation or a mask stored beside the images (a BraTS ``*_seg.nii.gz``).
    Only for volumes: real 8-bit image files can hold as few levels (a public set of three-level slices);
  - ``strokes``: in 2-D image files, text, a line plot or line art on a flat dark ground (``strokes >
    strokes_fraction``: most of the non-air pixels lie in parts thinner than about 5 pixels of the working copy,
    where a slice's head is solid; and ``flat_air >= strokes_flat_air``: the ground is one level, not the specks of
    noisy air; :mod:`brainclust.checks.shape`). A slice under a steep window can meet both (its dark
    tissue joins the flat air), so the likeness rule may clear it;
  - ``scene``: a grey scene without air (``air_border < scene_air_border``, ``object_touch >
    scene_object_touch``, ``gap_ratio > scene_gap_ratio`` and ``symmetry < scene_symmetry``):
    the frame is covered by content, the dark pixels are the tail of a continuous histogram
    rather than a spike of air at the floor, and the picture is not mirror-symmetric as axial
    and coronal slices are (:mod:`brainclust.checks.shape`).

  The rules err towards never flagging an MRI: a grey photograph of one object can pass them all,
  a slice cropped tight to the head can look like ``no_air`` or a ``scene``, and one under a steep window like
  ``strokes``. Both are decided again by :mod:`brainclust.checks.likeness` (CNN features compared with the
  folder's own slices); grey pictures on a dark ground around one object (a logo on black) still pass.
- ``not_mri`` also for a DICOM image whose Modality names another imaging modality (:func:`other_modality`;
  applied in :mod:`brainclust.checks.stage`, where the headers are read).
- ``non_image_dicom``: :func:`non_image_dicom` of the Modality / SOP Class UID / ImageType.

A DICOM Secondary Capture (:func:`secondary_capture`) is judged as a 2-D image file, not as a scanned frame.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from brainclust.checks.descriptors import slot
from brainclust.checks.flags import Thresholds

#: Modalities whose objects are not anatomical images (DICOM PS3.3 C.7.3.1.1.1).
NON_IMAGE_MODALITIES = frozenset({"RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "SEG", "SR", "KO", "PR", "REG",
                                  "DOC", "PLAN", "RWV", "FID", "REGISTRATION", "AU", "ECG", "HD"})
#: SOP classes that are not anatomical images (prefix match on the UID).
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.5": "Surface Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration",
    "1.2.840.10008.5.1.4.1.1.66.3": "Deformable Spatial Registration",
    "1.2.840.10008.5.1.4.1.1.88.": "Structured Report",
    "1.2.840.10008.5.1.4.1.1.104.": "Encapsulated Document",
    "1.2.840.10008.5.1.4.1.1.11.": "Presentation State",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
}
#: ImageType values that mark a screen capture, a report or a dose page rather than anatomy.
NON_IMAGE_TYPES = frozenset({"SCREEN SAVE", "SCREENSHOT", "SCREEN SHOT", "CSA REPORT", "DOSE REPORT", "DOSE INFO",
                             "REPORT", "DOSE"})


def non_image_dicom(header: Mapping[str, object]) -> str:
    """Why a DICOM object is not an anatomical image (``""`` when it may be one).

    ``header`` holds any of ``Modality`` (str), ``SOPClassUID`` (str) and ``ImageType``
    (a sequence of str or one ``\\``-joined str); missing fields give no evidence.
    """
    modality = str(header.get("Modality") or "").strip().upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"Modality {modality}"
    uid = str(header.get("SOPClassUID") or "").strip()
    for prefix, name in NON_IMAGE_SOP_CLASSES.items():
        if uid == prefix or (prefix.endswith(".") and uid.startswith(prefix)):
            return f"SOP class {name}"
    hit = sorted(_image_types(header) & NON_IMAGE_TYPES)
    if hit:
        return f"ImageType {hit[0]}"
    return ""


#: Secondary Capture SOP classes (single- and multi-frame): screen grabs and scanned pages as often as images.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def secondary_capture(header: Mapping[str, object]) -> bool:
    """Whether a DICOM object is a Secondary Capture: pixels rendered or scanned from elsewhere (a screen, a
    page, a converted picture file), not a scanner's frame. The checks judge its pixels as those of a 2-D image
    file."""
    uid = str(header.get("SOPClassUID") or "").strip()
    return uid == SECONDARY_CAPTURE or uid.startswith(SECONDARY_CAPTURE + ".")


def burned_in_text(header: Mapping[str, object]) -> bool:
    """Whether a DICOM image may show patient text in its pixels: ``BurnedInAnnotation`` is ``YES``; its
    ImageType is a screen save or a report (:data:`NON_IMAGE_TYPES`); or it is a Secondary Capture that does
    not say ``BurnedInAnnotation`` ``NO``. The report and ``view`` draw no thumbnail of such an image (a
    placeholder instead)."""
    burned = str(header.get("BurnedInAnnotation") or "").strip().upper()
    if burned == "YES" or (burned != "NO" and secondary_capture(header)):
        return True
    return bool(_image_types(header) & NON_IMAGE_TYPES)


#: Imaging modalities other than MR (DICOM PS3.3 C.7.3.1.1.1 defined terms): X-ray, CT, ultrasound, nuclear
#: medicine, endoscopy, photography, microscopy... Not ``OT`` (other), which says nothing.
OTHER_IMAGING_MODALITIES = frozenset({
    "BDUS", "BMD", "CR", "CT", "DMS", "DX", "ES", "GM", "IO", "IVOCT", "IVUS", "LS", "MG", "NM", "OAM", "OCT", "OP",
    "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "PT", "PX", "RF", "RG", "RTIMAGE", "SM", "SRF", "TG", "US", "XA", "XC"})


def other_modality(header: Mapping[str, object]) -> str:
    """The Modality of a DICOM image whose header names another imaging modality than MR (``"CT"``, ``"US"``...;
    ``""`` for MR, ``OT``, a missing or unknown value): such an image is ``not_mri`` whatever its pixels look like
    (reason ``modality``)."""
    modality = str(header.get("Modality") or "").strip().upper()
    return modality if modality in OTHER_IMAGING_MODALITIES else ""


def _image_types(header: Mapping[str, object]) -> set[str]:
    """The values of ``ImageType`` (a sequence of str or one ``\\``-joined str), upper case."""
    itype = header.get("ImageType") or ()
    return {str(v).strip().upper() for v in (itype.split("\\") if isinstance(itype, str) else itype)}


#: The reasons behind ``not_mri``, in the order :func:`not_mri_reasons` reports them.
NOT_MRI_REASONS = ("colour", "no_air", "graphic", "labels", "strokes", "scene")


def not_mri_reasons(vectors: np.ndarray, t: Thresholds, sliced: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Boolean mask per :data:`NOT_MRI_REASONS` for descriptor rows (before the blank/noise/tiny precedence);
    ``sliced``: the rows that are slices of a volume or DICOM frames (``None``: none)."""
    v = np.atleast_2d(vectors)
    col = lambda name: v[:, slot(name)]  # noqa: E731
    colour = ((col("colourfulness") >= t.colourfulness) & (col("colour_fraction") >= t.colour_fraction)) | \
        ((col("foreground_colour_fraction") >= t.foreground_colour_fraction)
         & (col("colourfulness") >= t.foreground_colourfulness))
    no_air = (col("dark_fraction") < t.dark_fraction) | \
        ((col("border_level") >= t.border_level) & (col("dark_fraction") < 2 * t.dark_fraction))
    graphic = (col("extreme_fraction") >= t.graphic_extreme) & (col("two_level") >= t.graphic_balance)
    scene = (col("air_border") < t.scene_air_border) & (col("object_touch") > t.scene_object_touch) & \
        (col("gap_ratio") > t.scene_gap_ratio) & (col("symmetry") < t.scene_symmetry)
    labels = np.zeros(len(v), bool) if sliced is None else np.asarray(sliced, bool) & (
        col("grey_levels") <= t.label_levels)
    strokes = (col("strokes") > t.strokes_fraction) & (col("flat_air") >= t.strokes_flat_air)
    if sliced is not None:  # volume slices and DICOM frames are scanned, not rendered
        strokes &= ~np.asarray(sliced, bool)
    return {"colour": colour, "no_air": no_air, "graphic": graphic, "labels": labels, "strokes": strokes,
            "scene": scene}


#: The ``not_mri`` reasons :mod:`brainclust.checks.likeness` may overrule: a slice cropped tight to the head has
#: no air ring and can look like a scene, one under a steep window like strokes; colour and two-level graphics are
#: never slices.
UNCERTAIN_REASONS = ("no_air", "scene", "strokes")


def certain_not_mri(vectors: np.ndarray, t: Thresholds, sliced: np.ndarray | None = None) -> np.ndarray:
    """Rows with a ``not_mri`` reason outside :data:`UNCERTAIN_REASONS` (before the blank/noise/tiny precedence)."""
    reasons = not_mri_reasons(vectors, t, sliced)
    return np.logical_or.reduce([m for name, m in reasons.items() if name not in UNCERTAIN_REASONS])


def pixel_flags(vectors: np.ndarray, t: Thresholds, sliced: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Boolean masks ``tiny``, ``blank``, ``noise`` and ``not_mri`` for descriptor rows (n, len(names));
    ``sliced``: see :func:`not_mri_reasons`."""
    v = np.atleast_2d(vectors)
    col = lambda name: v[:, slot(name)]  # noqa: E731
    tiny = np.minimum(col("width"), col("height")) < t.min_side
    blank = (col("mode_fraction") >= t.blank_mode_fraction) | (col("foreground_fraction") < t.blank_foreground_fraction)
    corr = col("neighbour_correlation")
    ground = (col("mode_fraction") >= t.noise_mode_fraction) & (corr >= t.noise_ground_correlation)
    noise = ~(blank | tiny) & (col("structure") < t.noise_structure) & (corr < t.noise_correlation) & ~ground
    reasons = not_mri_reasons(v, t, sliced)
    not_mri = ~(blank | noise | tiny) & np.logical_or.reduce(list(reasons.values()))
    return {"tiny": tiny, "blank": blank, "noise": noise, "not_mri": not_mri}
