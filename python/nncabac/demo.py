"""The built-in demo: code a realistic 1M-weight layer and report size and speed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import nnc


@dataclass
class DemoReport:
    """Figures of one encode/decode run."""

    num_weights: int
    num_bytes: int
    bits_per_weight: float
    entropy_bits: float
    encode_s: float
    decode_s: float
    exact: bool

    def lines(self) -> list[str]:
        n = self.num_weights
        return [
            f"weights                 {n:,}",
            f"coded size              {self.num_bytes:,} bytes",
            f"bits/weight             {self.bits_per_weight:.4f}",
            f"order-0 entropy         {self.entropy_bits:.4f} bits/weight "
            f"(coder/entropy {self.bits_per_weight / max(self.entropy_bits, 1e-12):.3f})",
            f"ratio to int8           {8 / self.bits_per_weight:.2f}x smaller",
            f"ratio to fp32           {32 / self.bits_per_weight:.2f}x smaller",
            f"encode                  {n / self.encode_s / 1e6:.1f} M weights/s",
            f"decode                  {n / self.decode_s / 1e6:.1f} M weights/s",
            f"decoded exactly         {self.exact}",
        ]


def laplacian_levels(
    shape: tuple[int, ...] = (1024, 1024), scale: float = 0.55, seed: int = 0
) -> npt.NDArray[np.int32]:
    """Integer levels of a Laplacian weight tensor, as a uniform quantizer would produce them.

    With ``scale = 0.55`` (weights' Laplace scale over the step size) about 60 % are zero,
    typical of a trained layer at NNCodec's default step size.
    """
    rng = np.random.default_rng(seed)
    return np.round(rng.laplace(0.0, scale, shape)).astype(np.int32)


def order0_entropy(levels: npt.NDArray[np.int32]) -> float:
    """Empirical order-0 entropy in bits per value."""
    if levels.size == 0:
        return 0.0
    _, counts = np.unique(levels, return_counts=True)
    p = counts / levels.size
    return float(-(p * np.log2(p)).sum())


def run(shape: tuple[int, ...] = (1024, 1024), scale: float = 0.55, seed: int = 0) -> DemoReport:
    """Encode and decode Laplacian levels with NNCodec's default layer parameters."""
    levels = laplacian_levels(shape, scale, seed)
    params = dict(dq_flag=0, num_gtx_flags=11, general_profile_idc=1, parent_node_id_present_flag=0)
    t0 = time.perf_counter()
    enc = nnc.Encoder()
    enc.encode_layer(levels, param_opt_flag=1, **params)
    data = enc.finish()
    t1 = time.perf_counter()
    dec = nnc.Decoder(data)
    out = dec.decode_layer(levels.shape, **params)
    dec.finish()
    t2 = time.perf_counter()
    return DemoReport(
        num_weights=levels.size,
        num_bytes=len(data),
        bits_per_weight=8 * len(data) / levels.size,
        entropy_bits=order0_entropy(levels),
        encode_s=t1 - t0,
        decode_s=t2 - t1,
        exact=bool(np.array_equal(out, levels)),
    )


@dataclass
class ModelRow:
    """One setting of the model demo."""

    setting: str
    num_bytes: int
    ratio: float
    bits_per_weight: float
    accuracy: float
    compress_s: float
    decompress_s: float


SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("near-lossless: qp -44, uniform", dict(qp=-44, method="uniform")),
    ("NNCodec default: qp -38, trellis", dict(qp=-38, method="trellis")),
    ("aggressive: 1.0 bit/weight, trellis", dict(bits_per_weight=1.0, method="trellis")),
]


def run_model(
    settings: list[tuple[str, dict[str, Any]]] = SETTINGS,
) -> tuple[float, list[ModelRow]]:
    """Compress the shipped digits CNN at each setting; accuracy of the original and each
    reconstruction on the digits test split."""
    import os
    import tempfile

    from . import models, zoo

    state = zoo.digits_cnn()
    n = sum(v.size for v in state.values())
    base = zoo.digits_accuracy(state)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits.nncabac")
        for label, policy in settings:
            t0 = time.perf_counter()
            report = models.compress(state, path, **policy)
            t1 = time.perf_counter()
            back = models.decompress(path, framework="np")
            t2 = time.perf_counter()
            rows.append(
                ModelRow(
                    label,
                    report.file_bytes,
                    report.ratio,
                    8 * report.file_bytes / n,
                    zoo.digits_accuracy(back),
                    t1 - t0,
                    t2 - t1,
                )
            )
    return base, rows
