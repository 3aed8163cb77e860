"""Conformance-level NNC coding: the DeepCABAC stream exactly as NNCodec 2.1.3 writes it.

Each layer is coded with the parameters the NNC reference takes (names as in
``shared/vectors/index.json``); a decoder must be given the same parameters and the shape.

>>> import numpy as np
>>> from nncabac import nnc
>>> enc = nnc.Encoder()
>>> enc.encode_signed(8, -38)
>>> enc.encode_layer(np.array([[0, 3], [-1, 0]]), dq_flag=0, num_gtx_flags=11,
...                  param_opt_flag=1, general_profile_idc=1, parent_node_id_present_flag=0)
>>> data = enc.finish()
>>> dec = nnc.Decoder(data)
>>> dec.decode_signed(8)
-38
>>> dec.decode_layer((2, 2), dq_flag=0, num_gtx_flags=11, general_profile_idc=1,
...                  parent_node_id_present_flag=0).tolist()
[[0, 3], [-1, 0]]
>>> dec.finish() == len(data)
True
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _nncabac
from ._nncabac import DecodeError, ParameterError, RangeError

__all__ = [
    "DecodeError",
    "Decoder",
    "Encoder",
    "ParameterError",
    "RangeError",
    "as_levels",
    "dequantize_layer",
    "quantize_layer",
    "step_size",
]

_I32_MIN = -(2**31)
_I32_MAX = 2**31 - 1

ShapeLike = Union[int, Sequence[int]]


@contextmanager
def _parameters() -> Iterator[None]:
    """Integers too large for the extension's parameter types are bad parameters, not Python's
    OverflowError."""
    try:
        yield
    except OverflowError as e:
        raise ParameterError(f"parameter out of range: {e}") from None


def as_levels(levels: Any) -> npt.NDArray[np.int32]:
    """Return ``levels`` as a C-contiguous int32 array, copying only when needed.

    Any integer array (or nested sequence of Python ints) is accepted; values outside int32
    raise :class:`RangeError` and non-integer input raises :class:`ParameterError`.
    """
    arr = np.asarray(levels)
    if arr.dtype == np.int32:
        return np.asarray(arr, order="C")
    if arr.dtype == object:
        try:
            arr = np.asarray(arr, dtype=np.int64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise RangeError(f"levels must be integers within int32: {exc}") from None
    if arr.size == 0 and arr.dtype.kind in "fiub":
        return np.zeros(arr.shape, dtype=np.int32)  # e.g. np.asarray([]) is float64
    if arr.dtype.kind not in "iu":
        raise ParameterError(f"levels must be an integer array, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < _I32_MIN or hi > _I32_MAX:
            raise RangeError(f"levels must lie in int32 [{_I32_MIN}, {_I32_MAX}], got [{lo}, {hi}]")
    return np.asarray(arr, dtype=np.int32, order="C")


def _shape(shape: ShapeLike) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    out = []
    for d in dims:
        try:
            d = operator.index(d)
        except TypeError:
            raise ParameterError(f"shape must hold integers, got {shape!r}") from None
        if d < 0:
            raise ParameterError(f"shape must not be negative, got {shape!r}")
        out.append(d)
    return tuple(out)


class Encoder:
    """Writes one stream: ``iae_v``/``uae_v`` fields and layers in any order, then finish()."""

    def __init__(self) -> None:
        self._inner = _nncabac.Encoder()

    def encode_signed(self, bits: int, value: int) -> None:
        """``iae_v``: ``value`` as a two's-complement field of ``bits`` (1..32) bypass bins."""
        with _parameters():
            self._inner.encode_signed(bits, value)

    def encode_unsigned(self, bits: int, value: int) -> None:
        """``uae_v``: ``value`` as an unsigned field of ``bits`` (1..32) bypass bins."""
        with _parameters():
            self._inner.encode_unsigned(bits, value)

    def encode_layer(
        self,
        levels: Any,
        *,
        dq_flag: int,
        num_gtx_flags: int,
        param_opt_flag: int,
        general_profile_idc: int,
        parent_node_id_present_flag: int,
        scan_order: int = 0,
    ) -> None:
        """Code one tensor of integer levels in row-major order.

        With ``dq_flag=1`` the values are reconstruction indices of the 8-state dependent
        quantizer; like the reference, an index of the wrong parity for its state is mapped to a
        neighbouring one (see the spec, section 6.2). The GIL is released while coding.
        """
        lv = as_levels(levels)
        with _parameters():
            self._inner.encode_layer(
                lv,
                dq_flag=dq_flag,
                num_gtx_flags=num_gtx_flags,
                param_opt_flag=param_opt_flag,
                general_profile_idc=general_profile_idc,
                parent_node_id_present_flag=parent_node_id_present_flag,
                scan_order=scan_order,
            )

    @property
    def bins_coded(self) -> int:
        """Number of bins (regular, bypass, terminating) coded so far."""
        return self._inner.bins_coded

    def finish(self) -> bytes:
        """Code the terminating bin, flush and return the stream. The encoder is then spent."""
        return self._inner.finish()


class Decoder:
    """Reads a stream written by :class:`Encoder`, given the same sequence of calls."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._inner = _nncabac.Decoder(bytes(data))

    def decode_signed(self, bits: int) -> int:
        """Read an ``iae_v`` field of ``bits`` bits."""
        with _parameters():
            return self._inner.decode_signed(bits)

    def decode_unsigned(self, bits: int) -> int:
        """Read a ``uae_v`` field of ``bits`` bits."""
        with _parameters():
            return self._inner.decode_unsigned(bits)

    def decode_layer(
        self,
        shape: ShapeLike,
        *,
        dq_flag: int,
        num_gtx_flags: int,
        general_profile_idc: int,
        parent_node_id_present_flag: int,
        scan_order: int = 0,
    ) -> npt.NDArray[np.int32]:
        """Decode one tensor of ``shape`` as an int32 array (GIL released while decoding)."""
        dims = _shape(shape)
        with _parameters():
            flat = self._inner.decode_layer(
                list(dims),
                dq_flag=dq_flag,
                num_gtx_flags=num_gtx_flags,
                general_profile_idc=general_profile_idc,
                parent_node_id_present_flag=parent_node_id_present_flag,
                scan_order=scan_order,
            )
        return flat.reshape(dims)

    @property
    def position(self) -> int:
        """Bytes read so far."""
        return self._inner.position

    def finish(self) -> int:
        """Read the terminating bin and return the bytes the stream used.

        Raises :class:`DecodeError` when the terminating bin is not 1 or data is missing.
        """
        return self._inner.finish()


def _as_float32(x: Any, what: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ParameterError(f"{what} must be a real-valued array, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def quantize_layer(
    weights: Any,
    *,
    dq_flag: int,
    qp: int,
    qp_density: int,
    lambda_scale: float,
    max_num_no_rem: int,
    general_profile_idc: int,
    scan_order: int = 0,
    importance: Any = None,
) -> tuple[npt.NDArray[np.int32], int]:
    """NNC's ``quantLayer``: int32 levels of ``weights`` (their shape) and the qp actually used.

    ``dq_flag=0`` with ``lambda_scale <= 0`` rounds to the nearest level; with
    ``lambda_scale > 0`` it picks levels by rate and distortion; ``dq_flag=1`` runs the 8-state
    trellis (levels are then reconstruction indices). Bit-exact with NNCodec 2.1.3 when
    ``importance`` is None. ``importance`` (same shape, finite, ≥ 0) weighs each weight's squared
    error: the quantizers then minimise ``Σ w_i (x_i − x̂_i)² + λ·R``. A qp whose levels would
    overflow int32 is replaced by a coarser one, which is returned. The GIL is released.
    """
    w = _as_float32(weights, "weights")
    imp = None
    if importance is not None:
        imp = _as_float32(importance, "importance")
        if imp.shape != w.shape:
            raise ParameterError(f"importance shape {imp.shape} != weights shape {w.shape}")
        imp = imp.reshape(-1)
    with _parameters():
        levels, qp_used = _nncabac.quantize_layer(
            w.reshape(-1),
            dq_flag=dq_flag,
            qp=qp,
            qp_density=qp_density,
            lambda_scale=lambda_scale,
            max_num_no_rem=max_num_no_rem,
            general_profile_idc=general_profile_idc,
            scan_order=scan_order,
            importance=imp,
        )
    return levels.reshape(w.shape), int(qp_used)


def dequantize_layer(levels: Any, *, qp: int, qp_density: int) -> npt.NDArray[np.float32]:
    """NNC's ``dequantLayer``: ``float32(Δ × float32(level))``, in the levels' shape."""
    lv = as_levels(levels)
    with _parameters():
        out = _nncabac.dequantize_layer(lv.reshape(-1), qp=qp, qp_density=qp_density)
    return out.reshape(lv.shape)


def step_size(qp: int, qp_density: int) -> float:
    """The step size Δ of ``qp`` (spec section 10.1)."""
    with _parameters():
        return float(_nncabac.step_size(qp, qp_density))
