//! The payload of one tensor ("layer"): header flags, signalled initialisation sets and the
//! levels in scan order 0 (spec §6–§8).

use crate::binarization::{binarize, decode_level, BinSink};
use crate::contexts::{ContextLayout, ContextModel, MAX_GTX_FLAGS, NUM_INIT_SETS};
use crate::engine::{ArithDecoder, ArithEncoder};
use crate::error::{Error, Result};
use crate::tables::STATE_TRANS;

/// Parameters a decoder must be told out of band (in NNC they come from the NDU header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// 8-state dependent quantization: levels are reconstruction indices.
    pub dq_flag: bool,
    /// Number of greater-than flags `G` (NNCodec: `cabac_unary_length_minus1 + 1`, default 11).
    pub num_gtx_flags: u32,
    /// 0 or 1; with 1, tensors of at least two rows and columns carry header flags.
    pub general_profile_idc: u8,
    /// Adds the (always off) history-dependent-significance flag to those header flags.
    pub parent_node_id_present_flag: bool,
    /// Only scan order 0 (row-major, no entry points) is supported.
    pub scan_order: u32,
}

impl Default for LayerParams {
    /// NNCodec's defaults: dependent quantization, 11 greater-than flags, profile 1.
    fn default() -> Self {
        LayerParams {
            dq_flag: true,
            num_gtx_flags: 11,
            general_profile_idc: 1,
            parent_node_id_present_flag: false,
            scan_order: 0,
        }
    }
}

impl LayerParams {
    /// Rejects parameters the format or this implementation cannot code.
    pub fn validate(&self) -> Result<()> {
        if self.num_gtx_flags == 0 || self.num_gtx_flags > MAX_GTX_FLAGS {
            return Err(Error::InvalidParameter(format!(
                "num_gtx_flags must be in 1..={MAX_GTX_FLAGS}, got {}",
                self.num_gtx_flags
            )));
        }
        if self.general_profile_idc > 1 {
            return Err(Error::InvalidParameter(format!(
                "general_profile_idc must be 0 or 1, got {}",
                self.general_profile_idc
            )));
        }
        if self.scan_order != 0 {
            return Err(Error::InvalidParameter(format!(
                "only scan_order 0 is supported, got {}",
                self.scan_order
            )));
        }
        Ok(())
    }

    fn layout(&self) -> ContextLayout {
        ContextLayout::new(self.num_gtx_flags)
    }
}

/// Number of weights and `layer_width` (product of all but the first dimension) of a shape.
pub fn shape_info(shape: &[usize]) -> Result<(usize, usize)> {
    let overflow = || Error::InvalidParameter(format!("shape {shape:?} has too many elements"));
    let width = match shape.split_first() {
        None => 1,
        Some((_, rest)) => rest
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?,
    };
    if width == 0 {
        return Err(Error::InvalidParameter(format!(
            "shape {shape:?}: a zero in a dimension other than the first is not codable (layer_width = 0)"
        )));
    }
    let n = shape
        .first()
        .map_or(Some(width), |&d0| d0.checked_mul(width))
        .ok_or_else(overflow)?;
    Ok((n, width))
}

/// Whether the layer carries the HDSP / row-skip header flags (spec §6.3 step 1).
fn has_header_flags(params: &LayerParams, n: usize, width: usize) -> bool {
    params.general_profile_idc == 1 && width > 1 && n > width
}

/// Coded level `L` of reconstruction index `r` in trellis state `state` (spec §6.2, unvalidated
/// like the reference: an index of the wrong parity maps to a neighbouring one).
#[inline(always)]
pub fn coded_level(r: i64, state: u32) -> i64 {
    let q = (state & 1) as i64;
    if r > 0 {
        (r + q) >> 1
    } else if r < 0 {
        (r - q) >> 1
    } else {
        0
    }
}

/// Reconstruction index of coded level `level` in trellis state `state`.
#[inline(always)]
pub fn reconstruction_index(level: i64, state: u32) -> i64 {
    if level == 0 {
        0
    } else {
        2 * level - level.signum() * (state & 1) as i64
    }
}

/// Next dependent-quantization state after coding `level`.
#[inline(always)]
pub fn next_state(state: u32, level: i64) -> u32 {
    STATE_TRANS[(state & 7) as usize][(level & 1) as usize] as u32
}

struct Writer<'a> {
    enc: &'a mut ArithEncoder,
    ctx: &'a mut [ContextModel],
}

impl BinSink for Writer<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.enc.encode_bin(bin, &mut self.ctx[ctx]);
    }
    #[inline(always)]
    fn bypass(&mut self, value: u32, n: u32) {
        self.enc.encode_bypass_bits(value, n);
    }
}

/// Per-context estimators for all nine initialisation sets, run in lockstep (spec §8).
struct Trial<'a> {
    models: &'a mut [[ContextModel; NUM_INIT_SETS]],
    acc: &'a mut [[u64; NUM_INIT_SETS]],
}

impl BinSink for Trial<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        let (models, acc) = (&mut self.models[ctx], &mut self.acc[ctx]);
        for e in 0..NUM_INIT_SETS {
            acc[e] += models[e].est_bits(bin) as u64;
            models[e].update(bin);
        }
    }
    #[inline(always)]
    fn bypass(&mut self, _value: u32, _n: u32) {}
}

/// Reusable buffers so that coding many layers allocates once.
#[derive(Default, Debug, Clone)]
pub(crate) struct Scratch {
    ctx: Vec<ContextModel>,
    trial: Vec<[ContextModel; NUM_INIT_SETS]>,
    acc: Vec<[u64; NUM_INIT_SETS]>,
}

impl Scratch {
    fn reset(&mut self, len: usize) {
        self.ctx.clear();
        self.ctx.resize(len, ContextModel::new(0));
    }
}

/// Initialisation set per context chosen by the reference encoder's trial pass (spec §8).
fn choose_init_sets(levels: &[i32], params: &LayerParams, scratch: &mut Scratch) -> Vec<u8> {
    let layout = params.layout();
    let g = params.num_gtx_flags;
    let fresh: [ContextModel; NUM_INIT_SETS] = core::array::from_fn(ContextModel::new);
    scratch.trial.clear();
    scratch.trial.resize(layout.len(), fresh);
    scratch.acc.clear();
    scratch.acc.resize(layout.len(), [0; NUM_INIT_SETS]);
    let mut trial = Trial {
        models: &mut scratch.trial,
        acc: &mut scratch.acc,
    };
    let (mut state, mut prev) = (0u32, 0i64);
    for &x in levels {
        let x = x as i64;
        // The reference binarizes the caller's value (not the coded level) here: quirk of §8.
        binarize(&mut trial, layout, g, x, state, prev);
        prev = x;
        if params.dq_flag {
            state = next_state(state, coded_level(x, state));
        }
    }
    let mut sets = vec![0u8; layout.len()];
    for c in layout.signalled(params.dq_flag) {
        let costs = &scratch.acc[c];
        let cost = |e: usize| costs[e] + if e > 0 { 3 * 32768 } else { 0 };
        let best =
            (1..NUM_INIT_SETS).fold(0, |best, e| if cost(e) < cost(best) { e } else { best });
        sets[c] = best as u8;
    }
    sets
}

/// Encodes one layer's payload into `enc` (spec §6.3).
pub(crate) fn encode_layer(
    enc: &mut ArithEncoder,
    scratch: &mut Scratch,
    levels: &[i32],
    shape: &[usize],
    params: &LayerParams,
    param_opt_flag: bool,
) -> Result<()> {
    params.validate()?;
    let (n, width) = shape_info(shape)?;
    if n != levels.len() {
        return Err(Error::InvalidParameter(format!(
            "shape {shape:?} holds {n} weights but {} levels were given",
            levels.len()
        )));
    }
    let layout = params.layout();
    if has_header_flags(params, n, width) {
        if params.parent_node_id_present_flag {
            enc.encode_bypass(0); // hist_dep_sig_prob_enabled_flag
        }
        enc.encode_bypass(0); // row_skip_enabled_flag
    }
    let sets = if param_opt_flag {
        Some(choose_init_sets(levels, params, scratch))
    } else {
        None
    };
    scratch.reset(layout.len());
    let ctx = &mut scratch.ctx;
    let e_ctx = layout.init_flag();
    for c in layout.signalled(params.dq_flag) {
        let e = sets.as_ref().map_or(0, |s| s[c]) as u32;
        enc.encode_bin((e > 0) as u32, &mut ctx[e_ctx]);
        if e > 0 {
            enc.encode_bypass_bits(e - 1, 3);
        }
        ctx[c] = ContextModel::new(e as usize);
    }
    let mut w = Writer { enc, ctx };
    let g = params.num_gtx_flags;
    if params.dq_flag {
        let (mut state, mut prev) = (0u32, 0i64);
        for &r in levels {
            let level = coded_level(r as i64, state);
            binarize(&mut w, layout, g, level, state, prev);
            prev = level;
            state = next_state(state, level);
        }
    } else {
        let mut prev = 0i64;
        for &r in levels {
            let level = r as i64;
            binarize(&mut w, layout, g, level, 0, prev);
            prev = level;
        }
    }
    Ok(())
}

/// Upper bound on the levels a stream of `bytes` bytes can hold: a bin consumes at least
/// 1/128 of a bit (the range loses at least 2 of 510 per bin), so this bounds allocation.
fn max_levels_for(bytes: usize) -> usize {
    bytes.saturating_add(4).saturating_mul(8 * 128)
}

/// Decodes one layer's payload from `dec` (spec §6.3), appending to `out`.
pub(crate) fn decode_layer<B: AsRef<[u8]>>(
    dec: &mut ArithDecoder<B>,
    scratch: &mut Scratch,
    shape: &[usize],
    params: &LayerParams,
    out: &mut Vec<i32>,
) -> Result<()> {
    params.validate()?;
    let (n, width) = shape_info(shape)?;
    let layout = params.layout();
    if has_header_flags(params, n, width) {
        if params.parent_node_id_present_flag && dec.decode_bypass() != 0 {
            return Err(Error::Corrupt(
                "history-dependent significance (HDSP) is not supported",
            ));
        }
        if dec.decode_bypass() != 0 {
            return Err(Error::Corrupt("row skipping is not supported"));
        }
    }
    scratch.reset(layout.len());
    let ctx = &mut scratch.ctx;
    let e_ctx = layout.init_flag();
    for c in layout.signalled(params.dq_flag) {
        let e = if dec.decode_bin(&mut ctx[e_ctx]) != 0 {
            1 + dec.decode_bypass_bits(3)
        } else {
            0
        };
        ctx[c] = ContextModel::new(e as usize);
    }
    dec.check()?;
    let remaining = dec.remaining();
    out.reserve(n.min(max_levels_for(remaining)));
    let (mut state, mut prev) = (0u32, 0i64);
    for _ in 0..n {
        let level = decode_level(dec, ctx, layout, state, prev)?;
        dec.check()?;
        let r = if params.dq_flag {
            let r = reconstruction_index(level, state);
            state = next_state(state, level);
            i32::try_from(r).map_err(|_| Error::Corrupt("reconstruction index exceeds int32"))?
        } else {
            level as i32
        };
        out.push(r);
        prev = level;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_rules() {
        assert_eq!(shape_info(&[]).unwrap(), (1, 1));
        assert_eq!(shape_info(&[50]).unwrap(), (50, 1));
        assert_eq!(shape_info(&[16, 9]).unwrap(), (144, 9));
        assert_eq!(shape_info(&[0, 5]).unwrap(), (0, 5));
        assert_eq!(shape_info(&[8, 3, 3, 3]).unwrap(), (216, 27));
        assert!(shape_info(&[5, 0]).is_err());
        assert!(shape_info(&[usize::MAX, 2]).is_err());
    }

    #[test]
    fn dq_index_mapping_round_trips_valid_indices() {
        for state in 0..8u32 {
            for r in -20i64..=20 {
                let valid = r == 0 || (r & 1) as u32 == (state & 1);
                let l = coded_level(r, state);
                if valid {
                    assert_eq!(reconstruction_index(l, state), r, "state {state} r {r}");
                }
            }
        }
        // Quirks listed in spec §6.2.
        assert_eq!(coded_level(3, 0), 1);
        assert_eq!(coded_level(1, 0), 0);
        assert_eq!(coded_level(-1, 0), -1);
        assert_eq!(coded_level(2, 1), 1);
    }

    #[test]
    fn init_set_choice_prefers_zero_on_ties() {
        let mut s = Scratch::default();
        let p = LayerParams {
            dq_flag: false,
            ..Default::default()
        };
        let sets = choose_init_sets(&[], &p, &mut s);
        assert!(sets.iter().all(|&e| e == 0));
        let zeros = vec![0i32; 10_000];
        let sets = choose_init_sets(&zeros, &p, &mut s);
        // A long run of zeros favours a set that starts biased towards 0 for the sig context.
        assert_ne!(sets[0], 0);
        assert_eq!(sets[48], 0);
    }
}
