"""Hypothesis round-trip properties of ``nncabac.nnc``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nncabac import DecodeError, ParameterError, RangeError, nnc

I32 = np.iinfo(np.int32)

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9).filter(
    lambda s: len(s) < 2 or int(np.prod(s[1:])) > 0
)


def level_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    elements = st.one_of(
        st.just(0),
        st.integers(-3, 3),
        st.integers(-1000, 1000),
        st.integers(int(I32.min), int(I32.max)),
        st.sampled_from([int(I32.min), int(I32.max), int(I32.min) + 1, int(I32.max) - 1]),
    )
    return hnp.arrays(np.int32, shape, elements=elements)


@st.composite
def layers(draw: st.DrawFn) -> dict:
    shape = draw(shapes)
    kind = draw(st.sampled_from(["mixed", "sparse", "laplace", "extreme"]))
    n = int(np.prod(shape))
    if kind == "mixed":
        levels = draw(level_arrays(shape))
    else:
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        if kind == "sparse":
            levels = np.where(rng.random(n) < 0.95, 0, rng.integers(-5, 6, n))
        elif kind == "laplace":
            scale = draw(st.sampled_from([0.3, 1.5, 30.0, 3000.0]))
            levels = np.round(rng.laplace(0, scale, n))
        else:
            levels = rng.choice([int(I32.min), int(I32.max), 0, -1, 1], n)
        levels = levels.astype(np.int32).reshape(shape)
    dq = draw(st.integers(0, 1))
    if dq:
        levels = _dq_valid(levels)
    return dict(
        levels=levels,
        dq_flag=dq,
        num_gtx_flags=draw(st.integers(1, 40)),
        param_opt_flag=draw(st.integers(0, 1)),
        general_profile_idc=draw(st.integers(0, 1)),
        parent_node_id_present_flag=draw(st.integers(0, 1)),
        prefix=draw(st.none() | st.tuples(st.integers(6, 10), st.integers(-32, 31))),
    )


TRANS = [[0, 2], [7, 5], [1, 3], [6, 4], [2, 0], [5, 7], [3, 1], [4, 6]]


def _dq_valid(levels: np.ndarray) -> np.ndarray:
    """Turn arbitrary values into reconstruction indices valid along the 8-state machine."""
    flat = levels.reshape(-1).astype(np.int64)
    out = np.empty_like(flat)
    state = 0
    for i, r in enumerate(flat):
        coded = int(np.clip(r // 2, -(2**29), 2**29))
        out[i] = 0 if coded == 0 else 2 * coded - np.sign(coded) * (state & 1)
        state = TRANS[state][coded & 1]
    return out.astype(np.int32).reshape(levels.shape)


def _layer_kwargs(layer: dict) -> dict:
    keys = ("dq_flag", "num_gtx_flags", "general_profile_idc", "parent_node_id_present_flag")
    return {k: layer[k] for k in keys}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layers(), min_size=1, max_size=4))
def test_multi_layer_streams_round_trip(stream: list[dict]) -> None:
    enc = nnc.Encoder()
    for layer in stream:
        if layer["prefix"] is not None:
            enc.encode_signed(*layer["prefix"])
        enc.encode_layer(
            layer["levels"], param_opt_flag=layer["param_opt_flag"], **_layer_kwargs(layer)
        )
    data = enc.finish()
    dec = nnc.Decoder(data)
    for layer in stream:
        if layer["prefix"] is not None:
            assert dec.decode_signed(layer["prefix"][0]) == layer["prefix"][1]
        got = dec.decode_layer(layer["levels"].shape, **_layer_kwargs(layer))
        assert got.dtype == np.int32 and got.shape == layer["levels"].shape
        np.testing.assert_array_equal(got, layer["levels"])
    assert dec.finish() == len(data)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([np.int8, np.int16, np.int64, np.uint8, np.uint16, np.uint32]),
    hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=6),
        elements=st.integers(0, 127),
    ),
    st.booleans(),
)
def test_any_integer_dtype_and_layout_is_accepted(dtype: type, raw: np.ndarray, neg: bool) -> None:
    levels = (raw if not neg or np.dtype(dtype).kind == "u" else -raw).astype(dtype)
    view = levels.T  # non-contiguous for rank >= 2
    enc = nnc.Encoder()
    enc.encode_layer(
        view,
        dq_flag=0,
        num_gtx_flags=11,
        param_opt_flag=1,
        general_profile_idc=1,
        parent_node_id_present_flag=0,
    )
    dec = nnc.Decoder(enc.finish())
    got = dec.decode_layer(
        view.shape,
        dq_flag=0,
        num_gtx_flags=11,
        general_profile_idc=1,
        parent_node_id_present_flag=0,
    )
    np.testing.assert_array_equal(got, view.astype(np.int64))


def test_nested_python_lists_and_scalars() -> None:
    for levels in ([[1, -2], [0, 40]], 7, [], [[]]):
        arr = np.asarray(levels)
        if arr.ndim >= 2 and arr.shape[1] == 0:
            with pytest.raises(ParameterError):
                nnc.Encoder().encode_layer(
                    levels,
                    dq_flag=0,
                    num_gtx_flags=3,
                    param_opt_flag=0,
                    general_profile_idc=0,
                    parent_node_id_present_flag=0,
                )
            continue
        enc = nnc.Encoder()
        enc.encode_layer(
            levels,
            dq_flag=0,
            num_gtx_flags=3,
            param_opt_flag=0,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )
        dec = nnc.Decoder(enc.finish())
        got = dec.decode_layer(
            arr.shape,
            dq_flag=0,
            num_gtx_flags=3,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )
        assert got.tolist() == arr.tolist()


@pytest.mark.parametrize(
    "levels", [[2**31], [-(2**31) - 1], [2**63 - 1], [2**70], np.array([2**40])]
)
def test_out_of_range_levels_raise_range_error(levels: object) -> None:
    with pytest.raises(RangeError):
        nnc.Encoder().encode_layer(
            levels,
            dq_flag=0,
            num_gtx_flags=11,
            param_opt_flag=0,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )


@pytest.mark.parametrize("levels", [[0.5], np.array([1.0]), ["a"], np.array([True])])
def test_non_integer_levels_raise_parameter_error(levels: object) -> None:
    with pytest.raises((ParameterError, RangeError)):
        nnc.Encoder().encode_layer(
            levels,
            dq_flag=0,
            num_gtx_flags=11,
            param_opt_flag=0,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_gtx_flags=0),
        dict(dq_flag=2),
        dict(general_profile_idc=2),
        dict(parent_node_id_present_flag=3),
        dict(param_opt_flag=2),
        dict(scan_order=1),
    ],
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    params = dict(
        dq_flag=0,
        num_gtx_flags=11,
        param_opt_flag=0,
        general_profile_idc=0,
        parent_node_id_present_flag=0,
    )
    params.update(kwargs)
    with pytest.raises(ParameterError):
        nnc.Encoder().encode_layer([1, 2, 3], **params)


def test_fields_validate_their_width() -> None:
    enc = nnc.Encoder()
    with pytest.raises(ParameterError):
        enc.encode_signed(8, 200)
    with pytest.raises(ParameterError):
        enc.encode_unsigned(33, 1)
    with pytest.raises(ParameterError):
        enc.encode_unsigned(4, 16)
    with pytest.raises(ParameterError):  # a negative unsigned field: out of range
        enc.encode_unsigned(4, -1)


def test_finished_coders_refuse_further_use() -> None:
    enc = nnc.Encoder()
    data = enc.finish()
    with pytest.raises(ParameterError):
        enc.finish()
    dec = nnc.Decoder(data)
    assert dec.finish() == len(data)
    with pytest.raises(ParameterError):
        dec.decode_signed(4)


def test_decoder_rejects_negative_shape_and_short_data() -> None:
    with pytest.raises(DecodeError):
        nnc.Decoder(b"\x00")
    dec = nnc.Decoder(nnc.Encoder().finish())
    with pytest.raises(ParameterError):
        dec.decode_layer(
            (-1,), dq_flag=0, num_gtx_flags=11, general_profile_idc=0, parent_node_id_present_flag=0
        )
