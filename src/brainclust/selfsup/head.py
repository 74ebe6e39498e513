"""``head`` mode: the :class:`SelfSupervisedHead` estimator and its persistence.

:class:`SelfSupervisedHead` is a scikit-learn style estimator. Its input is a
dict ``view name -> (n_images, dim)`` of frozen backbone features (see
:mod:`brainclust.selfsup.views`); its output is the learned embedding that
the pipeline clusters.

What ``fit`` does:

1. **Input PCA.** PCA of the features of all the views used (stacked) to
   ``input_dim`` components, optionally (partly) whitened (``whiten_power``);
   the same map is applied to every view.
2. **Training** of ``n_heads`` independent :class:`~.heads.SSLNet` heads, each
   from its own seed, with the sum of the active losses (components):

   * ``contrastive``: NT-Xent between two different appearance views of each image;
   * ``rotation``: the features of the 0/90/180/270-degree rotated image are
     the input and the angle is the target;
   * ``joint``: SCAN's neighbour-consistency + entropy loss on the cluster head,
     trained together with the pretext losses. Neighbours are mined (cosine,
     ``n_neighbors``) from the head's own embedding after a pretext-only warm-up
     of half the epochs, or from the whitened input when no pretext loss is on.

3. **Consensus embedding.** Each head embeds an image as the mean of its
   L2-normalised embeddings over the appearance views (test-time
   augmentation, ``tta=True``); the heads' embeddings are normalised and
   concatenated (divided by ``sqrt(n_heads)``), so that the cosine similarity of
   two images is the mean of the heads' cosine similarities. This is the
   label-free way we stabilise the result across seeds.
4. ``refine``: see :mod:`brainclust.selfsup.refine`.

Determinism: each head's initial weights and mini-batches come from a
``torch.Generator`` seeded by ``random_state`` and the head's index, and the
training runs on one thread with deterministic algorithms, so the same
``random_state`` gives the same embedding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainclust.core.params import check_is_fitted
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_json
from brainclust.selfsup.common import (COMPONENTS, FORMAT_VERSION, input_pca, parse_components, seed_for,
                                      torch_determinism)
from brainclust.selfsup.loop import CachedViews, train_head
from brainclust.selfsup.refine import refine
from brainclust.selfsup.views import APPEARANCE_VIEWS, ROTATION_VIEWS, appearance, needed


class SelfSupervisedHead:
    """Self-supervised heads on frozen features of augmented views (``head`` mode).

    Parameters
    ----------
    components : sequence of str, default all four
        Any of ``contrastive``, ``rotation``, ``joint``, ``refine``.
    n_clusters : int, default 4
        Outputs of the cluster head (``joint``) and ``k`` of refinement.
    epochs : int, default 30
        Training epochs of each head.
    n_heads : int, default 3
        Independent heads whose embeddings form the consensus.
    input_dim : int, default 64
        Input PCA size (capped by the data).
    hidden, embed_dim : int, default 128 and 32
        Sizes of the small MLPs (chosen for speed on a shared 2-core CPU).
    temperature : float, default 0.5
        NT-Xent temperature.
    lr, weight_decay : float, default 1e-3 and 1e-4
        AdamW settings.
    batch_size : int, default 256
    n_neighbors : int, default 20
        Mined neighbours of SCAN.
    entropy_weight : float, default 2.0
        SCAN's entropy weight.
    max_rounds : int, default 5
        Cap on refinement rounds.
    refine_epochs : int or None, default None
        Epochs per refinement round (``None``: ``max(1, epochs // 3)``).
    confident_fraction : float, default 0.5
        Per cluster, the fraction of members nearest the centre used as self-labels.
    tol : float, default 0.98
        Refinement stops when the NMI between successive rounds reaches ``tol``.
    tta : bool, default True
        Average each head's embedding over the appearance views.
    whiten_power : float, default 0.0
        Input component ``i`` is divided by ``std_i ** whiten_power`` (then all by one
        constant, for unit mean variance): 1 is full PCA-whitening, 0 keeps the PCA
        geometry. Full whitening gives the many noise directions the same weight as
        the few that separate groups (it lowered the silhouette of the embedding).
    appearance_views : sequence of str, default ("identity", "hflip", "strong")
        The views whose features the contrastive loss treats as positives, the
        clustering losses as anchors and ``tta`` averages (``identity`` is always
        first; see :func:`~brainclust.selfsup.views.appearance`). Views that keep
        the image's layout (``hflip``, ``intensity``, ``noise``...) keep what
        position and size in the frame say about the acquisition; ``strong``
        (flip, affine, crop, intensity) teaches the head to ignore it.
    random_state : int, default 0

    Attributes
    ----------
    nets_ : list of SSLNet
    whiten_mean_, whiten_components_, whiten_scale_ : ndarray
        The input whitening.
    history_ : dict
        ``loss``: per term, the per-epoch mean over heads; ``refine``: the rounds.
    embedding_ : ndarray of shape (n_images, n_heads * embed_dim)
        Consensus embedding of the training images.
    views_ : list of str
        The views the heads need at :meth:`transform`.
    """

    def __init__(self, components: Sequence[str] = COMPONENTS, n_clusters: int = 4, epochs: int = 30,
                 n_heads: int = 3, input_dim: int = 64, hidden: int = 128, embed_dim: int = 32,
                 temperature: float = 0.5, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                 n_neighbors: int = 20, entropy_weight: float = 2.0, max_rounds: int = 5,
                 refine_epochs: int | None = None, confident_fraction: float = 0.5, tol: float = 0.98,
                 tta: bool = True, whiten_power: float = 0.0, appearance_views: Sequence[str] = APPEARANCE_VIEWS,
                 random_state: int = 0):
        self.components = components
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.n_heads = n_heads
        self.input_dim = input_dim
        self.hidden = hidden
        self.embed_dim = embed_dim
        self.temperature = temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_neighbors = n_neighbors
        self.entropy_weight = entropy_weight
        self.max_rounds = max_rounds
        self.refine_epochs = refine_epochs
        self.confident_fraction = confident_fraction
        self.tol = tol
        self.tta = tta
        self.whiten_power = whiten_power
        self.appearance_views = appearance_views
        self.random_state = random_state

    # -- helpers -----------------------------------------------------------------
    def _validate(self, views: dict) -> tuple[str, ...]:
        comps = parse_components(self.components)
        for name, lo in (("n_clusters", 1), ("epochs", 1), ("n_heads", 1), ("input_dim", 1), ("hidden", 1),
                         ("embed_dim", 1), ("batch_size", 2), ("n_neighbors", 1), ("max_rounds", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ParameterError(f"{name}: must be an integer >= {lo}, got {v!r}")
        if not 0 < self.confident_fraction <= 1:
            raise ParameterError(f"confident_fraction: must be in (0, 1], got {self.confident_fraction}")
        if not 0 <= self.whiten_power <= 1:
            raise ParameterError(f"whiten_power: must be in [0, 1], got {self.whiten_power}")
        if not 0 < self.tol <= 1:
            raise ParameterError(f"tol: must be in (0, 1], got {self.tol}")
        missing = [v for v in needed(comps, self.tta, appearance(self.appearance_views)) if v not in views]
        if missing:
            raise ParameterError(f"views: the self-supervised head needs the features of view '{missing[0]}'")
        n = len(views["identity"])
        if n < 2:
            raise ParameterError(f"self-supervised head needs at least 2 images, got {n}")
        if any(len(v) != n for v in views.values()):
            raise ParameterError("views: every view must have one row per image")
        return comps

    def _whiten(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.whiten_mean_) @ self.whiten_components_.T
                / self.whiten_scale_).astype(np.float32)

    def _source(self, views: dict) -> CachedViews:
        import torch

        app = [v for v in appearance(self.appearance_views) if v in self.views_]
        A = torch.from_numpy(np.stack([self._whiten(views[v]) for v in app]))
        R = None
        if all(v in views for v in ROTATION_VIEWS) and "rotation" in self.components_:
            R = torch.from_numpy(np.stack([self._whiten(views[v]) for v in ROTATION_VIEWS]))
        return CachedViews(A, R)

    def _new_net(self, m: int):
        import torch

        from brainclust.selfsup.heads import SSLNet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.random_state, "init", m))
            return SSLNet(self.d_in_, self.n_clusters, self.hidden, self.embed_dim, self.embed_dim)

    def consensus(self, source: CachedViews):
        """Concatenated, normalised embeddings of all heads: ``(n, n_heads * embed_dim)`` tensor."""
        import torch

        return torch.cat([source.embed(net, self.tta) for net in self.nets_], dim=1) / len(self.nets_) ** 0.5

    # -- estimator API ----------------------------------------------------------
    def fit(self, views: dict[str, np.ndarray], y=None) -> "SelfSupervisedHead":
        """Train on ``views`` (name -> ``(n_images, dim)`` features; ``identity`` required)."""
        import torch

        comps = self._validate(views)
        self.components_ = comps
        self.views_ = needed(comps, self.tta, appearance(self.appearance_views))
        # the input PCA sees every view the heads train on (the rotated ones too: fitted on the plain
        # images alone it would drop the directions that tell the rotations apart)
        X = np.concatenate([np.asarray(views[v], np.float64) for v in self.views_])
        self.whiten_mean_, self.whiten_components_, self.whiten_scale_ = input_pca(
            X, self.input_dim, self.whiten_power, random_state=self.random_state)
        self.d_in_ = len(self.whiten_components_)
        history: dict = {"loss": {}, "refine": []}
        with torch_determinism():
            source = self._source(views)
            self.nets_, per_head = [], []
            pretrain = [c for c in comps if c != "refine"]
            for m in range(self.n_heads):
                net = self._new_net(m)
                gen = torch.Generator().manual_seed(seed_for(self.random_state, "train", m))
                h = train_head(net, source, pretrain, self.epochs if pretrain else 0, gen, **self.train_kwargs(),
                               desc=f"ssl head {m + 1}/{self.n_heads}")
                self.nets_.append(net)
                per_head.append(h)
            history["loss"] = _mean_curves(per_head)
            if "rotation" in comps and source.R is not None:
                history["rotation_train_accuracy"] = self.rotation_accuracy(views)
            if "refine" in comps:
                history["refine"] = refine(self, source)
            self.embedding_ = self.consensus(source).numpy().astype(np.float64)
        self.history_ = history
        return self

    def train_kwargs(self) -> dict:
        return dict(batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                    temperature=self.temperature, entropy_weight=self.entropy_weight,
                    n_neighbors=self.n_neighbors, tta=self.tta)

    def transform(self, views: dict[str, np.ndarray]) -> np.ndarray:
        """Consensus embedding ``(n_images, n_heads * embed_dim)`` of new images' view features."""
        check_is_fitted(self, "nets_")
        missing = [v for v in self.views_ if v not in views]
        if missing:
            raise ParameterError(f"views: the trained head needs the features of view '{missing[0]}'")
        with torch_determinism():
            return self.consensus(self._source(views)).numpy().astype(np.float64)

    def fit_transform(self, views: dict[str, np.ndarray], y=None) -> np.ndarray:
        return self.fit(views).embedding_

    def rotation_accuracy(self, views: dict[str, np.ndarray]) -> float:
        """Mean accuracy of the heads' rotation classifiers on the four rotations of these images."""
        import torch

        Xs = [torch.from_numpy(self._whiten(views[v])) for v in ROTATION_VIEWS]
        accs = []
        with torch.no_grad():
            for net in self.nets_:
                net.eval()
                for r, x in enumerate(Xs):
                    accs.append(float((net.rotation(net(x)).argmax(1) == r).float().mean()))
        return float(np.mean(accs))

    # -- persistence (safetensors + JSON, no pickle) ----------------------------
    def params(self) -> dict:
        keys = ("components", "n_clusters", "epochs", "n_heads", "input_dim", "hidden", "embed_dim", "temperature",
                "lr", "weight_decay", "batch_size", "n_neighbors", "entropy_weight", "max_rounds",
                "refine_epochs", "confident_fraction", "tol", "tta", "whiten_power", "appearance_views",
                "random_state")
        out = {k: getattr(self, k) for k in keys}
        out["components"] = list(parse_components(self.components))
        out["appearance_views"] = list(appearance(self.appearance_views))
        return out

    _WHITEN = ("mean", "components", "scale")

    def _whiten_tensors(self) -> dict:
        """The input whitening as float64 tensors named ``whiten.<part>`` (for safetensors)."""
        import torch

        return {f"whiten.{p}": torch.from_numpy(np.ascontiguousarray(getattr(self, f"whiten_{p}_"), np.float64))
                for p in self._WHITEN}

    def _set_whiten(self, tensors: dict) -> None:
        """Inverse of :meth:`_whiten_tensors`."""
        for p in self._WHITEN:
            setattr(self, f"whiten_{p}_", tensors[f"whiten.{p}"].numpy())

    def save(self, folder, stem: str = "ssl_head") -> None:
        """Write ``{stem}.safetensors`` (weights, whitening) and ``{stem}.json`` (settings) to ``folder``."""
        from safetensors.torch import save

        tensors = self._whiten_tensors()
        for m, net in enumerate(self.nets_):
            for k, v in net.state_dict().items():
                tensors[f"net{m}.{k}"] = v.detach().contiguous().clone()
        folder = Path(folder)
        atomic_write_bytes(folder / f"{stem}.safetensors", save(tensors))
        atomic_write_json(folder / f"{stem}.json", {"format": FORMAT_VERSION, "params": self.params(),
                                                     "d_in": self.d_in_, "views": self.views_})

    @classmethod
    def load(cls, folder, stem: str = "ssl_head") -> "SelfSupervisedHead":
        """Read what :meth:`save` wrote; raise :class:`ModelFileError` if missing or damaged."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            info = json.loads((folder / f"{stem}.json").read_text())
            tensors = load_file(str(folder / f"{stem}.safetensors"))
            self = cls(**info["params"])
            self.components_ = parse_components(self.components)
            self.views_, self.d_in_ = list(info["views"]), int(info["d_in"])
            self._set_whiten(tensors)
            self.nets_ = []
            for m in range(self.n_heads):
                net = self._new_net(m)
                prefix = f"net{m}."
                net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
                net.eval()
                self.nets_.append(net)
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, SafetensorError) as exc:
            raise ModelFileError(f"self-supervised head in '{folder}' is missing or damaged "
                                 f"({type(exc).__name__}: {exc})") from None
        return self


def _mean_curves(per_head: list[dict]) -> dict:
    """Per loss term, the per-epoch mean over heads (rounded for the manifest)."""
    out = {}
    for key in sorted({k for h in per_head for k in h}):
        curves = [h[key] for h in per_head if key in h]
        length = min(len(c) for c in curves)
        out[key] = [round(float(np.mean([c[e] for c in curves])), 5) for e in range(length)]
    return out
