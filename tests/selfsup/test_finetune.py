"""`finetune` mode on CPU at a tiny size: only the last blocks learn, and the saved model embeds the same."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from brainclust import scan  # noqa: E402
from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.features import backbones  # noqa: E402
from brainclust.selfsup.finetune import FinetuneSSL  # noqa: E402


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=2, size=64)


@pytest.mark.slow
def test_finetune_trains_only_the_last_blocks_and_round_trips(demo_data, tmp_path):
    """... and the saved model names its weights file without its path and loads without it (every tensor of the
    backbone is saved; the model's extractor checks the file by SHA-256)."""
    records = scan(demo_data).records[::3]  # 2 images, 1 epoch: correctness on CPU, not quality
    own = backbones.REGISTRY["efficientnet_lite0"].default_weights()
    weights = tmp_path / "w" / "lite0-copy.pth"
    weights.parent.mkdir()
    shutil.copy(own, weights)
    est = FinetuneSSL(components=("contrastive", "rotation", "joint", "refine"), n_clusters=2, epochs=1,
                      max_rounds=1, refine_epochs=1, batch_size=2, input_dim=3, hidden=16, embed_dim=4,
                      n_neighbors=1, random_state=0, weights=str(weights))
    est._prepare()
    initial = {k: v.clone() for k, v in est.backbone_.state_dict().items()}
    est.fit(records)
    assert est.embedding_.shape == (2, 4) and np.all(np.isfinite(est.embedding_))
    assert {"contrastive", "rotation"} <= set(est.history_["loss"])
    assert est.history_["refine"][-1]["round"] == 1
    after = est.backbone_.state_dict()
    changed = {k for k in initial if not np.array_equal(initial[k].numpy(), after[k].numpy())}
    assert changed, "fine-tuning changed no backbone weight"
    assert all(k.startswith(("net._blocks.14", "net._blocks.15", "net._conv_head", "net._bn1")) for k in changed)
    est.save(tmp_path)
    saved = json.loads((tmp_path / "ssl_finetune.json").read_text())
    assert saved["params"]["weights"] == "lite0-copy.pth" and str(tmp_path) not in json.dumps(saved)
    weights.unlink()
    loaded = FinetuneSSL.load(tmp_path)
    np.testing.assert_allclose(loaded.transform(records), est.embedding_, atol=1e-4)
