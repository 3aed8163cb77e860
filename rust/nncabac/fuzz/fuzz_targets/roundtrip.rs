//! Any levels and parameters: encoding then decoding gives the levels back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nncabac::{Decoder, Encoder, LayerParams};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let opt = data[2] & 1 == 1;
    let levels: Vec<i32> = data[3..]
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            i32::from_le_bytes(b) >> (c[0] % 32)
        })
        .collect();
    // G as the encoder chooses it for these levels, or any of 1..=40.
    let num_gtx_flags = if data[0] >= 240 {
        nncabac::gtx::choose_num_gtx_flags(&levels, false)
    } else {
        1 + (data[0] as u32 % 40)
    };
    let params = LayerParams {
        dq_flag: false,
        num_gtx_flags,
        general_profile_idc: data[1] & 1,
        parent_node_id_present_flag: data[1] & 2 != 0,
        scan_order: 0,
    };
    let mut enc = Encoder::new();
    enc.encode_layer(&levels, &[levels.len()], &params, opt).unwrap();
    let bytes = enc.finish();
    let mut dec = Decoder::new(&bytes[..]).unwrap();
    assert_eq!(dec.decode_layer(&[levels.len()], &params).unwrap(), levels);
    assert_eq!(dec.finish().unwrap(), bytes.len());
});
