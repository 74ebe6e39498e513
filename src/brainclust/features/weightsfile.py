"""A model folder names its backbone's weights file, never its path; ``predict`` finds the file on this machine.

``model/config.json`` is what a user shares for ``predict``, so it holds no path of the machine that saved it
(``manifest.json`` keeps those). The extractor step records ``weights`` as :func:`saved_weights` gives it: ``None``
for the backbone's own weights (what the run used without ``--weights``), ``"random"``, or the *name* of the file
the run was given; the SHA-256 of the weights is in the manifest's ``backbone.weights_sha256``.
:func:`weights_to_load` turns that back into the ``weights`` to build the extractor with:

1. ``predict --weights PATH``: that file, which must have the recorded SHA-256;
2. the backbone's own weights: resolved as at the run (bundled, or Inception V3's torch cache), and checked by
   SHA-256 once the extractor is fitted (:func:`brainclust.features.extraction.check_fitted_as_saved`);
3. a file the run was given: the file of that name in the weights cache (:func:`weights_cache`, torch's
   ``hub/checkpoints``, where torchvision keeps Inception V3's) or the backbone's own file, whichever has the
   recorded SHA-256.

Otherwise one line names the file and what to pass (:class:`~brainclust.errors.WeightsUnavailableError`). A model
saved before version 3 of the manifest recorded the absolute path: the file there is used when it still exists,
else it is looked for as in 3, else the backbone's own weights are tried (checked by SHA-256), as those models did.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from brainclust.errors import ModelFileError, WeightsUnavailableError
from brainclust.features.backbones import RANDOM_WEIGHTS, REGISTRY, ResolvedWeights
from brainclust.io.atomic import file_sha256


def weights_cache() -> Path:
    """The folder where weights files are looked for by name: torch's ``hub/checkpoints`` (``$TORCH_HOME``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def saved_weights(requested: str | None, resolved: ResolvedWeights) -> str | None:
    """What a model folder records of an extractor's weights: ``None`` (the backbone's own: ``requested`` was
    ``None``), ``"random"``, or the file's name (no folder: the path is this machine's)."""
    if resolved.sha256 == RANDOM_WEIGHTS:
        return RANDOM_WEIGHTS
    if requested is None or resolved.path is None:
        return None
    return Path(resolved.path).name


def _is_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _file_name(recorded, source: str) -> str:
    """``recorded`` when it is a bare file name (the folder is untrusted input: no folder, no ``..``)."""
    if (not isinstance(recorded, str) or not recorded or len(recorded) > 255 or "\x00" in recorded
            or "\\" in recorded or Path(recorded).name != recorded or recorded in (".", "..")):
        raise ModelFileError(f"{source}: field 'params.weights' of the extractor must be a file name, got "
                             f"{recorded!r:.80}")
    return recorded


def _given(path: str, sha256: str, source: str) -> str:
    """``predict --weights PATH``: the file, when it has the SHA-256 the model was saved with."""
    p = Path(path)
    if not p.is_file():
        raise WeightsUnavailableError(f"--weights: file '{path}' " + (
            "is not a regular file" if p.exists() else "does not exist"))
    digest = file_sha256(p)
    if digest != sha256:
        raise WeightsUnavailableError(f"--weights: '{path}' is not the weights file the model was saved with (its "
                                      f"SHA-256 {digest[:12]} is not {sha256[:12]}, recorded in {source})")
    return str(p.resolve())


def _candidates(name: str, backbone: str) -> list[Path]:
    found = [weights_cache() / name]
    spec = REGISTRY.get(backbone)
    own = spec.default_weights() if spec is not None else None  # never downloads: None when not on this machine
    return found + ([Path(own)] if own is not None else [])


def weights_to_load(recorded, state: Mapping, given: str | None, source: str) -> str | None:
    """The ``weights`` to rebuild a saved extractor with (see the module docstring): ``recorded`` is the step's
    ``params.weights``, ``state`` the manifest's ``backbone`` (``name``, ``weights_sha256``), ``given`` the
    ``--weights`` of ``predict`` (or ``None``), ``source`` names the manifest for the messages."""
    sha, backbone = state.get("weights_sha256"), str(state.get("name") or "")
    if recorded == RANDOM_WEIGHTS or not _is_digest(sha):  # random or no weights: the extractor refuses a file
        return given if given is not None else recorded
    if given is not None:
        return _given(given, sha, source)
    if recorded is None:
        return None
    legacy = isinstance(recorded, str) and Path(recorded).is_absolute()  # saved before version 3: a path
    if legacy and Path(recorded).is_file():
        return recorded
    name = Path(recorded).name if legacy else _file_name(recorded, source)
    other = None
    for path in _candidates(name, backbone):
        if path.is_file():
            if file_sha256(path) == sha:
                return str(path)
            other = other or (path if path.name == name else None)  # a file of that name, not these weights
    if legacy:
        return None  # as such models did: the backbone's own weights, checked by SHA-256 once fitted
    why = f" ('{other}' has another SHA-256)" if other is not None else ""
    raise WeightsUnavailableError(
        f"{source}: the weights file '{name}' of backbone '{backbone}' (SHA-256 {sha[:12]}) is not on this "
        f"machine{why}: pass --weights PATH to it (checked by SHA-256), or copy it into '{weights_cache()}'")
