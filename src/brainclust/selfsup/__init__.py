"""The self-supervised strategy (METHOD.md sections 5-8): a stage between features and PCA.

* :mod:`.losses` - NT-Xent, rotation, SCAN and self-labelling losses, one per file;
* :mod:`.heads` - the trunk and heads trained on top of the backbone;
* :mod:`.views` - the augmented views and their cached features;
* :mod:`.train` - ``head`` mode: :class:`SelfSupervisedHead` on cached view features;
* :mod:`.refine` - iterative refinement (cluster, self-label, retrain, re-cluster);
* :mod:`.finetune` - ``finetune`` mode: the backbone's last blocks are trained too;
* :mod:`.stage` - what :func:`brainclust.pipeline.run` calls;
* :mod:`.ablation` - the multi-seed ablation behind ``brainclust ablation``.

Heavy imports (torch) happen inside functions.
"""

from .train import COMPONENTS, SelfSupervisedHead, parse_components

__all__ = ["COMPONENTS", "SelfSupervisedHead", "parse_components"]
