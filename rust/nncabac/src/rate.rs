//! The quantizers' rate model (spec §10.4).
//!
//! The rate-distortion quantizers price a candidate level with a private copy of the coder's
//! context machinery: the same binarization, priced with the bit-estimate table instead of being
//! coded. The reference sizes it with one greater-than flag fewer than the coder (`Gq =
//! max_num_no_rem`); with `Gq = 0` it still binarizes one flag but indexes contexts as if there
//! were none, so the flag shares contexts with the remainder prefix. [`RateShape`] keeps those
//! two numbers apart so [`binarize`] reproduces that exactly.

use crate::binarization::{binarize, BinSink, MAX_ABS_LEVEL};
use crate::contexts::{ContextLayout, ContextModel, BYPASS_COST, MAX_GTX_FLAGS};
use crate::error::{Error, Result};

/// Largest accepted `max_num_no_rem`: the coder then uses `MAX_GTX_FLAGS` greater-than flags.
pub const MAX_NUM_NO_REM: u32 = MAX_GTX_FLAGS - 1;

/// Sums the estimated cost of every bin, leaving the contexts as they are (a context used twice
/// in one level is priced twice in the same state, as the reference does).
struct CostSink<'a> {
    ctx: &'a [ContextModel],
    bits: u64,
}

impl BinSink for CostSink<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.bits += self.ctx[ctx].est_bits(bin) as u64;
    }
    #[inline(always)]
    fn bypass(&mut self, _value: u32, n: u32) {
        self.bits += n as u64 * BYPASS_COST as u64;
    }
}

/// Adapts every regular bin's context, as coding the level would.
struct UpdateSink<'a> {
    ctx: &'a mut [ContextModel],
}

impl BinSink for UpdateSink<'_> {
    #[inline(always)]
    fn regular(&mut self, ctx: usize, bin: u32) {
        self.ctx[ctx].update(bin);
    }
    #[inline(always)]
    fn bypass(&mut self, _value: u32, _n: u32) {}
}

/// Levels beyond what a coder can code are priced as the largest codable magnitude, so the
/// binarization never needs more than 31 prefix contexts.
#[inline(always)]
fn clamp_level(level: i64) -> i64 {
    let m = MAX_ABS_LEVEL as i64;
    level.clamp(-m, m)
}

/// Context layout and binarization length of the rate model for one `max_num_no_rem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateShape {
    /// Indexes contexts with `G = max_num_no_rem` (possibly 0).
    pub layout: ContextLayout,
    /// Greater-than flags binarized: `max(1, max_num_no_rem)`.
    pub num_gtx: u32,
}

impl RateShape {
    /// The rate model's shape for `max_num_no_rem` (`Gq`).
    pub fn new(max_num_no_rem: u32) -> Result<Self> {
        if max_num_no_rem > MAX_NUM_NO_REM {
            return Err(Error::InvalidParameter(format!(
                "max_num_no_rem must be in 0..={MAX_NUM_NO_REM}, got {max_num_no_rem}"
            )));
        }
        Ok(RateShape {
            layout: ContextLayout::new(max_num_no_rem),
            num_gtx: max_num_no_rem.max(1),
        })
    }

    /// Contexts in one store: `90 + 4·Gq`.
    #[inline]
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Never empty; present for API symmetry with `len`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Estimated cost of `level` in 1/32768 bit, from `ctx` (at least [`len`](Self::len) long).
    #[inline(always)]
    pub fn cost(&self, ctx: &[ContextModel], level: i64, state: u32, prev: i64) -> u64 {
        let mut sink = CostSink { ctx, bits: 0 };
        binarize(
            &mut sink,
            self.layout,
            self.num_gtx,
            clamp_level(level),
            state & 7,
            prev,
        );
        sink.bits
    }

    /// Adapts `ctx` to `level` as coding it in `state` after `prev` would.
    #[inline(always)]
    pub fn update(&self, ctx: &mut [ContextModel], level: i64, state: u32, prev: i64) {
        let mut sink = UpdateSink { ctx };
        binarize(
            &mut sink,
            self.layout,
            self.num_gtx,
            clamp_level(level),
            state & 7,
            prev,
        );
    }

    /// Context index ranges that levels of magnitude up to `max_abs` can have changed (the rest
    /// of a store is still in its initial state): significance, sign, greater-than flags, prefix.
    pub(crate) fn touched(&self, max_abs: u64) -> [core::ops::Range<usize>; 3] {
        let l = self.layout;
        let sig_sign = 0..l.sign(2) + 1;
        if max_abs == 0 {
            return [sig_sign, 0..0, 0..0];
        }
        let flags = (max_abs.min(self.num_gtx as u64)) as u32;
        let gtx = l.gtx(0, false)..l.gtx(flags - 1, true) + 1;
        let prefix = if max_abs > self.num_gtx as u64 {
            let rem = max_abs.min(MAX_ABS_LEVEL) - self.num_gtx as u64 - 1;
            let m = 63 - (rem + 1).leading_zeros();
            l.prefix(0)..l.prefix(m) + 1
        } else {
            0..0
        };
        [sig_sign, gtx, prefix]
    }
}

/// The rate model "R" of spec §10.4: a context store, the previous level and a state id.
///
/// Costs are in 1/32768 bit. Distortion weighting (λ, per-weight importance) is the caller's
/// business; the model only prices levels.
#[derive(Clone, Debug)]
pub struct RateModel {
    shape: RateShape,
    ctx: Vec<ContextModel>,
    prev: i64,
    state: u32,
}

impl RateModel {
    /// A fresh model (all contexts in set 0, `prev = 0`) with `Gq = max_num_no_rem` and the fixed
    /// state id `state` (0..=7; 0 for uniform quantization).
    pub fn new(max_num_no_rem: u32, state: u32) -> Result<Self> {
        if state > 7 {
            return Err(Error::InvalidParameter(format!(
                "rate model state must be in 0..=7, got {state}"
            )));
        }
        let shape = RateShape::new(max_num_no_rem)?;
        Ok(RateModel {
            shape,
            ctx: vec![ContextModel::new(0); shape.len()],
            prev: 0,
            state,
        })
    }

    /// Layout and binarization length.
    pub fn shape(&self) -> RateShape {
        self.shape
    }

    /// The previous level (the neighbour of the next one).
    pub fn prev(&self) -> i64 {
        self.prev
    }

    /// The state id used for the significance context.
    pub fn state(&self) -> u32 {
        self.state
    }

    /// Estimated cost of coding `level` next, without adapting anything. Magnitudes above 2^31
    /// are priced as 2^31.
    #[inline]
    pub fn cost(&self, level: i64) -> u64 {
        self.shape.cost(&self.ctx, level, self.state, self.prev)
    }

    /// Adapts the contexts to `level` and makes it the neighbour of the next level.
    #[inline]
    pub fn update(&mut self, level: i64) {
        self.shape
            .update(&mut self.ctx, level, self.state, self.prev);
        self.prev = level;
    }

    /// The context store.
    pub fn contexts(&self) -> &[ContextModel] {
        &self.ctx
    }

    /// Takes over `other`'s context store, keeping this model's state id and `prev` (the
    /// reference's trellis copies stores between models this way, spec §10.6).
    pub fn copy_contexts_from(&mut self, other: &RateModel) {
        if self.shape == other.shape {
            self.ctx.copy_from_slice(&other.ctx);
        } else {
            self.shape = other.shape;
            self.ctx.clone_from(&other.ctx);
        }
    }

    /// Back to the initial state.
    pub fn reset(&mut self) {
        self.ctx.fill(ContextModel::new(0));
        self.prev = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::EST_BITS;

    #[test]
    fn fresh_model_prices_a_zero_as_one_even_bin() {
        let r = RateModel::new(10, 0).unwrap();
        assert_eq!(r.cost(0), EST_BITS[512][0] as u64);
        // sig 1, sign 0 (both p = 0), flag 0 = 0: three bins at p = 0.
        assert_eq!(
            r.cost(1),
            (EST_BITS[512][1] + EST_BITS[512][0] + EST_BITS[512][0]) as u64
        );
    }

    #[test]
    fn cost_does_not_update_and_update_moves_prev() {
        let mut r = RateModel::new(3, 5).unwrap();
        let before = r.cost(7);
        assert_eq!(r.cost(7), before);
        r.update(-7);
        assert_eq!(r.prev(), -7);
        r.update(7);
        // After seeing 7 the same level must be cheaper than on a fresh model (sig, gtx learnt).
        assert!(r.cost(7) < before);
        r.reset();
        assert_eq!(r.cost(7), before);
    }

    #[test]
    fn remainder_suffix_is_priced_as_bypass_bins() {
        let r = RateModel::new(1, 0).unwrap();
        // |L| = 2 + 2^m - 1 + s: prefix m ones and a zero, m suffix bins at 32768 each.
        let c3 = r.cost(3); // rem 1: m = 1
        let c4 = r.cost(4); // rem 2: m = 1, same bins, different suffix value
        assert_eq!(c3, c4);
        let c2 = r.cost(2); // rem 0: m = 0
        let p = |bin: usize| EST_BITS[512][bin] as u64;
        assert_eq!(c3 - c2, p(1) + BYPASS_COST as u64);
    }

    #[test]
    fn zero_gtx_rate_model_shares_flag_and_prefix_contexts() {
        // Gq = 0: flag 0 of a positive level is on context 53, which is also prefix bin 0.
        let mut r = RateModel::new(0, 0).unwrap();
        assert_eq!(r.shape().num_gtx, 1);
        assert_eq!(r.shape().layout.gtx(0, false), r.shape().layout.prefix(0));
        let c = r.cost(2); // sig, sign, flag0 = 1 (ctx 53), prefix0 = 0 (ctx 53 again)
        let p = |bin: usize| EST_BITS[512][bin] as u64;
        assert_eq!(c, p(1) + p(0) + p(1) + p(0));
        r.update(2);
        assert_eq!(r.prev(), 2);
    }

    #[test]
    fn extreme_levels_are_clamped_not_panicking() {
        let mut r = RateModel::new(0, 7).unwrap();
        let a = r.cost(i64::MAX);
        assert_eq!(a, r.cost(1 << 31));
        assert_eq!(r.cost(i64::MIN), r.cost(-(1 << 31)));
        r.update(i64::MIN);
        assert!(RateModel::new(MAX_NUM_NO_REM + 1, 0).is_err());
        assert!(RateModel::new(0, 8).is_err());
    }

    #[test]
    fn touched_ranges_cover_every_updated_context() {
        for g in [0u32, 1, 3, 10] {
            let shape = RateShape::new(g).unwrap();
            for level in [
                0i64,
                1,
                -1,
                2,
                -3,
                10,
                -11,
                12,
                40,
                -1000,
                1 << 31,
                -(1 << 31),
            ] {
                let mut ctx = vec![ContextModel::new(0); shape.len()];
                shape.update(&mut ctx, level, 7, -1);
                shape.update(&mut ctx, level, 3, 1);
                let ranges = shape.touched(level.unsigned_abs());
                for (i, c) in ctx.iter().enumerate() {
                    if *c != ContextModel::new(0) {
                        assert!(
                            ranges.iter().any(|r| r.contains(&i)),
                            "G {g} L {level} ctx {i}"
                        );
                    }
                }
                assert!(ranges.iter().all(|r| r.end <= shape.len()));
            }
        }
    }
}
