"""Ray on two nodes (same machine, separate ports and temp folders): results equal the local engine's,
also when the second node is killed in the middle of the extraction.

``ray start --head`` and ``ray start --address`` run in their own sessions (so each node's
processes can be killed as a group), with a per-test authentication token. The runs go
through ``brainclust run --engine ray --ray-address 127.0.0.1:PORT``. Skipped, with the
reason, where Ray cannot start nodes here.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'brainclust[ray]')")

import brainclust  # noqa: E402
from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.features.cache import FeatureCache  # noqa: E402
from brainclust.pipeline import RunConfig, run  # noqa: E402

SRC = str(Path(brainclust.__file__).resolve().parents[1])
DRIVER = Path(__file__).with_name("ray_cluster_driver.py")
RAY = shutil.which("ray", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
BACKBONE, BATCH, K = "pixels@32", 4, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Two Ray nodes on this machine, each a process group of its own."""

    def __init__(self):
        token = secrets.token_hex(32)
        self.env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_DISABLE_USAGE_STATS": "1",
                    "RAY_ADDRESS": ""}
        # Ray's socket paths must stay under 108 bytes: a short folder of its own, not pytest's tmp_path
        self.port, self.tmp = _free_port(), Path(tempfile.mkdtemp(prefix="bcray-", dir="/tmp" if os.path.isdir(
            "/tmp") else None))
        self.groups: dict[str, int] = {}
        self.node_port = {"head": _free_port(), "second": _free_port()}

    def _start(self, name: str, args: list[str]) -> None:
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--object-store-memory", str(200 * 2**20),
                  "--temp-dir", str(self.tmp / name), "--node-manager-port", str(self.node_port[name]),
                  "--dashboard-agent-listen-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
                  "--disable-usage-stats"]
        proc = subprocess.Popen([RAY, "start", *args, *common], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.groups[name] = proc.pid  # the daemons it starts stay in its process group
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            lines = [ln for ln in out.splitlines() if ln.strip()]
            raise RuntimeError(f"`ray start` of the {name} node failed: {lines[-1] if lines else proc.returncode}")

    def start(self) -> None:
        head = ["--head", "--port", str(self.port), "--include-dashboard=false"]
        try:  # with ray[client] installed the head also serves Ray Client: on a free port, not 10001
            import grpc  # noqa: F401

            head += ["--ray-client-server-port", str(_free_port())]
        except ImportError:
            pass
        self._start("head", head)
        self._start("second", ["--address", f"127.0.0.1:{self.port}"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def node_ids(self) -> dict[int, str]:
        """Node manager port -> node id of the alive nodes."""
        code = ("import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False);"
                "print(json.dumps({n['NodeManagerPort']: n['NodeID'] for n in ray.nodes() if n['Alive']}))")
        out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}

    def kill(self, name: str) -> None:
        """SIGKILL every process of one node: its process group and all their descendants (Ray's
        workers start sessions of their own and rename themselves, so they are found by parentage)."""
        group = self.groups.pop(name, None)
        if group is None:
            return
        parent = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    parent[int(entry.name)] = (int(fields[1]), int(fields[2]))  # (ppid, pgid)
                except (OSError, IndexError, ValueError):
                    pass
        doomed = {pid for pid, (_, pgid) in parent.items() if pgid == group}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in parent.items() if ppid in doomed} - doomed
            doomed |= more
            grew = bool(more)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self) -> None:
        for name in list(self.groups):
            self.kill(name)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    if RAY is None:
        pytest.skip("the `ray` command is not installed")
    c = Cluster()
    try:
        try:
            c.start()
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            pytest.skip(f"cannot start two Ray nodes here: {exc}")
        yield c
    finally:
        c.stop()


def _driver(c: Cluster, data: Path, out: Path, cache: Path, log: Path, slow: float) -> subprocess.Popen:
    args = ["run", str(data), "--out", str(out), "--cache-dir", str(cache), "--backbone", BACKBONE, "--k", str(K),
            "--batch-size", str(BATCH), "--labels-from-folders", "--no-report", "-q",
            "--engine", "ray", "--ray-address", c.address]
    return subprocess.Popen([sys.executable, str(DRIVER), str(log), str(slow), "--", *args], env=c.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stored(cache: Path, settings: dict, keys: list[str]) -> np.ndarray:
    store = FeatureCache(cache, settings)
    try:
        return np.stack([store.get(k) for k in keys])
    finally:
        store.close()


def _log(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(a, int(b)) for a, b in (ln.split() for ln in path.read_text().splitlines() if ln.strip())]


def _same_as_local(out: Path, cache: Path, local, local_out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["engine"] == "ray"
    assert (out / "assignments.csv").read_bytes() == (local_out / "assignments.csv").read_bytes()
    keys = [r.key for r in local.records]
    # other processes, other batch splits: equal here, but a CPU's kernels need not promise bits (as test_ray_engine)
    np.testing.assert_allclose(_stored(cache, local.extractor.cache_settings_, keys), local.features, rtol=1e-5,
                               atol=1e-6)
    with open(out / "assignments.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(local.records)


@pytest.mark.slow
def test_two_nodes_equal_the_local_engine_also_when_a_node_dies(cluster, tmp_path):
    data = make_demo_dataset(tmp_path / "demo", n_per_class=16, size=48, random_state=0)
    local_out = tmp_path / "local"
    local = run(data, local_out, RunConfig(backbone=BACKBONE, k=K, batch_size=BATCH, labels_from_folders=True,
                                           workers=0, progress=False, cache_dir=str(tmp_path / "cache-local")),
                finish=None)
    ids = cluster.node_ids()
    assert len(ids) == 2, f"expected two alive nodes, got {ids}"
    second = ids[cluster.node_port["second"]]

    # 1. both nodes alive
    log1 = tmp_path / "embed1.log"
    p1 = _driver(cluster, data, tmp_path / "out1", tmp_path / "cache1", log1, slow=0.05)
    out, err = p1.communicate(timeout=600)
    assert p1.returncode == 0, err[-3000:]
    assert json.loads((tmp_path / "out1" / "manifest.json").read_text())["engine"]["nodes"] == 2
    _same_as_local(tmp_path / "out1", tmp_path / "cache1", local, local_out)
    assert sum(n for _, n in _log(log1)) >= len(local.records)

    # 2. the second node is killed once it has embedded a batch
    log2 = tmp_path / "embed2.log"
    p2 = _driver(cluster, data, tmp_path / "out2", tmp_path / "cache2", log2, slow=0.5)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p2.poll() is None and not any(n == second for n, _ in _log(log2)):
            time.sleep(0.05)
        if p2.poll() is not None or not any(n == second for n, _ in _log(log2)):
            pytest.skip(f"Ray placed no embedding work on the second node before the run ended: {_log(log2)}")
        cluster.kill("second")
        at_kill = _log(log2)  # read after the kill: the second node can write nothing more
        out, err = p2.communicate(timeout=600)
    finally:
        if p2.poll() is None:
            p2.kill()
    assert p2.returncode == 0, err[-3000:]
    assert sum(n for _, n in at_kill) < len(local.records), "the node died after the extraction had finished"
    after = _log(log2)[len(at_kill):]
    assert after and all(n != second for n, _ in after), (f"the head node did not take over the rest: second={second} "
                                                          f"ids={ids} at_kill={at_kill}")
    _same_as_local(tmp_path / "out2", tmp_path / "cache2", local, local_out)
