"""Cross-entropy on confident pseudo-labels, for iterative refinement.

DeepCluster (Caron et al., ECCV 2018) retrains on cluster assignments;
SCAN's self-labelling step (Van Gansbeke et al., 2020) keeps only confident
ones and weighs classes by their inverse frequency so that large clusters do
not swallow small ones. This loss does both.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainclust.errors import ParameterError


class SelfLabelLoss(nn.Module):
    """Class-balanced cross-entropy; rows with target ``-1`` (not confident) are ignored.

    Each class ``c`` present among the kept rows gets the weight
    ``n_kept / (n_classes_present * n_c)``, and the loss is the weighted mean
    (``sum_i w_{y_i} * ce_i / sum_i w_{y_i}``). With ``balanced=False`` it is
    the plain mean cross-entropy of the kept rows. A batch with no kept row
    gives 0.

    Shapes
    ------
    - logits: ``(B, K)``.
    - target: ``(B,)`` integers in ``{-1, 0, ..., K-1}``.
    - output: scalar tensor.
    """

    def __init__(self, balanced: bool = True):
        super().__init__()
        self.balanced = bool(balanced)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ParameterError(f"SelfLabelLoss: expected logits (B, K) and target (B,), got "
                                 f"{tuple(logits.shape)} and {tuple(target.shape)}")
        keep = target >= 0
        if not bool(keep.any()):
            return logits.sum() * 0.0
        lg, y = logits[keep], target[keep].long()
        ce = F.cross_entropy(lg, y, reduction="none")
        if not self.balanced:
            return ce.mean()
        counts = torch.bincount(y, minlength=logits.shape[1]).to(lg.dtype)
        present = (counts > 0).sum()
        w = (len(y) / (present * counts.clamp_min(1)))[y]
        return (w * ce).sum() / w.sum()
