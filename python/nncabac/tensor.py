"""A self-describing payload for one tensor: quantize (or keep exact), entropy-code, checksum.

>>> import numpy as np, nncabac
>>> w = np.random.default_rng(0).normal(0, 0.05, (64, 32)).astype(np.float32)
>>> data = nncabac.encode_tensor(w, qp=-38, method="uniform")
>>> r = nncabac.decode_tensor(data)
>>> r.shape, r.dtype, bool(np.abs(r - w).max() <= nncabac.step_size(-38) / 2)
((64, 32), dtype('float32'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _nncabac, nnc
from ._nncabac import DecodeError, ParameterError

__all__ = [
    "TensorInfo",
    "decode_tensor",
    "encode_tensor",
    "qp_for_step",
    "step_size",
    "tensor_info",
]

Method = Literal["uniform", "rdoq", "trellis", "exact"]

# NNCodec's greater-than flags (cabac_unary_length_minus1 + 1). The quantizers' rate model uses
# NUM_GTX - 1 as NNCodec does (so the levels match), while the coder chooses each tensor's G
# (nncabac::gtx: the smallest estimated size; dense layers code smaller and decode faster with 1).
NUM_GTX = 11
QP_DENSITY = 2
DEFAULT_QP = -38  # NNCodec's default for weights
MAX_DIMS = 32

_FLOATS = {"float16", "bfloat16", "float32", "float64"}
_DTYPES = _FLOATS | {
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
}


@dataclass(frozen=True)
class TensorInfo:
    """What a payload header says about its tensor."""

    shape: tuple[int, ...]
    dtype: str
    method: str
    qp: int
    qp_density: int
    lambda_: float
    num_bytes: int
    num_gtx_flags: int = 11
    """Greater-than flags of the CABAC layer, chosen per tensor (see docs/performance.md)."""

    @property
    def step(self) -> float | None:
        """Quantization step size, or None for exactly stored tensors."""
        if self.method in ("lossless", "raw"):
            return None
        return step_size(self.qp, self.qp_density)


def step_size(qp: int, qp_density: int = QP_DENSITY) -> float:
    """The NNC step size Δ of ``qp`` (see the spec, section 10.1)."""
    return float(_nncabac.step_size(qp, qp_density))


def qp_for_step(step: float, qp_density: int = QP_DENSITY) -> int:
    """The qp whose step size is closest to ``step`` (in the log domain)."""
    if not (step > 0 and math.isfinite(step)):
        raise ParameterError(f"step must be a positive finite number, got {step}")
    guess = round(math.log2(step) * 2**qp_density)
    cands = range(guess - 2 ** (qp_density + 1), guess + 2 ** (qp_density + 1) + 1)
    return min(cands, key=lambda q: abs(math.log2(step_size(q, qp_density) / step)))


def _to_numpy(x: Any) -> tuple[np.ndarray, str]:
    """A numpy view/copy of ``x`` and the name of its original dtype (torch tensors included)."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch

        t = x.detach().cpu()
        name = str(t.dtype).replace("torch.", "")
        if t.dtype == torch.bfloat16:
            return t.to(torch.float32).numpy(), "bfloat16"
        if name not in _DTYPES:
            raise ParameterError(f"unsupported dtype {t.dtype}")
        return t.numpy(), name
    arr = np.asarray(x)
    name = arr.dtype.name
    if name == "bfloat16":  # ml_dtypes' bfloat16 arrays
        return arr.astype(np.float32), name
    if name not in _DTYPES:
        raise ParameterError(f"unsupported dtype {arr.dtype}")
    return arr, name


def encode_tensor(
    x: Any,
    *,
    qp: int | None = None,
    step: float | None = None,
    method: Method = "uniform",
    lambda_: float | None = None,
    importance: Any = None,
    qp_density: int = QP_DENSITY,
    name: str = "tensor",
    num_gtx_flags: int | None = None,
) -> bytes:
    """Quantize and code a float tensor, or code an integer tensor losslessly.

    ``qp`` or ``step`` sets the quantization step (default: NNCodec's qp −38). ``method``:
    ``"uniform"`` (nearest level), ``"rdoq"`` (rate-distortion optimized levels), ``"trellis"``
    (8-state dependent quantization with rate model) or ``"exact"`` (stored bit for bit).
    ``lambda_`` weighs rate against distortion (NNCodec's ``lambda_scale``; default 0 for uniform
    and 1 otherwise). ``importance``, an array of the tensor's shape, weighs each weight's
    squared error in the RDOQ/trellis decisions. ``num_gtx_flags``: the CABAC layer's
    greater-than flags; by default the encoder chooses them (the smallest payload, levels as
    NNCodec's); an int ``G`` codes as NNCodec does with ``cabac_unary_length_minus1 = G - 1``
    (its rate model included), so ``11`` gives NNCodec's own payload for these levels.

    The result is a one-tensor nncabac container (``docs/format.md``): self-describing and
    checksummed.
    """
    entry, payload = code_array(
        x,
        qp=qp,
        step=step,
        method=method,
        lambda_=lambda_,
        importance=importance,
        qp_density=qp_density,
        name=name,
        num_gtx_flags=num_gtx_flags,
    )
    return bytes(_nncabac.write_container([], [(entry, payload)]))


@dataclass
class Job:
    """A float tensor ready for the Rust quantize-and-code pass."""

    entry: dict[str, Any]
    weights: npt.NDArray[np.float32]
    importance: npt.NDArray[np.float32] | None
    dq_flag: int
    qp: int
    qp_density: int
    lambda_: float
    num_gtx_flags: int | None = None
    """Greater-than flags of the coder (and G − 1 of the rate model); None: chosen per tensor."""

    def args(self) -> tuple[Any, ...]:
        return (
            self.weights.reshape(-1),
            list(self.entry["shape"]),
            None if self.importance is None else self.importance.reshape(-1),
            self.dq_flag,
            self.qp,
            self.qp_density,
            self.lambda_,
        )

    def finish(self, stream: bytes, qp_used: int, gtx: int) -> tuple[dict[str, Any], bytes]:
        self.entry.update(qp=int(qp_used), num_gtx_flags=int(gtx))
        return self.entry, bytes(stream)


def prepare(
    x: Any,
    *,
    qp: int | None = None,
    step: float | None = None,
    method: Method = "uniform",
    lambda_: float | None = None,
    importance: Any = None,
    qp_density: int = QP_DENSITY,
    name: str = "tensor",
    dtype: str | None = None,
    num_gtx_flags: int | None = None,
) -> Job | tuple[dict[str, Any], bytes]:
    """Validate one tensor: a :class:`Job` to quantize, or an exactly coded (entry, payload)."""
    gtx = _check_gtx(num_gtx_flags)
    arr, found = _to_numpy(x)
    if dtype is not None and dtype != found:
        if not (dtype == "bfloat16" and found == "float32"):
            raise ParameterError(f"{name}: cannot record a {found} array as {dtype}")
    dtype = dtype or found
    if arr.ndim > MAX_DIMS:
        raise ParameterError(f"{name}: at most {MAX_DIMS} dimensions are supported")
    shape = tuple(int(d) for d in arr.shape)
    entry: dict[str, Any] = dict(
        name=name,
        dtype=dtype,
        shape=shape,
        dq_flag=0,
        num_gtx_flags=NUM_GTX,
        qp=0,
        qp_density=0,
        lambda_=0.0,
    )
    if dtype not in _FLOATS:
        return _code_exact(arr, entry, gtx)
    if method == "exact":
        return _code_raw(arr, entry)
    if method not in ("uniform", "rdoq", "trellis"):
        raise ParameterError(
            f"method must be 'uniform', 'rdoq', 'trellis' or 'exact', got {method!r}"
        )
    w = np.asarray(arr, dtype=np.float32, order="C")
    if not np.isfinite(w).all():
        bad = int((~np.isfinite(w)).sum())
        raise ParameterError(f"{name}: {bad} non-finite value(s) (NaN or Inf) cannot be quantized")
    if len(shape) > 1 and 0 in shape[1:]:
        return _code_raw(arr, entry)  # nothing to quantize, and not a codable layer shape
    if step is not None and qp is not None:
        raise ParameterError("give qp or step, not both")
    q = qp_for_step(step, qp_density) if step is not None else DEFAULT_QP if qp is None else qp
    lam = float(lambda_ if lambda_ is not None else (0.0 if method == "uniform" else 1.0))
    if method == "rdoq" and lam <= 0:
        method = "uniform"
    if method == "uniform":
        lam = 0.0
    dq = 1 if method == "trellis" else 0
    imp = None
    if importance is not None:
        imp_arr, _ = _to_numpy(importance)
        imp = np.asarray(imp_arr, dtype=np.float32, order="C")
        if imp.shape != w.shape:
            raise ParameterError(f"{name}: importance shape {imp.shape} != tensor shape {w.shape}")
    entry.update(method=method, dq_flag=dq, qp_density=qp_density, lambda_=lam)
    return Job(entry, w, imp, dq, q, qp_density, lam, gtx)


def code_many(
    items: list[Job | tuple[dict[str, Any], bytes]], workers: int | None = None
) -> list[tuple[dict[str, Any], bytes]]:
    """Quantize and code all jobs in one Rust call per greater-than-flags setting (all cores,
    GIL released), in order."""
    jobs = [it for it in items if isinstance(it, Job)]
    done: dict[int, tuple[dict[str, Any], bytes]] = {}
    for gtx in dict.fromkeys(j.num_gtx_flags for j in jobs):
        group = [j for j in jobs if j.num_gtx_flags == gtx]
        coded = _nncabac.code_layers(
            [j.args() for j in group],
            num_gtx_flags=NUM_GTX if gtx is None else gtx,
            choose_num_gtx_flags=gtx is None,
            threads=workers,
        )
        for j, c in zip(group, coded):
            done[id(j)] = j.finish(*c)
    return [done[id(it)] if isinstance(it, Job) else it for it in items]


def _check_gtx(num_gtx_flags: int | None) -> int | None:
    if num_gtx_flags is None:
        return None
    if isinstance(num_gtx_flags, bool) or not isinstance(num_gtx_flags, (int, np.integer)):
        raise ParameterError(f"num_gtx_flags must be an int or None, got {num_gtx_flags!r}")
    if not 1 <= num_gtx_flags <= _nncabac.MAX_GTX_FLAGS:
        raise ParameterError(
            f"num_gtx_flags must be in 1..={_nncabac.MAX_GTX_FLAGS}, got {num_gtx_flags}"
        )
    return int(num_gtx_flags)


def code_array(x: Any, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    """Code one tensor (arguments as :func:`prepare`): its container entry (without offset and
    checksum) and its payload. ``dtype`` overrides the recorded original dtype (e.g.
    ``"bfloat16"`` for a float32 array read from a bfloat16 file)."""
    return code_many([prepare(x, **kwargs)])[0]


def _code_exact(
    arr: np.ndarray, entry: dict[str, Any], gtx: int | None = None
) -> tuple[dict[str, Any], bytes]:
    shape = entry["shape"]
    flat = arr.reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.astype(np.int32)
    fits = flat.size == 0 or (int(flat.min()) >= -(2**31) and int(flat.max()) < 2**31)
    if not fits or (len(shape) > 1 and 0 in shape[1:]):
        return _code_raw(arr, entry)
    levels = np.ascontiguousarray(flat, dtype=np.int32)
    if gtx is None:
        gtx = _nncabac.choose_num_gtx_flags(levels, dq_flag=0)
    enc = nnc.Encoder()
    enc.encode_layer(
        levels.reshape(shape),
        dq_flag=0,
        num_gtx_flags=gtx,
        param_opt_flag=1,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    entry.update(method="lossless", num_gtx_flags=gtx)
    return entry, enc.finish()


def _code_raw(arr: np.ndarray, entry: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    if entry["dtype"] == "bfloat16":  # held as float32; the upper halves are the bfloat16 bits
        bits = np.asarray(arr, dtype=np.float32, order="C").view(np.uint32) >> 16
        raw = bits.astype("<u2").tobytes()
    else:
        raw = np.asarray(arr, order="C").astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    entry.update(method="raw")
    return entry, raw


def _info(entry: dict[str, Any], num_bytes: int) -> TensorInfo:
    return TensorInfo(
        shape=tuple(entry["shape"]),
        dtype=entry["dtype"],
        method=entry["method"],
        qp=entry["qp"],
        qp_density=entry["qp_density"],
        lambda_=entry["lambda_"],
        num_bytes=num_bytes,
        num_gtx_flags=entry["num_gtx_flags"],
    )


def _single(data: bytes) -> tuple[dict[str, Any], bytes, Any]:
    data = bytes(data)
    header = _nncabac.Header(data, len(data))
    entries = header.entries()
    if len(entries) != 1:
        raise DecodeError(f"expected a one-tensor payload, found {len(entries)} tensors")
    e = entries[0]
    start = header.payload_start + e["offset"]
    payload = data[start : start + e["length"]]
    header.verify(e["name"], payload)
    return e, payload, header


def tensor_info(data: bytes) -> TensorInfo:
    """Read and verify a payload's header and checksums without decoding it."""
    e, payload, _ = _single(data)
    return _info(e, len(data))


def decode_many(
    items: list[tuple[dict[str, Any], bytes]],
    framework: Literal["np", "pt"] = "np",
    workers: int | None = None,
) -> list[Any]:
    """Decode verified payloads described by their container entries, all in one Rust call (all
    cores, GIL released). Results in order, in the original dtypes."""
    if framework not in ("np", "pt"):
        raise ParameterError(f"framework must be 'np' or 'pt', got {framework!r}")
    arrays = _nncabac.decode_entries(items, threads=workers) if items else []
    return [finish(e["dtype"], a, framework) for (e, _), a in zip(items, arrays)]


# numpy dtypes by container dtype name: `arr.dtype.name` runs Python code in numpy, a few µs a
# tensor (1.5 ms of a 25 ms ResNet-56 decompress); comparing dtypes does not.
_NP_DTYPES = {
    name: np.dtype(name)
    for name in (
        "float16", "float32", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool",
    )
}  # fmt: skip


def finish(dtype: str, arr: npt.NDArray[Any], framework: str) -> Any:
    """A decoded array (as the Rust reader returns it: quantized tensors in float32, raw
    float16/bfloat16 as their 16-bit patterns) in the original ``dtype``: a numpy array
    (bfloat16 as float32) or, for ``framework="pt"``, a torch tensor sharing its memory."""
    if arr.dtype != _NP_DTYPES.get(dtype):
        if dtype == "bfloat16":
            if framework == "pt":
                import torch

                if arr.dtype == np.uint16:  # the bit patterns: reinterpret, no copy
                    return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
                return torch.from_numpy(arr).to(torch.bfloat16)
            if arr.dtype == np.uint16:
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dtype == "float16" and arr.dtype == np.uint16:
            arr = arr.view(np.float16)
        else:  # float32 reconstructions of float16/float64 tensors
            arr = arr.astype(dtype)
    if framework == "pt":
        import torch

        return torch.from_numpy(arr)
    return arr


def decode_entry(
    entry: dict[str, Any], payload: bytes, framework: Literal["np", "pt"] = "np"
) -> Any:
    """Decode one verified payload described by its container entry."""
    return decode_many([(entry, payload)], framework)[0]


def decode_tensor(data: bytes, *, framework: Literal["np", "pt"] = "np") -> Any:
    """Decode a payload of :func:`encode_tensor` (checksums verified first).

    Returns a numpy array of the original dtype (bfloat16 comes back as float32 in numpy), or a
    torch tensor of the original dtype with ``framework="pt"``.
    """
    e, payload, _ = _single(data)
    return decode_entry(e, payload, framework)
