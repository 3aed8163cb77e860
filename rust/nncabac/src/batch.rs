//! Quantize-and-code of whole tensors, one at a time or many in parallel.
//!
//! Each tensor becomes an independent single-layer stream (the payload of one container entry),
//! so tensors share nothing and parallelize perfectly; with the `parallel` feature (default)
//! [`code_layers`] runs them on rayon's thread pool.

use crate::error::Result;
use crate::layer::LayerParams;
use crate::quant::{QuantParams, Quantizer};
use crate::stream::Encoder;

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
    /// Greater-than flags of the coder (NNCodec: `max_num_no_rem + 1`).
    pub num_gtx_flags: u32,
    /// Let the encoder choose initialisation sets.
    pub param_opt_flag: bool,
}

/// A coded tensor: its stream and the qp actually used (after any overflow fallback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedLayer {
    /// Bytes of the finished single-layer stream (`general_profile_idc` 0).
    pub stream: Vec<u8>,
    /// qp used.
    pub qp: i32,
}

/// Quantizes and codes one tensor.
pub fn code_layer(job: &LayerJob<'_>) -> Result<CodedLayer> {
    code_with(&mut Quantizer::new(), job)
}

fn code_with(quantizer: &mut Quantizer, job: &LayerJob<'_>) -> Result<CodedLayer> {
    let mut levels = vec![0i32; job.weights.len()];
    let qp = quantizer.quantize_into(job.weights, &job.quant, job.importance, &mut levels)?;
    let params = LayerParams {
        dq_flag: job.quant.dq_flag,
        num_gtx_flags: job.num_gtx_flags,
        general_profile_idc: 0,
        parent_node_id_present_flag: false,
        scan_order: 0,
    };
    let mut enc = Encoder::new();
    enc.encode_layer(&levels, job.shape, &params, job.param_opt_flag)?;
    Ok(CodedLayer {
        stream: enc.finish(),
        qp,
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
                .map_init(Quantizer::new, |q, job| code_with(q, job))
                .collect::<Vec<_>>()
        };
        match threads.and_then(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .ok()
        }) {
            Some(pool) => pool.install(run),
            None => run(),
        }
    }
    #[cfg(not(feature = "parallel"))]
    {
        let _ = threads;
        let mut q = Quantizer::new();
        jobs.iter().map(|job| code_with(&mut q, job)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Decoder;

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
