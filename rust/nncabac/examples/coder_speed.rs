//! Single-thread encode/decode throughput on Laplacian levels: `cargo run --release --example coder_speed`.
use nncabac::{Decoder, Encoder, LayerParams};
use std::time::Instant;

fn laplacian(n: usize, scale: f64, seed: u64) -> Vec<i32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
            let x = -scale * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln();
            x.round() as i32
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().unwrap());
    let levels = laplacian(n, 1.0, 1);
    let zeros = levels.iter().filter(|&&x| x == 0).count() as f64 / n as f64;
    println!("{n} Laplacian levels, {:.1}% zeros", zeros * 100.0);
    for dq in [false, true] {
        for opt in [false, true] {
            let p = LayerParams {
                dq_flag: dq,
                general_profile_idc: 0,
                ..Default::default()
            };
            let mut bytes = Vec::new();
            let te = median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        let mut e = Encoder::new();
                        e.encode_layer(&levels, &[n], &p, opt).unwrap();
                        bytes = e.finish();
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let td = median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        let mut d = Decoder::new(&bytes[..]).unwrap();
                        let out = d.decode_layer(&[n], &p).unwrap();
                        d.finish().unwrap();
                        assert_eq!(out.len(), n);
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            println!(
                "dq {} opt {}: {:.3} bits/w  enc {:6.1} Mw/s  dec {:6.1} Mw/s",
                dq as u8,
                opt as u8,
                bytes.len() as f64 * 8.0 / n as f64,
                n as f64 / te / 1e6,
                n as f64 / td / 1e6
            );
        }
    }
}
