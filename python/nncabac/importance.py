"""Per-weight importance for importance-weighted quantization (needs torch).

Quantization error in weight ``i`` costs the network roughly ``F_ii · (x_i − x̂_i)²`` in loss,
where ``F`` is the Fisher information; the RDOQ and trellis quantizers minimise
``Σ_i w_i (x_i − x̂_i)² + λ·R`` with ``w_i`` from here.

* :func:`fisher_diagonal` — the diagonal of the empirical Fisher information: the mean over a
  few batches of the squared gradient of the user's loss with respect to each weight. Gradients
  are taken per batch (the "batch empirical Fisher"), which is cheap and ranks weights like the
  per-sample version in practice; pass a loader with small batches for a closer estimate.
* :func:`bn_importance` — a data-free fallback: where a convolution or linear layer feeds a
  batch-normalization layer, an error in output channel ``c`` reaches the network scaled by
  ``γ_c / sqrt(running_var_c + ε)``, so its weights get importance ``(γ_c / sqrt(var_c + ε))²``;
  every other weight gets 1.

Both return numpy float32 arrays keyed by parameter name, normalised to mean 1 per tensor so
that λ keeps its meaning (importance of all ones reproduces the unweighted quantizer exactly),
with a floor of ``floor`` times the mean so that no weight is treated as free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["bn_importance", "fisher_diagonal", "normalize"]


def normalize(imp: np.ndarray, floor: float = 1e-3, power: float = 1.0) -> np.ndarray:
    """Raise to ``power``, scale to mean 1 and clip below at ``floor`` (as float32); all-zero
    input gives ones."""
    imp = np.asarray(imp, dtype=np.float64) ** power
    mean = float(imp.mean()) if imp.size else 0.0
    if not np.isfinite(mean) or mean <= 0:
        return np.ones(imp.shape, dtype=np.float32)
    return np.maximum(imp / mean, floor).astype(np.float32)


def fisher_diagonal(
    model: Any,
    batches: Iterable[Any],
    loss_fn: Callable[..., Any],
    *,
    num_batches: int = 8,
    params: Iterable[str] | None = None,
    floor: float = 1e-3,
    power: float = 1.0,
) -> dict[str, np.ndarray]:
    """Diagonal empirical Fisher information of ``model``'s parameters.

    ``power`` tempers it: ``power=0.5`` (the square root) protected task accuracy better than
    the raw Fisher on both benchmark models (``benches/results/quant_rd.md``): from a few
    batches many weights get exactly zero gradient, and the raw Fisher lets the quantizer
    zero them although they matter on unseen data.

    ``batches`` yields ``(inputs, targets)``; ``loss_fn(model(inputs), targets)`` must return a
    scalar tensor. At most ``num_batches`` batches are used. ``params`` restricts the result to
    some parameter names (default: all with ``requires_grad``). The model's mode and gradients
    are restored afterwards.
    """
    import torch

    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if params is not None:
        wanted = set(params)
        named = {n: p for n, p in named.items() if n in wanted}
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named.items()}
    saved = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in named.items()}
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for inputs, targets in batches:
            if seen >= num_batches:
                break
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            for n, p in named.items():
                if p.grad is not None:
                    acc[n] += p.grad.detach().double() ** 2
            seen += 1
    finally:
        model.train(was_training)
        for n, p in named.items():
            p.grad = saved[n]
    if seen == 0:
        raise ValueError("fisher_diagonal: the data yielded no batch")
    return {n: normalize((a / seen).cpu().numpy(), floor, power) for n, a in acc.items()}


def bn_importance(model: Any, *, floor: float = 1e-3) -> dict[str, np.ndarray]:
    """Data-free importance from the batch-norm layer that follows each conv/linear layer.

    Layers are paired in module registration order (the order of ``named_modules()``), which is
    the data-flow order of sequential and ResNet-style models. Weights of other layers get 1.
    """
    import torch

    mods = list(model.named_modules())
    out: dict[str, np.ndarray] = {}
    for i, (name, mod) in enumerate(mods):
        weight: Any = getattr(mod, "weight", None)
        if weight is None or not isinstance(
            mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)
        ):
            continue
        key = f"{name}.weight" if name else "weight"
        imp = np.ones(tuple(weight.shape), dtype=np.float64)
        nxt = mods[i + 1][1] if i + 1 < len(mods) else None
        bn_types = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
        bn: Any = nxt
        var: Any = getattr(bn, "running_var", None)  # None without running statistics
        if (
            isinstance(bn, bn_types)
            and bn.num_features == weight.shape[0]
            and bn.affine
            and var is not None
        ):
            gain = bn.weight.detach().double() / torch.sqrt(var.double() + bn.eps)
            scale = (gain**2).cpu().numpy().reshape((-1,) + (1,) * (weight.dim() - 1))
            imp = imp * scale
        out[key] = normalize(imp, floor)
    return out
