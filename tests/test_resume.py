"""Kill a run with SIGKILL mid-extraction, rerun it: it resumes from the cache, outputs are identical.

Also: two runs with the same seed give byte-identical ``assignments.csv`` and
``metrics.json``, whether the features come from the cache or are recomputed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import json
from pathlib import Path

import numpy as np
import pytest

import brainclust

from corpus import brain_volume, write_dicom, write_nifti

N_IMAGES = 60


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import make_image

    root = tmp_path_factory.mktemp("resume") / "data"
    for i in range(N_IMAGES):
        make_image(root / f"g{i % 3}" / f"img{i:03d}.png", "L", size=(24 + i % 5, 28), seed=i)
    return root


def cli(data, out, cache, *extra) -> list[str]:
    return [sys.executable, "-m", "brainclust", "-q", "run", str(data), "--out", str(out), "--cache-dir", str(cache),
            "--backbone", "efficientnet_lite0", "--batch-size", "4", "--workers", "0", "--k", "3",
            "--method", "kmeans", "--pca", "8", "--seed", "3", *extra]


def cached_rows(cache: Path) -> int:
    """Features committed to the feature store so far (0 while it does not exist yet)."""
    for db in cache.glob("*/features.sqlite"):
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
                return conn.execute("SELECT count(*) FROM features").fetchone()[0]
        except sqlite3.Error:
            return 0
    return 0


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files (io.atomic_write_* names them '.NAME.XXXX.tmp')."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


def test_sigkill_mid_extraction_then_rerun_resumes_with_identical_outputs(data, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.Popen(cli(data, out, cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not cached_rows(cache):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no cached feature appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # nothing is written to --out before extraction ends, and never half a file
    assert not (out / "assignments.csv").exists() and not (out / "manifest.json").exists()
    assert leftovers(out) == []

    resumed = subprocess.run(cli(data, out, cache), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["cache"]["hits"] > 0 and man["cache"]["misses"] > 0, man["cache"]  # resumed mid-way
    assert man["cache"]["hits"] + man["cache"]["misses"] == N_IMAGES

    clean = tmp_path / "clean"  # the uninterrupted reference, with a cache of its own (the report is not compared)
    done = subprocess.run(cli(data, clean, tmp_path / "cache2", "--no-report"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "assignments.csv").read_bytes() == (clean / "assignments.csv").read_bytes()
    assert (out / "metrics.json").read_bytes() == (clean / "metrics.json").read_bytes()
    assert leftovers(out) == [] and leftovers(cache) == [] and leftovers(clean) == []


def test_same_seed_same_bytes_with_recomputed_features(tmp_path, make_image):
    """Determinism without the cache's help: each run extracts its own features, in other batches."""
    data = tmp_path / "data"
    for i in range(8):
        make_image(data / f"img{i}.png", "L", size=(30, 26), seed=i)
    write_dicom(data / "d.dcm", np.random.default_rng(0).integers(0, 4096, (2, 20, 20), dtype=np.uint16),
                phi=False)
    write_nifti(data / "v.nii.gz", brain_volume())
    for method in ("hierarchical", "gmm", "spectral"):  # the first pair extracts, the others reuse each cache
        outs = []
        for run, batch in (("a", 4), ("b", 3)):
            out = tmp_path / f"{method}-{run}"
            brainclust.run(data, out, backbone="efficientnet_lite0", k=3, method=method, seed=5, pca=4,
                           batch_size=batch, workers=0, cache_dir=str(tmp_path / f"cache-{run}"),
                           slices="axial:2")
            outs.append(out)
        for name in ("assignments.csv", "metrics.json"):
            assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), (method, name)
