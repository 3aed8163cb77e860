"""Every quant vector of ``shared/vectors``: levels, qp used, reconstructions (bit patterns) and
the chained codec vector's bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import VECTORS, load_index

from nncabac import nnc

INDEX = load_index()["vectors"]
QUANT = [v for v in INDEX if v["kind"] == "quant"]
CODEC = {v["id"]: v for v in INDEX if v["kind"] == "codec"}


def test_quant_vectors_are_present() -> None:
    assert len(QUANT) >= 60


@pytest.mark.parametrize("vec", QUANT, ids=[v["id"] for v in QUANT])
def test_quantizer_matches_reference(vec: dict[str, Any]) -> None:
    p = vec["params"]
    weights = np.load(VECTORS / vec["weights"])
    assert weights.dtype == np.float32 and list(weights.shape) == vec["shape"]
    levels, qp_used = nnc.quantize_layer(weights, **p)
    want = np.load(VECTORS / vec["levels"])
    assert qp_used == vec["qp_used"]
    assert levels.shape == want.shape
    np.testing.assert_array_equal(levels, want)

    recon = nnc.dequantize_layer(levels, qp=qp_used, qp_density=p["qp_density"])
    assert recon.dtype == np.float32
    if vec["recon"] is not None:
        want_recon = np.load(VECTORS / vec["recon"])
        np.testing.assert_array_equal(recon.view(np.uint32), want_recon.view(np.uint32))
    else:  # large vectors: the spec's formula, float32(Δ × float32(r))
        delta = np.float32(nnc.step_size(qp_used, p["qp_density"]))
        expect = (delta * levels.astype(np.float32)).astype(np.float32)
        np.testing.assert_array_equal(recon.view(np.uint32), expect.view(np.uint32))

    codec = CODEC[vec["codec_vector"]]
    (layer,) = codec["layers"]
    enc = nnc.Encoder()
    if layer["qp_prefix"] is not None:
        enc.encode_signed(*layer["qp_prefix"])
    enc.encode_layer(
        levels,
        dq_flag=layer["dq_flag"],
        num_gtx_flags=layer["num_gtx_flags"],
        param_opt_flag=layer["param_opt_flag"],
        general_profile_idc=layer["general_profile_idc"],
        parent_node_id_present_flag=layer["parent_node_id_present_flag"],
    )
    assert layer["num_gtx_flags"] == p["max_num_no_rem"] + 1
    assert enc.finish() == (VECTORS / codec["bitstream"]).read_bytes()
