"""Where a study writes: ``--out`` of ``brainclust benchmark``, ``sensitivity`` and ``ablation``, on a run's rules.

A study's folder is published as a run's is (:func:`brainclust.io.publish.publish`: staged beside it, then
swapped in whole), so it follows the same rules, checked before any work (:func:`prepare_study_out`) and again
under the folder lock (:func:`publish_study`): ``--out`` must be new, empty or an earlier output of the same
command (:class:`StudyFolder` names what that command writes); a folder holding any other file is refused, as
is one equal to, inside or around a data folder (a later run of the data would read the study's PNGs as
images), one inside a run folder, and a feature store inside ``--out`` (the swap would delete it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brainclust.data.demo import foreign_demo_entry
from brainclust.errors import ParameterError
from brainclust.features.limits import check_cache_location
from brainclust.io.atomic import walk_entries
from brainclust.io.outputs import escape_name
from brainclust.io.publish import check_out, publish, recover_out, run_wrote


@dataclass(frozen=True)
class StudyFolder:
    """What the ``--out`` folder of the study ``command`` may hold: the files ``entries`` at the top, the files
    matching ``nested`` patterns in its folders, and ``demo``: a folder of generated demo images."""

    command: str
    entries: frozenset
    nested: Mapping[str, Collection[str]] = field(default_factory=dict)
    demo: str | None = None

    @property
    def advice(self) -> str:
        return (f"'brainclust {self.command}' replaces its whole --out folder: move it out, or choose a new or "
                f"empty folder (or one an earlier 'brainclust {self.command}' wrote)")

    @property
    def allowed(self) -> frozenset:
        """The names this command writes at the top of its folder."""
        return self.entries | ({self.demo} if self.demo else frozenset())

    def foreign(self, folder: Path) -> str | None:
        """The first entry under ``folder`` (sorted, at any depth) that this command does not write, or ``None``."""
        for rel in walk_entries(folder):
            top, _, rest = rel.partition("/")
            if top == self.demo:
                if not rest and (folder / top).is_dir() and not (folder / top).is_symlink():
                    inner = foreign_demo_entry(folder / top)
                    if inner is not None:
                        return f"{top}/{inner}"
                elif not rest:
                    return rel
                continue
            if not run_wrote(folder, rel, self.allowed, self.nested):
                return rel
        return None


BENCHMARK = StudyFolder("benchmark", frozenset({"results.csv", "tables.md", "benchmark.json"}))
SENSITIVITY = StudyFolder("sensitivity", frozenset({"sensitivity.csv", "sensitivity.md", "sensitivity.json",
                                                   "plots"}), {"plots": ("sensitivity_*.png",)})
ABLATION = StudyFolder("ablation", frozenset({"ablation.json", "ablation.md"}), demo="demo_data")
STUDIES = (BENCHMARK, SENSITIVITY, ABLATION)


def check_study_out(out, folder: StudyFolder, data: Sequence = ()) -> None:
    """:func:`~brainclust.io.publish.check_out` of ``out`` for the study ``folder``, outside every data folder;
    the folder of another study is named as such."""
    def foreign(path: Path) -> str | None:
        entry = folder.foreign(path)
        other = next((s for s in STUDIES if s is not folder and entry is not None and
                      entry.split("/")[0] in s.allowed), None)
        if other is not None:
            raise ParameterError(f"--out: '{escape_name(str(out))}' holds '{escape_name(entry)}', which 'brainclust "
                                 f"{other.command}' writes: its folder is not replaced by 'brainclust "
                                 f"{folder.command}'; choose a new or empty folder")
        return entry

    for d in data or (None,):
        check_out(out, data=d, data_name="the data folder", allowed=folder.allowed, foreign=foreign,
                  advice=folder.advice)


def prepare_study_out(out, folder: StudyFolder, data: Sequence = (), cache_dir=None) -> None:
    """At the start of a study, before any work: the feature store outside ``out``, what a killed writer of ``out``
    left restored or removed, and :func:`check_study_out`. Nothing is created; nothing happens when ``out`` is
    ``None`` (the study writes nothing)."""
    if out is None:
        return
    for d in data or (None,):
        check_cache_location(cache_dir, out, d)
    recover_out(out)
    check_study_out(out, folder, data)


def publish_study(out, folder: StudyFolder, fill: Callable[[Path], None], data: Sequence = ()) -> Path:
    """Write the study's folder ``out`` whole: ``fill(staging)`` then the swap
    (:func:`~brainclust.io.publish.publish`), :func:`check_study_out` again under the lock first."""
    return publish(out, fill, check=lambda: check_study_out(out, folder, data))
