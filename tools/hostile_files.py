"""Container files a writer would refuse to produce, for the hostile-input test and table.

    from hostile_files import claiming_1e12_elements, entry, fix_header_crc, write

Shared by ``tests/test_hostile.py`` and ``benches/hostile_table.py`` (both put this folder on
``sys.path``). The files are made from what the writer does produce, patched at positions found
by comparing two written files, so they follow the format as it is rather than a copy of it.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from nncabac import _nncabac, nnc


def entry(name: str, shape: tuple[int, ...], method: str = "uniform") -> dict[str, Any]:
    """A container entry of a float32 tensor coded with ``method`` (qp −38, G 11)."""
    return dict(
        name=name,
        dtype="float32",
        shape=shape,
        method=method,
        dq_flag=0,
        num_gtx_flags=11,
        qp=-38,
        qp_density=2,
        lambda_=0.0,
    )


def write(*tensors: tuple[dict[str, Any], bytes]) -> bytes:
    """The container of ``(entry, payload)`` pairs, without metadata."""
    return bytes(_nncabac.write_container([], list(tensors)))


def fix_header_crc(data: bytes) -> bytes:
    """``data`` with the header checksum recomputed (the span comes from the preamble)."""
    span = _nncabac.header_span(data[: _nncabac.PREAMBLE_LEN])
    crc = zlib.crc32(data[: span - 4]) & 0xFFFFFFFF
    return data[: span - 4] + crc.to_bytes(4, "little") + data[span:]


def claiming_1e12_elements(method: str) -> bytes:
    """A one-tensor file whose header claims 10^12 elements, with a payload of a few bytes.

    Shapes (0, 10^3, 10^3) and (1, 10^3, 10^3) are both writable; the first byte where their
    files differ is the first dimension. The same byte of a file of shape (0, 10^6, 10^6) (zero
    elements, so writable) is then set to 1, and the header checksum recomputed.
    """
    empty = nnc.Encoder()
    empty.encode_layer(
        np.zeros((0, 1), np.int32),
        dq_flag=0,
        num_gtx_flags=11,
        param_opt_flag=0,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    tiny = b"" if method == "raw" else empty.finish()
    big_payload = bytes(4_000_000) if method == "raw" else bytes(1000)
    a = write((entry("t", (0, 1000, 1000), method), tiny))
    b = write((entry("t", (1, 1000, 1000), method), big_payload))
    pos = next(i for i in range(_nncabac.PREAMBLE_LEN, min(len(a), len(b))) if a[i] != b[i])
    c = write((entry("t", (0, 10**6, 10**6), method), tiny))
    if c[pos] != 0 or a[pos] != 0:
        raise RuntimeError("the first dimension is not where the comparison found it")
    return fix_header_crc(c[:pos] + b"\x01" + c[pos + 1 :])
