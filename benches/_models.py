"""Models and data shared by the quantization benchmarks (needs torch and scikit-learn).

* :class:`DigitsCNN` — the small CNN of ``shared/models/digits_cnn.pt`` for scikit-learn's 8×8
  digits (pixels scaled to [0, 1]): ``conv3×3(1→16, pad 1) → ReLU → conv3×3(16→32, pad 1) → ReLU
  → max-pool 2 → fc(512→64) → ReLU → fc(64→10)``. The shipped weights reach 98.1 % on the
  stratified 20 % test split of :func:`digits_splits` (and 99.6 % on all 1797 images); the other
  layouts that fit the shapes (pooling between the convolutions, no padding) score 37–78 %.
  :func:`train_digits_cnn` trains one from scratch in a few seconds.
* :class:`CifarResNet` — the CIFAR-100 ResNet-56 of ``shared/models/resnet56_cifar100.pt``:
  a 3×3 stem (16 channels), three stages of six bottleneck blocks (1×1 → 3×3 → 1×1, expansion
  4: 64, 128 and 256 output channels), global average pooling and a 256→100 classifier. The
  stride 2 of stages 2 and 3 sits on the 3×3 convolution (and the 1×1 projection shortcut): the
  keys cannot tell, but then the batch statistics of the photo crops below match the stored BN
  running variances better in every block from stage 2 on (mean |log variance ratio| 0.51
  against 0.71 with the stride on the first 1×1 convolution).
* :func:`sample_photo_crops` — 32×32 crops of scikit-learn's two bundled photos (``china.jpg``,
  ``flower.jpg``) at several scales, normalized with the CIFAR-100 mean/std: natural-image inputs
  on which a compressed ResNet's outputs are compared with the original's (:func:`fidelity`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DIGITS_CNN_PATH",
    "RESNET56_PATH",
    "CifarResNet",
    "DigitsCNN",
    "DigitsSplits",
    "accuracy",
    "batches",
    "digits_splits",
    "fidelity",
    "load_digits_cnn",
    "load_resnet56",
    "logits",
    "sample_photo_crops",
    "train_digits_cnn",
]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NNCABAC_SHARED", ROOT.parent / "shared"))
DIGITS_CNN_PATH = SHARED / "models" / "digits_cnn.pt"
RESNET56_PATH = SHARED / "models" / "resnet56_cifar100.pt"

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


# ------------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------------
class DigitsCNN(nn.Module):
    """Two padded 3×3 convolutions, one 2×2 max-pool, two fully connected layers (38 282
    parameters). Input: ``(N, 1, 8, 8)`` float32 in [0, 1]; output: 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        out: Tensor = self.fc2(x)
        return out


class DigitsSplits:
    """scikit-learn's digits as tensors: a stratified 80/20 train/test split (seed 0)."""

    def __init__(self, test_size: float = 0.2, seed: int = 0) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
        y = d.target.astype(np.int64)
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
        self.x_train, self.y_train = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        self.x_test, self.y_test = torch.from_numpy(x_te), torch.from_numpy(y_te)


def digits_splits(test_size: float = 0.2, seed: int = 0) -> DigitsSplits:
    """The split the shipped digits CNN was evaluated on (its 7 errors over all 1797 images all
    fall in this test set, so it was presumably trained on the other 80 %)."""
    return DigitsSplits(test_size, seed)


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, targets)`` mini-batches, in a seeded random order when ``shuffle``."""
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else None
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size] if order is not None else slice(i, i + batch_size)
        yield x[idx], y[idx]


def train_digits_cnn(
    data: DigitsSplits | None = None, *, epochs: int = 15, seed: int = 0
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` on the training split (Adam, batch 64; a few seconds on CPU).

    Deterministic for a given seed on a given machine (torch's CPU kernels).
    """
    data = data or digits_splits()
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(epochs):
        for xb, yb in batches(data.x_train, data.y_train, 64, shuffle=True, seed=seed + epoch):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def load_digits_cnn(path: str | os.PathLike[str] = DIGITS_CNN_PATH) -> DigitsCNN:
    """The shipped digits CNN (strict state-dict load), in eval mode."""
    model = DigitsCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


@torch.no_grad()
def logits(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The model's outputs on ``x`` in eval mode, computed in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return float((logits(model, x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------------------------
# CIFAR-100 ResNet-56 (bottleneck blocks)
# ------------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand (×4), each followed by batch norm;
    a 1×1 projection (``downsample``) where the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class CifarResNet(nn.Module):
    """CIFAR ResNet with bottleneck blocks: depth = 9·n + 2 (56 → six blocks per stage)."""

    def __init__(self, depth: int = 56, num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError("depth must be 9n + 2 for bottleneck blocks")
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        out: Tensor = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return out


def load_resnet56(path: str | os.PathLike[str] = RESNET56_PATH) -> CifarResNet:
    """The shipped CIFAR-100 ResNet-56 (strict state-dict load), in eval mode."""
    model = CifarResNet(56, 100)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def sample_photo_crops(
    scales: tuple[int, ...] = (1, 2, 4), max_crops: int | None = None, seed: int = 0
) -> Tensor:
    """32×32 crops of scikit-learn's sample photos, ``(N, 3, 32, 32)`` float32, CIFAR-100
    normalized.

    Each photo (427×640) is shrunk by every integer factor in ``scales`` (block averaging), and
    tiled into crops with stride 32 (16 once the image is at most 160 pixels tall, so that the
    small scales, where a crop holds a whole object as in CIFAR, still give a few dozen).
    ``max_crops`` keeps a seeded random subset.
    """
    from sklearn.datasets import load_sample_images

    crops = []
    for img in load_sample_images().images:
        img = img.astype(np.float32) / 255.0
        for f in scales:
            h, w = img.shape[0] // f * f, img.shape[1] // f * f
            small = img[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
            stride = 32 if small.shape[0] > 160 else 16
            for i in range(0, small.shape[0] - 31, stride):
                for j in range(0, small.shape[1] - 31, stride):
                    crops.append(small[i : i + 32, j : j + 32])
    x = np.stack(crops)
    if max_crops is not None and max_crops < len(x):
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_crops, replace=False))
        x = x[keep]
    x = (x - np.array(CIFAR100_MEAN, np.float32)) / np.array(CIFAR100_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def fidelity(reference: Tensor, test: Tensor) -> tuple[float, float]:
    """Top-1 agreement and mean KL(reference ‖ test) (nats) of two sets of logits."""
    agree = float((reference.argmax(1) == test.argmax(1)).float().mean())
    log_p, log_q = F.log_softmax(reference.double(), 1), F.log_softmax(test.double(), 1)
    kl = float((log_p.exp() * (log_p - log_q)).sum(1).mean())
    return agree, kl
