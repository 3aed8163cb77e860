"""Which tensors of a model are quantized, and how finely: a documented, overridable rule.

The default rule (:func:`default_rule`), in order:

1. integer and boolean tensors (e.g. ``num_batches_tracked``, token ids) are coded losslessly;
2. normalization statistics (names ending in ``running_mean`` / ``running_var``) and tensors of
   fewer than ``min_quantized_size`` elements (scalars, tiny tensors) are stored exactly;
3. other tensors of rank ≤ 1 (biases, normalization scales) are quantized finely, at NNCodec's
   non-weight qp (−75, a step of about 2.4e-6);
4. everything else (weights) is quantized at the model's qp, which rate control may choose.

Override it by passing ``rule=`` a function ``(name, array) -> TensorRule | None``; returning
None falls back to the default for that tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["NONWEIGHT_QP", "Rule", "TensorRule", "default_rule", "resolve"]

NONWEIGHT_QP = -75  # NNCodec's qp for biases and other non-weight tensors
MIN_QUANTIZED_SIZE = 16


@dataclass(frozen=True)
class TensorRule:
    """How one tensor is coded. ``qp=None`` means: the model's qp (the one rate control picks)."""

    kind: Literal["quantize", "fine", "exact"]
    qp: int | None = None


Rule = Callable[[str, np.ndarray], "TensorRule | None"]


def default_rule(name: str, array: np.ndarray) -> TensorRule:
    """The default rule described in the module docstring."""
    if array.dtype.kind in "biu":
        return TensorRule("exact")
    if name.endswith(("running_mean", "running_var")) or array.size < MIN_QUANTIZED_SIZE:
        return TensorRule("exact")
    if array.ndim <= 1:
        return TensorRule("fine", NONWEIGHT_QP)
    return TensorRule("quantize")


def resolve(name: str, array: np.ndarray, rule: Rule | None) -> TensorRule:
    """The user's rule for this tensor, or the default one."""
    chosen = rule(name, array) if rule is not None else None
    return chosen if chosen is not None else default_rule(name, array)
