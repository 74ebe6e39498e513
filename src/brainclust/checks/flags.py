"""The flag vocabulary of the data checks and their thresholds, declared once.

Every flag is label-free: it reads only the pixels, the size, a few DICOM
header fields (Modality, SOP Class UID, ImageType) and, for ``outlier``, the
run's features; ``not_mri`` also compares CNN features within the folder
(:mod:`brainclust.checks.likeness`). ``docs/checks.md`` gives each rule, its threshold and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from brainclust.errors import ParameterError

#: The fixed vocabulary, in the order flags are written in ``quality.csv``'s ``flags`` column.
FLAGS = ("duplicate", "near_duplicate", "not_mri", "blank", "noise", "tiny", "non_image_dicom", "outlier")
#: The flags of the pixel rules: an image with one of them is explained (never also an ``outlier``).
PIXEL_FLAGS = frozenset({"not_mri", "blank", "noise", "tiny"})


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the flag rules (``docs/checks.md`` says why each value).

    Parameters
    ----------
    min_side : int, default 32
        ``tiny``: an image whose shorter side has fewer pixels.
    blank_mode_fraction : float, default 0.99
        ``blank``: at least this fraction of the pixels hold the image's most frequent level
        (1/64 of its range wide).
    blank_foreground_fraction : float, default 0.005
        ``blank``: fewer pixels than this fraction differ from that level by 10 % of the range.
    noise_structure : float, default 0.15
        ``noise``: the share of the variance that survives an 8x8 block average is below this...
    noise_correlation : float, default 0.6
        ... and the correlation of neighbouring pixels is below this...
    noise_mode_fraction, noise_ground_correlation : float, default 0.2 and 0.2
        ... unless at least ``noise_mode_fraction`` of the pixels hold the most frequent level *and* the
        neighbours correlate at ``noise_ground_correlation`` or more: a page of text, a chart or a drawing has
        a ground and strokes; noise of few levels (low counts) has a dominant level but independent pixels.
    colourfulness : float, default 12.0
        ``not_mri``: Hasler-Suesstrunk colourfulness (0-255 RGB units) at or above this...
    colour_fraction : float, default 0.05
        ... with at least this fraction of pixels of chroma above 0.15.
    border_level : float, default 0.5
        ``not_mri``: the median of the image's outer ring, on its own 0.5-99.5 percentile scale,
        at or above this (an MRI slice is surrounded by dark air).
    dark_fraction : float, default 0.04
        ``not_mri``: fewer pixels than this fraction are dark (below 0.1 of that scale).
    foreground_colour_fraction : float, default 0.10
        ``not_mri``: at least this fraction of the non-dark pixels are coloured (chroma above 0.15)...
    foreground_colourfulness : float, default 8.0
        ... with at least this colourfulness (a colour picture on a dark background).
    graphic_extreme : float, default 0.8
        ``not_mri``: at least this fraction of the pixels sit at the two ends of the image's scale...
    graphic_balance : float, default 0.1
        ... with at least this fraction at each end (a two-level graphic: silhouette, mask, pattern).
    scene_air_border : float, default 0.25
        ``not_mri`` (a scene without air): less of the frame's ring than this is border-connected dark air...
    scene_object_touch : float, default 0.6
        ... more of it than this is covered by the largest object...
    scene_gap_ratio : float, default 2.0
        ... the dark-grey band [0.08, 0.2) holds more than this many times the pixels below 0.05 (no air
        spike)...
    scene_symmetry : float, default 0.6
        ... and the picture is less left-right symmetric than this.
    strokes_fraction : float, default 0.65
        ``not_mri`` (in 2-D image files, text, a line plot or line art on a dark ground): more than this share of the
        non-air pixels lie in parts thinner than about 5 pixels (``strokes``; real slices: 0.48 at most, rendered text
        and plots on black: 0.76 and more)...
    strokes_flat_air : float, default 0.9
        ... and at least this share of the air is one level (``flat_air``: a rendered ground 0.94 and more; the specks
        of noisy air and the dark tissue a steep window puts among it less, though many slices' air is flat too). The
        likeness rule may clear such an image.
    label_levels : int, default 5
        ``not_mri`` (a label map: a segmentation or mask volume): a slice of a NIfTI volume or a DICOM frame, not
        blank, with at most this many distinct grey values (real slices: 11 and more).
    likeness_air_border : float, default 0.5
        ``not_mri`` by likeness (:mod:`brainclust.checks.likeness`): an image no pixel rule flags is a
        reference when at least this much of its frame's ring is border-connected dark air, else a candidate...
    likeness_main_object : float, default 0.5
        ... and when its largest non-air object holds at least this share of all of them (one head, not a
        star field or the letters of a logo on a dark ground)...
    likeness_box_edge : float, default 0.9
        ... and when that object covers at most this share of its bounding box's outline (``box_edge``: a
        photograph or a screen pasted on a dark ground is a rectangle, ~1; real slices with air around one object
        0.39 at most). ``1`` turns this condition off.
    likeness_unlike_below : float, default -7.0
        ... and a candidate is ``not_mri`` when the likeness z-score of its CNN features (their similarity to
        the references, in robust standard deviations of the references' own) is below this.
    likeness_alike_above : float, default -4.0
        An image the pixel rules call ``not_mri`` only for ``no_air``, ``scene`` or ``strokes`` is not, when its
        likeness z-score is above this (a slice cropped tight to the head). ``likeness_unlike_below=-1e9,
        likeness_alike_above=1e9,likeness_reference_below=-1e9,likeness_picture_z=-1e9`` turns the likeness
        verdicts off (the features are still computed).
    likeness_reference_below : float, default -9.5
        A reference in a 2-D image file is ``not_mri`` when its own likeness z-score (its copies and near copies
        left out) is below this: a grey picture on a dark ground that the pixel rules took for a slice (real
        slices: -7.5 and above). ``-1e9`` turns this verdict off.
    likeness_picture_z : float, default -4.0
        An image in a 2-D image file with more than ``label_levels`` grey levels whose likeness z-score is below
        this (at most ``likeness_alike_above``) gets a *picture score*: the decision value of a linear classifier
        fitted to tell the folder's reference slices (positive) from a fixed bank of non-MRI pictures that ships
        with the package (negative; step 7 of :mod:`brainclust.checks.likeness`). ``-1e9`` turns step 7 off
        (nothing is fitted) ...
    likeness_picture_below : float, default -3.5
        ... and is ``not_mri`` when that score is below this (well on the pictures' side; real slices: see
        ``docs/checks.md``).
    near_similarity : float, default 0.985
        ``near_duplicate``: the cosine similarity of two images' near-duplicate codes at or above this.
    window_similarity : float, default 0.965
        ``near_duplicate``, for a pair the codes miss: the correlation of the smaller image's detail with that of
        the larger image's window at the best offset (a one-sided crop; :mod:`brainclust.checks.windows`) at or
        above this.
    outlier_z : float, default 6.0
        ``outlier``: the robust z-score (median/MAD) of the log distance to the k-th neighbour above this.
    outlier_k : int, default 5
        ``outlier``: the neighbour whose distance is scored.
    exact_max : int, default 20000
        Near-neighbour search is exact (blocked matrix products) up to this many images, approximate above.
    """

    min_side: int = 32
    blank_mode_fraction: float = 0.99
    blank_foreground_fraction: float = 0.005
    noise_structure: float = 0.15
    noise_correlation: float = 0.6
    noise_mode_fraction: float = 0.2
    noise_ground_correlation: float = 0.2
    colourfulness: float = 12.0
    colour_fraction: float = 0.05
    border_level: float = 0.5
    dark_fraction: float = 0.04
    foreground_colour_fraction: float = 0.10
    foreground_colourfulness: float = 8.0
    graphic_extreme: float = 0.8
    graphic_balance: float = 0.1
    scene_air_border: float = 0.25
    scene_object_touch: float = 0.6
    scene_gap_ratio: float = 2.0
    scene_symmetry: float = 0.6
    strokes_fraction: float = 0.65
    strokes_flat_air: float = 0.9
    label_levels: int = 5
    likeness_air_border: float = 0.5
    likeness_main_object: float = 0.5
    likeness_box_edge: float = 0.9
    likeness_unlike_below: float = -7.0
    likeness_alike_above: float = -4.0
    likeness_reference_below: float = -9.5
    likeness_picture_z: float = -4.0
    likeness_picture_below: float = -3.5
    near_similarity: float = 0.985
    window_similarity: float = 0.965
    outlier_z: float = 6.0
    outlier_k: int = 5
    exact_max: int = 20000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the threshold, its rule and its value."""
        unit = ("blank_mode_fraction", "blank_foreground_fraction", "noise_structure", "noise_mode_fraction",
                "colour_fraction",
                "border_level", "dark_fraction", "foreground_colour_fraction", "graphic_extreme", "graphic_balance",
                "scene_air_border", "scene_object_touch", "strokes_fraction", "strokes_flat_air", "likeness_air_border",
                "likeness_main_object", "likeness_box_edge")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ParameterError(f"check threshold {f.name}: must be an integer >= 1, got {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(f"check threshold {f.name}: must be a finite number, got {v!r}")
            if f.name in unit and not 0.0 <= v <= 1.0:
                raise ParameterError(f"check threshold {f.name}: must be in [0, 1], got {v!r}")
        for name in ("noise_correlation", "noise_ground_correlation", "scene_symmetry"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ParameterError(f"check threshold {name}: must be in [-1, 1], got {getattr(self, name)!r}")
        for name in ("near_similarity", "window_similarity"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ParameterError(f"check threshold {name}: must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("colourfulness", "foreground_colourfulness", "scene_gap_ratio"):
            if getattr(self, name) < 0:
                raise ParameterError(f"check threshold {name}: must be >= 0, got {getattr(self, name)!r}")
        if self.outlier_z <= 0:
            raise ParameterError(f"check threshold outlier_z: must be > 0, got {self.outlier_z!r}")
        if self.likeness_picture_z > self.likeness_alike_above:
            raise ParameterError("check threshold likeness_picture_z: must be <= likeness_alike_above "
                                 f"({self.likeness_alike_above!r}), got {self.likeness_picture_z!r}")
        if self.likeness_alike_above < self.likeness_unlike_below:
            raise ParameterError("check threshold likeness_alike_above: must be >= likeness_unlike_below "
                                 f"({self.likeness_unlike_below!r}), got {self.likeness_alike_above!r}")

    @classmethod
    def from_text(cls, text: str) -> Thresholds:
        """Parse ``"name=value,name=value"`` (a ``--check-thresholds`` option) over the defaults."""
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for item in filter(None, (s.strip() for s in (text or "").split(","))):
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ParameterError(f"--check-thresholds: '{item}' is not NAME=VALUE with NAME one of "
                                     f"{', '.join(names)}")
            try:
                values[name] = int(raw) if names[name] in ("int", int) else float(raw)
            except ValueError:
                raise ParameterError(f"--check-thresholds: {name} must be a number, got '{raw.strip()}'") from None
        return cls(**values)


def parse_flags(text: str | None, option: str = "--exclude") -> frozenset[str]:
    """``"duplicate,not_mri"`` -> ``frozenset({"duplicate", "not_mri"})``; empty/None/``none`` -> empty.

    Raises
    ------
    ParameterError
        A name outside :data:`FLAGS`.
    """
    if text is None or text.strip().lower() in ("", "none"):
        return frozenset()
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in FLAGS]
    if bad:
        raise ParameterError(f"{option}: unknown flag '{bad[0]}'; the flags are {', '.join(FLAGS)}")
    return frozenset(names)


def parse_exclude(text: str) -> tuple[str, ...]:
    """``--exclude``: ``"duplicate,not_mri"`` -> ``("duplicate", "not_mri")`` in vocabulary order;
    ``none`` -> ``()``."""
    chosen = parse_flags(text)
    return tuple(f for f in FLAGS if f in chosen)


def join_flags(flags) -> str:
    """The ``flags`` cell: the given flags in vocabulary order, ``;``-joined (empty when clean)."""
    have = set(flags)
    return ";".join(f for f in FLAGS if f in have)


def split_flags(cell: str) -> frozenset[str]:
    """Inverse of :func:`join_flags`."""
    return frozenset(s for s in (cell or "").split(";") if s)
