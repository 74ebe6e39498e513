"""``finetune`` mode: train the backbone's last blocks together with the head, end to end.

Meant for a GPU; runs correctly (slowly) on CPU at small sizes. Differences
from ``head`` mode (:mod:`brainclust.selfsup.head`):

* images are decoded and pre-processed once into memory; the augmented views
  (``strong`` for the contrastive and clustering losses, the exact 90-degree
  rotations for the pretext task) are drawn afresh at every step, so the
  backbone sees new views each epoch;
* the last ``trainable_blocks`` blocks of the backbone (EfficientNet-Lite0:
  the last MBConv blocks plus the head convolution; Inception V3: the last
  ``Mixed_7*`` modules) receive gradients; the rest stays frozen, and batch
  norm keeps its ImageNet statistics (the backbone stays in eval mode, which is
  stable with small batches);
* one head (``n_heads = 1``) and no test-time averaging.

The input PCA is fitted once on the features of the frozen backbone and then
kept fixed, so the head sees inputs on the same scale as in ``head`` mode.
The whole fine-tuned backbone is saved (safetensors) with the head so that
``predict`` embeds new images the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainclust.core.params import check_is_fitted
from brainclust.errors import InputError, ModelFileError
from brainclust.features import augment, backbones
from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input
from brainclust.io.atomic import atomic_write_bytes, atomic_write_json
from brainclust.io.scan import load_record
from brainclust.selfsup.common import FORMAT_VERSION, input_pca, parse_components, seed_for, torch_determinism
from brainclust.selfsup.head import SelfSupervisedHead
from brainclust.selfsup.loop import train_head

log = logging.getLogger(__name__)


def trainable_modules(backbone, spec_name: str, n_blocks: int) -> list:
    """The sub-modules of ``backbone`` (as built by :mod:`brainclust.features.backbones`) that are fine-tuned."""
    if spec_name == "efficientnet_lite0":
        net = backbone.net
        return list(net._blocks[-n_blocks:]) + [net._conv_head, net._bn1]
    if spec_name == "inception_v3":
        return [getattr(backbone, n) for n in ("Mixed_7a", "Mixed_7b", "Mixed_7c")[-n_blocks:]]
    raise InputError(f"--ssl-mode finetune: backbone '{spec_name}' has no trainable blocks; "
                     "use efficientnet_lite0 or inception_v3")


class ImageViews:
    """Training inputs in ``finetune`` mode: images in memory, views drawn at each call."""

    def __init__(self, images: np.ndarray, keys: Sequence[str], backbone, whiten, spec, device: str,
                 trainable: list, gen_seed: int, batch_size: int = 32):
        self.images, self.keys, self.backbone, self.whiten, self.spec = images, list(keys), backbone, whiten, spec
        self.device, self.trainable = device, trainable
        self.n = len(images)
        self.calls = 0
        self.has_rotation = True
        self.seed = gen_seed
        self.batch_size = batch_size

    def base(self):
        """``(n, d)`` whitened features of the plain images (no gradient)."""
        import torch

        with torch.no_grad():
            return torch.cat([self._features(list(self.images[s:s + self.batch_size]))
                              for s in range(0, self.n, self.batch_size)]).cpu()

    def _features(self, imgs: list[np.ndarray]):
        import torch

        x = torch.from_numpy(np.stack([to_model_input(im, self.spec.mean, self.spec.std) for im in imgs]))
        f = self.backbone(x.to(self.device)).float()
        return self.whiten(f)

    def _view(self, idx, name: str):
        self.calls += 1
        return [augment.apply(name, self.images[i], self.keys[i], seed_for(self.seed, self.calls, int(i)) % 2**31)
                for i in idx.tolist()]

    def pair(self, idx, gen):
        return self._features(self._view(idx, "strong")), self._features(self._view(idx, "strong"))

    def one(self, idx, gen):
        return self._features(self._view(idx, "strong"))

    def rotated(self, idx, gen):
        import torch

        r = torch.randint(4, (len(idx),), generator=gen)
        imgs = [np.ascontiguousarray(np.rot90(self.images[i], int(k))) for i, k in zip(idx.tolist(), r.tolist())]
        return self._features(imgs), r.to(self.device)

    def embed(self, net, tta: bool = False):
        import torch
        import torch.nn.functional as F

        net.eval()
        out = []
        with torch.no_grad():
            for s in range(0, self.n, self.batch_size):
                out.append(F.normalize(net(self._features(list(self.images[s:s + self.batch_size]))), dim=1))
        net.train()
        return torch.cat(out).cpu()


class FinetuneSSL(SelfSupervisedHead):
    """Self-supervised fine-tuning of the backbone's last blocks plus one head.

    Parameters are those of :class:`~brainclust.selfsup.head.SelfSupervisedHead`
    (``n_heads`` and ``tta`` are ignored), plus:

    backbone : str, default "efficientnet_lite0"
    weights : str or None
        As for :class:`~brainclust.features.extractor.FeatureExtractor`.
    trainable_blocks : int, default 2
    device : str, default "cpu"
    clip_percentiles : tuple or None, default (0.5, 99.5)
    """

    def __init__(self, components: Sequence[str] = ("contrastive", "rotation", "joint", "refine"),
                 n_clusters: int = 4, epochs: int = 10, backbone: str = "efficientnet_lite0",
                 weights: str | None = None, trainable_blocks: int = 2, device: str = "cpu",
                 clip_percentiles: tuple[float, float] | None = (0.5, 99.5), lr: float = 1e-4,
                 batch_size: int = 32, input_dim: int = 128, hidden: int = 512, embed_dim: int = 64,
                 temperature: float = 0.5, weight_decay: float = 1e-4, n_neighbors: int = 20,
                 entropy_weight: float = 2.0, max_rounds: int = 3, refine_epochs: int | None = None,
                 confident_fraction: float = 0.5, tol: float = 0.98, whiten_power: float = 0.0,
                 random_state: int = 0):
        super().__init__(components=components, n_clusters=n_clusters, epochs=epochs, n_heads=1,
                         input_dim=input_dim, hidden=hidden, embed_dim=embed_dim, temperature=temperature, lr=lr,
                         weight_decay=weight_decay, batch_size=batch_size, n_neighbors=n_neighbors,
                         entropy_weight=entropy_weight, max_rounds=max_rounds, refine_epochs=refine_epochs,
                         confident_fraction=confident_fraction, tol=tol, tta=False, whiten_power=whiten_power,
                         random_state=random_state)
        self.backbone = backbone
        self.weights = weights
        self.trainable_blocks = trainable_blocks
        self.device = device
        self.clip_percentiles = clip_percentiles

    def _load_images(self, records) -> np.ndarray:
        cfg = PreprocessConfig(size=self.spec_.input_size, clip_percentiles=self.clip_percentiles)
        cfg.validate()
        return np.stack([preprocess(load_record(r), cfg) for r in records]).astype(np.float32)

    def _prepare(self, state=None):
        """The backbone: from its weights file, or (``state``, a saved model) from every tensor it had, so that a
        saved model needs no weights file (the model's extractor checks that file by SHA-256)."""
        import torch

        if state is None:
            self.spec_, self.weights_res_ = backbones.resolve(self.backbone, self.weights)
        else:
            self.spec_ = backbones.REGISTRY[self.backbone]  # a saved model names a registered backbone (load checks)
        if self.spec_.builder is None:
            raise InputError(f"--ssl-mode finetune: backbone '{self.spec_.name}' is not a network")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.random_state, "backbone"))
            bb = backbones.build(self.spec_, self.weights_res_ if state is None else
                                 backbones.ResolvedWeights(None, backbones.RANDOM_WEIGHTS))
        if state is not None:
            bb.load_state_dict(state)
        bb = bb.to(self.device).eval()
        for p in bb.parameters():
            p.requires_grad_(False)
        mods = trainable_modules(bb, self.spec_.name, self.trainable_blocks)
        params = [p for m in mods for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.backbone_ = bb
        return params

    def _whiten_fn(self):
        import torch

        mean = torch.as_tensor(self.whiten_mean_, dtype=torch.float32, device=self.device)
        comp = torch.as_tensor(self.whiten_components_, dtype=torch.float32, device=self.device)
        scale = torch.as_tensor(self.whiten_scale_, dtype=torch.float32, device=self.device)
        return lambda f: ((f - mean) @ comp.T) / scale

    def fit(self, records, y=None) -> "FinetuneSSL":
        """Fine-tune on the images of ``records`` (ImageRecord sequence)."""
        import torch

        comps = parse_components(self.components)
        self.components_, self.views_ = comps, ["identity"]
        if len(records) < 2:
            raise InputError(f"--ssl-mode finetune needs at least 2 images, got {len(records)}")
        with torch_determinism(threads=max(1, torch.get_num_threads())):
            params = self._prepare()
            images = self._load_images(records)
            with torch.no_grad():
                f0 = np.concatenate([
                    self.backbone_(torch.from_numpy(np.stack([to_model_input(im, self.spec_.mean, self.spec_.std)
                                                              for im in images[s:s + self.batch_size]]))
                                   .to(self.device)).float().cpu().numpy()
                    for s in range(0, len(images), self.batch_size)])
            self.whiten_mean_, self.whiten_components_, self.whiten_scale_ = input_pca(
                f0, self.input_dim, self.whiten_power, random_state=self.random_state)
            self.d_in_ = len(self.whiten_components_)
            source = ImageViews(images, [r.key for r in records], self.backbone_, self._whiten_fn(), self.spec_,
                                self.device, params, seed_for(self.random_state, "views"), self.batch_size)
            net = self._new_net(0).to(self.device)
            gen = torch.Generator().manual_seed(seed_for(self.random_state, "train", 0))
            pretrain = [c for c in comps if c != "refine"]
            hist = train_head(net, source, pretrain, self.epochs if pretrain else 0, gen, **self.train_kwargs(),
                              desc="ssl fine-tuning")
            self.nets_ = [net]
            history: dict = {"loss": {k: [round(v, 5) for v in c] for k, c in hist.items()}, "refine": []}
            if "refine" in comps:
                from brainclust.selfsup.refine import refine

                history["refine"] = refine(self, source)
            self.embedding_ = self.consensus(source).numpy().astype(np.float64)
        self.history_ = history
        self._source_ = None
        return self

    def consensus(self, source):
        return source.embed(self.nets_[0], False)

    def transform(self, records) -> np.ndarray:
        """Embedding ``(n_images, embed_dim)`` of the images of ``records``."""
        import torch

        check_is_fitted(self, "nets_")
        with torch_determinism(threads=max(1, torch.get_num_threads())):
            images = self._load_images(records)
            source = ImageViews(images, [r.key for r in records], self.backbone_, self._whiten_fn(), self.spec_,
                                self.device, [], 0, self.batch_size)
            return self.consensus(source).numpy().astype(np.float64)

    def params(self) -> dict:
        out = super().params()
        for k in ("n_heads", "tta", "appearance_views"):  # finetune draws its own views
            out.pop(k)
        weights = self.weights if self.weights in (None, backbones.RANDOM_WEIGHTS) else Path(self.weights).name
        out.update(backbone=self.backbone, weights=weights, trainable_blocks=self.trainable_blocks,
                   device=self.device, clip_percentiles=list(self.clip_percentiles) if self.clip_percentiles else None)
        return out

    def save(self, folder, stem: str = "ssl_finetune") -> None:
        from safetensors.torch import save

        tensors = {f"backbone.{k}": v.detach().cpu().contiguous().clone()
                   for k, v in self.backbone_.state_dict().items()}
        tensors.update(self._whiten_tensors())
        tensors.update({f"net0.{k}": v.detach().cpu().contiguous().clone()
                        for k, v in self.nets_[0].state_dict().items()})
        folder = Path(folder)
        atomic_write_bytes(folder / f"{stem}.safetensors", save(tensors))
        atomic_write_json(folder / f"{stem}.json", {"format": FORMAT_VERSION, "params": self.params(),
                                                     "d_in": self.d_in_, "weights_sha256": self.weights_res_.sha256})

    @classmethod
    def load(cls, folder, stem: str = "ssl_finetune") -> "FinetuneSSL":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            info = json.loads((folder / f"{stem}.json").read_text())
            tensors = load_file(str(folder / f"{stem}.safetensors"))
            p = dict(info["params"])
            if p.get("clip_percentiles"):
                p["clip_percentiles"] = tuple(p["clip_percentiles"])
            self = cls(**p)  # weights: the file's name (a path before), not read: the tensors are all saved
            self.weights_res_ = backbones.ResolvedWeights(None, str(info["weights_sha256"]))
            self.components_, self.views_, self.d_in_ = (parse_components(self.components), ["identity"],
                                                         int(info["d_in"]))
            self._set_whiten(tensors)
            self._prepare({k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")})
            net = self._new_net(0)
            net.load_state_dict({k[len("net0."):]: v for k, v in tensors.items() if k.startswith("net0.")})
            self.nets_ = [net.to(self.device).eval()]
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, SafetensorError) as exc:
            raise ModelFileError(f"fine-tuned model in '{folder}' is missing or damaged "
                                 f"({type(exc).__name__}: {exc})") from None
        return self

