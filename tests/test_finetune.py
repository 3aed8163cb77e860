"""Recovery fine-tuning on exactly-quantized weights, on the shipped digits CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nncabac
from nncabac import zoo

torch = pytest.importorskip("torch")
F = torch.nn.functional


class DigitsCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(512, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _model() -> DigitsCNN:
    m = DigitsCNN()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in zoo.digits_cnn().items()})
    return m.eval()


def test_numpy_forward_matches_torch() -> None:
    x, _ = zoo.digits_data()
    with torch.no_grad():
        ref = _model()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(zoo.digits_forward(zoo.digits_cnn(), x), ref, atol=1e-4)
    assert zoo.digits_accuracy(zoo.digits_cnn()) > 0.97


def test_finetune_recovers_accuracy_at_an_aggressive_setting(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = zoo.digits_data("train")
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    loader = [(xs[i : i + 64], ys[i : i + 64]) for i in range(0, len(xs), 64)]
    policy = dict(qp=-14, method="trellis")
    nncabac.compress(_model(), tmp_path / "plain.nncabac", **policy)
    before = zoo.digits_accuracy(nncabac.decompress(tmp_path / "plain.nncabac", framework="np"))

    model = _model()
    res = nncabac.finetune(
        model,
        loader,
        F.cross_entropy,
        policy=policy,
        steps=120,
        lr=3e-3,
        path=tmp_path / "tuned.nncabac",
    )
    assert set(res.frozen) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    assert set(res.trained) == {"conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"}
    tuned = nncabac.decompress(tmp_path / "tuned.nncabac", framework="np")
    after = zoo.digits_accuracy(tuned)
    assert after > before + 0.1, (before, after)
    # the frozen weights are exactly what the real encoder produced, byte for byte
    with (
        nncabac.safe_open(tmp_path / "plain.nncabac") as a,
        nncabac.safe_open(tmp_path / "tuned.nncabac") as b,
    ):
        for name in res.frozen:
            np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name))
            np.testing.assert_array_equal(b.get_tensor(name), model.state_dict()[name].numpy())
    assert res.container == (tmp_path / "tuned.nncabac").read_bytes()
    assert all(p.requires_grad for p in model.parameters())


def test_keep_float_layers_are_trained_and_stored_exactly(tmp_path: Path) -> None:
    x, y = zoo.digits_data("train")
    loader = [(torch.from_numpy(x[:128]), torch.from_numpy(y[:128]))]
    model = _model()
    res = nncabac.finetune(
        model, loader, F.cross_entropy, policy=dict(qp=-20), steps=3, keep_float=["fc2"]
    )
    assert "fc2.weight" in res.trained and "fc2.weight" not in res.frozen
    methods = {t.name: t.method for t in res.report.tensors}
    assert methods["fc2.weight"] == "raw" and methods["fc1.weight"] == "trellis"
    assert len(res.losses) == 3
