"""Recovery fine-tuning on exactly-quantized weights (needs torch).

No differentiable stand-in models what an entropy-constrained trellis search does to a weight:
its levels depend on the neighbours and on the coder's rate estimates. So instead of simulating
quantization during training, :func:`finetune` runs the real encoder once, loads the exact
decoded values into the quantized tensors, freezes them, and retrains the parameters that stay
in floating point (biases, normalization layers, and any layers you keep unquantized) on those
values — the "retrain on correctly quantized data" step of the first paper in
``shared/background/abstracts.md``, applied to a network's own weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _nncabac
from .models import (
    _ALIASES,
    CompressReport,
    TensorReport,
    compress,
    load_state,
    safe_open,
)
from .policy import Rule, TensorRule, resolve
from .ratecontrol import _np, code_tensors
from .tensor import decode_many

__all__ = ["FinetuneResult", "finetune"]


@dataclass
class FinetuneResult:
    """The fine-tuned model, its final container and what happened."""

    model: Any
    container: bytes
    report: CompressReport
    frozen: list[str]
    trained: list[str]
    losses: list[float] = field(default_factory=list)


def finetune(
    model: Any,
    train_loader: Iterable[Any],
    loss_fn: Callable[..., Any],
    *,
    policy: Mapping[str, Any] | None = None,
    steps: int = 200,
    lr: float = 1e-3,
    keep_float: Iterable[str] = (),
    path: str | os.PathLike[str] | None = None,
) -> FinetuneResult:
    """Quantize ``model`` with the real encoder, freeze the quantized tensors at their exact
    decoded values, and train the remaining float parameters for ``steps`` batches.

    ``policy`` holds :func:`nncabac.compress` options (``qp``, ``method``, ``lambda_``,
    ``importance``, ``rule``...). ``keep_float`` names parameters (or prefixes, e.g. ``"fc2"``)
    that are not quantized and are trained too. ``train_loader`` yields ``(inputs, targets)``
    and is cycled if shorter than ``steps``. The returned container (also written to ``path``
    when given) holds the frozen tensors exactly as first coded and the retrained ones re-coded
    under the same policy.
    """
    import torch

    opts = dict(policy or {})
    user_rule: Rule | None = opts.pop("rule", None)
    keep = tuple(keep_float)

    def rule(name: str, arr: Any) -> TensorRule | None:
        if keep and name.startswith(keep):
            return TensorRule("exact")
        return user_rule(name, arr) if user_rule is not None else None

    with tempfile.TemporaryDirectory() as tmp:
        first = os.path.join(tmp, "q.nncabac")
        report = compress(model, first, rule=rule, **opts)
        with safe_open(first) as reader:
            meta = dict(reader._header.metadata())
            coded = {n: reader._read(n) for n in reader._entries}
    # Frozen: the tensors the policy quantizes at the model qp (weights). Finely quantized
    # ones (biases, norm scales) stay float during training and are coded again at the end.
    state0, _, _ = load_state(model)
    quantized = {
        t.name
        for t in report.tensors
        if t.method in ("uniform", "rdoq", "trellis")
        and resolve(t.name, _np(state0[t.name]), rule).kind == "quantize"
    }
    params = dict(model.named_parameters())
    names = [n for n in coded if n in quantized]
    values = decode_many([coded[n] for n in names], "pt")
    with torch.no_grad():
        for name, value in zip(names, values):
            if name in params:
                params[name].copy_(value.to(params[name].dtype))
    frozen = [n for n in params if n in quantized]
    trained = [n for n in params if n not in quantized]
    for n, p in params.items():
        p.requires_grad_(n not in quantized)
    losses: list[float] = []
    try:
        if trained and steps > 0:
            losses = _train(model, [params[n] for n in trained], train_loader, loss_fn, steps, lr)
    finally:
        for p in params.values():
            p.requires_grad_(True)
    # Frozen tensors keep their first payloads byte for byte (re-running an RD quantizer on
    # reconstructions could pick other levels); everything else is coded again.
    state, dtypes, _ = load_state(model)
    aliases = json.loads(meta.get(_ALIASES, "{}"))
    rest = {k: v for k, v in state.items() if k not in quantized and k not in aliases}
    opts.pop("bits_per_weight", None)
    qp = opts.pop("qp", None)
    recoded = code_tensors(
        rest,
        -38 if qp is None else qp,
        rule=rule,
        dtypes=dtypes,
        **{k: v for k, v in opts.items() if k in ("method", "lambda_", "workers")},
    )
    entries = [coded[n] if n in quantized else recoded[n] for n in state if n not in aliases]
    data = bytes(_nncabac.write_container(sorted(meta.items()), entries))
    rows = [TensorReport.of(e, p) for e, p in entries]
    final = CompressReport(
        os.fspath(path) if path is not None else "",
        rows,
        len(data),
        report.original_bytes,
        report.aliases,
    )
    if path is not None:
        with open(path, "wb") as out:
            out.write(data)
    return FinetuneResult(model, data, final, frozen, trained, losses)


def _train(
    model: Any,
    params: list[Any],
    loader: Iterable[Any],
    loss_fn: Callable[..., Any],
    steps: int,
    lr: float,
) -> list[float]:
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        before = len(losses)
        for inputs, targets in loader:
            opt.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if len(losses) >= steps:
                break
        if len(losses) == before:
            raise ValueError("finetune: the training data yielded no batch")
    model.eval()
    return losses
