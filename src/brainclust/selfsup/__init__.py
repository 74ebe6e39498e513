"""The self-supervised strategy (METHOD.md sections 5-8): a stage between features and PCA.

* :mod:`.losses` - NT-Xent, rotation, SCAN and self-labelling losses, one per file;
* :mod:`.heads` - the trunk and heads trained on top of the backbone;
* :mod:`.views` - the augmented views and their cached features;
* :mod:`.common` - components, seeding, determinism, neighbours, the input PCA;
* :mod:`.loop` - the training loop on cached view features;
* :mod:`.head` - ``head`` mode: the :class:`SelfSupervisedHead` estimator and its persistence;
* :mod:`.refine` - iterative refinement (cluster, self-label, retrain, re-cluster);
* :mod:`.finetune` - ``finetune`` mode: the backbone's last blocks are trained too;
* :mod:`.stage` - what :func:`brainclust.pipeline.run` calls.

The multi-seed ablation behind ``brainclust ablation`` is :mod:`brainclust.analysis.ablation`.

Heavy imports (torch) happen inside functions.
"""

from brainclust.selfsup.common import COMPONENTS, parse_components
from brainclust.selfsup.head import SelfSupervisedHead

__all__ = ["COMPONENTS", "SelfSupervisedHead", "parse_components"]
