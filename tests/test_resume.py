"""Kill a run with SIGKILL mid-extraction, rerun it: it resumes from the cache, outputs are identical.

The kill is event-driven: the killed run is the CLI with the feature store's ``put_many`` wrapped (in the
child process only) to report each committed batch on stdout and then wait; the test kills it on that
message, so the kill always lands mid-extraction, whatever the machine's speed.

Also: two runs with the same seed give byte-identical ``assignments.csv`` (clusters and pixel descriptors), and
the same ``metrics.json`` (byte-identical from the cache; to 1e-6 when each run recomputes its features in other
batches, since a runtime may pick batch-size-dependent kernels on some CPUs), whether the features come from the
cache or are recomputed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import brainclust

from corpus import brain_volume, write_dicom, write_nifti

pytestmark = pytest.mark.slow  # whole runs with a real backbone, one of them killed and rerun
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


#: The killed run: the CLI, its feature store announcing each committed batch of features and then waiting (to
#: be killed). The descriptor stores (their settings name no "backbone") are let through.
PAUSE_AFTER_FIRST_BATCH = """
import sys
from brainclust.features import cache
real = cache.FeatureCache.put_many
def put_many(self, keys, features):
    real(self, keys, features)
    if "backbone" not in self.settings:
        return
    print("stored", len(keys), flush=True)
    sys.stdin.readline()  # the test kills the process while it waits here
cache.FeatureCache.put_many = put_many
from brainclust.cli import main
sys.exit(main(sys.argv[1:]))
"""


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files (io.atomic_write_* names them '.NAME.XXXX.tmp')."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


def test_sigkill_mid_extraction_then_rerun_resumes_with_identical_outputs(data, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = cli(data, out, cache)[3:]  # the arguments after "python -m brainclust"
    proc = subprocess.Popen([sys.executable, "-c", PAUSE_AFTER_FIRST_BATCH, *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        event = proc.stdout.readline()  # blocks until the first batch is committed (or the run ends: "")
        os.kill(proc.pid, signal.SIGKILL)  # before any assertion: a failed one must not wait on a paused process
        assert event.split() == ["stored", "4"], proc.stderr.read()
    finally:
        proc.kill()
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
        assert (outs[0] / "assignments.csv").read_bytes() == (outs[1] / "assignments.csv").read_bytes(), method
        assert_same_numbers(json.loads((outs[0] / "metrics.json").read_text()),
                            json.loads((outs[1] / "metrics.json").read_text()), method)


def assert_same_numbers(a, b, where, rtol: float = 1e-6) -> None:
    """Equal JSON trees, floats to ``rtol`` (and 1e-9 absolute), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            assert_same_numbers(a[key], b[key], f"{where}/{key}", rtol)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_numbers(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=rtol, abs=1e-9, nan_ok=True), where
    else:
        assert a == b, where


def test_assert_same_numbers_tells_a_changed_value_from_a_rounding():
    base = {"silhouette": 0.31234567, "k": 3, "per": [{"n": 4, "v": 0.5}], "label": "x"}
    assert_same_numbers(base, {**base, "silhouette": 0.31234567 + 1e-12}, "m")
    for changed in ({**base, "silhouette": 0.3124}, {**base, "k": 4}, {**base, "per": [{"n": 4, "v": 0.6}]},
                    {**base, "label": "y"}, {k: v for k, v in base.items() if k != "k"}):
        with pytest.raises(AssertionError):
            assert_same_numbers(base, changed, "m")
