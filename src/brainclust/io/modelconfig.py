"""``model/config.json``, the model manifest of a run folder: written by :func:`write_model_manifest`, read
back like untrusted input by :func:`read_model_manifest` (:func:`check_model_config` names the file and the
field of anything wrong). The other files of a run folder are in :mod:`brainclust.io.outputs`.

``model/`` is the folder a user shares for ``predict``, so its manifest holds no path of this machine
(:func:`portable`): no cache folder (``predict`` uses its own), the files a run was given (``--weights``,
``--metadata``, ``--split-table``) by name only; ``manifest.json`` keeps the paths. Models saved before version 3
recorded ``backbone.weights_path``: still read, never written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_json, file_sha256
from brainclust.io.outputs import MODEL_FILES, MODEL_FORMAT, MODEL_VERSION, RunFolder, read_json
from brainclust.io.runfolder import check_run_dir

#: settings field -> (allowed types, may be missing). ``None`` in a tuple allows null.
SETTINGS_TYPES = {"batch_size": ((int,), False), "clip_percentiles": ((list, type(None)), False),
                  "intensity_window": ((list, type(None)), True), "pca": ((int, float), False),
                  "method": ((str,), False), "k": ((int, str), False), "seed": ((int,), False),
                  "slices": ((str,), True), "volume_index": ((int,), True),
                  "ssl": ((list, type(None)), True), "ssl_mode": ((str,), True),
                  "ssl_epochs": ((int, type(None)), True), "include": ((list,), True),
                  "exclude_files": ((list,), True), "bids_filter": ((str, type(None)), True),
                  "unit": ((str,), True), "descriptors": ((str,), True), "bids": ((str,), True)}
#: backbone field -> (allowed types, may be missing)
BACKBONE_TYPES = {"name": ((str,), False), "weights_path": ((str, type(None)), True),
                  "weights_file": ((str, type(None)), True),
                  "weights_sha256": ((str,), False), "precision": ((str,), False), "device": ((str,), False),
                  "dim": ((int,), False), "block_scales": ((list, type(None)), True),
                  "fusion_norm": ((str,), True)}


def _bad(path, what: str) -> ModelFileError:
    return ModelFileError(f"model config '{path}': {what}")


def check_model_config(info, path) -> int:
    """``model/config.json`` read like untrusted input (ModelFileError naming the file and the field);
    returns its version (1: written before the versioned manifest)."""
    if not isinstance(info, dict):
        raise _bad(path, f"must be a JSON object, got {type(info).__name__}")
    for section, table in (("settings", SETTINGS_TYPES), ("backbone", BACKBONE_TYPES)):
        sec = info.get(section)
        if not isinstance(sec, dict):
            raise _bad(path, f"field '{section}' is missing or not a JSON object")
        for name, (types, optional) in table.items():
            if name not in sec:
                if optional:
                    continue
                raise _bad(path, f"field '{section}.{name}' is missing")
            v = sec[name]
            if isinstance(v, bool) or not isinstance(v, types):
                raise _bad(path, f"field '{section}.{name}' has the wrong type ({type(v).__name__}: {v!r:.60})")
    for name in ("include", "exclude_files"):
        if not all(isinstance(x, str) for x in info["settings"].get(name) or ()):
            raise _bad(path, f"field 'settings.{name}' must be a list of strings")
    for name in ("clip_percentiles", "intensity_window"):
        v = info["settings"].get(name)
        if v is not None and (len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                     for x in v)):
            raise _bad(path, f"field 'settings.{name}' must be null or two numbers")
    if "version" not in info and "format" not in info:
        return 1
    if info.get("format") != MODEL_FORMAT or info.get("version") not in range(2, MODEL_VERSION + 1):
        raise _bad(path, f"fields 'format'/'version' must be '{MODEL_FORMAT}' and 2..{MODEL_VERSION}, got "
                         f"{info.get('format')!r:.40}/{info.get('version')!r:.20} (written by a newer brainclust?)")
    steps = info.get("steps")
    if not isinstance(steps, list) or not steps or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("class"), str)
            and isinstance(e.get("params"), dict) for e in steps):
        raise _bad(path, "field 'steps' must be a non-empty list of {name, class, params} objects")
    return int(info["version"])


#: Settings and step parameters that are this machine's: not recorded (``predict`` takes its own).
LOCAL_FIELDS = ("cache_dir",)
#: Settings and step parameters that name a file the run was given: recorded by the file's name.
FILE_FIELDS = ("weights", "metadata", "split_table")


def portable(values: Mapping) -> dict:
    """``values`` (settings, a step's parameters) without this machine's paths: :data:`LOCAL_FIELDS` as ``None``
    (``False``, no cache, stays), :data:`FILE_FIELDS` by their file name."""
    out = dict(values)
    for name in LOCAL_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = None
    for name in FILE_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = Path(out[name]).name
    return out


def portable_backbone(backbone: Mapping) -> dict:
    """The fitted backbone (``describe()``) with its weights file by name (``weights_file``), not by path."""
    out = {k: v for k, v in backbone.items() if k != "weights_path"}
    path = backbone.get("weights_path")
    out["weights_file"] = Path(path).name if isinstance(path, str) and path else None
    return out


def write_model_manifest(folder, settings: Mapping, backbone: Mapping, steps: Sequence[Mapping],
                         version: str) -> Path:
    """``model/config.json``: the versioned manifest (format, version, settings, backbone, steps, and
    ``sha256``: the SHA-256 of each file the steps wrote, which :func:`check_model_files` reads back), with no
    path of this machine (:func:`portable`)."""
    folder = Path(folder)
    names = sorted({f for e in steps for f in e.get("files") or () if (folder / f).is_file()})
    steps = [{**e, "params": portable(e["params"])} if isinstance(e.get("params"), Mapping) else dict(e)
             for e in steps]
    return atomic_write_json(folder / MODEL_FILES["config"],
                             {"format": MODEL_FORMAT, "version": MODEL_VERSION, "brainclust": version,
                              "settings": portable(settings), "backbone": portable_backbone(backbone),
                              "steps": steps, "sha256": {f: file_sha256(folder / f) for f in names}})


def check_model_files(info: Mapping, folder) -> None:
    """Each file ``config.json`` hashes (``sha256``; models saved before it have none) is there with the bytes it
    was saved with: a model folder that mixes two runs' files is one line naming the file (ModelFileError)."""
    files, folder = info.get("sha256"), Path(folder)
    if files is None:
        return
    config = folder / MODEL_FILES["config"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise _bad(config, "field 'sha256' must map file names to SHA-256 digests")
    for name, digest in files.items():
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise _bad(config, f"field 'sha256' names a path outside the model folder: {name!r:.80}")
        if not path.is_file():
            raise ModelFileError(f"model file '{path}' is missing (listed in {config})")
        if file_sha256(path) != digest:
            raise ModelFileError(f"model file '{path}' is not the one this model was saved with (its SHA-256 "
                                 f"differs from {config}): the folder mixes files of two runs; rerun the run")


def _predicted(folder: RunFolder) -> bool:
    """Whether ``folder`` is a ``brainclust predict`` output (its manifest names the run it predicted with)."""
    try:
        return "model_dir" in read_json(folder.manifest)
    except ModelFileError:
        return False


def read_model_manifest(model_dir) -> tuple[dict, int]:
    """``(manifest, version)`` of the run folder ``model_dir``'s ``model/config.json``, checked."""
    check_run_dir(model_dir, "predict")
    folder = RunFolder(model_dir)
    if not folder.model_config.is_file():
        if (folder.root / MODEL_FILES["config"]).is_file():  # a copy of a run's model/ (model/ itself: check_run_dir)
            raise ModelFileError(f"'{model_dir}' looks like the model/ folder of a run: put it in a folder of its own "
                                 "under the name model/ (DIR/model/config.json) and pass DIR")
        if _predicted(folder):
            raise ModelFileError(f"'{model_dir}' is the folder of a 'brainclust predict' (it has no model/ of its "
                                 "own): give the folder of the 'brainclust run' it predicted with")
        raise ModelFileError(f"'{model_dir}' is not a finished brainclust run: {folder.model_config} is missing")
    info = read_json(folder.model_config)
    return info, check_model_config(info, folder.model_config)


