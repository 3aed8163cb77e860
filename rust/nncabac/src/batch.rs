//! Quantize-and-code of whole tensors, one at a time or many in parallel.
//!
//! Each tensor becomes an independent single-layer stream (the payload of one container entry),
//! so tensors share nothing and parallelize perfectly; with the `parallel` feature (default)
//! [`code_layers`] runs them on rayon's thread pool.

use crate::error::Result;
use crate::layer::LayerParams;
use crate::quant::{QuantParams, Quantizer};
use crate::stream::{Decoder, Encoder};

/// One tensor to quantize and code.
#[derive(Clone, Copy, Debug)]
pub struct LayerJob<'a> {
    /// Weights in row-major order.
    pub weights: &'a [f32],
    /// Shape of the tensor (product = `weights.len()`).
    pub shape: &'a [usize],
    /// Quantizer settings; `dq_flag` also selects the coder's dependent quantization.
    pub quant: QuantParams,
    /// Optional per-weight importance (see [`crate::quant::quantize_layer`]).
    pub importance: Option<&'a [f32]>,
    /// Greater-than flags of the coder (NNCodec: `max_num_no_rem + 1`), unless
    /// `choose_num_gtx_flags` is set.
    pub num_gtx_flags: u32,
    /// Let the encoder choose the greater-than flags from the levels
    /// ([`crate::gtx::choose_num_gtx_flags`]: the smallest estimated size). The quantizer keeps
    /// its own `max_num_no_rem`, so the levels do not change.
    pub choose_num_gtx_flags: bool,
    /// Let the encoder choose initialisation sets.
    pub param_opt_flag: bool,
}

/// A coded tensor: its stream, the qp actually used (after any overflow fallback) and the
/// greater-than flags it was coded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedLayer {
    /// Bytes of the finished single-layer stream (`general_profile_idc` 0).
    pub stream: Vec<u8>,
    /// qp used.
    pub qp: i32,
    /// Greater-than flags of the stream.
    pub num_gtx_flags: u32,
}

/// Quantizes and codes one tensor.
pub fn code_layer(job: &LayerJob<'_>) -> Result<CodedLayer> {
    code_with(&mut Worker::default(), job)
}

/// What one thread keeps from tensor to tensor: the levels, the quantizer's and the encoder's
/// buffers. Allocated per tensor and freed, buffers of many MiB raise glibc's mmap threshold
/// and then stay with the thread's arena: compressing a 64 MiB model peaked 60 % higher.
#[derive(Default)]
struct Worker {
    levels: Vec<i32>,
    quantizer: Quantizer,
    encoder: Encoder,
}

fn code_with(w: &mut Worker, job: &LayerJob<'_>) -> Result<CodedLayer> {
    let levels = &mut w.levels;
    levels.clear();
    levels.resize(job.weights.len(), 0);
    let qp = w
        .quantizer
        .quantize_into(job.weights, &job.quant, job.importance, levels)?;
    let num_gtx_flags = if job.choose_num_gtx_flags {
        crate::gtx::choose_num_gtx_flags(levels, job.quant.dq_flag)
    } else {
        job.num_gtx_flags
    };
    let params = LayerParams {
        dq_flag: job.quant.dq_flag,
        num_gtx_flags,
        general_profile_idc: 0,
        parent_node_id_present_flag: false,
        scan_order: 0,
    };
    // A failed layer leaves a partial stream behind: start the next one afresh.
    let coded = w
        .encoder
        .encode_layer(&w.levels, job.shape, &params, job.param_opt_flag);
    let stream = w.encoder.finish_and_restart();
    coded?;
    Ok(CodedLayer {
        stream,
        qp,
        num_gtx_flags,
    })
}

/// Quantizes and codes many tensors, in parallel when the `parallel` feature is on; results
/// are in job order. `threads` limits the worker count (None: all cores).
pub fn code_layers(jobs: &[LayerJob<'_>], threads: Option<usize>) -> Vec<Result<CodedLayer>> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let run = || {
            jobs.par_iter()
                .map_init(Worker::default, |w, job| code_with(w, job))
                .collect::<Vec<_>>()
        };
        in_pool(threads, run)
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = threads;
        let mut w = Worker::default();
        jobs.iter().map(|job| code_with(&mut w, job)).collect()
    }
}

/// One coded tensor to decode: a single-layer stream as [`code_layer`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct DecodeJob<'a> {
    /// The stream.
    pub stream: &'a [u8],
    /// Shape of the tensor.
    pub shape: &'a [usize],
    /// Dependent quantization flag of the layer.
    pub dq_flag: bool,
    /// Greater-than flags of the layer.
    pub num_gtx_flags: u32,
    /// `Some((qp, qp_density))` to dequantize, `None` for integer (lossless) levels.
    pub dequantize: Option<(i32, u32)>,
}

/// A decoded tensor: integer levels, or reconstructed weights.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// Levels of a lossless tensor.
    Levels(Vec<i32>),
    /// Dequantized weights.
    Weights(Vec<f32>),
}

/// Decodes one tensor; the stream must be exactly one layer followed by the terminating bin.
pub fn decode_layer(job: &DecodeJob<'_>) -> Result<Decoded> {
    let params = LayerParams {
        dq_flag: job.dq_flag,
        num_gtx_flags: job.num_gtx_flags,
        general_profile_idc: 0,
        parent_node_id_present_flag: false,
        scan_order: 0,
    };
    let mut dec = Decoder::new(job.stream)?;
    let levels = dec.decode_layer(job.shape, &params)?;
    dec.finish()?;
    match job.dequantize {
        Some((qp, density)) => Ok(Decoded::Weights(crate::quant::dequantize_layer(
            &levels, qp, density,
        )?)),
        None => Ok(Decoded::Levels(levels)),
    }
}

/// Runs `f` on a pool of `threads` workers, or on rayon's global pool (all cores).
#[cfg(feature = "parallel")]
pub(crate) fn in_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    match threads.and_then(|n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .ok()
    }) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Decodes many tensors, in parallel when the `parallel` feature is on; results in job order.
pub fn decode_layers(jobs: &[DecodeJob<'_>], threads: Option<usize>) -> Vec<Result<Decoded>> {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let run = || jobs.par_iter().map(decode_layer).collect::<Vec<_>>();
        in_pool(threads, run)
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = threads;
        jobs.iter().map(decode_layer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(w: &'a [f32], shape: &'a [usize], dq: bool) -> LayerJob<'a> {
        LayerJob {
            weights: w,
            shape,
            quant: QuantParams {
                dq_flag: dq,
                lambda_scale: 1.0,
                ..QuantParams::default()
            },
            importance: None,
            num_gtx_flags: 11,
            choose_num_gtx_flags: false,
            param_opt_flag: true,
        }
    }

    #[test]
    fn parallel_results_equal_sequential_ones_in_order() {
        let tensors: Vec<Vec<f32>> = (0..12)
            .map(|t| {
                (0..(500 + 97 * t))
                    .map(|i| ((i * 7919 + t * 31) % 201) as f32 * 1e-4 - 0.01)
                    .collect()
            })
            .collect();
        let shapes: Vec<[usize; 1]> = tensors.iter().map(|w| [w.len()]).collect();
        let jobs: Vec<LayerJob> = tensors
            .iter()
            .zip(&shapes)
            .enumerate()
            .map(|(i, (w, s))| job(w, s, i % 2 == 0))
            .collect();
        let seq: Vec<_> = jobs.iter().map(code_layer).collect();
        assert_eq!(code_layers(&jobs, None), seq);
        assert_eq!(code_layers(&jobs, Some(1)), seq);
        for (j, coded) in jobs.iter().zip(seq) {
            let coded = coded.unwrap();
            let mut dec = Decoder::new(&coded.stream[..]).unwrap();
            let p = LayerParams {
                dq_flag: j.quant.dq_flag,
                general_profile_idc: 0,
                ..LayerParams::default()
            };
            let levels = dec.decode_layer(j.shape, &p).unwrap();
            assert_eq!(
                levels,
                crate::quant::quantize_layer(j.weights, &j.quant, None)
                    .unwrap()
                    .0
            );
        }
    }

    #[test]
    fn parallel_decode_reconstructs_what_was_coded() {
        let w: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919) % 401) as f32 * 1e-4 - 0.02)
            .collect();
        let shape = [30, 100];
        let j = job(&w, &shape, true);
        let coded = code_layer(&j).unwrap();
        let d = DecodeJob {
            stream: &coded.stream,
            shape: &shape,
            dq_flag: true,
            num_gtx_flags: 11,
            dequantize: Some((coded.qp, 2)),
        };
        let levels = crate::quant::quantize_layer(&w, &j.quant, None).unwrap().0;
        let want = Decoded::Weights(crate::quant::dequantize_layer(&levels, coded.qp, 2).unwrap());
        let bad = DecodeJob {
            stream: &coded.stream[..coded.stream.len() / 2],
            ..d
        };
        let out = decode_layers(
            &[
                d,
                bad,
                DecodeJob {
                    dequantize: None,
                    ..d
                },
            ],
            None,
        );
        assert_eq!(out[0].as_ref().unwrap(), &want);
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap(), &Decoded::Levels(levels));
    }

    #[test]
    fn chosen_greater_than_flags_are_reported_and_decode() {
        // Near-lossless steps give dense levels, which code best with one flag.
        let w: Vec<f32> = (0..4000)
            .map(|i| ((i * 7919) % 4001) as f32 * 1e-4 - 0.2)
            .collect();
        let shape = [40, 100];
        for dq in [false, true] {
            let mut j = job(&w, &shape, dq);
            j.quant.qp = -60;
            let fixed = code_layer(&j).unwrap();
            assert_eq!(fixed.num_gtx_flags, 11);
            j.choose_num_gtx_flags = true;
            let chosen = code_layer(&j).unwrap();
            let levels = crate::quant::quantize_layer(&w, &j.quant, None).unwrap().0;
            assert_eq!(
                chosen.num_gtx_flags,
                crate::gtx::choose_num_gtx_flags(&levels, dq)
            );
            assert_eq!(chosen.num_gtx_flags, 1);
            assert!(chosen.stream.len() < fixed.stream.len());
            let d = DecodeJob {
                stream: &chosen.stream,
                shape: &shape,
                dq_flag: dq,
                num_gtx_flags: chosen.num_gtx_flags,
                dequantize: None,
            };
            assert_eq!(decode_layer(&d).unwrap(), Decoded::Levels(levels));
        }
    }

    #[test]
    fn errors_stay_with_their_job() {
        let good = [0.1f32, -0.2];
        let bad = [f32::NAN];
        let jobs = [
            job(&good, &[2], false),
            job(&bad, &[1], false),
            job(&good, &[3], false),
        ];
        let out = code_layers(&jobs, None);
        assert!(out[0].is_ok() && out[1].is_err() && out[2].is_err());
    }
}
