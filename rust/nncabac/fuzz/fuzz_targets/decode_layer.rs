//! Any bytes, any parameters: the layer decoder returns levels or an error, never panics,
//! and stops within a bounded number of steps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nncabac::{Decoder, LayerParams};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, stream) = data.split_at(4);
    let params = LayerParams {
        dq_flag: head[0] & 1 == 1,
        num_gtx_flags: 1 + (head[1] as u32 % 40),
        general_profile_idc: (head[0] >> 1) & 1,
        parent_node_id_present_flag: head[0] & 4 != 0,
        scan_order: 0,
    };
    let rows = 1 + (head[2] as usize % 16);
    let cols = 1 + (head[3] as usize * 37);
    if let Ok(mut dec) = Decoder::new(stream) {
        if let Ok(levels) = dec.decode_layer(&[rows, cols], &params) {
            assert_eq!(levels.len(), rows * cols);
            if let Ok(n) = dec.finish() {
                assert!(n <= stream.len());
            }
        }
    }
});
