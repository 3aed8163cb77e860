//! Every codec vector of `shared/vectors`, in both directions, through the pure Rust API.

mod common;

use nncabac::{Decoder, Encoder, LayerParams};
use serde_json::Value;

fn params(layer: &Value) -> (LayerParams, bool) {
    let u = |k: &str| layer[k].as_u64().unwrap_or_else(|| panic!("missing {k}"));
    (
        LayerParams {
            dq_flag: u("dq_flag") != 0,
            num_gtx_flags: u("num_gtx_flags") as u32,
            general_profile_idc: u("general_profile_idc") as u8,
            parent_node_id_present_flag: u("parent_node_id_present_flag") != 0,
            scan_order: u("scan_order") as u32,
        },
        u("param_opt_flag") != 0,
    )
}

fn shape(layer: &Value) -> Vec<usize> {
    layer["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn prefix(layer: &Value) -> Option<(u32, i64)> {
    layer["qp_prefix"]
        .as_array()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_i64().unwrap()))
}

#[test]
fn every_codec_vector_encodes_and_decodes_bit_exactly() {
    let index = common::index();
    let mut checked = 0;
    for v in index["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "codec")
    {
        let id = v["id"].as_str().unwrap();
        let want =
            std::fs::read(common::vectors_dir().join(v["bitstream"].as_str().unwrap())).unwrap();
        let layers = v["layers"].as_array().unwrap();

        let mut enc = Encoder::new();
        for layer in layers {
            let (p, opt) = params(layer);
            if let Some((bits, value)) = prefix(layer) {
                enc.encode_signed(bits, value).unwrap();
            }
            let levels = common::read_npy(layer["levels"].as_str().unwrap());
            assert_eq!(levels.shape, shape(layer), "{id}");
            enc.encode_layer(&levels.i32s(), &shape(layer), &p, opt)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
        }
        let got = enc.finish();
        assert!(
            got == want,
            "{id}: encoded bytes differ ({} vs {} bytes)",
            got.len(),
            want.len()
        );

        let mut dec = Decoder::new(&want[..]).unwrap();
        for layer in layers {
            let (p, _) = params(layer);
            if let Some((bits, value)) = prefix(layer) {
                assert_eq!(dec.decode_signed(bits).unwrap(), value, "{id}: qp prefix");
            }
            let decoded = common::read_npy(layer["decoded"].as_str().unwrap()).i32s();
            let got = dec
                .decode_layer(&shape(layer), &p)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(got == decoded, "{id}: decoded levels differ");
        }
        assert_eq!(
            dec.finish().unwrap(),
            v["num_bytes"].as_u64().unwrap() as usize,
            "{id}: bytes consumed"
        );
        checked += 1;
    }
    assert!(checked >= 125, "only {checked} codec vectors found");
}
