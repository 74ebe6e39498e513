"""A model folder names its backbone's weights file, never its path; ``predict`` finds the file on this machine.

``model/config.json`` is what a user shares for ``predict``, so it holds no path of the machine that saved it
(``manifest.json`` keeps those). The extractor step records ``weights`` as :func:`saved_weights` gives it: ``None``
for the backbone's own weights (what the run used without ``--weights``), ``"random"``, or the *name* of the file
the run was given; the SHA-256 of the weights is in the manifest's ``backbone.weights_sha256``.
:func:`weights_to_load` turns that back into the ``weights`` to build the extractor with:

1. ``predict --weights PATH``: that file, which must have the recorded SHA-256;
2. the backbone's own weights: resolved as at the run (bundled, or Inception V3's torch cache), and checked by
   SHA-256 once the extractor is fitted (:func:`brainclust.features.extraction.check_fitted_as_saved`);
3. a file the run was given: the first with the recorded SHA-256 of the path the run folder's ``manifest.json``
   names (``predict`` on the machine of the run), the file of that name in the weights cache (:func:`weights_cache`,
   torch's ``hub/checkpoints``, where torchvision keeps Inception V3's) and the backbone's own file.

Otherwise one line names the file and what to pass (:class:`~brainclust.errors.WeightsUnavailableError`). A model
saved before version 3 of the manifest recorded the path (of this system or of Windows): that path is looked at
first, then as in 3, and when the backbone's own weights are not on this machine they are fetched as at the run
(Inception V3's download) and checked by SHA-256, as those models did. Only regular files of at most
:data:`~brainclust.features.statedict.MAX_WEIGHTS_BYTES` outside ``/proc``, ``/sys`` and ``/dev`` are read
(hashed), since the paths come from a folder that may be crafted, and only one with the recorded SHA-256 is loaded
(the bytes loaded are those hashed again at load: :mod:`brainclust.features.statedict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

from brainclust.errors import ModelFileError, ParameterError, WeightsUnavailableError
from brainclust.features.backbones import NO_WEIGHTS, RANDOM_WEIGHTS, REGISTRY, ResolvedWeights
from brainclust.features.statedict import given_file, weights_cache, weights_sha256


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


def _sha256_of(path: Path) -> str | None:
    """The SHA-256 of a weights file outside ``/proc``, ``/sys`` and ``/dev`` (a path named by an untrusted folder is
    never a device or a kernel file to read; :func:`~brainclust.features.statedict.weights_sha256` reads regular
    files of at most 4 GiB only), ``None`` when it is not one or cannot be read."""
    try:
        if path.resolve().parts[1:2] in (("proc",), ("sys",), ("dev",)):
            return None
        return weights_sha256(path)
    except (WeightsUnavailableError, OSError, RuntimeError, ValueError):  # RuntimeError: a link loop; ValueError: NUL
        return None


def _given(path: str, sha256: str, source: str) -> str:
    """``predict --weights PATH``: the file, when it has the SHA-256 the model was saved with."""
    p = given_file(path)  # a folder, a FIFO, a missing file, one too large: the words of run's --weights
    digest = weights_sha256(p)
    if digest != sha256:
        raise WeightsUnavailableError(f"--weights: '{path}' is not the weights file the model was saved with (its "
                                      f"SHA-256 {digest[:12]} is not {sha256[:12]}, recorded in {source})")
    return str(p.resolve())


def _legacy_name(recorded: str) -> str:
    """The file name of a path a model saved before version 3 recorded (on this system or on Windows)."""
    return (PureWindowsPath(recorded) if "\\" in recorded else PurePosixPath(recorded)).name


def weights_to_load(recorded, state: Mapping, given: str | None, source: str, *, legacy: bool = False,
                    beside: str | None = None) -> str | None:
    """The ``weights`` to rebuild a saved extractor with (see the module docstring): ``recorded`` is the step's
    ``params.weights``, ``state`` the manifest's ``backbone`` (``name``, ``weights_sha256``), ``given`` the
    ``--weights`` of ``predict`` (or ``None``), ``source`` names the manifest for the messages; ``legacy``: the
    manifest is older than version 3 (``recorded`` may be a path); ``beside``: the weights path the run folder's
    ``manifest.json`` names (the run's own machine), one more place to look. Every file found is used only with
    the recorded SHA-256."""
    sha, backbone = state.get("weights_sha256"), str(state.get("name") or "")
    if recorded == RANDOM_WEIGHTS or sha in (RANDOM_WEIGHTS, NO_WEIGHTS):
        if given is not None:
            raise ParameterError(f"--weights: the model's backbone '{backbone}' " + (
                "has no weights" if sha == NO_WEIGHTS else "has random weights (a test model)") +
                "; it takes no weights file")
        return recorded
    if not _is_digest(sha):
        raise ModelFileError(f"{source}: field 'backbone.weights_sha256' must be a SHA-256 (64 hex digits), got "
                             f"{sha!r:.80}")
    if given is not None:
        return _given(given, sha, source)
    if recorded is None:
        return None
    if legacy and isinstance(recorded, str) and recorded:
        name, places = _legacy_name(recorded), [Path(recorded)] if Path(recorded).is_absolute() else []
    else:
        name, places = _file_name(recorded, source), []
    places += [Path(beside)] if isinstance(beside, str) and Path(beside).is_absolute() else []
    places.append(weights_cache() / name)
    spec = REGISTRY.get(backbone)
    own = spec.default_weights() if spec is not None else None  # never downloads: None when not on this machine
    places += [Path(own)] if own is not None else []
    other = None
    for path in places:
        digest = _sha256_of(path)
        if digest == sha:
            return str(path)
        if digest is not None and path.name == name:
            other = other or path  # a file of that name, not these weights
    if legacy and own is None:  # as those models did: the backbone's own weights, fetched as at the run (Inception
        return None             # V3's download) and checked by SHA-256 once fitted
    why = f" ('{other}' has another SHA-256)" if other is not None else ""
    raise WeightsUnavailableError(
        f"{source}: the weights file '{name}' of backbone '{backbone}' (SHA-256 {sha[:12]}) is not on this "
        f"machine{why}: pass --weights PATH to it (checked by SHA-256), or copy it into '{weights_cache()}'")
