"""The friendly tensor API: encode_tensor / decode_tensor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nncabac
from nncabac import DecodeError, ParameterError, _nncabac, nnc
from nncabac.tensor import code_array

FLOATS = [np.float16, np.float32, np.float64]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7)


@settings(max_examples=120, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(FLOATS), shapes, elements=st.floats(-4, 4, width=16, allow_nan=False)
    ),
    method=st.sampled_from(["uniform", "rdoq", "trellis"]),
    qp=st.integers(-60, -20),
)
def test_every_method_round_trips_within_its_reconstruction(
    x: np.ndarray, method: str, qp: int
) -> None:
    data = nncabac.encode_tensor(x, qp=qp, method=method)  # type: ignore[arg-type]
    info = nncabac.tensor_info(data)
    y = nncabac.decode_tensor(data)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert info.shape == x.shape and info.dtype == x.dtype.name
    if info.method == "raw":  # a (k, 0, ...) shape: nothing to quantize
        assert x.size == 0
        return
    delta = nncabac.step_size(info.qp)
    # the decoded values are exactly the dequantized levels the quantizer chose
    levels, qp_used = nnc.quantize_layer(
        x.astype(np.float32),
        dq_flag=int(method == "trellis"),
        qp=qp,
        qp_density=2,
        lambda_scale=0.0 if method == "uniform" else 1.0,
        max_num_no_rem=10,
        general_profile_idc=0,
    )
    recon = nnc.dequantize_layer(levels, qp=qp_used, qp_density=2)
    np.testing.assert_array_equal(y, recon.astype(x.dtype))
    if method == "uniform":  # plain rounding error <= Δ/2 (in float32)
        err = np.abs(recon.astype(np.float64) - x.astype(np.float32).astype(np.float64))
        assert err.max(initial=0) <= delta / 2 * (1 + 1e-6)


@settings(max_examples=80, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from(
            [
                np.int8,
                np.int16,
                np.int32,
                np.int64,
                np.uint8,
                np.uint16,
                np.uint32,
                np.uint64,
                np.bool_,
            ]
        ),
        shapes,
    ),
)
def test_integer_tensors_are_lossless(x: np.ndarray) -> None:
    y = nncabac.decode_tensor(nncabac.encode_tensor(x))
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


def test_exact_floats_and_large_integers_are_stored_bit_for_bit() -> None:
    x = np.array([np.pi, -0.0, 1e-45, 3.4e38], dtype=np.float32)
    y = nncabac.decode_tensor(nncabac.encode_tensor(x, method="exact"))
    np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))
    big = np.array([2**62, -(2**63), 5], dtype=np.int64)
    assert nncabac.tensor_info(nncabac.encode_tensor(big)).method == "raw"
    np.testing.assert_array_equal(nncabac.decode_tensor(nncabac.encode_tensor(big)), big)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected_naming_the_tensor(bad: float) -> None:
    x = np.ones(10, np.float32)
    x[3] = bad
    with pytest.raises(ParameterError, match="layer3.weight"):
        nncabac.encode_tensor(x, name="layer3.weight")


def _layer_stream(levels: np.ndarray, dq: int, gtx: int) -> bytes:
    """The reference coder's single-layer stream of ``levels`` (param_opt_flag 1)."""
    enc = nnc.Encoder()
    enc.encode_layer(
        levels,
        dq_flag=dq,
        num_gtx_flags=gtx,
        param_opt_flag=1,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    return enc.finish()


@pytest.mark.parametrize(
    ("scale", "qp", "method", "flags"),
    [
        (0.05, -60, "uniform", (1, 1)),
        (0.05, -60, "trellis", (1, 1)),
        (0.02, -38, "uniform", (4, 11)),
    ],
)
def test_each_tensor_is_coded_with_the_greater_than_flags_that_suit_it(
    scale: float, qp: int, method: str, flags: tuple[int, int]
) -> None:
    """Dense levels take one flag (a smaller payload that decodes faster than with NNCodec's
    11); levels of a few steps take more. The quantizer, and so the reconstruction, is
    NNCodec's either way."""
    x = np.random.default_rng(3).laplace(0, scale, (64, 64)).astype(np.float32)
    data = nncabac.encode_tensor(x, qp=qp, method=method, lambda_=0.0)  # type: ignore[arg-type]
    info = nncabac.tensor_info(data)
    dq = int(method == "trellis")
    levels, q = _nncabac.quantize_layer(
        x,
        dq_flag=dq,
        qp=qp,
        qp_density=2,
        lambda_scale=0.0,
        max_num_no_rem=10,
        general_profile_idc=0,
    )
    assert flags[0] <= info.num_gtx_flags <= flags[1]
    assert info.num_gtx_flags == _nncabac.choose_num_gtx_flags(levels, dq_flag=dq)
    expect = _nncabac.dequantize_layer(levels, qp=q, qp_density=2).reshape(x.shape)
    np.testing.assert_array_equal(nncabac.decode_tensor(data), expect)

    chosen = _layer_stream(levels.reshape(x.shape), dq, info.num_gtx_flags)
    assert len(chosen) <= len(_layer_stream(levels.reshape(x.shape), dq, 11))


@pytest.mark.parametrize(
    ("gtx", "method"), [(11, "trellis"), (11, "uniform"), (4, "rdoq"), (1, "uniform")]
)
def test_fixed_greater_than_flags_code_as_nncodec_does(gtx: int, method: str) -> None:
    """``num_gtx_flags=G`` is NNCodec with ``cabac_unary_length_minus1 = G - 1``: its rate model
    (``max_num_no_rem``) and coder, so the payload is the reference coder's for those levels."""
    x = np.random.default_rng(5).laplace(0, 0.05, (48, 40)).astype(np.float32)
    entry, payload = code_array(x, qp=-40, method=method, num_gtx_flags=gtx)  # type: ignore[arg-type]
    assert entry["num_gtx_flags"] == gtx
    dq = int(method == "trellis")
    levels, _ = _nncabac.quantize_layer(
        x,
        dq_flag=dq,
        qp=-40,
        qp_density=2,
        lambda_scale=0.0 if method == "uniform" else 1.0,
        max_num_no_rem=gtx - 1,
        general_profile_idc=0,
    )
    assert payload == _layer_stream(levels.reshape(x.shape), dq, gtx)
    ints = np.arange(-300, 300, dtype=np.int64).reshape(20, 30)
    entry, _ = code_array(ints, num_gtx_flags=gtx)
    assert (entry["method"], entry["num_gtx_flags"]) == ("lossless", gtx)
    for bad in (0, 4097, 2.0, True, "11"):
        with pytest.raises(ParameterError):
            code_array(x, num_gtx_flags=bad)  # type: ignore[arg-type]


def test_step_and_qp_are_interchangeable() -> None:
    for qp in (-50, -38, -37, -20, 0, 7):
        assert nncabac.qp_for_step(nncabac.step_size(qp)) == qp
    x = np.random.default_rng(0).normal(0, 0.1, 100).astype(np.float32)
    a = nncabac.encode_tensor(x, step=nncabac.step_size(-38))
    assert a == nncabac.encode_tensor(x, qp=-38)
    with pytest.raises(ParameterError):
        nncabac.encode_tensor(x, qp=-38, step=0.01)
    with pytest.raises(ParameterError):
        nncabac.qp_for_step(0.0)


def test_importance_all_ones_equals_no_importance() -> None:
    x = np.random.default_rng(1).laplace(0, 0.03, (40, 30)).astype(np.float32)
    for method in ("rdoq", "trellis"):
        a = nncabac.encode_tensor(x, method=method, lambda_=2.0)  # type: ignore[arg-type]
        b = nncabac.encode_tensor(
            x,
            method=method,
            lambda_=2.0,  # type: ignore[arg-type]
            importance=np.ones_like(x),
        )
        assert a == b
    with pytest.raises(ParameterError):
        nncabac.encode_tensor(x, method="trellis", importance=np.ones(3))


def test_importance_protects_important_weights() -> None:
    rng = np.random.default_rng(2)
    x = rng.laplace(0, 0.01, 4000).astype(np.float32)
    imp = np.where(np.arange(x.size) < 2000, 50.0, 0.02).astype(np.float32)
    kw = dict(qp=-36, method="trellis", lambda_=8.0)
    plain = nncabac.decode_tensor(nncabac.encode_tensor(x, **kw))  # type: ignore[arg-type]
    weighted = nncabac.decode_tensor(nncabac.encode_tensor(x, importance=imp, **kw))  # type: ignore[arg-type]

    def wmse(y: np.ndarray) -> float:
        return float(np.mean(imp * (y - x) ** 2))

    assert wmse(weighted) < wmse(plain)


def test_corrupt_payloads_are_detected() -> None:
    data = nncabac.encode_tensor(np.arange(100, dtype=np.float32) / 7)
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(DecodeError):
            nncabac.decode_tensor(bytes(bad))
    for cut in (0, 10, len(data) - 1):
        with pytest.raises(DecodeError):
            nncabac.decode_tensor(data[:cut])


def test_torch_tensors_keep_their_dtype() -> None:
    torch = pytest.importorskip("torch")
    for dt in (torch.float32, torch.float16, torch.bfloat16, torch.int64):
        t = (torch.arange(24, dtype=torch.float32).reshape(4, 6) / 10).to(dt)
        data = nncabac.encode_tensor(t, qp=-40)
        back = nncabac.decode_tensor(data, framework="pt")
        assert back.dtype == dt and tuple(back.shape) == (4, 6)
        assert torch.allclose(back.float(), t.float(), atol=0.01)
        exact = nncabac.decode_tensor(nncabac.encode_tensor(t, method="exact"), framework="pt")
        assert torch.equal(exact, t)


def _uniform_entry(name: str) -> dict[str, object]:
    return dict(
        name=name,
        dtype="float32",
        shape=(4, 5),
        method="uniform",
        dq_flag=0,
        num_gtx_flags=11,
        qp=-38,
        qp_density=2,
        lambda_=0.0,
    )


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    meta=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=3),
)
def test_container_prefix_then_payloads_is_the_whole_file(
    payloads: list[bytes], meta: dict[str, str]
) -> None:
    """What ``compress`` streams to disk (the Rust prefix, then the payloads it holds) is
    byte for byte the container ``write_container`` builds in memory."""
    from nncabac import _nncabac

    entries = [(_uniform_entry(f"t{i}"), p) for i, p in enumerate(payloads)]
    m = sorted(meta.items())
    streamed = _nncabac.container_prefix(m, entries) + b"".join(payloads)
    assert streamed == bytes(_nncabac.write_container(m, entries))
    assert _nncabac.container_size(m, entries) == len(streamed)


def test_container_prefix_rejects_what_write_container_rejects() -> None:
    from nncabac import _nncabac

    dup = [(_uniform_entry("t"), b"x"), (_uniform_entry("t"), b"y")]
    for f in (_nncabac.container_prefix, _nncabac.write_container):
        with pytest.raises(ParameterError, match="duplicate"):
            f([], dup)
