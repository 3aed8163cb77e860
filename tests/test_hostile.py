"""Hostile streams: truncated, extended and bit-flipped data give a typed error or a decode,
never a panic, abort, hang or out-of-bounds read."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nncabac
from nncabac import DecodeError, NncabacError, nnc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from hostile_files import claiming_1e12_elements  # noqa: E402

PARAMS = dict(num_gtx_flags=11, general_profile_idc=1, parent_node_id_present_flag=1)


def _stream(seed: int, dq_flag: int, n: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = np.round(rng.laplace(0, 2.0, (n // 4 + 1, 4))).astype(np.int32)
    if dq_flag:
        levels = _valid(levels * 2)  # reconstruction indices valid along the state machine
    enc = nnc.Encoder()
    enc.encode_signed(8, -38)
    enc.encode_layer(levels, dq_flag=dq_flag, param_opt_flag=1, **PARAMS)
    return enc.finish(), levels


def _valid(levels: np.ndarray) -> np.ndarray:
    trans = [[0, 2], [7, 5], [1, 3], [6, 4], [2, 0], [5, 7], [3, 1], [4, 6]]
    flat, state = levels.reshape(-1).copy(), 0
    for i, r in enumerate(flat):
        coded = int(r) // 2
        flat[i] = 0 if coded == 0 else 2 * coded - np.sign(coded) * (state & 1)
        state = trans[state][coded & 1]
    return flat.reshape(levels.shape)


def _decode(data: bytes, shape: tuple[int, ...], dq_flag: int) -> np.ndarray:
    dec = nnc.Decoder(data)
    dec.decode_signed(8)
    out = dec.decode_layer(shape, dq_flag=dq_flag, **PARAMS)
    dec.finish()
    return out


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dq_flag=st.integers(0, 1),
    n=st.integers(0, 400),
    mutation=st.sampled_from(["truncate", "extend", "flip", "garbage"]),
    where=st.floats(0, 1),
    extra=st.binary(min_size=1, max_size=16),
    bit=st.integers(0, 7),
)
def test_mutated_streams_fail_cleanly(
    seed: int, dq_flag: int, n: int, mutation: str, where: float, extra: bytes, bit: int
) -> None:
    data, levels = _stream(seed, dq_flag, n)
    i = min(int(where * len(data)), len(data) - 1)
    if mutation == "truncate":
        bad = data[:i]
    elif mutation == "extend":
        bad = data + extra
    elif mutation == "flip":
        buf = bytearray(data)
        buf[i] ^= 1 << bit
        bad = bytes(buf)
    else:
        bad = extra * (1 + n // 8)
    try:
        out = _decode(bad, levels.shape, dq_flag)
    except NncabacError as exc:
        assert isinstance(exc, (DecodeError, ValueError))
        if mutation == "truncate":
            assert isinstance(exc, DecodeError)
        return
    assert out.shape == levels.shape and out.dtype == np.int32
    if mutation == "extend":
        np.testing.assert_array_equal(out, levels)  # trailing bytes are simply not read


def test_truncation_is_always_detected() -> None:
    data, levels = _stream(7, 0, 3000)
    for cut in range(0, len(data), max(1, len(data) // 50)):
        try:
            _decode(data[:cut], levels.shape, 0)
        except DecodeError:
            continue
        raise AssertionError(f"truncation at {cut} of {len(data)} bytes went unnoticed")


def test_huge_claimed_shape_is_refused_quickly() -> None:
    dec = nnc.Decoder(nnc.Encoder().finish())
    try:
        dec.decode_layer(
            (10**6, 10**6),
            dq_flag=0,
            num_gtx_flags=11,
            general_profile_idc=0,
            parent_node_id_present_flag=0,
        )
    except DecodeError:
        return
    raise AssertionError("10^12 weights decoded from 4 bytes")


def test_random_garbage_in_a_subprocess_never_crashes() -> None:
    """A process-level check: thousands of random streams, and the interpreter must exit 0."""
    code = textwrap.dedent(
        """
        import numpy as np
        from nncabac import NncabacError, nnc
        rng = np.random.default_rng(1234)
        outcomes = {"ok": 0, "error": 0}
        for trial in range(3000):
            data = rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8).tobytes()
            try:
                dec = nnc.Decoder(data)
                dec.decode_layer((rng.integers(0, 300),), dq_flag=int(trial % 2),
                                 num_gtx_flags=int(rng.integers(1, 40)), general_profile_idc=1,
                                 parent_node_id_present_flag=1)
                dec.finish()
                outcomes["ok"] += 1
            except NncabacError:
                outcomes["error"] += 1
        print(outcomes["ok"], outcomes["error"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ok, err = map(int, proc.stdout.split())
    assert ok + err == 3000 and err > 0


@pytest.mark.parametrize("method", ["uniform", "raw"])
def test_file_claiming_1e12_elements_is_refused_quickly(method: str) -> None:
    data = claiming_1e12_elements(method)
    t = time.perf_counter()
    with pytest.raises(DecodeError):
        nncabac.decode_tensor(data)
    with pytest.raises(DecodeError):
        nncabac.tensor_info(data)
    assert time.perf_counter() - t < 5  # refused from the header, nothing decoded or allocated


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x55])
def test_constant_streams_stop_at_the_end_of_their_input(fill: int) -> None:
    """1 KiB of one byte value, asked for 10^9 levels: the decoder consumes input for every
    level (a bin costs at least 1/128 bit), so it stops at the end of the data, in about
    (1024 + 4) x 1024 levels at most, instead of looping or allocating 4 GB."""
    dec = nnc.Decoder(bytes([fill]) * 1024)
    t = time.perf_counter()
    with pytest.raises(DecodeError):
        dec.decode_layer((10**9,), dq_flag=1, **PARAMS)
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("big", [2**31, 2**40, 2**70, -(2**70)])
def test_huge_integer_parameters_are_parameter_errors(big: int) -> None:
    """Integers beyond the extension's parameter types raise ParameterError (a ValueError), not
    Python's OverflowError."""
    layer = dict(dq_flag=0, num_gtx_flags=11, general_profile_idc=0, parent_node_id_present_flag=0)
    calls = [
        lambda: nnc.Encoder().encode_layer(
            np.zeros(4, np.int32), **{**layer, "num_gtx_flags": big}, param_opt_flag=0
        ),
        lambda: nnc.Encoder().encode_layer(
            np.zeros(4, np.int32), **{**layer, "scan_order": big}, param_opt_flag=0
        ),
        lambda: nnc.Decoder(bytes(8)).decode_layer((4,), **{**layer, "num_gtx_flags": big}),
        lambda: nnc.Encoder().encode_signed(big, 1),
        lambda: nnc.Decoder(bytes(8)).decode_unsigned(big),
        lambda: nnc.step_size(big, 2),
        lambda: nnc.dequantize_layer(np.zeros(3, np.int32), qp=-38, qp_density=big),
        lambda: nnc.quantize_layer(
            np.zeros(3),
            dq_flag=0,
            qp=big,
            qp_density=2,
            lambda_scale=0.0,
            max_num_no_rem=10,
            general_profile_idc=0,
        ),
    ]
    for call in calls:
        with pytest.raises(nncabac.ParameterError):
            call()
