"""Rate control: choose the model qp for a target size, or for a task-metric tolerance.

Both searches bisect on the integer qp of the quantized tensors (a larger qp means a coarser step
and a smaller model); tensors that the policy keeps exact or fine are coded the same at every qp.
Every step is recorded in the result and passed to ``on_step``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _nncabac
from ._nncabac import ParameterError
from .policy import Rule, resolve
from .tensor import Method, code_many, decode_entry, prepare

Coded = tuple[dict[str, Any], bytes]  # container entry and payload of one tensor

__all__ = ["RateControlResult", "Step", "code_tensors", "fit_metric", "fit_size"]


@dataclass(frozen=True)
class Step:
    """One probe of the search."""

    qp: int
    num_bytes: int
    bits_per_weight: float
    metric: float | None = None
    accepted: bool = False


@dataclass
class RateControlResult:
    """The chosen qp, its coded tensors and the search history."""

    qp: int
    payloads: dict[str, Coded]
    steps: list[Step] = field(default_factory=list)

    @property
    def num_bytes(self) -> int:
        return sum(len(p) for _, p in self.payloads.values())


def code_tensors(
    tensors: Mapping[str, Any],
    qp: int,
    *,
    method: Method = "trellis",
    lambda_: float | None = None,
    importance: Mapping[str, Any] | None = None,
    rule: Rule | None = None,
    workers: int | None = None,
    dtypes: Mapping[str, str] | None = None,
    num_gtx_flags: int | None = None,
) -> dict[str, Coded]:
    """Code every tensor under the policy, the quantized ones at ``qp``, on all cores.

    All quantized tensors go to Rust in one call, which codes them in parallel (rayon) with the
    GIL released; ``workers`` limits the threads.
    ``dtypes`` records original dtypes that numpy cannot hold (``"bfloat16"``).
    ``num_gtx_flags`` is as in :func:`nncabac.encode_tensor` (default: chosen per tensor).
    """

    items = []
    for name, x in tensors.items():
        how = resolve(name, _np(x), rule)
        dt = (dtypes or {}).get(name)
        if how.kind == "exact":
            items.append(
                prepare(x, method="exact", name=name, dtype=dt, num_gtx_flags=num_gtx_flags)
            )
            continue
        q = qp if how.qp is None else how.qp
        imp = importance.get(name) if importance is not None and how.kind == "quantize" else None
        m: Method = method if how.kind == "quantize" else "uniform"
        items.append(
            prepare(
                x,
                qp=q,
                method=m,
                lambda_=lambda_,
                importance=imp,
                name=name,
                dtype=dt,
                num_gtx_flags=num_gtx_flags,
            )
        )
    return dict(zip(tensors, code_many(items, workers)))


def _np(x: Any) -> np.ndarray:
    """A numpy array with the tensor's shape and dtype kind (torch tensors included)."""
    if type(x).__module__.startswith("torch"):
        t = x.detach().cpu()
        arr: np.ndarray = t.float().numpy() if t.is_floating_point() else t.numpy()
        return arr
    return np.asarray(x)


def _num_weights(tensors: Mapping[str, Any]) -> int:
    return sum(int(_np(x).size) for x in tensors.values())


def _bisect(
    lo: int, hi: int, ok: Callable[[int], bool]
) -> int | None:  # smallest qp in [lo, hi] with ok(qp), assuming monotonicity
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(mid):
            best, hi = mid, mid - 1
        else:
            lo = mid + 1
    return best


def fit_size(
    tensors: Mapping[str, Any],
    *,
    target_bytes: int | None = None,
    target_bits_per_weight: float | None = None,
    qp_range: tuple[int, int] = (-80, 0),
    on_step: Callable[[Step], None] | None = None,
    **coding: Any,
) -> RateControlResult:
    """The finest qp whose coded model fits ``target_bytes`` (or bits per weight, counted over
    all elements of all tensors), counting the container's header as well as the payloads.
    ``coding`` goes to :func:`code_tensors`.
    """
    n = _num_weights(tensors)
    if (target_bytes is None) == (target_bits_per_weight is None):
        raise ParameterError("give exactly one of target_bytes and target_bits_per_weight")
    budget = target_bytes if target_bytes is not None else target_bits_per_weight * n / 8  # type: ignore[operator]
    result = RateControlResult(qp=qp_range[1], payloads={})
    kept: dict[int, dict[str, Coded]] = {}  # the last accepted probe only: bounds peak memory

    def ok(qp: int) -> bool:
        payloads = code_tensors(tensors, qp, **coding)
        # the whole container (header and checksums included), as the file will be
        size = _nncabac.container_size([], list(payloads.values()))
        step = Step(qp, size, 8 * size / max(n, 1), accepted=size <= budget)
        result.steps.append(step)
        if on_step:
            on_step(step)
        if step.accepted:
            kept.clear()
            kept[qp] = payloads
        return step.accepted

    qp = _bisect(qp_range[0], qp_range[1], ok)
    if qp is None:
        qp = qp_range[1]  # nothing fits: the coarsest qp allowed, reported as not accepted
    result.qp = qp
    result.payloads = kept.get(qp) or code_tensors(tensors, qp, **coding)
    return result


def fit_metric(
    tensors: Mapping[str, Any],
    evaluate: Callable[[dict[str, np.ndarray]], float],
    *,
    tolerance: float,
    higher_is_better: bool = True,
    qp_range: tuple[int, int] = (-80, 0),
    on_step: Callable[[Step], None] | None = None,
    **coding: Any,
) -> RateControlResult:
    """The coarsest qp (smallest model) whose metric stays within ``tolerance`` of the metric of
    the original tensors. ``evaluate`` receives the decoded tensors (numpy, original dtypes).
    """
    originals = {k: _np(v) for k, v in tensors.items()}
    baseline = float(evaluate(originals))
    n = _num_weights(tensors)
    result = RateControlResult(qp=qp_range[0], payloads={})
    kept: dict[int, dict[str, Coded]] = {}  # the coarsest accepted probe only: bounds memory

    def too_coarse(qp: int) -> bool:  # monotone: False ... False True ... True
        payloads = code_tensors(tensors, qp, **coding)
        metric = float(evaluate({k: decode_entry(e, p) for k, (e, p) in payloads.items()}))
        loss = baseline - metric if higher_is_better else metric - baseline
        size = sum(len(p) for _, p in payloads.values())
        step = Step(qp, size, 8 * size / max(n, 1), metric, accepted=loss <= tolerance)
        result.steps.append(step)
        if on_step:
            on_step(step)
        if step.accepted and all(qp > q for q in kept):
            kept.clear()
            kept[qp] = payloads
        return not step.accepted

    first_bad = _bisect(qp_range[0], qp_range[1], too_coarse)
    qp = qp_range[1] if first_bad is None else first_bad - 1
    qp = max(qp, qp_range[0])
    result.qp = qp
    result.payloads = kept.get(qp) or code_tensors(tensors, qp, **coding)
    return result
