"""A minimal reader and writer of the safetensors format, on numpy (no extra dependency).

The format: an 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the
raw little-endian tensor bytes. bfloat16 tensors are returned as float32 arrays with their
dtype name ``"bfloat16"`` reported separately, since numpy has no bfloat16.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._nncabac import DecodeError, ParameterError

__all__ = ["load", "save"]

MAX_HEADER = 100 << 20
_TO_NP = {
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
    "BF16": "bfloat16",
}
_FROM_NP = {v: k for k, v in _TO_NP.items()}


def load(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Tensors, their original dtype names, and the file's ``__metadata__``."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise DecodeError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise DecodeError(f"{path}: not a safetensors file (bad header length)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError as exc:
        raise DecodeError(f"{path}: not a safetensors file ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(raw)[8 + n :]
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, info in header.items():
        try:
            dt = _TO_NP[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise DecodeError(f"{path}: bad entry for {name!r}") from None
        item = 2 if dt == "bfloat16" else np.dtype(dt).itemsize
        if not (0 <= begin <= end <= len(body)) or end - begin != math.prod(shape) * item:
            raise DecodeError(f"{path}: bad data offsets for {name!r}")
        chunk = body[begin:end]
        if dt == "bfloat16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).reshape(shape)
        else:
            arr = (
                np.frombuffer(chunk, dtype=np.dtype(dt).newbyteorder("<")).astype(dt).reshape(shape)
            )
        tensors[name] = arr
        dtypes[name] = dt
    return tensors, dtypes, {str(k): str(v) for k, v in meta.items()}


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    dtypes: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write numpy arrays; ``dtypes`` may name ``"bfloat16"`` for float32 arrays to store so."""
    header: dict[str, Any] = {}
    chunks = []
    offset = 0
    for name, arr in tensors.items():
        dt = (dtypes or {}).get(name, np.asarray(arr).dtype.name)
        if dt not in _FROM_NP:
            raise ParameterError(f"{name}: dtype {dt} cannot be stored in safetensors")
        if dt == "bfloat16":
            bits = np.asarray(arr, dtype=np.float32, order="C").view(np.uint32) >> 16
            data = bits.astype("<u2").tobytes()
        else:
            a = np.asarray(arr, dtype=dt, order="C")
            data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _FROM_NP[dt],
            "shape": list(np.shape(arr)),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = dict(metadata)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)
