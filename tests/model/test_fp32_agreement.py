"""``--agreement``: a run on another path is fitted again on fp32 features and compared (issue 26)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brainclust.cli import main
from brainclust.errors import ParameterError
from brainclust.model.config import RunConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two planted groups: bright discs and dark squares, each with its own noise."""
    root = tmp_path_factory.mktemp("agree") / "data"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for i in range(12):
        if i % 2:
            a = np.where((yy - 24) ** 2 + (xx - 24) ** 2 < 15 ** 2, 200, 20)
        else:
            a = np.where((abs(yy - 24) < 10) & (abs(xx - 24) < 10), 90, 230)
        a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
        (root / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / f"g{i % 2}" / f"im{i}.png")
    return root


def test_an_int8_run_reports_its_agreement_with_fp32(data, tmp_path, capsys):
    """int8 (OpenVINO, any x86 CPU) against a second, fp32 extraction: close but not identical features. (An fp32
    run on another runtime compared with its own cache entry and always said 1.000: refused now.)"""
    out = tmp_path / "out"
    code = main(["run", str(data), "--out", str(out), "--k", "2", "--backbone", "efficientnet_lite0", "--runtime",
                 "openvino", "--precision", "int8", "--calibration-size", "8", "--agreement", "--workers", "0",
                 "--pca", "4", "--no-report", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    a = json.loads((out / "metrics.json").read_text())["agreement"]
    assert a["n"] == 12 and a["reference"].startswith("fp32")
    assert 0.5 < a["cosine_min"] <= a["cosine_mean"] < 0.99999  # a real second extraction, not its own entry
    assert -1 <= a["ari"] <= 1 and -1 <= a["ari_level_10"] <= 1
    assert "agreement with fp32: feature cosine" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["agreement"] is True and "agreement" in manifest["timings_s"]


@pytest.mark.parametrize("settings, match", [({"agreement": True}, "fp32 with itself"),
                                             ({"agreement": True, "runtime": "onnx", "precision": "fp32"},
                                              "fp32 with itself"),
                                             ({"agreement": True, "runtime": "openvino", "precision": "fp32"},
                                              "fp32 with itself"),  # it read back its own cache entry: ARI 1.000
                                             ({"agreement": True, "precision": "bf16", "auto": True}, "--auto"),
                                             ({"agreement": True, "precision": "int8", "backbone": "pixels@32"},
                                              "runs no network")])
def test_agreement_is_refused_where_it_would_compare_nothing(settings, match, monkeypatch):
    from brainclust.features import runtime

    # bf16 is refused earlier on a CPU without native bf16 (before the scan); the rule under test comes after
    monkeypatch.setattr(runtime, "bf16_supported", lambda device="cpu": True)
    with pytest.raises(ParameterError, match=match):
        RunConfig(**settings).validate()


def test_the_cli_refuses_it_in_one_line(data, tmp_path, capsys):
    assert main(["run", str(data), "--out", str(tmp_path / "o"), "--agreement"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--agreement" in err[0]
