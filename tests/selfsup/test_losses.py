"""Each self-supervised loss against a naive, loop-based reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainclust.errors import ParameterError  # noqa: E402
from brainclust.selfsup.losses import NTXentLoss, RotationLoss, SCANLoss, SelfLabelLoss  # noqa: E402


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def naive_nt_xent(za: np.ndarray, zb: np.ndarray, t: float) -> float:
    z = np.concatenate([za, zb])
    n, b = len(z), len(za)
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(_cos(z[i], z[j]) / t)
        den = sum(math.exp(_cos(z[i], z[k]) / t) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("b,d", [(2, 3), (5, 8), (16, 4)])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_naive(b, d, t):
    rng = np.random.default_rng(b * 100 + d)
    za, zb = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    got = float(NTXentLoss(t)(torch.tensor(za), torch.tensor(zb)))
    assert got == pytest.approx(naive_nt_xent(za, zb, t), rel=1e-6, abs=1e-8)


def test_nt_xent_is_low_for_identical_views_and_checks_input():
    z = torch.eye(4)
    assert float(NTXentLoss(0.1)(z, z)) < 0.01
    with pytest.raises(ParameterError, match="temperature"):
        NTXentLoss(0.0)
    with pytest.raises(ParameterError, match=r"\(B, D\)"):
        NTXentLoss()(torch.zeros(1, 3), torch.zeros(1, 3))


@pytest.mark.parametrize("b", [1, 7, 32])
def test_rotation_loss_matches_naive(b):
    rng = np.random.default_rng(b)
    logits, target = rng.normal(size=(b, 4)) * 3, rng.integers(0, 4, b)
    naive = -np.mean([math.log(_softmax(logits[i])[target[i]]) for i in range(b)])
    got = float(RotationLoss()(torch.tensor(logits), torch.tensor(target)))
    assert got == pytest.approx(naive, rel=1e-6)
    acc = RotationLoss.accuracy(torch.tensor(logits), torch.tensor(target))
    assert acc == pytest.approx(np.mean(logits.argmax(1) == target))
    with pytest.raises(ParameterError, match=r"\(B, 4\)"):
        RotationLoss()(torch.zeros(b, 3), torch.zeros(b, dtype=torch.long))


@pytest.mark.parametrize("b,k", [(2, 2), (10, 3), (33, 10)])
@pytest.mark.parametrize("w", [0.0, 1.0, 5.0])
def test_scan_loss_matches_naive(b, k, w):
    rng = np.random.default_rng(b + k)
    a, n = rng.normal(size=(b, k)) * 2, rng.normal(size=(b, k)) * 2
    p = np.array([_softmax(r) for r in a])
    q = np.array([_softmax(r) for r in n])
    cons = -np.mean([math.log(sum(p[i, c] * q[i, c] for c in range(k))) for i in range(b)])
    pbar = p.mean(0)
    ent = -sum(pbar[c] * math.log(pbar[c]) for c in range(k))
    loss = SCANLoss(w)
    total, c_got, e_got = loss.terms(torch.tensor(a), torch.tensor(n))
    assert float(c_got) == pytest.approx(cons, rel=1e-6)
    assert float(e_got) == pytest.approx(ent, rel=1e-6)
    assert float(loss(torch.tensor(a), torch.tensor(n))) == pytest.approx(cons - w * ent, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("b,k", [(6, 2), (20, 4)])
def test_self_label_loss_matches_naive(balanced, b, k):
    rng = np.random.default_rng(b * k)
    logits = rng.normal(size=(b, k))
    target = rng.integers(-1, k, b)
    target[0] = 0  # at least one kept row
    kept = [i for i in range(b) if target[i] >= 0]
    ce = {i: -math.log(_softmax(logits[i])[target[i]]) for i in kept}
    if balanced:
        counts = {c: sum(1 for i in kept if target[i] == c) for c in set(target[kept])}
        w = {i: len(kept) / (len(counts) * counts[target[i]]) for i in kept}
        naive = sum(w[i] * ce[i] for i in kept) / sum(w.values())
    else:
        naive = np.mean(list(ce.values()))
    got = float(SelfLabelLoss(balanced)(torch.tensor(logits), torch.tensor(target)))
    assert got == pytest.approx(naive, rel=1e-6)


def test_self_label_loss_with_nothing_confident_is_zero_and_differentiable():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = SelfLabelLoss()(logits, torch.full((4,), -1))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None
