"""--engine ray: a cluster that fails for good during the extraction is one line; what was stored stays."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'brainclust[ray]')")

from brainclust.engines import ray_data  # noqa: E402
from brainclust.errors import EngineError  # noqa: E402
from brainclust.features.extractor import FeatureExtractor  # noqa: E402
from brainclust.io.scan import scan  # noqa: E402

from conftest import make_image  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray_data.connect(None)
    yield
    ray.shutdown()


def test_a_failing_embedding_is_one_engine_error(local_ray, tmp_path, monkeypatch, capfd):
    for i in range(12):
        make_image(tmp_path / "data" / f"i{i:02d}.png", "L", size=(16, 16), seed=i)
    records = scan(tmp_path / "data").records
    ex = FeatureExtractor(backbone="pixels@16", batch_size=4, cache_dir=str(tmp_path / "cache"), num_workers=0,
                          progress=False).fit()

    class Broken(ray_data.Embedder):  # defined here: Ray ships it by value
        def __call__(self, batch):
            raise FloatingPointError("pixels@16 produced non-finite features")

    monkeypatch.setattr(ray_data, "Embedder", Broken)
    with pytest.raises(EngineError) as err:
        ray_data.extract(ex, records)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--engine ray: the cluster failed during the extraction")
    assert "FloatingPointError: pixels@16 produced non-finite features" in msg and "rerun to resume" in msg
    assert "streaming_executor" not in capfd.readouterr().err  # Ray Data's INFO lines stay in its log file
    monkeypatch.undo()
    info = ray_data.extract(ex, records)  # the cluster is fine again: everything is computed
    assert info["computed"] == 12 and info["failed"] == 0
