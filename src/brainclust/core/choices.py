"""The values of the run settings that the stages own and the command line lists (``--method``, ``--reduce``...).

They live here, in a module that imports nothing, so that the options can be declared
(:class:`brainclust.model.config.RunConfig`) without importing the stages and scikit-learn, pandas and SciPy
with them: ``brainclust --help`` stays instant. Each stage imports its own from here and exports it as before.
"""

#: ``--method`` (the order of :data:`brainclust.cluster.methods.CLUSTERERS`).
METHODS = ("hierarchical", "kmeans", "gmm", "dbscan", "spectral")
#: ``--pca``'s default. Capped to what the data allow with a debug line (a small set, or the 32 features of
#: ``--backbone histogram``, is no mistake of the user's); a value the user chose is capped with a warning.
DEFAULT_COMPONENTS = 50
#: ``--reduce`` (:mod:`brainclust.cluster.manifold`).
REDUCTIONS = ("pca", "umap", "pca+umap")
#: ``--outliers`` (:mod:`brainclust.cluster.outliers`).
OUTLIER_MODES = ("off", "auto")
#: ``--remove-rule`` (:mod:`brainclust.cluster.steer`).
REMOVE_RULES = ("center", "project")
#: ``--ssl-mode`` (:mod:`brainclust.selfsup.stage`).
SSL_MODES = ("head", "finetune")
#: ``--fusion-norm`` (:mod:`brainclust.features.fusion`).
NORMS = ("image", "block")
#: ``--backbone A+B``: the separator of fused backbones (:mod:`brainclust.features.fusion`).
SEPARATOR = "+"


def is_fused(name: str) -> bool:
    """Whether a ``--backbone`` value asks for fusion (contains ``+``)."""
    return SEPARATOR in str(name)
