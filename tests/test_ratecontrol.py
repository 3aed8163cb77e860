"""Rate control and the tensor policy."""

from __future__ import annotations

import numpy as np
import pytest

from nncabac import ParameterError, _nncabac, policy, ratecontrol
from nncabac.tensor import decode_entry


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.laplace(0, 0.02, (32, 16, 3, 3)).astype(np.float32),
        "fc.weight": rng.laplace(0, 0.05, (10, 256)).astype(np.float32),
        "fc.bias": rng.normal(0, 0.1, 10).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2, 32).astype(np.float32),
        "bn.num_batches_tracked": np.array(10, np.int64),
    }


def test_default_rule_is_documented_behaviour() -> None:
    s = _state()
    kinds = {k: policy.default_rule(k, v).kind for k, v in s.items()}
    assert kinds == {
        "conv.weight": "quantize",
        "fc.weight": "quantize",
        "fc.bias": "exact",  # 10 elements: tiny
        "bn.running_var": "exact",
        "bn.num_batches_tracked": "exact",
    }
    big_bias = np.zeros(100, np.float32)
    assert policy.default_rule("x.bias", big_bias) == policy.TensorRule("fine", policy.NONWEIGHT_QP)


def test_user_rule_overrides_per_tensor() -> None:
    s = _state()

    def rule(name: str, arr: np.ndarray) -> policy.TensorRule | None:
        return policy.TensorRule("exact") if name == "fc.weight" else None

    coded = ratecontrol.code_tensors(s, -30, rule=rule)
    assert coded["fc.weight"][0]["method"] == "raw"
    assert coded["conv.weight"][0]["method"] == "trellis"
    assert coded["conv.weight"][0]["qp"] == -30


def test_fit_size_meets_the_target_with_the_finest_qp() -> None:
    s = _state()
    seen: list[ratecontrol.Step] = []
    res = ratecontrol.fit_size(s, target_bits_per_weight=1.5, method="uniform", on_step=seen.append)
    n = sum(v.size for v in s.values())

    def file_bits(coded: dict) -> float:  # the container as written, header included
        return len(_nncabac.write_container([], list(coded.values()))) * 8 / n

    assert file_bits(res.payloads) <= 1.5
    assert seen == res.steps and len(seen) >= 3
    # the sizes the search measured (without building the file) are the files' sizes
    written = len(_nncabac.write_container([], list(res.payloads.values())))
    assert [st.num_bytes for st in seen if st.qp == res.qp] == [written]
    # one qp finer does not fit (or is outside the range)
    finer = ratecontrol.code_tensors(s, res.qp - 1, method="uniform")
    assert file_bits(finer) > 1.5
    with pytest.raises(ParameterError):
        ratecontrol.fit_size(s)


def test_fit_metric_picks_the_coarsest_qp_within_tolerance() -> None:
    s = _state()
    x = np.random.default_rng(1).normal(size=(64, 256)).astype(np.float32)

    def metric(t: dict[str, np.ndarray]) -> float:  # negative output error of the fc layer
        return -float(np.mean((x @ t["fc.weight"].T - x @ s["fc.weight"].T) ** 2))

    res = ratecontrol.fit_metric(s, metric, tolerance=1e-3, method="trellis", qp_range=(-60, -10))
    decoded = {k: decode_entry(e, p) for k, (e, p) in res.payloads.items()}
    assert -metric(decoded) <= 1e-3
    coarser = ratecontrol.code_tensors(s, res.qp + 1, method="trellis")
    assert -metric({k: decode_entry(e, p) for k, (e, p) in coarser.items()}) > 1e-3
    assert all(st.metric is not None for st in res.steps)
