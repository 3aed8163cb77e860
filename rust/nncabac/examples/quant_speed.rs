//! Single-thread quantizer throughput on the reference's Laplacian weight vectors.
//!
//! `cargo run --release --example quant_speed [FILE.npy ...] [-- REPEATS]` times plain rounding,
//! RDO rounding (λ = 1), the trellis without rate (λ = 0) and with rate (λ = 1) at qp −38, on
//! `shared/vectors/w_lap20k.npy` and `w_lap100k.npy` by default. Prints the median of the
//! repeats (the fastest with `NNC_BEST` set); `NNC_ONLY=NAME` keeps the quantizers whose name
//! contains `NAME`.
use nncabac::quant::{QuantParams, Quantizer};
use std::path::PathBuf;
use std::time::Instant;

/// Float32 data of a little-endian C-order `.npy` file.
fn read_f32_npy(path: &PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.contains("'<f4'"), "{}: not float32", path.display());
    bytes[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn pick(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if std::env::var_os("NNC_BEST").is_some() {
        v[0]
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (files, rest) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    let reps: usize = rest.first().map_or(7, |a| a.parse().unwrap());
    let shared = std::env::var("NNCABAC_SHARED").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    let files: Vec<PathBuf> = if files.is_empty() {
        ["w_lap20k.npy", "w_lap100k.npy"]
            .iter()
            .map(|f| shared.join("vectors").join(f))
            .collect()
    } else {
        files.iter().map(PathBuf::from).collect()
    };
    let configs = [
        ("plain rounding", false, 0.0f32),
        ("RDOQ λ=1", false, 1.0),
        ("trellis λ=0", true, 0.0),
        ("trellis λ=1", true, 1.0),
    ];
    let mut q = Quantizer::new();
    // `NNC_ONLY=trellis` (a substring of the names below) times only the matching quantizers.
    let only = std::env::var("NNC_ONLY").unwrap_or_default();
    for f in &files {
        let w = read_f32_npy(f);
        let mut out = vec![0i32; w.len()];
        println!("{} ({} weights)", f.display(), w.len());
        for (name, dq_flag, lambda_scale) in configs {
            if !name.contains(only.as_str()) {
                continue;
            }
            let p = QuantParams {
                dq_flag,
                lambda_scale,
                qp: -38,
                qp_density: 2,
                max_num_no_rem: 10,
                ..QuantParams::default()
            };
            // Enough inner runs per sample for ~20 ms, so fast quantizers are timed too.
            let t = Instant::now();
            q.quantize_into(&w, &p, None, &mut out).unwrap();
            let once = t.elapsed().as_secs_f64().max(1e-7);
            let inner = ((0.02 / once) as usize).clamp(1, 10_000);
            let times = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..inner {
                        q.quantize_into(&w, &p, None, &mut out).unwrap();
                    }
                    t.elapsed().as_secs_f64() / inner as f64
                })
                .collect();
            let s = pick(times);
            println!(
                "  {name:<15} {:8.2} M weights/s  ({:.3} ms)",
                w.len() as f64 / s / 1e6,
                s * 1e3
            );
        }
    }
}
