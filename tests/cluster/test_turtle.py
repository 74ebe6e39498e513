"""TURTLE (brainclust.cluster.turtle): planted clusters across two representation spaces; its gradients."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.turtle import TurtleClusterer
from brainclust.errors import ParameterError


def two_spaces(seed=0, n_per=40):
    """Three groups; space A separates {0} from {1, 2}, space B separates {0, 1} from {2}.

    Neither space alone holds all three groups; together they do.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per)
    ca = np.array([[4.0, 0.0], [-2.0, 0.0], [-2.0, 0.0]])
    cb = np.array([[0.0, 2.0], [0.0, 2.0], [0.0, -4.0]])
    A = np.hstack([ca[y], np.zeros((len(y), 6))]) + rng.normal(size=(len(y), 8)) * 0.5
    B = np.hstack([cb[y], np.zeros((len(y), 4))]) + rng.normal(size=(len(y), 6)) * 0.5
    return A, B, y


def test_turtle_recovers_planted_clusters_only_with_both_spaces():
    A, B, y = two_spaces()
    both = TurtleClusterer(n_clusters=3, n_iter=400, warm_start=True, random_state=0).fit([A, B])
    assert adjusted_rand_score(y, both.labels_) > 0.9
    assert both.n_clusters_ == 3 and both.proba_.shape == (len(y), 3)
    np.testing.assert_allclose(both.proba_.sum(1), 1.0)
    one = TurtleClusterer(n_clusters=3, n_iter=400, warm_start=True, random_state=0).fit([A])
    assert adjusted_rand_score(y, one.labels_) < adjusted_rand_score(y, both.labels_)


def test_turtle_predict_new_images_and_determinism():
    A, B, y = two_spaces(seed=0)
    An, Bn, yn = two_spaces(seed=1)
    m = TurtleClusterer(n_clusters=3, n_iter=300, warm_start=True, random_state=0).fit([A, B])
    np.testing.assert_array_equal(m.predict([A, B]), m.labels_)
    assert adjusted_rand_score(yn, m.predict([An, Bn])) > 0.9
    again = TurtleClusterer(n_clusters=3, n_iter=300, warm_start=True, random_state=0).fit([A, B])
    np.testing.assert_array_equal(again.labels_, m.labels_)
    with pytest.raises(ParameterError, match="fitted on"):
        m.predict([A])


def test_the_objective_decreases_with_warm_start():
    A, B, _ = two_spaces()
    m = TurtleClusterer(n_clusters=3, n_iter=300, warm_start=True, random_state=0).fit([A, B])
    assert m.history_[-1] < m.history_[0] - 0.05


def test_outer_gradients_match_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = TurtleClusterer(n_clusters=3, gamma=2.5)
    Zb = [rng.normal(size=(20, 5)), rng.normal(size=(20, 4))]
    params = [[rng.normal(size=(3, z.shape[1])), rng.uniform(0.5, 2, 3), rng.normal(size=3)] for z in Zb]
    log_pred = [np.log(m._softmax(rng.normal(size=(20, 3)))) for _ in Zb]
    obj, grads = m._outer(params, Zb, m._space_proba(params, Zb), log_pred)
    leaves = [[torch.tensor(x, requires_grad=True) for x in ps] for ps in params]
    per_space = []
    for (v, g, b), z in zip(leaves, Zb):
        W = g[:, None] * v / v.norm(dim=1, keepdim=True)
        per_space.append(torch.softmax(torch.from_numpy(z) @ W.T + b, 1))
    tau = sum(per_space) / 2
    loss = (sum(-(tau * torch.from_numpy(lp)).sum(1).mean() for lp in log_pred)
            - 2.5 * sum(torch.special.entr(p.mean(0)).sum() for p in per_space))
    loss.backward()
    assert obj == pytest.approx(loss.item(), rel=1e-12)
    for got, leaf in zip(grads, [x for ps in leaves for x in ps]):
        np.testing.assert_allclose(got, leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [{"n_clusters": 0}, {"gamma": float("nan")}, {"n_iter": 2.5}])
def test_bad_settings_and_inputs_are_refused(bad):
    A, B, _ = two_spaces()
    with pytest.raises(ParameterError, match="turtle"):
        TurtleClusterer(**bad).fit([A, B])
    with pytest.raises(ParameterError, match="rows"):
        TurtleClusterer(n_clusters=3).fit([A, B[:-1]])
