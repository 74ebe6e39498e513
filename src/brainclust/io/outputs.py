"""The run folder's schema, defined once: file names, CSV columns and model files.

A finished ``brainclust run --out OUT`` folder holds::

    OUT/assignments.csv     one row per image: ASSIGNMENT_COLUMNS (+ LEVEL_COLUMNS for hierarchical)
    OUT/metrics.json        the scores
    OUT/manifest.json       versions, settings, timings, skipped files (written last)
    OUT/model/config.json   what predict needs to rebuild the extractor
    OUT/model/pca.npz       the fitted PCA
    OUT/model/cluster.npz   the fitted clustering (and the embedding it saw, for the report)
    OUT/report.html         the report (and OUT/figures/), unless --no-report

The writer (:mod:`brainclust.pipeline`), :mod:`brainclust.report`, export and
``predict`` all go through :class:`RunFolder` and the readers here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_csv

#: Depth of the hierarchical tree kept per image (``level_1`` .. ``level_10``).
N_LEVELS = 10
ASSIGNMENT_COLUMNS = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
LEVEL_COLUMNS = [f"level_{L}" for L in range(1, N_LEVELS + 1)]


class RunFolder:
    """The paths of one run folder (nothing is read or created by building one)."""

    def __init__(self, root) -> None:
        self.root = Path(root)

    assignments = property(lambda self: self.root / "assignments.csv")
    metrics = property(lambda self: self.root / "metrics.json")
    manifest = property(lambda self: self.root / "manifest.json")
    model = property(lambda self: self.root / "model")
    model_config = property(lambda self: self.model / "config.json")
    pca = property(lambda self: self.model / "pca.npz")
    cluster = property(lambda self: self.model / "cluster.npz")
    report = property(lambda self: self.root / "report.html")
    figures = property(lambda self: self.root / "figures")


def read_json(path, folder=None) -> dict:
    """Read a JSON file of a run folder; a missing or damaged file is a :class:`ModelFileError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or path.parent}' is not a finished brainclust run: "
                             f"{path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def write_assignments(path, rows: Iterable[Mapping], with_levels: bool) -> Path:
    """Write ``assignments.csv``: :data:`ASSIGNMENT_COLUMNS`, then the levels when ``with_levels``."""
    header = ASSIGNMENT_COLUMNS + (LEVEL_COLUMNS if with_levels else [])
    return atomic_write_csv(path, header, rows)


def read_assignments(path, folder=None) -> list[dict]:
    """Read ``assignments.csv`` back as a list of dict rows (strings)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ModelFileError(f"'{folder or Path(path).parent}' is not a finished brainclust run: "
                             f"{Path(path).name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def assignment_rows(records: Sequence, labels, levels) -> list[dict]:
    """One dict per image with the columns of ``assignments.csv`` (``records`` are ImageRecords)."""
    rows = []
    for i, r in enumerate(records):
        row = {"path": r.path, "name": r.name, "type": r.type, "size": r.size, "width": r.width,
               "height": r.height, "label": r.label, "cluster": int(labels[i])}
        if levels is not None:
            row.update({c: int(levels[i, j]) for j, c in enumerate(LEVEL_COLUMNS)})
        rows.append(row)
    return rows
