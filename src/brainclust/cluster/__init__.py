"""Embeddings to clusters: PCA (:mod:`.reduce`), the clustering methods and the depth-10 tree
(:mod:`.methods`), the choice of k (:mod:`.kselect`) and the scores (:mod:`.scores`)."""

from brainclust.cluster.methods import METHODS, Clusterer
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.scores import score

__all__ = ["METHODS", "Clusterer", "PCAReducer", "score"]
