"""--ray-address: malformed values are refused up front; unreachable clusters are one line, not minutes of retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import brainclust
from brainclust.engines import parse_address
from brainclust.errors import ParameterError
from brainclust.pipeline import RunConfig

from conftest import make_image

SRC = str(Path(brainclust.__file__).resolve().parents[1])
#: A hang guard, not a speed check: Ray alone retried 127.0.0.1:1 for more than 3 minutes.
HANG_GUARD_S = 150


@pytest.mark.parametrize("address", ["garbage:::", "host", "host:0", "host:70000", "http://host:80", "ray://",
                                     "[::1", "[not-ipv6]:80", "1.2.3.4.5:80", "256.1.1.1:80", "host:port", "",
                                     " 127.0.0.1:6379", "-host:80", "host:6379/x"])
def test_malformed_addresses_are_refused_up_front(address):
    with pytest.raises(ParameterError, match="--ray-address: expected HOST:PORT, ray://HOST:PORT or auto"):
        RunConfig(engine="ray", ray_address=address).validate()


@pytest.mark.parametrize("address, parsed", [("auto", None), ("127.0.0.1:6379", ("127.0.0.1", 6379, False)),
                                             ("ray://head.example.org:10001", ("head.example.org", 10001, True)),
                                             ("[::1]:6379", ("::1", 6379, False)),
                                             ("head-node:65535", ("head-node", 65535, False))])
def test_well_formed_addresses(address, parsed):
    assert parse_address(address) == parsed
    RunConfig(engine="ray", ray_address=address).validate()


def _cli(args, tmp_path, timeout=HANG_GUARD_S):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": ""}
    code = "import sys; from brainclust.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def small_set(tmp_path):
    for i in range(4):
        make_image(tmp_path / "data" / f"i{i}.png", "L", size=(16, 16), seed=i)
    return tmp_path / "data"


def _one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("brainclust: error: --ray-address")
    return lines[0]


def _run_args(data, tmp_path, address):
    return ["run", str(data), "--out", str(tmp_path / "out"), "--backbone", "pixels@16", "--k", "2", "-q",
            "--cache-dir", str(tmp_path / "cache"), "--engine", "ray", "--ray-address", address]


def test_a_refused_port_is_one_line(small_set, tmp_path):
    pytest.importorskip("ray")
    line = _one_error_line(_cli(_run_args(small_set, tmp_path, "127.0.0.1:1"), tmp_path))
    assert "127.0.0.1:1" in line and "cannot connect" in line
    assert not (tmp_path / "out").exists()


def test_auto_without_a_cluster_is_one_line(small_set, tmp_path):
    pytest.importorskip("ray")
    line = _one_error_line(_cli(_run_args(small_set, tmp_path, "auto"), tmp_path))
    # the probe fails to join, or, on a loaded machine where importing Ray alone takes longer, its bound expires
    # (seen in a fresh-clone CI run): both are the one-line refusal naming the address
    assert "--ray-address auto:" in line and ("cannot join" in line or "no Ray cluster answered within" in line)


def test_garbage_through_the_cli_is_one_line(small_set, tmp_path):
    line = _one_error_line(_cli(_run_args(small_set, tmp_path, "garbage:::"), tmp_path))
    assert "garbage:::" in line


@pytest.mark.slow
def test_a_port_that_is_not_ray_is_one_line_within_the_bound(small_set, tmp_path):
    """Something answers TCP there but it is not a Ray cluster: the join is abandoned after CONNECT_TIMEOUT_S."""
    pytest.importorskip("ray")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept():  # accept and hold connections, never speak
        conns = []
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                pass
        for c in conns:
            c.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        line = _one_error_line(_cli(_run_args(small_set, tmp_path, f"127.0.0.1:{port}"), tmp_path))
    finally:
        stop.set()
        t.join()
        server.close()
    assert f"127.0.0.1:{port}" in line
