"""Parallel coding gives the same bytes as sequential coding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nncabac import nnc, ratecontrol


def _tensors(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {f"t{i}": rng.laplace(0, 0.02, (16 + i, 33)).astype(np.float32) for i in range(n)}


def test_rayon_batch_equals_one_thread() -> None:
    t = _tensors(10)
    for method in ("uniform", "rdoq", "trellis"):
        a = ratecontrol.code_tensors(t, -38, method=method, workers=1)  # type: ignore[arg-type]
        b = ratecontrol.code_tensors(t, -38, method=method)  # type: ignore[arg-type]
        assert a == b


def test_many_python_threads_give_sequential_results() -> None:
    rng = np.random.default_rng(0)
    layers = [np.round(rng.laplace(0, 2.0, (200, 50))).astype(np.int32) for _ in range(16)]
    kw = dict(dq_flag=0, num_gtx_flags=11, general_profile_idc=1, parent_node_id_present_flag=0)

    def roundtrip(levels: np.ndarray) -> tuple[bytes, np.ndarray]:
        enc = nnc.Encoder()
        enc.encode_layer(levels, param_opt_flag=1, **kw)
        data = enc.finish()
        dec = nnc.Decoder(data)
        out = dec.decode_layer(levels.shape, **kw)
        dec.finish()
        return data, out

    sequential = [roundtrip(x) for x in layers]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(roundtrip, layers * 2))
    for (d1, o1), (d2, o2) in zip(sequential * 2, parallel):
        assert d1 == d2
        np.testing.assert_array_equal(o1, o2)
