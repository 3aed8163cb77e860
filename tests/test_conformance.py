"""Every codec vector of ``shared/vectors``: encoding gives the reference bytes, decoding the
reference bytes gives the reference levels and consumes exactly the stream."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import VECTORS, load_index

from nncabac import nnc

CODEC = [v for v in load_index()["vectors"] if v["kind"] == "codec"]
LAYER_KEYS = ("dq_flag", "num_gtx_flags", "general_profile_idc", "parent_node_id_present_flag")


def _params(layer: dict[str, Any]) -> dict[str, int]:
    return {k: layer[k] for k in (*LAYER_KEYS, "scan_order")}


def test_vectors_are_present() -> None:
    assert len(CODEC) >= 125


@pytest.mark.parametrize("vec", CODEC, ids=[v["id"] for v in CODEC])
def test_encode_matches_reference(vec: dict[str, Any]) -> None:
    enc = nnc.Encoder()
    for layer in vec["layers"]:
        if layer["qp_prefix"] is not None:
            enc.encode_signed(*layer["qp_prefix"])
        levels = np.load(VECTORS / layer["levels"])
        assert list(levels.shape) == layer["shape"]
        enc.encode_layer(levels, param_opt_flag=layer["param_opt_flag"], **_params(layer))
    data = enc.finish()
    want = (VECTORS / vec["bitstream"]).read_bytes()
    assert len(data) == vec["num_bytes"]
    assert data == want


@pytest.mark.parametrize("vec", CODEC, ids=[v["id"] for v in CODEC])
def test_decode_matches_reference(vec: dict[str, Any]) -> None:
    data = (VECTORS / vec["bitstream"]).read_bytes()
    dec = nnc.Decoder(data)
    for layer in vec["layers"]:
        if layer["qp_prefix"] is not None:
            bits, value = layer["qp_prefix"]
            assert dec.decode_signed(bits) == value
        got = dec.decode_layer(tuple(layer["shape"]), **_params(layer))
        want = np.load(VECTORS / layer["decoded"])
        assert got.dtype == np.int32
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert dec.finish() == vec["num_bytes"]
