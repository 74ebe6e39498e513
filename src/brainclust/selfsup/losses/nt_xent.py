"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020; METHOD.md eqs 10-11.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from brainclust.errors import ParameterError


class NTXentLoss(nn.Module):
    """Contrastive loss over two augmented views of each image of a batch.

    For the ``2B`` embeddings of a batch, the positive of view ``i`` is the other
    view of the same image and the ``2B - 2`` views of the other images are the
    negatives::

        l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

    with ``sim`` the cosine similarity and ``t`` the temperature; the loss is
    the mean of ``l`` over all ``2B`` anchors.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``; smaller values weigh hard negatives more.

    Shapes
    ------
    - z_a: ``(B, D)`` embeddings of the first views, ``B >= 2``.
    - z_b: ``(B, D)`` embeddings of the second views; row ``i`` pairs with ``z_a[i]``.
    - output: scalar tensor.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if not temperature > 0:
            raise ParameterError(f"temperature: must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.ndim != 2 or z_a.shape != z_b.shape or z_a.shape[0] < 2:
            raise ParameterError(f"NTXentLoss: expected two (B, D) tensors with B >= 2, got "
                                 f"{tuple(z_a.shape)} and {tuple(z_b.shape)}")
        b = z_a.shape[0]
        z = F.normalize(torch.cat([z_a, z_b]), dim=1)
        logits = z @ z.T / self.temperature
        logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
        return F.cross_entropy(logits, target)
