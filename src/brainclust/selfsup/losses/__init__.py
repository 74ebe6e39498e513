"""Losses of the self-supervised strategy, one ``nn.Module`` per file (as in lightly).

* :class:`NTXentLoss` - contrastive, SimCLR (METHOD.md eqs 10-11);
* :class:`RotationLoss` - 4-way rotation pretext, cross-entropy (eqs 12-14);
* :class:`SCANLoss` - neighbour consistency plus entropy (joint clustering objective);
* :class:`SelfLabelLoss` - class-balanced cross-entropy on confident pseudo-labels (refinement).
"""

from brainclust.selfsup.losses.nt_xent import NTXentLoss
from brainclust.selfsup.losses.rotation import RotationLoss
from brainclust.selfsup.losses.scan import SCANLoss
from brainclust.selfsup.losses.self_label import SelfLabelLoss

__all__ = ["NTXentLoss", "RotationLoss", "SCANLoss", "SelfLabelLoss"]
