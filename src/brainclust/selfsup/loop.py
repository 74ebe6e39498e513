"""The training loop of ``head`` mode: :class:`CachedViews` (the inputs) and :func:`train_head`."""

from __future__ import annotations

from collections.abc import Sequence

from brainclust.progress import bar
from brainclust.selfsup.common import cosine_neighbors


class CachedViews:
    """Training inputs in ``head`` mode: whitened features of each view, as tensors.

    ``A``: ``(n_appearance_views, n, d)``; ``R``: ``(4, n, d)`` or ``None``.
    """

    trainable: tuple = ()

    def __init__(self, A, R):
        self.A, self.R = A, R
        self.n = A.shape[1]
        self.has_rotation = R is not None

    def base(self):
        """``(n, d)`` mean input over the appearance views (where SCAN mines neighbours without a pretext)."""
        return self.A.mean(0)

    def pair(self, idx, gen):
        """Two different appearance views of each image in ``idx``."""
        import torch

        na = self.A.shape[0]
        va = torch.randint(na, (len(idx),), generator=gen)
        vb = (va + torch.randint(1, na, (len(idx),), generator=gen)) % na if na > 1 else va
        return self.A[va, idx], self.A[vb, idx]

    def one(self, idx, gen):
        """One random appearance view of each image."""
        import torch

        return self.A[torch.randint(self.A.shape[0], (len(idx),), generator=gen), idx]

    def rotated(self, idx, gen):
        """``(x, r)``: the features of each image rotated by ``90 * r`` degrees, ``r`` random."""
        import torch

        r = torch.randint(4, (len(idx),), generator=gen)
        return self.R[r, idx], r

    def embed(self, net, tta: bool):
        """``(n, embed_dim)`` normalised embedding, averaged over appearance views when ``tta``."""
        import torch
        import torch.nn.functional as F

        net.eval()
        with torch.no_grad():
            views = self.A if tta else self.A[:1]
            h = torch.stack([F.normalize(net(v), dim=1) for v in views]).mean(0)
        net.train()
        return F.normalize(h, dim=1)


def train_head(net, source, components: Sequence[str], epochs: int, gen, *, batch_size: int = 256,
               lr: float = 1e-3, weight_decay: float = 1e-4, temperature: float = 0.5,
               entropy_weight: float = 2.0, n_neighbors: int = 20, tta: bool = True,
               targets=None, neighbors=None, history: dict | None = None, desc: str = "ssl training") -> dict:
    """Train ``net`` (in place) on ``source`` with the losses of ``components``.

    ``targets`` (``(n,)`` long, ``-1`` = ignore) switches on the self-labelling
    loss of refinement. ``neighbors`` (``(n, k)``) are SCAN's mined neighbours;
    with ``joint`` and none given they are mined here (see the module doc).
    ``desc`` labels the progress bar (which head, which round), followed by the epoch.
    Returns ``history``: per loss term, the mean over each epoch.
    """
    import torch

    from brainclust.selfsup.losses import NTXentLoss, RotationLoss, SCANLoss, SelfLabelLoss

    history = {} if history is None else history
    params = list(net.parameters()) + [p for p in source.trainable]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ntx, rot, scan, selflab = NTXentLoss(temperature), RotationLoss(), SCANLoss(entropy_weight), SelfLabelLoss()
    pretext = [c for c in ("contrastive", "rotation") if c in components
               and (c != "rotation" or source.has_rotation)]
    joint = "joint" in components and targets is None
    warmup = epochs // 2 if (joint and pretext and neighbors is None) else 0
    n = source.n
    bs = max(2, min(batch_size, n))
    k_nb = max(1, min(n_neighbors, n - 1))
    if joint and neighbors is None and not pretext:
        neighbors = cosine_neighbors(source.base(), k_nb)
    net.train()
    starts = list(range(0, n, bs))
    if len(starts) > 1 and n - starts[-1] < 2:  # a last batch of one image joins the one before
        starts.pop()
    pbar = bar(epochs * len(starts), desc, unit="batch")
    for epoch in range(epochs):
        pbar.set_description(f"{desc}, epoch {epoch + 1}/{epochs}", refresh=False)
        if joint and neighbors is None and epoch == warmup:
            neighbors = cosine_neighbors(source.embed(net, tta), k_nb)
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        for j, s in enumerate(starts):
            idx = perm[s:starts[j + 1]] if j + 1 < len(starts) else perm[s:]
            terms = {}
            if "contrastive" in pretext:
                xa, xb = source.pair(idx, gen)
                terms["contrastive"] = ntx(net.projector(net(xa)), net.projector(net(xb)))
            if "rotation" in pretext:
                x, r = source.rotated(idx, gen)
                terms["rotation"] = rot(net.rotation(net(x)), r)
            if joint and neighbors is not None and epoch >= warmup:
                nb = neighbors[idx, torch.randint(neighbors.shape[1], (len(idx),), generator=gen)].cpu()
                terms["joint"] = scan(net.cluster(net(source.one(idx, gen))), net.cluster(net(source.one(nb, gen))))
            if targets is not None:
                logits = net.cluster(net(source.one(idx, gen)))
                terms["self_label"] = selflab(logits, targets[idx].to(logits.device))
            if not terms:
                break
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach())
            sums["total"] = sums.get("total", 0.0) + float(loss.detach())
            pbar.update(1)
        for key, v in sums.items():
            history.setdefault(key, []).append(v / len(starts))
    pbar.close()
    net.eval()
    return history
