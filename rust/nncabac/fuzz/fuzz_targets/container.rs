//! Any bytes as a container file: parse, read every payload, decode the coded ones.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nncabac::batch::{decode_layer, DecodeJob};
use nncabac::container::{Container, Method};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Container::parse(data) else { return };
    for e in c.entries() {
        let Ok(payload) = c.payload(e) else { continue };
        if e.method == Method::Raw {
            continue;
        }
        let shape: Vec<usize> = e.shape.iter().map(|&d| d as usize).collect();
        let job = DecodeJob {
            stream: payload,
            shape: &shape,
            dq_flag: e.dq_flag,
            num_gtx_flags: e.num_gtx_flags as u32,
            dequantize: (e.method != Method::Lossless).then_some((e.qp, e.qp_density as u32)),
        };
        let _ = decode_layer(&job);
    }
});
