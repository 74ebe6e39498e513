"""Upper bounds and availability checks of the extraction's options, checked before any work.

:meth:`FeatureExtractor.check_params <brainclust.features.extractor.FeatureExtractor.check_params>`
(which ``RunConfig.validate`` and ``predict`` call) runs :func:`check_batch_size`,
:func:`check_device` and :func:`check_batch_memory`; the image side of the array
backbones is bounded where they are defined (:data:`brainclust.features.backbones.ARRAY_MAX_SIZE`).
:func:`check_cache_location` is for the command layer, which knows ``--out``.

Every refusal is a one-line :class:`~brainclust.errors.ParameterError` naming
the option, the rule and the value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from brainclust.errors import ParameterError
from brainclust.terminal import count_text

#: Largest ``--batch-size``.
MAX_BATCH_SIZE = 4096
#: Largest estimated memory of one batch of decoded inputs (and, for array backbones, features).
MAX_BATCH_BYTES = 4 * 2**30
DEVICES = ("cpu", "cuda", "cuda:N", "auto")
_DEVICE = re.compile(r"^(?:cpu|auto|cuda(?::(\d{1,4}))?)\Z")


def check_batch_size(batch_size, option: str = "--batch-size") -> int:
    """A positive integer up to :data:`MAX_BATCH_SIZE` (a huge value is refused here, not by numpy or torch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"{option}: must be a positive integer, got {batch_size!r}")
    if batch_size > MAX_BATCH_SIZE:
        raise ParameterError(f"{option}: must be at most {MAX_BATCH_SIZE}, got {batch_size}")
    return batch_size


def check_device(device, available: bool = True) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; with ``available``, a CUDA device must exist here.

    The availability check imports torch only for a CUDA device.
    """
    m = _DEVICE.match(device) if isinstance(device, str) else None
    if m is None:
        raise ParameterError(f"--device: must be one of {', '.join(DEVICES)}, got {device!r}")
    if available and device.startswith("cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ParameterError(f"--device {device}: no CUDA device is available on this machine; "
                                 "use --device cpu (or auto)")
        index = int(m.group(1) or 0)
        if index >= n:
            raise ParameterError(f"--device {device}: this machine has {count_text(n, 'CUDA device')}, "
                                 f"cuda:0 to cuda:{n - 1}")
    return device


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def batch_bytes(backbone: str, batch_size: int) -> int | None:
    """Estimated bytes of one batch of decoded inputs (and features, for array backbones); None when unknown.

    A network takes ``3 x S x S`` float32 per image; an array backbone holds the ``S x S`` image
    and its feature vector per image. Names that need weights are looked up without loading them.
    """
    from brainclust.features import backbones

    base = str(backbone).partition("@")[0]
    if base in backbones.ARRAY_BACKBONES:
        spec, _ = backbones.resolve(backbone)  # no weights to find: cheap; refuses a bad size
        per_image = 4 * (spec.input_size ** 2 + spec.dim)
    elif backbone in backbones.REGISTRY:
        per_image = 4 * 3 * backbones.REGISTRY[backbone].input_size ** 2
    else:
        return None
    return per_image * batch_size


def check_batch_memory(backbone: str, batch_size: int) -> None:
    """Refuse a ``--backbone`` / ``--batch-size`` pair whose batch would exceed :data:`MAX_BATCH_BYTES`."""
    need = batch_bytes(backbone, batch_size)
    if need is not None and need > MAX_BATCH_BYTES:
        raise ParameterError(f"--batch-size: {batch_size} images of --backbone {backbone} need about {_gib(need)} "
                             f"per batch, more than the limit of {_gib(MAX_BATCH_BYTES)}; use a smaller "
                             "--batch-size")


def check_cache_location(cache_dir, out, data=None) -> None:
    """``--cache-dir`` must not be ``--out`` or lie inside it (a run replaces its whole ``--out`` folder), nor
    lie inside the input folder ``data`` (the next scan of it would read the store's files as inputs).

    ``cache_dir=None`` is the default store (:func:`~brainclust.features.cache.default_cache_dir`).
    The paths are compared resolved (symbolic links followed, missing parts kept as written). A ``data``, ``out``
    or ``cache_dir`` that is not a path (a list of files) is one line, before anything reads it.
    """
    for what, value in (("data", data), ("out", out), ("cache_dir", cache_dir)):
        if value is not None and value is not False and not isinstance(value, (str, os.PathLike)):
            raise ParameterError(f"{what}: expected a folder path, got {type(value).__name__}"
                                 + (" (a list of files: put them in a folder)" if what == "data" else ""))
    if cache_dir is False or (out is None and data is None):
        return
    from brainclust.features.cache import default_cache_dir

    cache = Path(os.path.realpath(cache_dir if cache_dir is not None else default_cache_dir()))
    shown = f"--cache-dir: '{cache_dir}'" if cache_dir is not None else f"the default feature store '{cache}'"
    for folder, what, why, scanned in ((out, "--out", "which every run replaces whole", False),
                                       (data, "the input folder", "whose next scan would read the store's files "
                                        "as images", True)):
        target = None if folder is None else Path(os.path.realpath(folder))
        inside = target is not None and (cache == target or target in cache.parents)
        if inside and scanned and any(part.startswith(".") for part in cache.relative_to(target).parts):
            continue  # the scan skips hidden folders
        if inside:
            raise ParameterError(f"{shown} lies inside {what} '{folder}', {why}; put the feature store elsewhere "
                                 "(--cache-dir)")
