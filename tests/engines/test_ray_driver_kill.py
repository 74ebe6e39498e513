"""--engine ray: a killed driver loses at most one batch, and a rerun computes only the rest.

The driver (a child process running a local Ray) logs every batch it takes from
Ray and every commit to the feature store; it is SIGKILLed mid-pass. The batches it
had taken minus those committed must be at most one batch, every commit at most
``batch_size`` rows, and the store must hold exactly what was committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'brainclust[ray]')")

import brainclust  # noqa: E402
from brainclust.features.cache import FeatureCache  # noqa: E402
from brainclust.features.extractor import FeatureExtractor  # noqa: E402

from conftest import make_image  # noqa: E402

CHILD = Path(__file__).with_name("ray_driver_child.py")
SRC = str(Path(brainclust.__file__).resolve().parents[1])
BATCH = 4
N = 48


def _lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _kill_group(proc: subprocess.Popen) -> None:
    """Whatever the killed driver's local Ray left running in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child(data, cache, logdir, slow: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_ADDRESS": "", "RAY_DISABLE_USAGE_STATS": "1"}
    return subprocess.Popen([sys.executable, str(CHILD), str(data), str(cache), str(logdir), str(BATCH), str(slow)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_a_killed_ray_driver_loses_at_most_one_batch(tmp_path):
    data = tmp_path / "data"
    for i in range(N):
        make_image(data / f"img{i:02d}.png", "L", size=(20, 20), seed=i)
    cache, logs = tmp_path / "cache", tmp_path / "logs"
    logs.mkdir()
    proc = _child(data, cache, logs, slow=0.4)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and len(_lines(logs / "received.log")) < 3:
            time.sleep(0.02)
        finished_early = proc.poll() is not None
        if not finished_early:
            os.kill(proc.pid, signal.SIGKILL)  # the driver only: a real kill -9
        proc.wait(timeout=60)
    finally:
        _kill_group(proc)
    received, stored = _lines(logs / "received.log"), _lines(logs / "stored.log")
    assert not finished_early, f"the driver ended before the kill: {proc.stderr.read()[-2000:]}"
    assert received, "the driver received no batch before the kill"
    assert max(stored, default=0) <= BATCH, f"commits of more than one batch: {stored}"
    assert sum(received) - sum(stored) <= BATCH, f"lost more than one batch: received {received}, stored {stored}"
    ex = FeatureExtractor(backbone="pixels@16", batch_size=BATCH, cache_dir=str(cache), num_workers=0,
                          progress=False).fit()
    store = FeatureCache(cache, ex.cache_settings_)
    in_store = len(store)
    store.close()
    assert in_store == sum(stored) and 0 < in_store < N
    # the rerun computes exactly the images the store lacks
    rerun = _child(data, cache, logs, slow=0.0)
    try:
        out, err = rerun.communicate(timeout=300)
    finally:
        _kill_group(rerun)
    assert rerun.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"computed": N - in_store, "failed": 0}
