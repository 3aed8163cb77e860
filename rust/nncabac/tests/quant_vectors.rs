//! Every quant vector of `shared/vectors`: levels, qp used, reconstructions (bit patterns) and
//! the bytes of the chained codec vector.

mod common;

use nncabac::quant::{dequantize_layer, quantize_layer, QuantParams};
use nncabac::{Encoder, LayerParams};
use serde_json::Value;

fn quant_params(v: &Value) -> QuantParams {
    let p = &v["params"];
    let u = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("missing {k}"));
    QuantParams {
        dq_flag: u("dq_flag") != 0,
        qp: p["qp"].as_i64().unwrap() as i32,
        qp_density: u("qp_density") as u32,
        lambda_scale: p["lambda_scale"].as_f64().unwrap() as f32,
        max_num_no_rem: u("max_num_no_rem") as u32,
        general_profile_idc: u("general_profile_idc") as u8,
        scan_order: u("scan_order") as u32,
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn every_quant_vector_matches_the_reference() {
    let index = common::index();
    let vectors = index["vectors"].as_array().unwrap();
    let codec = |id: &str| {
        vectors
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("codec vector {id} missing"))
    };
    let mut checked = 0;
    for v in vectors.iter().filter(|v| v["kind"] == "quant") {
        let id = v["id"].as_str().unwrap();
        let params = quant_params(v);
        let weights = common::read_npy(v["weights"].as_str().unwrap());
        let shape = usizes(&v["shape"]);
        assert_eq!(weights.shape, shape, "{id}: weights shape");
        let want = common::read_npy(v["levels"].as_str().unwrap()).i32s();

        let (levels, qp_used) =
            quantize_layer(&weights.f32s(), &params, None).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            qp_used as i64,
            v["qp_used"].as_i64().unwrap(),
            "{id}: qp_used"
        );
        if let Some(k) = (0..want.len()).find(|&k| levels[k] != want[k]) {
            let n = (0..want.len()).filter(|&k| levels[k] != want[k]).count();
            panic!(
                "{id}: {n} levels differ, first at {k}: {} vs {}",
                levels[k], want[k]
            );
        }
        assert_eq!(levels.len(), want.len(), "{id}");

        let recon = dequantize_layer(&levels, qp_used, params.qp_density).unwrap();
        let want_recon = match v["recon"].as_str() {
            Some(name) => common::read_npy(name).f32s(),
            None => dequantize_layer(&want, qp_used, params.qp_density).unwrap(),
        };
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&recon), bits(&want_recon), "{id}: reconstructions");

        // The chained codec vector: the levels coded as NNCodec codes them.
        let c = codec(v["codec_vector"].as_str().unwrap());
        let layer = &c["layers"].as_array().unwrap()[0];
        assert_eq!(c["layers"].as_array().unwrap().len(), 1, "{id}");
        let lp = LayerParams {
            dq_flag: params.dq_flag,
            num_gtx_flags: params.num_gtx_flags(),
            general_profile_idc: params.general_profile_idc,
            parent_node_id_present_flag: false,
            scan_order: 0,
        };
        assert_eq!(
            layer["num_gtx_flags"].as_u64().unwrap(),
            lp.num_gtx_flags as u64
        );
        assert_eq!(layer["dq_flag"].as_u64().unwrap(), lp.dq_flag as u64);
        assert_eq!(
            layer["general_profile_idc"].as_u64().unwrap(),
            lp.general_profile_idc as u64
        );
        assert_eq!(layer["param_opt_flag"].as_u64().unwrap(), 1);
        let mut enc = Encoder::new();
        if let Some(p) = layer["qp_prefix"].as_array() {
            enc.encode_signed(p[0].as_u64().unwrap() as u32, p[1].as_i64().unwrap())
                .unwrap();
        }
        enc.encode_layer(&levels, &usizes(&layer["shape"]), &lp, true)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let bytes = enc.finish();
        let want_bytes =
            std::fs::read(common::vectors_dir().join(c["bitstream"].as_str().unwrap())).unwrap();
        assert!(bytes == want_bytes, "{id}: coded bytes differ");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} quant vectors found");
}

#[test]
fn importance_of_ones_reproduces_every_quant_vector() {
    let index = common::index();
    for v in index["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "quant")
    {
        let id = v["id"].as_str().unwrap();
        let w = common::read_npy(v["weights"].as_str().unwrap()).f32s();
        let ones = vec![1.0f32; w.len()];
        let params = quant_params(v);
        let a = quantize_layer(&w, &params, None).unwrap();
        let b = quantize_layer(&w, &params, Some(&ones)).unwrap();
        assert_eq!(a, b, "{id}");
    }
}
