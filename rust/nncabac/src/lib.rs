//! # nncabac
//!
//! The DeepCABAC entropy coder of MPEG NNC (ISO/IEC 15938-17) for neural-network weights:
//! a context-adaptive binary arithmetic coder whose streams are bit-exact with the reference
//! implementation (NNCodec 2.1.3) for the same levels and parameters.
//!
//! Stages, one module each, in the order a tensor goes through them:
//! [`contexts`] (adaptive probability models), [`binarization`] (bins of one level),
//! [`engine`] (arithmetic coder), [`layer`] (one tensor's payload), [`stream`] (layers and
//! fields in one stream). [`gtx`] chooses a layer's number of greater-than flags.
//!
//! ```
//! use nncabac::{Decoder, Encoder, LayerParams};
//! let levels = [0, 0, 3, -1, 0, 0, 0, 12, 0, -2];
//! let params = LayerParams { dq_flag: false, ..LayerParams::default() };
//! let mut enc = Encoder::new();
//! enc.encode_layer(&levels, &[levels.len()], &params, true)?;
//! let bytes = enc.finish();
//! let mut dec = Decoder::new(&bytes[..])?;
//! assert_eq!(dec.decode_layer(&[levels.len()], &params)?, levels);
//! dec.finish()?;
//! # Ok::<(), nncabac::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod batch;
pub mod binarization;
pub mod container;
pub mod contexts;
pub mod engine;
pub mod error;
pub mod gtx;
pub mod layer;
pub mod quant;
pub mod rate;
pub mod stream;
pub mod tables;
pub mod trellis;

pub use error::{Error, Result};
pub use layer::LayerParams;
pub use quant::{
    dequantize_layer, dequantize_layer_into, quantize_layer, quantize_layer_into, step_size,
    QuantParams, Quantizer,
};
pub use stream::{Decoder, Encoder};
