"""Weights files on disk: where they are looked for by name, and how one is read and loaded.

A weights file is named by the user (``--weights``), by a model folder (a crafted one may name anything) or found
in torch's cache. It is hashed when its backbone is resolved (the SHA-256 keys the feature cache and is recorded in
the manifest) and read again when the network is built: :func:`load_state_dict` loads the bytes it hashed that
second time, so the weights used are the weights recorded, whatever happened to the path in between. Only tensors
are unpickled (``weights_only``): a file that holds other Python objects is refused, never run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from brainclust.errors import ImageReadError, WeightsUnavailableError
from brainclust.io.content import check_regular, read_hashed


#: Largest weights file read (Inception V3's is 104 MB): a crafted folder or a slip may name a huge file.
MAX_WEIGHTS_BYTES = 4 << 30


def given_file(weights: str) -> Path:
    """``--weights PATH`` as the user gave it (``run`` or ``predict``): a regular file, else one line."""
    p = Path(weights)
    if p.is_dir():
        raise WeightsUnavailableError(f"--weights: '{weights}' is a folder, expected a state-dict file")
    if not p.is_file():
        raise WeightsUnavailableError(f"--weights: file '{weights}' " + (
            "is not a regular file" if p.exists() else "does not exist"))
    return p


def _read(path: str, keep: bool) -> tuple[str, bytes | None]:
    """``(SHA-256, bytes when keep)`` of the weights file at ``path``, read once by :func:`io.content.read_hashed`
    (only a regular file is opened, never blocking; reading stops, refused, past the size it had when opened), at
    most :data:`MAX_WEIGHTS_BYTES`; else one line that names the file."""
    try:
        size = check_regular(path).st_size
        if size > MAX_WEIGHTS_BYTES:
            raise WeightsUnavailableError(f"weights file '{path}': {size / 2**30:.1f} GiB, larger than any weights "
                                          f"file ({MAX_WEIGHTS_BYTES >> 30} GiB at most)")
        digest, _, data = read_hashed(path, MAX_WEIGHTS_BYTES if keep else -1)
    except ImageReadError as exc:
        raise WeightsUnavailableError(f"weights file '{path}': {exc}") from None
    return digest, data


def weights_sha256(path) -> str:
    """The SHA-256 of a weights file, read as :func:`read_checked` reads it (a regular file of at most
    :data:`MAX_WEIGHTS_BYTES`; else one line that names it): the hash that keys the feature cache and that the
    manifest records."""
    return _read(str(path), keep=False)[0]


def read_checked(path: str, sha256: str) -> io.BytesIO:
    """The weights file's bytes, read once and checked against ``sha256`` (the one
    :func:`~brainclust.features.backbones.resolve` recorded with :func:`weights_sha256`): the bytes loaded are the
    bytes hashed. A file changed since, or a FIFO or device put in its place, is refused in one line."""
    digest, data = _read(path, keep=True)
    if data is None or digest != sha256:  # None: it grew past the limit since it was hashed
        raise WeightsUnavailableError(f"weights file '{path}': changed since it was checked (its SHA-256 is no "
                                      f"longer {sha256[:12]}); run again")
    return io.BytesIO(data)


def load_state_dict(path: str, sha256: str, backbone: str) -> dict:
    """The state dict of ``backbone`` in the weights file (:func:`read_checked`), tensors only; a file that is not
    one is refused in one line that names it."""
    import torch

    data = read_checked(path, sha256)
    try:
        state = torch.load(data, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        said = str(exc).lower()  # torch >= 2.4 names an "unsupported global", older ones an "unsupported class"
        if "unsupported global" not in said and "unsupported class" not in said:  # not a checkpoint at all
            raise WeightsUnavailableError(f"weights file '{path}': not a PyTorch state dict (.pth/.pt) of "
                                          f"{backbone}") from None
        # torch's own text advises weights_only=False: never here
        raise WeightsUnavailableError(
            f"weights file '{path}': holds Python objects other than tensors, which brainclust never unpickles (they "
            f"could run code); save a plain {backbone} state dict (torch.save(model.state_dict(), PATH))") from None
    except Exception as exc:  # noqa: BLE001 - any failure is a bad weights file
        why = (str(exc).strip().splitlines() or [""])[0]
        why = f": {why[:200]}{'...' if len(why) > 200 else ''}" if why else ""
        raise WeightsUnavailableError(  # a text file, a truncated copy, an archive of something else
            f"weights file '{path}': not a readable PyTorch state-dict file, damaged or partly copied? "
            f"({type(exc).__name__}{why})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"weights file '{path}': holds a {type(state).__name__}, not a state dict")
    return state


def weights_cache() -> Path:
    """The folder where weights files are looked for by name: torch's ``hub/checkpoints`` (``$TORCH_HOME``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"
