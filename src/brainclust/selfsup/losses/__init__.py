"""Losses of the self-supervised strategy, one ``nn.Module`` per file (as in lightly).

* :class:`NTXentLoss` - contrastive, SimCLR (METHOD.md eqs 10-11);
* :class:`RotationLoss` - 4-way rotation pretext, cross-entropy (eqs 12-14);
* :class:`SCANLoss` - neighbour consistency plus entropy (joint clustering objective);
* :class:`SelfLabelLoss` - class-balanced cross-entropy on confident pseudo-labels (refinement).
"""

from .nt_xent import NTXentLoss
from .rotation import RotationLoss
from .scan import SCANLoss
from .self_label import SelfLabelLoss

__all__ = ["NTXentLoss", "RotationLoss", "SCANLoss", "SelfLabelLoss"]
