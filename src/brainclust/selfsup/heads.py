"""The small networks trained on top of (frozen or fine-tuned) backbone features.

One :class:`SSLNet` holds a trunk and the heads of the four components::

    x (d_in) -> trunk (MLP) -> h (embed_dim)   <- the embedding that is clustered
                               h -> projector (MLP) -> z   NT-Xent (SimCLR: the loss sees z, clustering uses h)
                               h -> rotation (linear, 4)   rotation pretext
                               h -> cluster (linear, k)    SCAN joint loss and self-labelling
"""

from __future__ import annotations

import torch
import torch.nn as nn


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """``Linear -> BatchNorm -> ReLU -> Linear``: ``(B, d_in) -> (B, d_out)``."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, d_out))


class SSLNet(nn.Module):
    """Trunk plus projection, rotation and cluster heads.

    Parameters
    ----------
    d_in : int
        Input feature size (after the input whitening).
    n_clusters : int
        Outputs of the cluster head.
    hidden : int, default 512
    embed_dim : int, default 64
    proj_dim : int, default 64

    Shapes
    ------
    ``forward(x)``: ``(B, d_in) -> (B, embed_dim)``.
    """

    def __init__(self, d_in: int, n_clusters: int, hidden: int = 512, embed_dim: int = 64, proj_dim: int = 64):
        super().__init__()
        self.trunk = mlp(d_in, hidden, embed_dim)
        self.projector = mlp(embed_dim, hidden, proj_dim)
        self.rotation = nn.Linear(embed_dim, 4)
        self.cluster = nn.Linear(embed_dim, n_clusters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def reset_cluster_head(self, generator: torch.Generator) -> None:
        """Re-initialise the cluster head (cluster ids change meaning between refinement rounds)."""
        w = self.cluster.weight
        bound = 1.0 / w.shape[1] ** 0.5
        with torch.no_grad():
            w.uniform_(-bound, bound, generator=generator)
            self.cluster.bias.uniform_(-bound, bound, generator=generator)
