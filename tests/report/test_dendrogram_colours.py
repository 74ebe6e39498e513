"""The dendrogram is coloured by cluster for every tree: exact, two-stage (leaves are micro-clusters), and with
outliers set apart (leaves are the inliers); the report reads each leaf's cluster from the saved model."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from brainclust.cluster.hierarchical import tree_leaf_labels
from brainclust.cluster.methods import load_clusterer, make_clusterer
from brainclust.cluster.outliers import OutlierRule
from brainclust.report.figures import dendrogram_figure

COLOURS = {0: "#1f77b4", 1: "#ff7f0e", 2: "#2ca02c", 3: "#d62728"}


def _blobs(n_per=60, seed=0):
    rng = np.random.default_rng(seed)
    centres = 10 * np.eye(10)[:4] + 3  # four directions (cosine geometry)
    X = np.concatenate([c + rng.normal(0, 1, (n_per, 10)) for c in centres])
    odd = 3 + 10 * np.eye(10)[6:9] + rng.normal(0, 1, (3, 10))  # three images in directions of their own
    return np.concatenate([X, odd])


def _link_colours(fig) -> set[str]:
    return {to_hex(c) for coll in fig.axes[0].collections for c in coll.get_colors()}


@pytest.mark.parametrize("kind", ["exact", "two-stage", "outliers"])
def test_links_take_their_clusters_colours(kind, tmp_path):
    X = _blobs()
    if kind == "outliers":
        model = OutlierRule(make_clusterer("hierarchical", n_clusters=4)).fit(X)
        assert (model.labels_ == -1).any()
    else:
        model = make_clusterer("hierarchical", n_clusters=4, random_state=0,
                               exact_max=100 if kind == "two-stage" else 20000, n_micro=40).fit(X)
    leaves = model.leaf_labels()
    assert len(leaves) == len(model.tree_) + 1  # one cluster per leaf of the tree
    colours = _link_colours(dendrogram_figure(model.tree_, leaves, 4, COLOURS))
    assert len(colours & set(COLOURS.values())) >= 3  # the clusters are coloured, not all black
    # the report reads the same leaf clusters back from the saved file
    model.save(tmp_path / "cluster.npz")
    saved = load_clusterer(tmp_path / "cluster.npz")
    np.testing.assert_array_equal(tree_leaf_labels(saved.labels_, saved.micro_of_), leaves)
