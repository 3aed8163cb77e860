"""Incremental updates: a model coded as its difference to a base the receiver already holds.

In federated and distributed training the same model crosses the network again and again; what
must be small is the *update*. :class:`UpdateCoder` codes ``state - base`` with the same
quantizers and CABAC coder as whole models, and optionally

* **sparsifies** it — unstructured (top-k fraction or magnitude threshold per tensor) or
  structured (whole output filters / rows, by L2 norm) — carrying what was not sent into the next
  round (**error accumulation**: ``sent + residual`` equals the update plus the previous
  residual);
* sends **per-filter scale factors** (see :func:`filter_scales`) that compensate the sparsity.

The result is an ordinary nncabac container whose metadata records the SHA-256 of the base
(:func:`state_hash`); :func:`decode_update` refuses any other base with :class:`BaseMismatchError`.
Decoding reproduces bit for bit the model the sender reports (``EncodedUpdate.state``), so
updates chain: base → update 1 → update 2, each coded against the previous reconstruction.

>>> import numpy as np
>>> from nncabac.update import UpdateCoder, decode_update
>>> rng = np.random.default_rng(0)
>>> base = {"fc.weight": rng.normal(0, .1, (64, 32)).astype(np.float32)}
>>> new = {"fc.weight": base["fc.weight"] + rng.normal(0, .01, (64, 32)).astype(np.float32)}
>>> coder = UpdateCoder(qp=-40, keep=0.1)
>>> sent = coder.encode(new, base)
>>> got = decode_update(sent.data, base)
>>> bool((got["fc.weight"] == sent.state["fc.weight"]).all()), len(sent.data) < 64 * 32 // 2
(True, True)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _nncabac
from ._nncabac import ParameterError
from .policy import NONWEIGHT_QP, Rule, TensorRule
from .tensor import Method, _to_numpy, code_many, decode_many, prepare

__all__ = [
    "BaseMismatchError",
    "EncodedUpdate",
    "UpdateCoder",
    "decode_update",
    "encode_update",
    "filter_scales",
    "learn_scales",
    "read_update",
    "sparsify",
    "state_hash",
    "update_rule",
]

BASE = "nncabac.base"  # marks an update: the first 128 bits of the base's SHA-256, in hex
HASH_CHARS = 32
ABSOLUTE = "nncabac.absolute"  # tensors sent as their value, not as a difference
REMOVED = "nncabac.removed"  # base tensors the new model no longer has
SCALE_SUFFIX = "::scale"
SCALE_QP = -48  # step 2^-12 ≈ 2.4e-4 on (factor - 1)

Arrays = dict[str, npt.NDArray[Any]]
ScaleSource = Mapping[str, npt.ArrayLike] | Callable[[Arrays], Mapping[str, npt.ArrayLike]]


class BaseMismatchError(ParameterError):
    """An update was decoded against a base other than the one it was coded against."""


def _state(obj: Any) -> tuple[Arrays, dict[str, str], str]:
    """Numpy arrays (bfloat16 held as float32), original dtype names and framework."""
    from .models import load_state

    state, _, framework = load_state(obj)
    arrays: Arrays = {}
    dtypes: dict[str, str] = {}
    for name, x in state.items():
        arr, dtype = _to_numpy(x)
        arrays[name], dtypes[name] = np.asarray(arr), dtype
    return arrays, dtypes, framework


def state_hash(state: Any) -> str:
    """SHA-256 (hex) over the names, dtypes, shapes and values of a model's tensors, in name
    order: what an update records about the base it was coded against."""
    arrays, dtypes, _ = _state(state)
    return _hash(arrays, dtypes)


def _hash(arrays: Arrays, dtypes: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.asarray(arrays[name], order="C")  # (not ascontiguousarray: it makes 0-d 1-d)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        head = json.dumps([name, dtypes[name], list(arr.shape)]).encode()
        h.update(len(head).to_bytes(8, "little") + head)
        h.update(arr.tobytes())
    return h.hexdigest()


def update_rule(name: str, array: np.ndarray) -> TensorRule:
    """The default policy for updates: integer tensors are sent exactly (as their new value);
    tensors of rank ≥ 2 are quantized at the update's qp (and sparsified); every other float
    tensor (biases, normalization parameters and statistics) is quantized finely, densely."""
    if array.dtype.kind in "biu":
        return TensorRule("exact")
    if array.ndim >= 2:
        return TensorRule("quantize")
    return TensorRule("fine")


def sparsify(
    x: npt.ArrayLike,
    *,
    keep: float | None = None,
    threshold: float | None = None,
    structured: bool = False,
) -> npt.NDArray[np.float32]:
    """``x`` with all but its largest entries set to zero.

    ``keep``: the fraction of entries (or, ``structured``, of output filters: slices along axis
    0, ranked by L2 norm) kept per tensor, at least one when ``keep > 0``. ``threshold``: keep
    entries with ``|x| >= threshold`` (structured: filters whose RMS is ``>= threshold``). Both
    given: an entry must pass both. Neither: ``x`` unchanged.
    """
    a = np.array(x, dtype=np.float32)
    if a.size == 0 or (keep is None and threshold is None):
        return a
    if keep is not None and not 0.0 <= keep <= 1.0:
        raise ParameterError(f"keep must be a fraction in [0, 1], got {keep}")
    if threshold is not None and not threshold >= 0:
        raise ParameterError(f"threshold must be >= 0, got {threshold}")
    rows = (
        a.reshape(a.shape[0], a.size // a.shape[0])
        if structured and a.ndim >= 2
        else a.reshape(-1, 1)
    )
    score = np.sqrt(np.mean(np.square(rows, dtype=np.float64), axis=1))
    mask = np.ones(score.shape, dtype=bool)
    if threshold is not None:
        mask &= score >= threshold
    if keep is not None:
        k = 0 if keep == 0 else max(1, math.ceil(keep * score.size))
        top = np.zeros(score.shape, dtype=bool)
        if k >= score.size:
            top[:] = True
        elif k > 0:
            top[np.argpartition(-score, k - 1)[:k]] = True
        mask &= top
    return np.where(mask[:, None], rows, np.float32(0)).reshape(a.shape)


def filter_scales(target: npt.ArrayLike, approx: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-output-filter factors ``s`` minimizing ``||s_f · approx_f − target_f||²`` for every
    slice ``f`` along axis 0 (least squares, closed form ``<approx_f, target_f> / ||approx_f||²``;
    1 where ``approx_f`` is zero).

    With ``approx = base + sent`` (the filter the receiver will hold) and ``target = base +
    update`` (the filter the sender wanted to send), the factors restore the part of each
    filter's update that lies along the filter itself — its gain — which a sparse update drops.
    """
    t = np.asarray(target, dtype=np.float64)
    a = np.asarray(approx, dtype=np.float64)
    if t.shape != a.shape or t.ndim < 2:
        raise ParameterError("filter_scales needs two arrays of the same shape, rank >= 2")
    rows = (t.shape[0], math.prod(t.shape[1:]))
    t2, a2 = t.reshape(rows), a.reshape(rows)
    num, den = np.sum(a2 * t2, axis=1), np.sum(a2 * a2, axis=1)
    s = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return s.astype(np.float32)


def learn_scales(
    model: Any,
    filters: Mapping[str, npt.ArrayLike],
    batches: Iterable[tuple[Any, Any]],
    loss_fn: Callable[[Any, Any], Any],
    *,
    steps: int = 20,
    lr: float = 1e-2,
) -> Arrays:
    """Per-filter factors learned on local data (torch): the model runs with each tensor of
    ``filters`` (typically the ``approx`` an :meth:`UpdateCoder.encode` ``scales`` callback
    receives) multiplied by trainable factors, one per slice along axis 0, all else frozen; Adam
    minimizes ``loss_fn(model(x), y)`` over ``steps`` batches (cycling through ``batches``).
    The model itself is not modified."""
    import itertools

    import torch
    from torch.func import functional_call

    fixed = {k: v.detach() for k, v in model.named_parameters()}
    fixed.update({k: v.detach().clone() for k, v in model.named_buffers()})
    unknown = [n for n in filters if n not in fixed]
    if unknown:
        raise ParameterError(f"the model has no parameters named {unknown}")
    weights = {
        n: torch.as_tensor(np.asarray(f), dtype=fixed[n].dtype, device=fixed[n].device)
        for n, f in filters.items()
    }
    factors = {
        n: torch.ones(w.shape[0], dtype=w.dtype, device=w.device, requires_grad=True)
        for n, w in weights.items()
    }
    opt = torch.optim.Adam(list(factors.values()), lr=lr)
    data = itertools.cycle(batches)
    for _ in range(steps if factors else 0):
        x, y = next(data)
        params = dict(fixed)
        for n, w in weights.items():
            params[n] = w * factors[n].view((-1,) + (1,) * (w.ndim - 1))
        loss = loss_fn(functional_call(model, params, (x,)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {n: f.detach().cpu().numpy().astype(np.float32) for n, f in factors.items()}


@dataclass
class EncodedUpdate:
    """One coded update: its bytes, and the model the receiver will decode from them."""

    data: bytes
    state: Arrays
    base_sha256: str
    sent: Arrays = field(default_factory=dict)  # reconstructed state - base, per delta tensor
    scales: Arrays = field(default_factory=dict)  # the decoded per-filter factors
    dtypes: dict[str, str] = field(default_factory=dict)  # original dtypes (bfloat16 included)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    def torch_state(self) -> dict[str, Any]:
        """``state`` as torch tensors of the original dtypes (bfloat16 included)."""
        import torch

        out: dict[str, Any] = {}
        for name, x in self.state.items():
            t = torch.from_numpy(np.asarray(x, order="C"))  # keeps 0-d arrays 0-d
            out[name] = t.to(torch.bfloat16) if self.dtypes.get(name) == "bfloat16" else t
        return out


@dataclass
class UpdateCoder:
    """Codes a model as an update to a base; keeps the error-accumulation residual between calls.

    ``qp``/``method``/``lambda_`` quantize tensors of kind ``"quantize"`` under ``rule`` (default
    :func:`update_rule`), ``fine_qp`` (default ``qp - 16``, a 16× finer step) those of kind
    ``"fine"``. ``keep``/``threshold``/``structured`` sparsify the quantized kind (see
    :func:`sparsify`). ``scaling=True`` sends per-filter scale factors (:func:`filter_scales`)
    for quantized tensors of rank ≥ 2. ``error_feedback`` carries the part of each update that
    was not received (sparsified away, quantization error) into the next call.

    When to use error feedback: it is for senders whose ``state`` starts afresh from ``base``
    every call — a federated client trains from the model it just received, so what it did not
    send last round is nowhere in its new difference and must be carried. A sender that keeps
    its own model and codes it against what the receiver holds (a server broadcasting its
    global model, a checkpoint kept in sync) already sends everything outstanding in each
    difference: use ``error_feedback=False`` there, or the remainder would be counted twice.
    """

    qp: int = -32
    method: Method = "trellis"
    lambda_: float | None = None
    fine_qp: int | None = None
    keep: float | None = None
    threshold: float | None = None
    structured: bool = False
    scaling: bool = False
    scale_qp: int = SCALE_QP
    error_feedback: bool = True
    rule: Rule | None = None
    residual: Arrays = field(default_factory=dict)

    def encode(
        self,
        state: Any,
        base: Any,
        *,
        scales: ScaleSource | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> EncodedUpdate:
        """Code ``state`` as an update to ``base``.

        ``scales`` gives per-filter factors to send instead of the least-squares estimate: a
        mapping name → factors, or a function that receives the filters the receiver will hold
        before scaling (name → ``base + sent``, for every quantized tensor of rank ≥ 2) and
        returns such a mapping — e.g. :func:`learn_scales` on local data. Tensors that did not
        change (or whose update quantizes to all zeros) are left out: the receiver keeps its
        own."""
        new, dtypes, _ = _state(state)
        old, old_dtypes, _ = _state(base)
        fine_qp = self.qp - 16 if self.fine_qp is None else self.fine_qp
        absolute: list[Any] = []
        jobs: list[Any] = []
        targets: dict[str, npt.NDArray[np.float32]] = {}
        quantized: set[str] = set()  # differences quantized at qp (sparsified, maybe scaled)
        for name, x in new.items():
            how = _resolve(name, x, self.rule)
            ref = old.get(name)
            if ref is None or ref.shape != x.shape:
                absolute.append(_prepare(name, x, how, self, fine_qp, dtypes[name]))
                continue
            if how.kind == "exact" or not ref.dtype.kind == x.dtype.kind == "f":
                # exact tensors travel as their value, unless unchanged
                if not (dtypes[name] == old_dtypes[name] and np.array_equal(ref, x)):
                    absolute.append(_prepare(name, x, how, self, fine_qp, dtypes[name]))
                continue
            acc = x.astype(np.float32) - ref.astype(np.float32)
            if self.error_feedback and name in self.residual:
                if self.residual[name].shape == acc.shape:
                    acc = acc + self.residual[name]
            targets[name] = acc
            if how.kind == "quantize":
                quantized.add(name)
                acc = sparsify(
                    acc, keep=self.keep, threshold=self.threshold, structured=self.structured
                )
            jobs.append(_prepare(name, acc, how, self, fine_qp, "float32"))
        coded = code_many(jobs)
        sent = dict(zip(targets, decode_many(coded)))
        # what scale factors may apply to: quantized tensors of rank >= 2
        filters = [n for n in sent if n in quantized and new[n].ndim >= 2 and new[n].size]
        approx = {n: old[n].astype(np.float32) + sent[n] for n in filters}
        given = dict(scales(approx) if callable(scales) else scales or {})
        extra = []
        for n in filters:
            if n in given:
                s = np.asarray(given[n], dtype=np.float32).reshape(-1)
                if s.shape != (new[n].shape[0],):
                    raise ParameterError(f"{n}: expected {new[n].shape[0]} scale factors")
            elif self.scaling:
                s = filter_scales(old[n].astype(np.float32) + targets[n], approx[n])
            else:
                continue
            extra.append(prepare(s - 1, qp=self.scale_qp, method="uniform", name=n + SCALE_SUFFIX))
        coded_scales = {e["name"][: -len(SCALE_SUFFIX)]: (e, p) for e, p in code_many(extra)}
        coded_abs = code_many(absolute)
        entries = []
        for e, p in coded:  # each scale entry right after its tensor: their names share a prefix
            if e["name"] in coded_scales or np.any(sent[e["name"]]):
                entries.append((e, p))
            if e["name"] in coded_scales:
                entries.append(coded_scales[e["name"]])
        entries += coded_abs
        base_hash = _hash(old, old_dtypes)
        meta = dict(metadata or {})
        meta[BASE] = base_hash[:HASH_CHARS]
        if coded_abs:
            meta[ABSOLUTE] = json.dumps([e["name"] for e, _ in coded_abs])
        removed = [n for n in old if n not in new]
        if removed:
            meta[REMOVED] = json.dumps(removed)
        data = bytes(_nncabac.write_container(sorted(meta.items()), entries))
        result = _apply(data, old, old_dtypes, base_hash)
        for n in targets:
            result.sent[n] = result.state[n].astype(np.float32) - old[n].astype(np.float32)
            if self.error_feedback:
                self.residual[n] = targets[n] - result.sent[n]
        return result


def _resolve(name: str, x: np.ndarray, rule: Rule | None) -> TensorRule:
    chosen = rule(name, x) if rule is not None else None
    return chosen if chosen is not None else update_rule(name, x)


def _prepare(
    name: str, x: np.ndarray, how: TensorRule, c: UpdateCoder, fine_qp: int, dtype: str
) -> Any:
    if how.kind == "exact":
        return prepare(x, method="exact", name=name, dtype=dtype)
    if how.kind == "fine":
        qp = fine_qp if how.qp is None or how.qp == NONWEIGHT_QP else how.qp
        return prepare(x, qp=qp, method="uniform", name=name, dtype=dtype)
    qp = c.qp if how.qp is None else how.qp
    return prepare(x, qp=qp, method=c.method, lambda_=c.lambda_, name=name, dtype=dtype)


def encode_update(state: Any, base: Any, **options: Any) -> bytes:
    """Code ``state`` as an update to ``base`` (one shot, no residual kept); ``options`` as
    :class:`UpdateCoder`."""
    return UpdateCoder(error_feedback=False, **options).encode(state, base).data


def _read(data: bytes) -> tuple[dict[str, str], list[tuple[dict[str, Any], bytes]]]:
    data = bytes(data)
    header = _nncabac.Header(data, len(data))
    items = []
    for e in header.entries():
        start = header.payload_start + e["offset"]
        payload = data[start : start + e["length"]]
        header.verify(e["name"], payload)
        items.append((e, payload))
    return dict(header.metadata()), items


def _apply(data: bytes, base: Arrays, dtypes: Mapping[str, str], base_hash: str) -> EncodedUpdate:
    meta, items = _read(data)
    if BASE not in meta:
        raise ParameterError("not an nncabac update (no 'nncabac.base' in its metadata)")
    if meta.get(BASE) != base_hash[:HASH_CHARS]:
        raise BaseMismatchError(
            f"this update was coded against base {str(meta.get(BASE))[:16]}…, but the given "
            f"base hashes to {base_hash[:16]}…; decode it against the model it was made from"
        )
    absolute = set(json.loads(meta.get(ABSOLUTE, "[]")))
    removed = set(json.loads(meta.get(REMOVED, "[]")))
    values = dict(zip((e["name"] for e, _ in items), decode_many(items)))
    scales: Arrays = {}
    for name in [n for n in values if n.endswith(SCALE_SUFFIX)]:
        s = values.pop(name)
        scales[name[: -len(SCALE_SUFFIX)]] = (np.float32(1) + s.astype(np.float32)).reshape(-1)
    out: Arrays = {n: v.copy() for n, v in base.items() if n not in removed}
    out_dtypes = {n: dtypes.get(n, v.dtype.name) for n, v in out.items()}
    entries = {e["name"]: e for e, _ in items}
    for name in scales:
        if name not in values:
            raise ParameterError(f"{name}: scale factors without the tensor's update")
    for name, v in values.items():
        if name in absolute:
            out[name], out_dtypes[name] = v, entries[name]["dtype"]
            continue
        ref = base.get(name)
        if ref is None or ref.shape != v.shape:
            raise BaseMismatchError(f"{name}: the base has no tensor this update's shape")
        x = ref.astype(np.float32) + v.astype(np.float32)
        if name in scales:
            s = scales[name]
            if s.shape != (x.shape[0],):
                raise ParameterError(f"{name}: {s.size} scale factors for {x.shape[0]} filters")
            x = x * s.reshape((-1,) + (1,) * (x.ndim - 1))
        dt = out_dtypes[name] = dtypes.get(name, ref.dtype.name)
        out[name] = x.astype("float32" if dt == "bfloat16" else dt)
    return EncodedUpdate(data, out, base_hash, scales=scales, dtypes=out_dtypes)


def decode_update(
    data: bytes, base: Any, *, framework: Literal["np", "pt"] = "np"
) -> dict[str, Any]:
    """The model an update codes, rebuilt on ``base`` (which must be, bit for bit, the model the
    update was coded against: otherwise :class:`BaseMismatchError`). Tensors come back as numpy
    arrays, or torch tensors with ``framework="pt"`` (original dtypes, bfloat16 included)."""
    if framework not in ("np", "pt"):
        raise ParameterError(f"framework must be 'np' or 'pt', got {framework!r}")
    result = read_update(data, base)
    if framework == "np":
        return dict(result.state)
    return result.torch_state()


def read_update(data: bytes, base: Any) -> EncodedUpdate:
    """Everything the receiver learns from an update: the rebuilt model (numpy; bfloat16 held
    as float32), its original dtypes and the decoded scale factors."""
    arrays, dtypes, _ = _state(base)
    return _apply(data, arrays, dtypes, _hash(arrays, dtypes))
