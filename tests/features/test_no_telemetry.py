"""brainclust turns the usage telemetry of its runtimes off: ONNX Runtime (1.29+ queues events for upload on Linux
under ~/.cache/Microsoft), NNCF (the int8 calibration reports to Google Analytics) and Ray (usage stats). Each check
runs in a fresh
interpreter with its own HOME, without pytest loaded (NNCF turns its telemetry off by itself under pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ORT_SESSION = """
import numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
    None, {"x": np.ones((1, 2), np.float32)})
"""


def _fresh(code: str, home, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ORT_DISABLE_TELEMETRY", "NNCF_CI", "RAY_USAGE_STATS_ENABLED", "XDG_CACHE_HOME")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**clean, "HOME": str(home), **env},
                          capture_output=True, text=True, timeout=120, check=True)


def test_importing_brainclust_turns_onnxruntime_telemetry_off(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    for home in ("without", "with", "user"):
        (tmp_path / home).mkdir()
    _fresh(ORT_SESSION, tmp_path / "without")     # this build records usage events (1.32 does; older ones did not)
    recorded = (tmp_path / "without" / ".cache" / "Microsoft").exists()
    _fresh("import brainclust\n" + ORT_SESSION, tmp_path / "with")
    assert not (tmp_path / "with" / ".cache" / "Microsoft").exists(), f"recorded without brainclust: {recorded}"
    got = _fresh("import os, brainclust; print(os.environ['ORT_DISABLE_TELEMETRY'])", tmp_path / "user",
                 ORT_DISABLE_TELEMETRY="0")
    assert got.stdout.strip() == "0"


def test_importing_brainclust_turns_nncf_telemetry_off(tmp_path):
    pytest.importorskip("nncf")
    (tmp_path / "home").mkdir()
    probe = "import nncf.telemetry.wrapper as w; print(isinstance(w.telemetry, w.NNCFTelemetry))"
    assert _fresh(probe, tmp_path / "home").stdout.strip().splitlines()[-1] == "True"     # NNCF's default: on
    assert _fresh("import brainclust; " + probe, tmp_path / "home").stdout.strip().splitlines()[-1] == "False"


def test_importing_brainclust_turns_ray_usage_stats_off(tmp_path):
    pytest.importorskip("ray._common.usage.usage_lib")  # where Ray 2.60 keeps it
    (tmp_path / "home").mkdir()
    probe = "from ray._common.usage import usage_lib; print(usage_lib.usage_stats_enabled())"
    assert _fresh(probe, tmp_path / "home").stdout.strip().splitlines()[-1] == "True"      # Ray's default: on
    assert _fresh("import brainclust; " + probe, tmp_path / "home").stdout.strip().splitlines()[-1] == "False"
