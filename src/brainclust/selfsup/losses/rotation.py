"""Rotation-prediction pretext loss (Gidaris et al., ICLR 2018; METHOD.md eqs 12-14)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainclust.errors import ParameterError

#: Angles of the pretext task, in degrees; class ``r`` is ``ANGLES[r]``.
ANGLES = (0, 90, 180, 270)


class RotationLoss(nn.Module):
    """Cross-entropy between the predicted distribution over the four angles and the true angle.

    ``p = softmax(logits)`` (eq 13) and ``L = -mean_i log p_i[r_i]`` (eq 14).

    Shapes
    ------
    - logits: ``(B, 4)`` unnormalised scores for 0, 90, 180 and 270 degrees.
    - target: ``(B,)`` integer class in ``{0, 1, 2, 3}``.
    - output: scalar tensor.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != len(ANGLES) or target.shape != logits.shape[:1]:
            raise ParameterError(f"RotationLoss: expected logits (B, 4) and target (B,), got "
                                 f"{tuple(logits.shape)} and {tuple(target.shape)}")
        return F.cross_entropy(logits, target.long())

    @staticmethod
    def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
        """Fraction of rows whose most probable angle is the true one."""
        return float((logits.argmax(dim=1) == target).float().mean())
