"""SCAN clustering loss: neighbour consistency plus entropy.

Van Gansbeke et al., "SCAN: Learning to Classify Images without Labels",
ECCV 2020, eq 2.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainclust.errors import ParameterError


class SCANLoss(nn.Module):
    """Make an image and its mined neighbour fall in the same cluster, and use all clusters.

    With ``p = softmax(anchor_logits)`` and ``q = softmax(neighbor_logits)``::

        consistency = -mean_i log <p_i, q_i>
        entropy     = -sum_k pbar_k log pbar_k,   pbar = mean_i p_i
        loss        = consistency - entropy_weight * entropy

    The entropy term stops the trivial solution (everything in one cluster).

    Parameters
    ----------
    entropy_weight : float, default 2.0
        Weight of the entropy term, ``>= 0``.

    Shapes
    ------
    - anchor_logits: ``(B, K)`` cluster scores of the anchors.
    - neighbor_logits: ``(B, K)`` cluster scores of one mined neighbour of each anchor.
    - output: scalar tensor. :meth:`terms` returns ``(loss, consistency, entropy)``.
    """

    def __init__(self, entropy_weight: float = 2.0):
        super().__init__()
        if not entropy_weight >= 0:
            raise ParameterError(f"entropy_weight: must be >= 0, got {entropy_weight}")
        self.entropy_weight = float(entropy_weight)

    def terms(self, anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor):
        """``(loss, consistency, entropy)`` as scalar tensors."""
        if anchor_logits.ndim != 2 or anchor_logits.shape != neighbor_logits.shape:
            raise ParameterError(f"SCANLoss: expected two (B, K) tensors, got {tuple(anchor_logits.shape)} "
                                 f"and {tuple(neighbor_logits.shape)}")
        p = F.softmax(anchor_logits, dim=1)
        q = F.softmax(neighbor_logits, dim=1)
        dot = (p * q).sum(dim=1).clamp_min(1e-8)
        consistency = -torch.log(dot).mean()
        pbar = p.mean(dim=0).clamp_min(1e-8)
        entropy = -(pbar * torch.log(pbar)).sum()
        return consistency - self.entropy_weight * entropy, consistency, entropy

    def forward(self, anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor) -> torch.Tensor:
        return self.terms(anchor_logits, neighbor_logits)[0]
