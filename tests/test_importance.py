"""Importance estimation on small torch models."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nncabac import importance  # noqa: E402


def _batches(n: int, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)
    ]


def test_fisher_matches_hand_computed_squared_gradients() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    batches = _batches(3)
    loss_fn = torch.nn.functional.cross_entropy
    want = {n: np.zeros(tuple(p.shape)) for n, p in model.named_parameters()}
    for x, y in batches:
        model.zero_grad()
        loss_fn(model(x), y).backward()
        for n, p in model.named_parameters():
            want[n] += p.grad.double().numpy() ** 2
    model.zero_grad(set_to_none=True)
    got = importance.fisher_diagonal(model, batches, loss_fn, num_batches=10, floor=0.0)
    assert set(got) == {"weight", "bias"}
    for n in got:
        np.testing.assert_allclose(got[n], want[n] / want[n].mean(), rtol=1e-5)
        assert got[n].dtype == np.float32
    # gradients and mode are restored
    assert all(p.grad is None for p in model.parameters())


def test_fisher_ranks_unused_inputs_as_unimportant() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    batches = [(x * torch.tensor([1.0, 1, 1, 0, 0, 0]), y) for x, y in _batches(4)]
    imp = importance.fisher_diagonal(
        model, batches, torch.nn.functional.cross_entropy, params=["0.weight"]
    )
    assert list(imp) == ["0.weight"]
    w = imp["0.weight"]
    assert w.shape == (8, 6)
    assert w[:, 3:].max() <= 1e-3 + 1e-9  # zero inputs: zero gradient, floored
    assert w[:, :3].mean() > 1.0
    assert np.isclose(w.mean(), 1.0, rtol=0.01)


def test_fisher_needs_data() -> None:
    with pytest.raises(ValueError):
        importance.fisher_diagonal(torch.nn.Linear(2, 2), [], torch.nn.functional.mse_loss)


def test_bn_importance_follows_the_channel_gain() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 5),
    )
    bn = model[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 1.0, 4.0]))
    imp = importance.bn_importance(model)
    assert set(imp) == {"0.weight", "4.weight"}
    per_channel = imp["0.weight"].reshape(4, -1)
    assert np.allclose(per_channel, per_channel[:, :1])  # constant within a filter
    gains = np.array([1.0, 4.0, 0.25, 1.0]) / np.array([1 + 1e-5, 1 + 1e-5, 1 + 1e-5, 4 + 1e-5])
    np.testing.assert_allclose(per_channel[:, 0] / per_channel[0, 0], gains / gains[0], rtol=1e-4)
    np.testing.assert_allclose(imp["4.weight"], 1.0)


def test_tempered_fisher_is_the_normalized_root() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    batches = _batches(2)
    raw = importance.fisher_diagonal(model, batches, torch.nn.functional.cross_entropy, floor=0.0)
    root = importance.fisher_diagonal(
        model, batches, torch.nn.functional.cross_entropy, floor=0.0, power=0.5
    )
    for n in raw:
        want = np.sqrt(raw[n].astype(np.float64))
        np.testing.assert_allclose(root[n], want / want.mean(), rtol=1e-4)


def test_normalize() -> None:
    np.testing.assert_allclose(importance.normalize(np.array([1.0, 3.0])), [0.5, 1.5])
    np.testing.assert_array_equal(importance.normalize(np.zeros(3)), np.ones(3))
    assert importance.normalize(np.array([0.0, 1.0]), floor=0.1)[0] == pytest.approx(0.1)
