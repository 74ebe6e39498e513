"""`finetune` mode on CPU at a tiny size: only the last blocks learn, and the saved model embeds the same."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from brainclust import scan  # noqa: E402
from brainclust.data.demo import make_demo_dataset  # noqa: E402
from brainclust.selfsup.finetune import FinetuneSSL  # noqa: E402


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=2, size=64)


@pytest.mark.slow
def test_finetune_trains_only_the_last_blocks_and_round_trips(demo_data, tmp_path):
    records = scan(demo_data).records[::3]  # 2 images, 1 epoch: correctness on CPU, not quality
    est = FinetuneSSL(components=("contrastive", "rotation", "joint", "refine"), n_clusters=2, epochs=1,
                      max_rounds=1, refine_epochs=1, batch_size=2, input_dim=3, hidden=16, embed_dim=4,
                      n_neighbors=1, random_state=0)
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
    loaded = FinetuneSSL.load(tmp_path)
    np.testing.assert_allclose(loaded.transform(records), est.embedding_, atol=1e-4)
