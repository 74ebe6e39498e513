"""The Ray Data engine in local mode gives the local engine's features and assignments, and survives a dying actor."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'brainclust[ray]')")
pytestmark = pytest.mark.slow  # a local Ray cluster

from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.engines import ray_data  # noqa: E402
from brainclust.pipeline import RunConfig, run  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray_data.connect(None)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    root = make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=6, size=64, random_state=0)
    (root / "axial" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def dying_once(marker: str):
    """An embedding actor class whose first instance to find ``marker`` missing creates it and dies.

    Defined in a function, so Ray ships it by value to its workers (fault injection from the test alone).
    """
    class DyingOnce(ray_data.Embedder):
        def __call__(self, batch):
            if not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(str(os.getpid()))
                os._exit(1)  # an actor that dies mid-run
            return super().__call__(batch)

    return DyingOnce


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "pixels@32"])
def test_ray_engine_equals_local_engine(local_ray, demo_set, tmp_path, backbone, monkeypatch):
    cfg = RunConfig(backbone=backbone, k=3, labels_from_folders=True, progress=False)
    local = run(demo_set, tmp_path / "local", cfg, cache_dir=str(tmp_path / "cache_local"))
    marker = tmp_path / "actor-died-once"
    monkeypatch.setattr(ray_data, "Embedder", dying_once(str(marker)))
    remote = run(demo_set, tmp_path / "ray", cfg, cache_dir=str(tmp_path / "cache_ray"), engine="ray")
    assert marker.exists(), "the injected actor failure did not happen"
    np.testing.assert_allclose(remote.features, local.features, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "ray" / "assignments.csv").read_bytes() == (tmp_path / "local" / "assignments.csv").read_bytes()
    # the broken file is skipped with the same reason by both engines
    assert remote.skipped == local.skipped and any("broken.jpg" in s["path"] for s in remote.skipped)
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    eng = manifest["engine"]
    assert eng["engine"] == "ray" and eng["nodes"] >= 1 and eng["cpus"] >= 1 and eng["actors"] >= 1
    assert eng["computed"] == len(local.records)
    # the Ray pass computed every feature (the local pass then read them back): the run's misses, as locally
    assert (manifest["cache"]["hits"], manifest["cache"]["misses"]) == (0, eng["computed"])
    assert manifest["cache"]["misses"] == json.loads((tmp_path / "local" / "manifest.json").read_text())["cache"][
        "misses"]


def test_rerun_computes_nothing_new(local_ray, demo_set, tmp_path):
    cfg = RunConfig(backbone="pixels@32", k=3, progress=False, cache_dir=str(tmp_path / "cache"))
    run(demo_set, None, cfg, engine="ray")
    again = run(demo_set, None, cfg, engine="ray")
    assert again.manifest["engine"]["computed"] == 0
    assert again.manifest["cache"]["misses"] == 0 and again.manifest["cache"]["hits"] == len(again.records)


def test_names_that_are_not_utf8_travel_through_ray():
    from brainclust.io.scan import ImageRecord

    rec = ImageRecord(path="a/\udcff\udcfe\r.png", abspath="/x/a/\udcff\udcfe\r.png", name="\udcff\udcfe\r.png",
                      type="png", size=3, width=2, height=2, sha256="ab" * 32, label="a", frame="")
    rows = ray_data.rows_of([rec])
    batch = {k: np.asarray([v], dtype=object) for k, v in rows[0].items()}
    assert ray_data.records_of(batch) == [rec]


def test_two_stage_assignment_pass_on_ray_equals_local(local_ray, monkeypatch):
    from brainclust.cluster.methods import Clusterer

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 12))
    X = np.repeat(centres, 80, axis=0) + 0.3 * rng.normal(size=(480, 12))
    monkeypatch.setattr(ray_data, "ASSIGN_CHUNK", 100)  # several tasks, the last one short
    local = Clusterer(n_clusters=6, random_state=0, exact_max=100, n_micro=40).fit(X)
    remote = Clusterer(n_clusters=6, random_state=0, exact_max=100, n_micro=40).fit(
        X, assign_all=ray_data.nearest_on_ray)
    assert local.micro_of_ is not None  # the two-stage path ran
    np.testing.assert_array_equal(remote.micro_of_, local.micro_of_)
    np.testing.assert_array_equal(remote.labels_, local.labels_)
    np.testing.assert_array_equal(remote.levels_, local.levels_)


def test_a_local_ray_keeps_token_authentication_without_rays_notice(local_ray):
    """Ray's warning that a local cluster uses token authentication ("Set RAY_AUTH_MODE=disabled to opt out") is
    advice to a cluster's operator: a local Ray that brainclust starts does not print it, even without -q."""
    import logging
    import os

    assert os.environ.get("RAY_AUTH_MODE", "token") == "token"  # the default kept, not switched off
    assert not logging.getLogger(ray_data.RAY_AUTH_LOGGER).isEnabledFor(logging.WARNING)
