"""TEMI's loss stays finite where float32 probabilities underflow (issue 24: NaN embedding on a 6,000-image set)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainclust.selfsup.temi import TEMIHead  # noqa: E402


def product_pmi(ps, pt, prior, beta):
    """The loss term written as in the paper: log sum_c (q_s q_t)**beta / pi (float64 reference)."""
    return np.log((((ps * pt) ** beta) / prior[:, None, :]).sum(-1))


def test_pmi_equals_the_product_form_where_that_is_finite():
    rng = np.random.default_rng(0)
    H, B, C = 3, 5, 4
    ls = torch.log_softmax(torch.from_numpy(rng.normal(size=(H, B, C))), -1)
    lt = torch.log_softmax(torch.from_numpy(rng.normal(size=(H, B, C))), -1)
    prior = rng.dirichlet(np.ones(C), size=H)
    head = TEMIHead(n_clusters=C)
    got = head._pmi(ls, lt, torch.from_numpy(np.log(prior))).numpy()
    want = product_pmi(ls.exp().numpy(), lt.exp().numpy(), prior, head.beta)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def confident_heads(head, d, scale):
    """Student and teacher weights whose logits differ by tens of units: float32 softmax underflows to 0."""
    w = head._init_weights(d)
    with torch.no_grad():
        w[2].mul_(scale)
    return w, [t.detach().clone() for t in w]


@pytest.mark.parametrize("empty_prior", [False, True])
def test_a_confident_teacher_and_an_empty_cluster_give_finite_gradients(empty_prior):
    C, d = 4, 16
    head = TEMIHead(n_clusters=C, n_heads=3, hidden=32, random_state=0)
    student, teacher = confident_heads(head, d, 200.0)
    gen = torch.Generator().manual_seed(0)
    xa = torch.nn.functional.normalize(torch.randn(64, d, generator=gen), dim=1)
    xb = torch.nn.functional.normalize(xa + 0.3 * torch.randn(64, d, generator=gen), dim=1)
    with torch.no_grad():  # the scenario: some products q_s * q_t are exactly 0 in float32
        ps = torch.softmax(head._logits(student, xa) / head.student_temperature, -1)
        pt = torch.softmax(head._logits(teacher, xb) / head.teacher_temperature, -1)
    assert bool(((ps * pt) == 0).any())
    prior = torch.full((3, C), 1.0 / C)
    if empty_prior:
        prior[:, 0] = 0.0  # an EMA prior that decayed to 0
    loss, marginal = head._step(student, teacher, prior, xa, xb)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(bool(torch.isfinite(w.grad).all()) for w in student)
    assert torch.allclose(marginal.sum(-1), torch.ones(3))


@pytest.mark.parametrize("settings", [{"lr": 0.03, "epochs": 60},
                                      {"lr": 0.01, "epochs": 100, "teacher_temperature": 0.02}])
def test_fast_training_on_tight_clusters_keeps_a_finite_embedding(settings):
    """A high learning rate on well-separated blobs drives the teacher to one-hot outputs within a few
    hundred steps: the product form of the loss turned every weight into NaN there (as on the 6,000-image set)."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 32)) * 5
    X = np.concatenate([c + 0.05 * rng.normal(size=(150, 32)) for c in centres])
    m = TEMIHead(n_clusters=4, n_heads=2, hidden=32, input_dim=16, batch_size=64, random_state=0, **settings).fit(X)
    assert np.all(np.isfinite(m.embedding_))
    assert all(np.isfinite(v) for v in m.history_["loss"]["temi"])
    parts = m.embedding_.reshape(len(X), 2, 4).argmax(2)
    truth = np.repeat(np.arange(4), 150)
    from sklearn.metrics import adjusted_rand_score
    assert max(adjusted_rand_score(truth, parts[:, h]) for h in range(2)) > 0.5  # clusters found, not noise
