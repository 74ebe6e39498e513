"""Which augmented views the self-supervised head trains on, and how their features are obtained.

A view is named ``NAME`` or ``NAME@SEED`` (a view of :mod:`brainclust.features.augment`
drawn with ``view_seed=SEED``); ``identity`` is the plain image, whose
features are the ordinary (cached) features of the run. Each view's features
are extracted once by :class:`~brainclust.features.extractor.FeatureExtractor` and cached
on disk like any feature, so a second run trains the head without touching
the backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from brainclust.core.cellinfo import cell_info
from brainclust.errors import InputError, ParameterError
from brainclust.features import augment

log = logging.getLogger(__name__)

#: Views that keep the image's content and orientation up to small changes: the positives of
#: the contrastive loss, the anchors of the clustering losses, and the test-time average.
APPEARANCE_VIEWS: tuple[str, ...] = ("identity", "hflip", "strong")
#: The four rotations of the pretext task, in the order of their class (0, 90, 180, 270 degrees).
ROTATION_VIEWS: tuple[str, ...] = ("identity", "rot90", "rot180", "rot270")


def parse(view: str) -> tuple[str | None, int]:
    """``"strong@1" -> ("strong", 1)``; ``"identity" -> (None, 0)`` (the plain features)."""
    name, _, seed = view.partition("@")
    try:
        s = int(seed) if seed else 0
    except ValueError:
        raise ParameterError(f"view: seed after '@' must be an integer, got '{view}'") from None
    if name == "identity" and s == 0:
        return None, 0
    augment.check(name)
    return name, s


def appearance(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Checked appearance views, ``identity`` first: ``"hflip,intensity"`` -> ``("identity", "hflip", "intensity")``.

    ``None`` gives :data:`APPEARANCE_VIEWS`. The rotations are refused: they are the
    pretext task's inputs, and a contrastive loss between them would teach the head
    to ignore orientation, the very thing the rotation task learns to see.
    """
    if names is None:
        return APPEARANCE_VIEWS
    items = [v.strip() for v in (names.split(",") if isinstance(names, str) else names) if v.strip()]
    for v in items:
        parse(v)
        if v in ROTATION_VIEWS[1:]:
            raise ParameterError(f"--ssl-views: '{v}' is a rotation of the pretext task, not an appearance view")
    out = ["identity"] + [v for v in dict.fromkeys(items) if v != "identity"]
    if len(out) < 2:
        raise ParameterError("--ssl-views: need at least one view besides identity (e.g. hflip,strong), got "
                             + (f"'{','.join(items)}'" if items else "none"))
    return tuple(out)


def needed(components: Sequence[str], tta: bool, appearance_views: Sequence[str] = APPEARANCE_VIEWS) -> list[str]:
    """The views a head with these components needs, ``identity`` first."""
    out = ["identity"]
    if {"contrastive", "joint", "refine"} & set(components) or tta:
        out += [v for v in appearance_views if v not in out]
    if "rotation" in components:
        out += [v for v in ROTATION_VIEWS if v not in out]
    return out


def extract(extractor, records, names: Sequence[str], identity: np.ndarray | None = None,
            counts: dict | None = None) -> dict[str, np.ndarray]:
    """Features of every view in ``names`` for ``records``.

    Parameters
    ----------
    extractor : FeatureExtractor
        A fitted extractor; a copy with ``view``/``view_seed`` set is used for each view.
    records : sequence of ImageRecord
        Images that decoded (their rows are the rows of the result).
    names : sequence of str
        View names, see :func:`parse`.
    identity : ndarray or None
        Already-computed plain features of ``records`` (skips one extraction).
    counts : dict or None
        Where to add up what the views cost: ``views`` (the views extracted here), ``hits`` and ``misses`` (their
        images read from the feature cache or computed), so that a run can say it (``manifest.json`` ``cache``).

    Returns
    -------
    dict of str to ndarray of shape (n_images, dim)
    """
    from sklearn.base import clone

    out: dict[str, np.ndarray] = {}
    for name in names:
        view, seed = parse(name)
        if view is None and identity is not None:
            out[name] = np.asarray(identity, np.float32)
            continue
        params = {"view": view, "view_seed": seed}
        if getattr(extractor, "backbone", None) == "auto":  # resolved once (and said once) for the run's features
            params["backbone"] = extractor.spec_.name
        if getattr(extractor, "block_scales_", None) is not None:  # a fusion keeps the plain images' scales
            params["block_scales"] = list(extractor.block_scales_)
        got = clone(extractor).set_params(**params).fit().extract(records)
        if got.failed:
            i, reason = next(iter(got.failed.items()))
            raise InputError(f"view '{name}': image '{records[i].path}' failed: {reason}")
        cell_info(log, "view %s: %d cached, %d extracted", name, got.cache_hits, got.cache_misses)
        if counts is not None:
            for key, n in (("views", 1), ("hits", got.cache_hits), ("misses", got.cache_misses)):
                counts[key] = counts.get(key, 0) + n
        out[name] = got.features
    return out
