//! The quantizers' rate model (spec §10.4).
//!
//! The rate-distortion quantizers price a candidate level with a private copy of the coder's
//! context machinery: the same binarization, priced with the bit-estimate table instead of being
//! coded. The reference sizes it with one greater-than flag fewer than the coder (`Gq =
//! max_num_no_rem`); with `Gq = 0` it still binarizes one flag but indexes contexts as if there
//! were none, so the flag shares contexts with the remainder prefix. [`RateShape`] keeps those
//! two numbers apart so [`binarize`] reproduces that exactly.
//!
//! Every rate-model context starts in initialisation set 0 and keeps its adaptation shifts, so
//! its state is just the two estimates, packed with the bit-estimate row they select into one
//! 32-bit [`RateContext`]: half the size of a coder's
//! [`ContextModel`](crate::contexts::ContextModel), which halves what the trellis moves between
//! its stores. The hot paths (the update and the triple costs of the trellis) walk the
//! greater-than and prefix runs directly; tests check them against [`binarize`].

use crate::binarization::{binarize, BinSink, MAX_ABS_LEVEL};
use crate::contexts::{neighbour_class, ContextLayout, BYPASS_COST, MAX_GTX_FLAGS};
use crate::error::{Error, Result};
use crate::tables::{CURVE, EST_BITS};

/// Largest accepted `max_num_no_rem`: the coder then uses `MAX_GTX_FLAGS` greater-than flags.
pub const MAX_NUM_NO_REM: u32 = MAX_GTX_FLAGS - 1;

/// Shift of the fast estimate in initialisation set 0 (`sh0 + 4`).
const SHIFT_A: u32 = 5;
/// Shift of the slow estimate in initialisation set 0 (`sh1`).
const SHIFT_B: u32 = 4;

/// Field of a packed [`RateContext`] holding `a` as a byte.
const A_SHIFT: u32 = 12;
/// Field of a packed [`RateContext`] holding the row of `EST_BITS` for `p = 16a + b`.
const ROW_SHIFT: u32 = 22;

/// `a`'s part of a packed context: its byte, and `2a` towards the row `512 + 2a + (b >> 3)`
/// (`(16a + b) >> 3 = 2a + (b >> 3)` exactly, since `16a` is a multiple of 8).
const fn pack_a(a: i32) -> u32 {
    (((2 * a) as u32 & 1023) << ROW_SHIFT) | ((a as u8 as u32) << A_SHIFT)
}

/// `b`'s part of a packed context: its low 12 bits (`|b| ≤ 1923`), and `512 + (b >> 3)` towards
/// the row.
const fn pack_b(b: i32) -> u32 {
    (((512 + (b >> 3)) as u32 & 1023) << ROW_SHIFT) | (b as u32 & 0xfff)
}

/// Packed `a` part after coding a bin, per `[bin][a as u8]`, for set 0's shift (spec §3.4).
static NEXT_A: [[u32; 256]; 2] = {
    let mut t = [[0u32; 256]; 2];
    let mut a = -128i32;
    while a < 128 {
        let i = a as u8 as usize;
        t[1][i] = pack_a(a + (CURVE[(16 + (a >> 3)) as usize & 31] >> SHIFT_A));
        t[0][i] = pack_a(a - (CURVE[(16 + ((-a) >> 3)) as usize & 31] >> SHIFT_A));
        a += 1;
    }
    t
};

/// Packed `b` part after coding a bin, per `[bin][b & 4095]`.
static NEXT_B: [[u32; 4096]; 2] = {
    let mut t = [[0u32; 4096]; 2];
    let mut b = -2048i32;
    while b < 2048 {
        let i = (b & 4095) as usize;
        t[1][i] = pack_b(b + (CURVE[(16 + (b >> 7)) as usize & 31] >> SHIFT_B));
        t[0][i] = pack_b(b - (CURVE[(16 + ((-b) >> 7)) as usize & 31] >> SHIFT_B));
        b += 1;
    }
    t
};

/// A rate-model context: a [`ContextModel`](crate::contexts::ContextModel) of initialisation
/// set 0 reduced to its two estimates, packed in one word with the `EST_BITS` row they select.
///
/// Bits 0..12 hold `b`, bits 12..20 `a` (two's complement), bits 22..32 the row
/// `(512 + ((16a + b) >> 3)) mod 1024`. Pricing a bin is then one shift and one load, and an
/// update two loads and an add (the row parts of `a` and `b` sum modulo 2^10 in the top bits;
/// the other fields do not overlap). The trellis prices and updates about equally often, and a
/// single-word store also lets the next read of the context forward from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateContext(u32);

impl Default for RateContext {
    fn default() -> Self {
        Self::INIT
    }
}

impl RateContext {
    /// `init(0)`: both estimates 0.
    pub const INIT: RateContext = RateContext(pack_a(0).wrapping_add(pack_b(0)));

    /// The fast estimate `a`.
    #[inline(always)]
    fn a(&self) -> i32 {
        (self.0 >> A_SHIFT) as u8 as i8 as i32
    }

    /// The slow estimate `b`.
    #[inline(always)]
    fn b(&self) -> i32 {
        ((self.0 << 20) as i32) >> 20
    }

    /// Combined estimate `16a + b`, as [`ContextModel::p`](crate::contexts::ContextModel::p).
    #[inline(always)]
    pub fn p(&self) -> i32 {
        16 * self.a() + self.b()
    }

    /// Estimated cost of `bin` in 1/32768 bit, as
    /// [`ContextModel::est_bits`](crate::contexts::ContextModel::est_bits).
    #[inline(always)]
    pub fn est_bits(&self, bin: u32) -> u32 {
        EST_BITS[(self.0 >> ROW_SHIFT) as usize][(bin & 1) as usize]
    }

    /// Adapts to `bin`, as [`ContextModel::update`](crate::contexts::ContextModel::update) does
    /// for a set-0 context.
    #[inline(always)]
    pub fn update(&mut self, bin: u32) {
        *self = self.next(bin);
    }

    /// The context after coding `bin`.
    #[inline(always)]
    pub fn next(self, bin: u32) -> Self {
        let bin = (bin & 1) as usize;
        let a = NEXT_A[bin][(self.0 >> A_SHIFT) as u8 as usize];
        let b = NEXT_B[bin][(self.0 & 0xfff) as usize];
        RateContext(a.wrapping_add(b))
    }
}

/// Sums the estimated cost of every bin, leaving the contexts as they are (a context used twice
/// in one level is priced twice in the same state, as the reference does).
struct CostSink<'a> {
    ctx: &'a [RateContext],
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

/// Adapts the exp-Golomb prefix contexts from `p0` to a remainder `rem`: its prefix is `e` ones
/// and a zero, `e = floor(log2(rem + 1))`.
#[inline(always)]
pub(crate) fn adapt_remainder(ctx: &mut [RateContext], p0: usize, rem: u64) {
    let e = (63 - (rem + 1).leading_zeros()) as usize;
    let run = &mut ctx[p0..p0 + e + 1];
    for c in run[..e].iter_mut() {
        c.update(1);
    }
    run[e].update(0);
}

/// Adapts every regular bin's context, as coding the level would (the definition [`RateShape`]'s
/// faster update is tested against).
#[cfg(test)]
struct UpdateSink<'a> {
    ctx: &'a mut [RateContext],
}

#[cfg(test)]
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
    pub(crate) fn cost(&self, ctx: &[RateContext], level: i64, state: u32, prev: i64) -> u64 {
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
    #[cfg(test)]
    pub(crate) fn update(&self, ctx: &mut [RateContext], level: i64, state: u32, prev: i64) {
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

    /// Adapts `ctx` to `level` as coding it in `state` after `prev` would, walking the
    /// greater-than and prefix runs as straight loops over their contexts.
    #[inline(always)]
    pub(crate) fn adapt(&self, ctx: &mut [RateContext], level: i64, state: u32, prev: i64) {
        self.adapt_nb(ctx, clamp_level(level), state, neighbour_class(prev));
    }

    /// [`adapt`](Self::adapt) with the neighbour given by its class (0, 1, 2; see
    /// [`neighbour_class`]). `level` must be codable (|level| ≤ 2^31) and `nb` at most 2.
    #[inline(always)]
    pub(crate) fn adapt_nb(&self, ctx: &mut [RateContext], level: i64, state: u32, nb: u32) {
        let l = self.layout;
        let sig = l.sig(state & 7, nb);
        if level == 0 {
            ctx[sig].update(0);
            return;
        }
        ctx[sig].update(1);
        let negative = level < 0;
        ctx[l.sign(nb)].update(negative as u32);
        let m = level.unsigned_abs();
        let g = self.num_gtx as u64;
        let flags = m.min(g) as usize;
        let base = l.gtx(0, negative);
        // Flags 0..flags-1 sit on every other context from `base`.
        let (ones, last) = ctx[base..base + 2 * flags].split_at_mut(2 * (flags - 1));
        for pair in ones.chunks_exact_mut(2) {
            pair[0].update(1);
        }
        let more = m > g;
        last[0].update(more as u32);
        if !more {
            return;
        }
        adapt_remainder(ctx, l.prefix(0), m - g - 1);
    }

    /// Costs of `0`, `±m` and `±(m + 1)` (`m ≥ 1`, sign `negative`) at once, sharing the bins
    /// the three binarizations have in common. Equal to three [`cost`](Self::cost) calls.
    #[inline(always)]
    pub(crate) fn cost_triple(
        &self,
        ctx: &[RateContext],
        m: u64,
        negative: bool,
        state: u32,
        prev: i64,
    ) -> [u64; 3] {
        self.cost_triples([ctx], m, negative, [state], [neighbour_class(prev)])[0]
    }

    /// [`cost_triple`](Self::cost_triple) for `N` stores in lockstep (same levels, each store
    /// with its own state and neighbour class `nb`, at most 2): the greater-than walk is shared.
    #[inline(always)]
    pub(crate) fn cost_triples<const N: usize>(
        &self,
        ctx: [&[RateContext]; N],
        m: u64,
        negative: bool,
        state: [u32; N],
        nb: [u32; N],
    ) -> [[u64; 3]; N] {
        let m = m.clamp(1, MAX_ABS_LEVEL - 1);
        let l = self.layout;
        let g = self.num_gtx as u64;
        let mut out = [[0u64; 3]; N];
        let mut common = [0u64; N];
        for i in 0..N {
            let nb = nb[i];
            let sig = ctx[i][l.sig(state[i] & 7, nb)];
            out[i][0] = sig.est_bits(0) as u64;
            common[i] =
                sig.est_bits(1) as u64 + ctx[i][l.sign(nb)].est_bits(negative as u32) as u64;
        }
        let flags = m.min(g) as usize;
        let base = l.gtx(0, negative);
        // Flags 0..flags-2 are 1 in both nonzero levels.
        let run: [&[RateContext]; N] =
            core::array::from_fn(|i| &ctx[i][base..base + 2 * flags - 1]);
        for k in 0..flags - 1 {
            for i in 0..N {
                common[i] += run[i][2 * k].est_bits(1) as u64;
            }
        }
        let last = base + 2 * (flags - 1);
        if m < g {
            for i in 0..N {
                let (lc, next) = (ctx[i][last], ctx[i][last + 2]);
                out[i][1] = common[i] + lc.est_bits(0) as u64;
                out[i][2] = common[i] + lc.est_bits(1) as u64 + next.est_bits(0) as u64;
            }
        } else if m == g {
            for i in 0..N {
                let lc = ctx[i][last];
                out[i][1] = common[i] + lc.est_bits(0) as u64;
                out[i][2] = common[i] + lc.est_bits(1) as u64 + self.rem_cost(ctx[i], 0);
            }
        } else {
            // Both levels have all flags set and remainders `rem`, `rem + 1`, whose prefixes
            // share their first `e` ones; equal prefix lengths cost the same.
            let rem = m - g - 1;
            let e = (63 - (rem + 1).leading_zeros()) as usize;
            let longer = (rem + 2).is_power_of_two();
            let p0 = l.prefix(0);
            let run: [&[RateContext]; N] = core::array::from_fn(|i| &ctx[i][p0..p0 + e + 2]);
            for i in 0..N {
                common[i] += ctx[i][last].est_bits(1) as u64 + e as u64 * BYPASS_COST as u64;
            }
            // Index loops: the N stores advance in lockstep.
            #[allow(clippy::needless_range_loop)]
            for j in 0..e {
                for i in 0..N {
                    common[i] += run[i][j].est_bits(1) as u64;
                }
            }
            for i in 0..N {
                let cm = common[i] + run[i][e].est_bits(0) as u64;
                out[i][1] = cm;
                out[i][2] = if longer {
                    common[i]
                        + run[i][e].est_bits(1) as u64
                        + run[i][e + 1].est_bits(0) as u64
                        + BYPASS_COST as u64
                } else {
                    cm
                };
            }
        }
        out
    }

    /// Cost of the Exp-Golomb remainder `rem` (prefix regular, suffix bypass).
    #[inline(always)]
    fn rem_cost(&self, ctx: &[RateContext], rem: u64) -> u64 {
        let m = 63 - (rem + 1).leading_zeros();
        let mut c = m as u64 * BYPASS_COST as u64;
        for j in 0..m {
            c += ctx[self.layout.prefix(j)].est_bits(1) as u64;
        }
        c + ctx[self.layout.prefix(m)].est_bits(0) as u64
    }

    /// End of the last range of [`touched`](Self::touched): copying the contexts before it
    /// moves all that levels of magnitude up to `max_abs` can have changed.
    pub(crate) fn touched_end(&self, max_abs: u64) -> usize {
        self.touched(max_abs)
            .iter()
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
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
    ctx: Vec<RateContext>,
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
            ctx: vec![RateContext::INIT; shape.len()],
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

    /// Costs of `0`, `±m` and `±(m + 1)` for `m ≥ 1` (sign `negative`), as three
    /// [`cost`](Self::cost) calls would give them but sharing their common bins.
    #[inline]
    pub fn cost_triple(&self, m: u64, negative: bool) -> [u64; 3] {
        self.shape
            .cost_triple(&self.ctx, m, negative, self.state, self.prev)
    }

    /// Adapts the contexts to `level` and makes it the neighbour of the next level.
    #[inline]
    pub fn update(&mut self, level: i64) {
        self.shape
            .adapt(&mut self.ctx, level, self.state, self.prev);
        self.prev = level;
    }

    /// The context store.
    pub fn contexts(&self) -> &[RateContext] {
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
        self.ctx.fill(RateContext::INIT);
        self.prev = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contexts::ContextModel;
    use crate::tables::EST_BITS;

    #[test]
    fn rate_context_equals_a_set0_context_model_on_every_reachable_state() {
        // Breadth-first over the compact states; each must stand for exactly one coder state.
        use std::collections::{HashMap, VecDeque};
        let mut seen = HashMap::new();
        let mut queue = VecDeque::from([(ContextModel::new(0), RateContext::INIT)]);
        seen.insert(RateContext::INIT, ContextModel::new(0));
        while let Some((m, r)) = queue.pop_front() {
            assert_eq!(m.p(), r.p());
            // The packed row is that of p, and the unused bits stay clear.
            assert_eq!(r.0 >> ROW_SHIFT, (512 + (r.p() >> 3)) as u32 & 1023);
            assert_eq!(r.0 & (3 << 20), 0);
            for bin in 0..2 {
                assert_eq!(m.est_bits(bin), r.est_bits(bin));
                let (mut m2, mut r2) = (m, r);
                m2.update(bin);
                r2.update(bin);
                assert_eq!(m2.p(), r2.p(), "{r:?} bin {bin}");
                match seen.get(&r2) {
                    Some(known) => assert_eq!(*known, m2, "{r2:?}"),
                    None => {
                        seen.insert(r2, m2);
                        queue.push_back((m2, r2));
                    }
                }
            }
        }
        assert!(seen.len() > 1000, "{}", seen.len());
    }

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
    fn cost_triple_equals_three_costs() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for g in [0u32, 1, 2, 3, 10] {
            let shape = RateShape::new(g).unwrap();
            let mut ctx = vec![RateContext::INIT; shape.len()];
            for round in 0..1500 {
                // Random history so the contexts differ.
                for _ in 0..5 {
                    let mag = (rnd() % 40) as i64;
                    let lv = if rnd() % 2 == 0 { mag } else { -mag };
                    shape.update(&mut ctx, lv, (rnd() % 8) as u32, lv - 1);
                }
                let m = match round % 5 {
                    0 => 1 + rnd() % 4,
                    1 => 1 + rnd() % 20,
                    2 => 1 + rnd() % 5000,
                    3 => 1 + (round / 5) as u64 % 300, // every small m: each prefix length
                    _ => (1u64 << 31) - 1 - rnd() % 3,
                };
                for negative in [false, true] {
                    let state = (rnd() % 8) as u32;
                    let prev = rnd() as i64 % 3 - 1;
                    let sg = if negative { -1 } else { 1 };
                    let want = [
                        shape.cost(&ctx, 0, state, prev),
                        shape.cost(&ctx, sg * m as i64, state, prev),
                        shape.cost(&ctx, sg * (m as i64 + 1), state, prev),
                    ];
                    assert_eq!(
                        shape.cost_triple(&ctx, m, negative, state, prev),
                        want,
                        "G {g} m {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn adapt_equals_update() {
        let mut seed = 11u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for g in [0u32, 1, 2, 3, 10, 40] {
            let shape = RateShape::new(g).unwrap();
            let mut a = vec![RateContext::INIT; shape.len()];
            let mut b = a.clone();
            for i in 0..3000 {
                let mag = match i % 5 {
                    0 => 0,
                    1 => rnd() % 3,
                    2 => rnd() % 50,
                    3 => rnd() % 100_000,
                    _ => (1u64 << 31) - rnd() % 2,
                } as i64;
                let level = if rnd() % 2 == 0 { mag } else { -mag };
                let (state, prev) = ((rnd() % 8) as u32, rnd() as i64 % 3 - 1);
                shape.update(&mut a, level, state, prev);
                shape.adapt(&mut b, level, state, prev);
                assert_eq!(a, b, "G {g} step {i} level {level}");
            }
        }
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
                let mut ctx = vec![RateContext::INIT; shape.len()];
                shape.update(&mut ctx, level, 7, -1);
                shape.update(&mut ctx, level, 3, 1);
                let ranges = shape.touched(level.unsigned_abs());
                let end = shape.touched_end(level.unsigned_abs());
                assert!(ranges.iter().all(|r| r.end <= end));
                for (i, c) in ctx.iter().enumerate() {
                    if *c != RateContext::INIT {
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
