"""The model that ships with nncabac: a small CNN trained on scikit-learn's 8×8 digits.

Its weights (38 282 float32 parameters, 98 % test accuracy) and scikit-learn's digits split
(80/20, stratified, seed 0; BSD-licensed UCI data) are package data, and its forward pass is
written in numpy, so the demo needs neither torch nor scikit-learn.

Architecture: conv 3×3 (1→16, pad 1) → ReLU → conv 3×3 (16→32, pad 1) → ReLU → max-pool 2
→ fc 512→64 → ReLU → fc 64→10.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from . import safetensors_io

__all__ = ["digits_accuracy", "digits_cnn", "digits_data", "digits_forward"]


def _path(name: str) -> Any:
    return resources.files("nncabac").joinpath("data").joinpath(name)


def digits_cnn() -> dict[str, np.ndarray]:
    """The shipped state dict (numpy float32 arrays, torch's key names)."""
    with resources.as_file(_path("digits_cnn.safetensors")) as p:
        tensors, _, _ = safetensors_io.load(p)
    return tensors


def digits_data(split: str = "test") -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Images ``(N, 1, 8, 8)`` scaled to [0, 1] and labels of the ``"train"`` or ``"test"``
    split."""
    with resources.as_file(_path("digits.npz")) as p, np.load(p) as d:
        key = {"test": ("x", "y"), "train": ("x_train", "y_train")}[split]
        x = d[key[0]].astype(np.float32)[:, None] / 16.0
        return x, d[key[1]].astype(np.int64)


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i : i + h, j : j + wd] for i in range(3) for j in range(3)], axis=2)
    # cols: (n, c, 9, h, w); w: (out, c, 3, 3)
    out: np.ndarray = np.einsum("nckhw,ock->nohw", cols, w.reshape(w.shape[0], c, 9), optimize=True)
    out += b[None, :, None, None]
    return out


def digits_forward(state: dict[str, Any], x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Logits of the digits CNN with the weights in ``state`` (numpy or torch values)."""
    s = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    h = np.maximum(_conv3x3(x, s["conv1.weight"], s["conv1.bias"]), 0)
    h = np.maximum(_conv3x3(h, s["conv2.weight"], s["conv2.bias"]), 0)
    n, c, hh, ww = h.shape
    h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
    h = np.maximum(h.reshape(n, -1) @ s["fc1.weight"].T + s["fc1.bias"], 0)
    logits: npt.NDArray[np.float32] = (h @ s["fc2.weight"].T + s["fc2.bias"]).astype(np.float32)
    return logits


def digits_accuracy(state: dict[str, Any], split: str = "test") -> float:
    """Top-1 accuracy of ``state`` on a digits split."""
    x, y = digits_data(split)
    return float((digits_forward(state, x).argmax(1) == y).mean())
