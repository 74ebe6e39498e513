"""The house stays clean: no import cycles, no private names across modules, the stage order holds.

The source is parsed with ``ast`` (imports inside functions count too), so this
runs without importing the package.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "brainclust"

#: Stage order of the sub-packages: a package may import only from its own rank or a lower one.
RANKS = {"errors": 0, "progress": 0, "terminal": 0, "core": 0, "io": 1, "features": 2, "cluster": 2, "checks": 2,
         "selfsup": 3, "model": 4, "pipeline": 4, "analysis": 5, "report": 5, "data": 1, "engines": 3, "cli": 6,
         "cliopts": 6, "clisummary": 6, "__main__": 7,
         "": 0}  # "" = the package itself: its version and its lazy public names


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _imports(mods: dict[str, Path]) -> list[tuple[str, str, str, int]]:
    """(importer, imported module, imported name or "", line) for every internal import."""
    found = []
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("brainclust"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods:
                        found.append((mod, sub, "", node.lineno))
                    else:
                        found.append((mod, target, alias.name, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(mod, a.name, "", node.lineno) for a in node.names if a.name.startswith("brainclust")]
    return found


def _graph(mods) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in mods}
    for src, dst, _, _ in _imports(mods):
        # a package's __init__ re-exporting its children is not a dependency of the children on it
        if dst in mods and dst != src and not dst.startswith(src + ".") and not src.startswith(dst + "."):
            g[src].add(dst)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_check_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_counting_function_level_imports():
    assert _cycles(_graph(_modules())) == []


def test_no_module_imports_a_private_name_from_another_module():
    mods = _modules()
    bad = [f"{src}:{line} imports {dst}.{name}" for src, dst, name, line in _imports(mods)
           if name.startswith("_") and not name.startswith("__") and dst != src]
    assert bad == []


def _stage(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_data_flows_one_way_between_stage_packages():
    mods = _modules()
    bad = []
    for src, dst, _, line in _imports(mods):
        a, b = _stage(src), _stage(dst)
        if a in RANKS and b in RANKS and a != b and RANKS[b] > RANKS[a]:
            bad.append(f"{src}:{line} ({a}, rank {RANKS[a]}) imports {dst} ({b}, rank {RANKS[b]})")
    assert bad == []


def test_every_stage_package_is_ranked():
    assert {_stage(m) for m in _modules()} <= set(RANKS)


@pytest.mark.parametrize("name", ["run", "predict", "RunConfig", "RunResult", "FeatureExtractor", "PCAReducer",
                                  "Clusterer", "score", "scan", "make_demo_dataset", "__version__"])
def test_old_public_names_still_import(name):
    import brainclust

    assert getattr(brainclust, name) is not None
    assert name in brainclust.__all__


@pytest.mark.parametrize("path, name", [("brainclust.features", "FeatureExtractor"),
                                        ("brainclust.cluster", "Clusterer"),
                                        ("brainclust.cluster", "PCAReducer"),
                                        ("brainclust.cluster", "score"),
                                        ("brainclust.pipeline", "run"),
                                        ("brainclust.selfsup", "SelfSupervisedHead")])
def test_package_level_paths_still_work(path, name):
    obj = getattr(importlib.import_module(path), name)
    assert getattr(importlib.import_module("brainclust"), name, obj) is obj


def test_modules_stay_small_and_the_pipeline_thin():
    sizes = {mod: len(path.read_text(encoding="utf-8").splitlines()) for mod, path in _modules().items()}
    assert sizes["brainclust.pipeline"] <= 300
    assert [m for m, n in sizes.items() if n > 460] == []


def test_no_line_is_longer_than_120_characters():
    """The style limit, in every ``.py`` file of the package, the tests and the benchmarks (comments and docstrings
    too); characters, not bytes."""
    root = PKG.parents[1]
    bad = [f"{path.relative_to(root)}:{n} ({len(line)} characters)"
           for top in ("src", "tests", "benchmarks") for path in sorted((root / top).rglob("*.py"))
           for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1) if len(line) > 120]
    assert bad == []


def _docstrings(tree: ast.AST) -> set[int]:
    """``id`` of every docstring node of ``tree`` (module, class and function)."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, kinds) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_no_message_counts_with_a_parenthesised_plural():
    """'1 file(s) skipped', '2 stratum/strata': a count says its noun in the number it has
    (:func:`brainclust.terminal.count_text`). Docstrings may name a folder ``log(s)``."""
    bad = []
    for mod, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        bad += [f"{mod}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Constant)
                and isinstance(node.value, str) and id(node) not in docs
                and re.search(r"[a-z]\(s\)|stratum/strata", node.value)]
    assert bad == []


def _import_group(module: str) -> int:
    top = module.split(".")[0]
    return 2 if top == "brainclust" else 0 if top in sys.stdlib_module_names or top == "__future__" else 1


def test_module_level_imports_are_grouped_and_sorted():
    """Standard library, third-party, then brainclust, each group sorted (``import x`` before ``from x import``)."""
    bad = []
    for mod, path in _modules().items():
        keys = []
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                keys.append((_import_group(node.names[0].name), 0, node.names[0].name.lower()))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module != "__future__":
                keys.append((_import_group(node.module), 1, node.module.lower()))
        if keys != sorted(keys):
            bad.append(mod)
    assert bad == []
