//! Single-thread encode/decode throughput on Laplacian levels.
//!
//! `cargo run --release --example coder_speed [N [SCALE [REPEATS [FILTER]]]]` generates `N` levels
//! (default 1 000 000, scale 1.0). `cargo run --release --example coder_speed FILE.bin` reads
//! raw little-endian int32 levels instead; when `FILE` is `.../lev_TAG.bin` and
//! `.../ref_TAG_dq{D}_po{P}.bin` exist (reference streams of the same levels), the bytes are
//! compared with them.
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

/// Median time, or the fastest one when `NNC_BEST` is set (steadier on a shared machine).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if std::env::var_os("NNC_BEST").is_some() {
        v[0]
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (levels, reference) = match args.first() {
        Some(path) if path.ends_with(".bin") => {
            let raw = std::fs::read(path).expect("levels file");
            let lv: Vec<i32> = raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (lv, Some(path.replace("lev_", "ref_").replace(".bin", "")))
        }
        first => {
            let n = first.map_or(1_000_000, |a| a.parse().unwrap());
            let scale = args.get(1).map_or(1.0, |a| a.parse().unwrap());
            (laplacian(n, scale, 1), None)
        }
    };
    let reps: usize = args.get(2).map_or(5, |a| a.parse().unwrap());
    // Optional filter such as "dq0opt1" to time one configuration only.
    let only = args.get(3).cloned().unwrap_or_default();
    let n = levels.len();
    let zeros = levels.iter().filter(|&&x| x == 0).count() as f64 / n as f64;
    println!("{n} levels, {:.1}% zeros", zeros * 100.0);
    for dq in [false, true] {
        for opt in [false, true] {
            if !format!("dq{}opt{}", dq as u8, opt as u8).contains(only.as_str()) {
                continue;
            }
            // `NNC_GTX=G` codes with G greater-than flags (default 11, as NNCodec).
            let p = LayerParams {
                dq_flag: dq,
                general_profile_idc: 0,
                num_gtx_flags: std::env::var("NNC_GTX").map_or(11, |g| g.parse().unwrap()),
                ..Default::default()
            };
            // Generated levels are coded with dq as benches/bench_coder.py codes them: as the
            // reconstruction indices a dq decoder returns for them (valid along the trellis).
            let dq_levels;
            let levels = if dq && reference.is_none() {
                dq_levels = dq_valid(&levels, &p);
                &dq_levels
            } else {
                &levels
            };
            let mut bytes = Vec::new();
            let mut bins = 0;
            let te = median(
                (0..reps)
                    .map(|_| {
                        let t = Instant::now();
                        (bytes, bins) = encode_once(levels, &p, opt);
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let td = median(
                (0..reps)
                    .map(|_| {
                        let t = Instant::now();
                        let out = decode_once(&bytes, n, &p);
                        assert_eq!(out, levels_as_coded(levels, &out));
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let same = reference.as_ref().filter(|_| p.num_gtx_flags == 11);
            let same = same.map_or(String::new(), |r| {
                let f = format!("{r}_dq{}_po{}.bin", dq as u8, opt as u8);
                match std::fs::read(&f) {
                    Ok(want) if want == bytes => "  bytes == ref".into(),
                    Ok(_) => "  BYTES DIFFER FROM REF".into(),
                    Err(_) => String::new(),
                }
            });
            println!(
                "dq {} opt {}: {:.3} bits/w  enc {:6.1} Mw/s {:6.1} Mbin/s  dec {:6.1} Mw/s {:6.1} Mbin/s{same}",
                dq as u8,
                opt as u8,
                bytes.len() as f64 * 8.0 / n as f64,
                n as f64 / te / 1e6,
                bins as f64 / te / 1e6,
                n as f64 / td / 1e6,
                bins as f64 / td / 1e6,
            );
        }
    }
}

/// One timed encode, kept out of line so that `valgrind --toggle-collect='*encode_once*'`
/// counts the encoder's instructions alone; returns the bytes and the number of bins.
#[inline(never)]
fn encode_once(levels: &[i32], p: &LayerParams, opt: bool) -> (Vec<u8>, u64) {
    let mut e = Encoder::new();
    e.encode_layer(levels, &[levels.len()], p, opt).unwrap();
    let bins = e.bins_coded();
    (e.finish(), bins)
}

/// The reconstruction indices a decoder returns for `levels` coded with `p` (`dq_flag` 1):
/// what a dependent quantizer produces, every index valid in its trellis state.
fn dq_valid(levels: &[i32], p: &LayerParams) -> Vec<i32> {
    let (bytes, _) = encode_once(levels, p, false);
    decode_once(&bytes, levels.len(), p)
}

/// One timed decode, kept out of line so that `valgrind --toggle-collect='*decode_once*'`
/// counts the decoder's instructions alone.
#[inline(never)]
fn decode_once(bytes: &[u8], n: usize, p: &LayerParams) -> Vec<i32> {
    let mut d = Decoder::new(bytes).unwrap();
    let out = d.decode_layer(&[n], p).unwrap();
    d.finish().unwrap();
    out
}

/// Decoded output must have the input's length (dq may remap invalid-parity indices).
fn levels_as_coded<'a>(levels: &[i32], out: &'a [i32]) -> &'a [i32] {
    assert_eq!(levels.len(), out.len());
    out
}
