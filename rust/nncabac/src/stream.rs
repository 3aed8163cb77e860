//! Streams of several layers with `iae_v`/`uae_v` fields between them (spec §9).
//!
//! The decoder reads hostile bytes, so indexing that could panic is denied here.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::engine::{ArithDecoder, ArithEncoder};
use crate::error::{Error, Result};
use crate::layer::{self, LayerParams, Scratch};

fn check_width(bits: u32) -> Result<()> {
    if (1..=32).contains(&bits) {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "field width must be 1..=32 bits, got {bits}"
        )))
    }
}

/// Writes one NNC arithmetic-coded stream: any sequence of fields and layers, then `finish`.
///
/// ```
/// use nncabac::{Decoder, Encoder, LayerParams};
/// // Default parameters use dependent quantization: levels are reconstruction indices.
/// let params = LayerParams::default();
/// let mut enc = Encoder::new();
/// enc.encode_signed(8, -38)?;
/// enc.encode_layer(&[0, 2, -2, 0, 4, 0], &[2, 3], &params, true)?;
/// let bytes = enc.finish();
///
/// let mut dec = Decoder::new(&bytes[..])?;
/// assert_eq!(dec.decode_signed(8)?, -38);
/// assert_eq!(dec.decode_layer(&[2, 3], &params)?, vec![0, 2, -2, 0, 4, 0]);
/// assert_eq!(dec.finish()?, bytes.len());
/// # Ok::<(), nncabac::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    engine: ArithEncoder,
    scratch: Scratch,
}

impl Encoder {
    /// A new, empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// `iae_v(bits, value)`: a two's-complement field of `bits` bypass bins.
    pub fn encode_signed(&mut self, bits: u32, value: i64) -> Result<()> {
        check_width(bits)?;
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        if value < lo || value > hi {
            return Err(Error::InvalidParameter(format!(
                "{value} does not fit in a signed {bits}-bit field"
            )));
        }
        self.engine
            .encode_bypass_bits(value as u32 & (u32::MAX >> (32 - bits)), bits);
        Ok(())
    }

    /// `uae_v(bits, value)`: an unsigned field of `bits` bypass bins.
    pub fn encode_unsigned(&mut self, bits: u32, value: u64) -> Result<()> {
        check_width(bits)?;
        if value >> bits != 0 {
            return Err(Error::InvalidParameter(format!(
                "{value} does not fit in an unsigned {bits}-bit field"
            )));
        }
        self.engine.encode_bypass_bits(value as u32, bits);
        Ok(())
    }

    /// Codes one tensor of `levels` (reconstruction indices when `params.dq_flag`) in row-major
    /// order. `param_opt_flag` lets the encoder choose and signal an initialisation set per context.
    pub fn encode_layer(
        &mut self,
        levels: &[i32],
        shape: &[usize],
        params: &LayerParams,
        param_opt_flag: bool,
    ) -> Result<()> {
        layer::encode_layer(
            &mut self.engine,
            &mut self.scratch,
            levels,
            shape,
            params,
            param_opt_flag,
        )
    }

    /// Bins coded so far.
    pub fn bins_coded(&self) -> u64 {
        self.engine.bins_coded()
    }

    /// Codes the terminating bin and returns the finished stream.
    pub fn finish(self) -> Vec<u8> {
        self.engine.finish()
    }

    /// Finishes the stream like [`Encoder::finish`] and starts a new one that reuses this
    /// encoder's working buffers: a loop that codes many tensors then allocates them once
    /// (they reach a few MiB for large layers, and allocating and freeing them per tensor
    /// leaves the memory with the allocator of each thread).
    pub fn finish_and_restart(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.engine).finish()
    }
}

/// Reads a stream written by [`Encoder`]; the caller repeats the same sequence of calls.
#[derive(Clone, Debug)]
pub struct Decoder<B: AsRef<[u8]>> {
    engine: ArithDecoder<B>,
    scratch: Scratch,
}

impl<B: AsRef<[u8]>> Decoder<B> {
    /// Starts decoding `data`.
    pub fn new(data: B) -> Result<Self> {
        Ok(Decoder {
            engine: ArithDecoder::new(data)?,
            scratch: Scratch::default(),
        })
    }

    /// Reads an `iae_v(bits)` field.
    pub fn decode_signed(&mut self, bits: u32) -> Result<i64> {
        check_width(bits)?;
        let raw = self.engine.decode_bypass_bits(bits) as u64;
        self.engine.check()?;
        let sign = 1u64 << (bits - 1);
        Ok((raw ^ sign) as i64 - sign as i64)
    }

    /// Reads a `uae_v(bits)` field.
    pub fn decode_unsigned(&mut self, bits: u32) -> Result<u64> {
        check_width(bits)?;
        let v = self.engine.decode_bypass_bits(bits) as u64;
        self.engine.check()?;
        Ok(v)
    }

    /// Decodes one tensor of `shape`, returning its levels in row-major order.
    pub fn decode_layer(&mut self, shape: &[usize], params: &LayerParams) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        self.decode_layer_into(shape, params, &mut out)?;
        Ok(out)
    }

    /// Like [`Decoder::decode_layer`], appending to `out` (which is left unspecified on error).
    pub fn decode_layer_into(
        &mut self,
        shape: &[usize],
        params: &LayerParams,
        out: &mut Vec<i32>,
    ) -> Result<()> {
        layer::decode_layer(&mut self.engine, &mut self.scratch, shape, params, out)
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.engine.position()
    }

    /// Reads the terminating bin (it must be 1) and returns the number of bytes the stream used.
    pub fn finish(self) -> Result<usize> {
        self.engine.finish()
    }
}
