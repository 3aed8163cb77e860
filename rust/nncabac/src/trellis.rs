//! Trellis-coded (dependent) quantization: an 8-state Viterbi search (spec §10.6).
//!
//! Dependent quantization alternates between two interleaved quantizers as the state machine of
//! spec §6.2 dictates, so the best level of one weight depends on all others; the Viterbi search
//! finds the path of least `distortion + λ·rate`. Bit-exactness with the reference needs its exact
//! branch order, tie rule (first strict minimum), initial costs and, for λ > 0, its peculiar
//! rate-model bookkeeping (two banks of eight models, updated with the destination state and a
//! stale neighbour), all reproduced here.
//!
//! The search keeps no per-weight allocation: the decisions (2 bits per state) are parked in the
//! output buffer and replaced by the levels on the way back, and the eight context stores are
//! handed from state to state, copying only when two paths continue from the same state and
//! only the contexts that can differ.

use crate::binarization::MAX_ABS_LEVEL;
use crate::error::{Error, Result};
use crate::rate::{adapt_remainder, RateContext, RateShape};

/// Initial cost of the states a path cannot start in: half the largest float64.
pub const HUGE: f64 = 0.5 * f64::MAX;

/// Candidate slots: 0..=3 hold the reconstruction `qi·Δ` with `qi ≡ slot (mod 4)`, 4 is zero.
pub const ZERO_SLOT: u8 = 4;

/// Branches into each destination state as `(source state, slot)`, in the reference's order
/// (which decides ties).
pub const BRANCHES: [[(u8, u8); 3]; 8] = [
    [(0, 0), (0, 4), (4, 2)],
    [(2, 0), (2, 4), (6, 2)],
    [(0, 2), (4, 0), (4, 4)],
    [(2, 2), (6, 0), (6, 4)],
    [(3, 1), (7, 3), (7, 4)],
    [(1, 1), (5, 3), (5, 4)],
    [(3, 3), (3, 4), (7, 1)],
    [(1, 3), (1, 4), (5, 1)],
];

/// The four nonzero candidates of one weight: `|w|/Δ`, the lowest multiple and the sign.
#[derive(Clone, Copy, Debug)]
struct Candidates {
    o: f64,
    base: i64,
    negative: bool,
}

impl Candidates {
    #[inline(always)]
    fn new(w: f32, qs: f64) -> Self {
        let negative = w < 0.0; // -0.0 counts as positive
                                // `(qs·w)·sg` of the spec, sg = ±1: exactly |qs·w| (a -0.0 becomes +0.0, which no
                                // candidate can tell apart).
        let o = (qs * w as f64).abs();
        // `o` is finite and below ~2^31 here (checked by the caller), so the cast truncates.
        let base = (o as i64 - 1).max(1);
        Candidates { o, base, negative }
    }

    /// The multiple `qi` held by nonzero slot `slot`.
    #[inline(always)]
    fn qi(&self, slot: u8) -> i64 {
        self.base + ((slot as i64 - self.base) & 3)
    }

    /// `ds·(o - qi)²` per slot (index 4: the zero reconstruction).
    #[inline(always)]
    fn dists(&self, ds: f64) -> [f64; 5] {
        let d = |slot: u8| {
            let e = self.o - self.qi(slot) as f64;
            ds * (e * e)
        };
        [d(0), d(1), d(2), d(3), ds * (self.o * self.o)]
    }

    /// Coded level per slot: `±(qi + 1) >> 1` (index 4: 0).
    #[cfg(test)]
    fn levels(&self) -> [i64; 5] {
        let l = |slot: u8| {
            let m = (self.qi(slot) + 1) >> 1;
            if self.negative {
                -m
            } else {
                m
            }
        };
        [l(0), l(1), l(2), l(3), 0]
    }

    /// Reconstruction index of `slot`: `±qi`, or `None` when it does not fit in int32.
    #[inline(always)]
    fn index(&self, slot: u8) -> Option<i32> {
        if slot == ZERO_SLOT {
            return Some(0);
        }
        let qi = self.qi(slot);
        i32::try_from(if self.negative { -qi } else { qi }).ok()
    }
}

/// The reference's per-weight overflow check: `round(float32(w · float32(1/Δ)))` must be
/// strictly inside int32 (unlike plain rounding, −2^31 fails too).
#[inline(always)]
fn fits(w: f32, s32: f32) -> bool {
    // No float32 lies strictly between 2^31 - 128 and 2^31, so rounding cannot cross the limit.
    (w * s32).abs() < 2_147_483_648.0
}

/// Rate kind of each branch in [`BRANCHES`]: 0 the source's parity-0 slot, 1 zero, 2 parity-1.
const BRANCH_KIND: [[usize; 3]; 8] = {
    let mut t = [[0; 3]; 8];
    let mut d = 0;
    while d < 8 {
        let mut i = 0;
        while i < 3 {
            let (p, slot) = BRANCHES[d][i];
            t[d][i] = if slot == ZERO_SLOT {
                1
            } else if slot == 3 * (p & 1) {
                0
            } else {
                2
            };
            i += 1;
        }
        d += 1;
    }
    t
};

/// The two banks of eight rate models of the reference, with the stores of one bank shared out
/// as buffers: slot `p` of the previous bank is the store at `store[at[p]..]`.
#[derive(Clone, Debug)]
struct Banks {
    shape: RateShape,
    len: usize,
    store: Vec<RateContext>,
    at: [usize; 8],
    /// Neighbour class of the `prev` of slot d of bank b: that of the level it recorded two
    /// weights earlier (0 at first).
    nbs: [[u32; 8]; 2],
    /// Bound on the magnitudes any store was updated with (the largest candidate so far):
    /// bounds what copies must move.
    max_abs: u64,
    /// Contexts a copy moves: the first ones, up to the last that `max_abs` lets differ (one
    /// span of a size that rarely changes, so the copy is cheap and predictable).
    copy_len: usize,
}

impl Banks {
    fn new(shape: RateShape) -> Self {
        let len = shape.len();
        Banks {
            shape,
            len,
            store: vec![RateContext::INIT; 8 * len],
            at: core::array::from_fn(|i| i * len),
            nbs: [[0; 8]; 2],
            max_abs: 0,
            copy_len: shape.touched_end(0),
        }
    }

    fn reset(&mut self) {
        self.store.fill(RateContext::INIT);
        self.at = core::array::from_fn(|i| i * self.len);
        self.nbs = [[0; 8]; 2];
        self.max_abs = 0;
        self.copy_len = self.shape.touched_end(0);
    }

    #[inline(always)]
    fn slot(&self, p: usize) -> &[RateContext] {
        &self.store[self.at[p]..self.at[p] + self.len]
    }

    /// Rates at weight `t` as `[source state][kind]` (kinds as in [`BRANCH_KIND`]), left as
    /// integers: the Viterbi step converts each where it adds it, so no array of floats is
    /// written element by element and then read back in pairs (a stalled store forward).
    #[inline(always)]
    fn rates(&self, t: usize, cand: &Candidates) -> [[u64; 3]; 8] {
        let nbs = &self.nbs[(t + 1) & 1];
        let mut out = [[0; 3]; 8];
        // Q0 states choose between qi ≡ 0 and qi ≡ 2 (mod 4), Q1 states between 3 and 1: two
        // consecutive magnitudes each, the smaller one `m`.
        for q in 0..2 {
            let (even, odd) = (cand.qi(3 * q as u8), cand.qi(2 - q as u8));
            let m = ((even.min(odd) + 1) >> 1) as u64;
            let ps = [q, q + 2, q + 4, q + 6];
            let costs = self.shape.cost_triples(
                ps.map(|p| self.slot(p)),
                m,
                cand.negative,
                ps.map(|p| p as u32),
                ps.map(|p| nbs[p]),
            );
            for (&p, [z, a, b]) in ps.iter().zip(costs) {
                out[p] = if even < odd { [a, z, b] } else { [b, z, a] };
            }
        }
        out
    }

    /// Slot d of the current bank becomes slot `from[d]` of the previous one, updated with the
    /// level of candidate `slot[d]` of `cand` in state d with its own stale neighbour (spec
    /// §10.6 quirk).
    #[inline(always)]
    fn advance(&mut self, t: usize, from: &[u8; 8], slot: &[u8; 8], cand: &Candidates) {
        // The first destination continuing a state takes its store; the others get copies.
        let mut claimed = 0u32;
        let mut copy = 0u32;
        let mut dst = [0usize; 8];
        for d in 0..8 {
            let bit = 1u32 << from[d];
            let taken = (claimed & bit != 0) as u32;
            claimed |= bit;
            copy |= taken << d;
            dst[d] = self.at[from[d] as usize];
        }
        if copy != 0 {
            // Copies go to the stores of states nobody continues, before any store is updated.
            let mut free = !claimed & 0xff;
            let n = self.copy_len;
            while copy != 0 {
                let d = copy.trailing_zeros() as usize & 7;
                copy &= copy - 1;
                let f = self.at[free.trailing_zeros() as usize & 7];
                free &= free.wrapping_sub(1);
                let src = dst[d];
                self.store.copy_within(src..src + n, f);
                dst[d] = f;
            }
        }
        // Every nonzero level has the weight's sign; its magnitude is `(qi + 1) >> 1`.
        let neg = cand.negative;
        let mag: [u64; 4] = core::array::from_fn(|s| ((cand.qi(s as u8) + 1) >> 1) as u64);
        let class = if neg { 1 } else { 2 };
        let l = self.shape.layout;
        let g = self.shape.num_gtx as u64;
        let base = l.gtx(0, neg);
        let nbs = &mut self.nbs[t & 1];
        for d in 0..8 {
            let ctx = &mut self.store[dst[d]..dst[d] + self.len];
            let nb = nbs[d] & 3;
            let s = slot[d] as usize;
            let sig = &mut ctx[l.sig(d as u32, nb)];
            if s == ZERO_SLOT as usize {
                sig.update(0);
                nbs[d] = 0;
                continue;
            }
            sig.update(1);
            nbs[d] = class;
            ctx[l.sign(nb)].update(neg as u32);
            // Flags: `ones` of value 1 (every other context from `base`), then a 0 unless the
            // level has a remainder.
            let m = mag[s & 3];
            let ones = (m - 1).min(g) as usize;
            let (run, last) = ctx[base..base + 2 * ones + 1].split_at_mut(2 * ones);
            for pair in run.chunks_exact_mut(2) {
                pair[0].update(1);
            }
            if m <= g {
                last[0].update(0);
            } else {
                adapt_remainder(ctx, l.prefix(0), m.min(MAX_ABS_LEVEL) - g - 1);
            }
        }
        let top = mag[0].max(mag[1]).max(mag[2]).max(mag[3]);
        if top > self.max_abs {
            self.max_abs = top;
            self.copy_len = self.shape.touched_end(top);
        }
        self.at = dst;
    }
}

/// Reusable trellis quantizer: keeps the rate-model stores between layers.
#[derive(Clone, Debug, Default)]
pub struct Trellis {
    banks: Option<Banks>,
}

impl Trellis {
    /// A quantizer with no stores allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `weights` with step `delta` into reconstruction indices `out`.
    ///
    /// `lambda_scale` is NNCodec's rate weight (≤ 0: pure distortion search), `max_num_no_rem`
    /// the rate model's `Gq`. `importance`, when given, multiplies each weight's squared error;
    /// all ones gives exactly the unweighted result. Returns [`Error::Overflow`] when a level
    /// would not fit in int32 (the caller then retries with a coarser step, spec §10.7).
    pub fn quantize(
        &mut self,
        weights: &[f32],
        delta: f32,
        lambda_scale: f32,
        max_num_no_rem: u32,
        importance: Option<&[f32]>,
        out: &mut [i32],
    ) -> Result<()> {
        check_args(weights, delta, importance, out)?;
        let shape = RateShape::new(max_num_no_rem)?;
        let lambda = lambda_scale as f64 * 4.0 * (core::f64::consts::LN_2 / 6.0) * 0.7;
        let s32 = 1.0f32 / delta;
        let qs = 1.0 / delta as f64;
        let end = if lambda > 0.0 {
            let banks = match &mut self.banks {
                Some(b) if b.shape == shape => {
                    b.reset();
                    b
                }
                slot => slot.insert(Banks::new(shape)),
            };
            forward_rate(weights, s32, qs, 32768.0 / lambda, importance, banks, out)?
        } else {
            forward_dist(weights, s32, qs, importance, out)?
        };
        backtrack(weights, qs, end, out)
    }
}

/// [`Trellis::quantize`] with a fresh quantizer.
pub fn quantize_trellis(
    weights: &[f32],
    delta: f32,
    lambda_scale: f32,
    max_num_no_rem: u32,
    importance: Option<&[f32]>,
    out: &mut [i32],
) -> Result<()> {
    Trellis::new().quantize(
        weights,
        delta,
        lambda_scale,
        max_num_no_rem,
        importance,
        out,
    )
}

fn check_args(weights: &[f32], delta: f32, imp: Option<&[f32]>, out: &[i32]) -> Result<()> {
    if !delta.is_normal() || delta < 0.0 {
        return Err(Error::InvalidParameter(format!(
            "step size must be a positive normal float32, got {delta:e}"
        )));
    }
    if out.len() != weights.len() {
        return Err(Error::InvalidParameter(format!(
            "output has {} elements for {} weights",
            out.len(),
            weights.len()
        )));
    }
    if let Some(imp) = imp {
        if imp.len() != weights.len() {
            return Err(Error::InvalidParameter(format!(
                "importance has {} elements for {} weights",
                imp.len(),
                weights.len()
            )));
        }
    }
    Ok(())
}

fn overflow(k: usize) -> Error {
    Error::Overflow(format!("weight {k}: level does not fit in int32"))
}

/// First strict minimum of three costs: (cost, branch 0..=2).
#[inline(always)]
fn min3(c0: f64, c1: f64, c2: f64) -> (f64, u16) {
    let (mut best, mut b) = (c0, 0);
    if c1 < best {
        best = c1;
        b = 1;
    }
    if c2 < best {
        best = c2;
        b = 2;
    }
    (best, b)
}

/// `argmin J`, the first minimum.
fn end_state(j: &[f64; 8]) -> usize {
    (1..8).fold(0, |m, d| if j[d] < j[m] { d } else { m })
}

/// Forward pass without rate (λ ≤ 0: `ds = 1`, every rate 0). Decisions go to `out`.
fn forward_dist(
    weights: &[f32],
    s32: f32,
    qs: f64,
    imp: Option<&[f32]>,
    out: &mut [i32],
) -> Result<usize> {
    let mut j = [HUGE; 8];
    j[0] = 0.0;
    for (k, (&w, o)) in weights.iter().zip(out.iter_mut()).enumerate() {
        if !fits(w, s32) {
            return Err(overflow(k));
        }
        let ds = imp.map_or(1.0, |v| v[k] as f64);
        let dist = Candidates::new(w, qs).dists(ds);
        let mut nj = [0.0; 8];
        let mut dec = 0u16;
        for d in 0..8 {
            let [(p0, s0), (p1, s1), (p2, s2)] = BRANCHES[d];
            let (c, b) = min3(
                j[p0 as usize] + dist[s0 as usize],
                j[p1 as usize] + dist[s1 as usize],
                j[p2 as usize] + dist[s2 as usize],
            );
            nj[d] = c;
            dec |= b << (2 * d);
        }
        j = nj;
        *o = dec as i32;
    }
    Ok(end_state(&j))
}

/// Forward pass with the rate model (λ > 0).
fn forward_rate(
    weights: &[f32],
    s32: f32,
    qs: f64,
    ds: f64,
    imp: Option<&[f32]>,
    banks: &mut Banks,
    out: &mut [i32],
) -> Result<usize> {
    let mut j = [HUGE; 8];
    j[0] = 0.0;
    for (k, (&w, o)) in weights.iter().zip(out.iter_mut()).enumerate() {
        if !fits(w, s32) {
            return Err(overflow(k));
        }
        let dsi = imp.map_or(ds, |v| ds * v[k] as f64);
        let cand = Candidates::new(w, qs);
        let dist = cand.dists(dsi);
        let rate = banks.rates(k, &cand);
        let mut nj = [0.0; 8];
        let mut dec = 0u16;
        let mut from = [0u8; 8];
        let mut slot = [0u8; 8];
        for d in 0..8 {
            let cost = |i: usize| {
                let (p, s) = BRANCHES[d][i];
                // Costs stay far below 2^53: exact as float64 (via i64, a single conversion).
                (j[p as usize] + dist[s as usize])
                    + rate[p as usize][BRANCH_KIND[d][i]] as i64 as f64
            };
            let (c, b) = min3(cost(0), cost(1), cost(2));
            nj[d] = c;
            dec |= b << (2 * d);
            let (p, s) = BRANCHES[d][b as usize];
            from[d] = p;
            slot[d] = s;
        }
        j = nj;
        *o = dec as i32;
        banks.advance(k, &from, &slot, &cand);
    }
    Ok(end_state(&j))
}

/// Walks the decisions back from state `end`, replacing each by its reconstruction index.
fn backtrack(weights: &[f32], qs: f64, end: usize, out: &mut [i32]) -> Result<()> {
    let mut d = end;
    for (k, (&w, o)) in weights.iter().zip(out.iter_mut()).enumerate().rev() {
        let b = (*o as u32 >> (2 * d)) & 3;
        let (p, slot) = BRANCHES[d][b.min(2) as usize];
        *o = Candidates::new(w, qs)
            .index(slot)
            .ok_or_else(|| overflow(k))?;
        d = p as usize;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layer::{coded_level, next_state, reconstruction_index};
    use crate::rate::RateModel;
    use crate::tables::STATE_TRANS;

    #[test]
    fn branch_table_follows_the_state_machine() {
        for (d, brs) in BRANCHES.iter().enumerate() {
            for &(p, slot) in brs {
                let q = p & 1;
                let parity = match slot {
                    4 => 0,
                    s if s == 3 * q => 0,
                    s if s == 2 - q => 1,
                    s => panic!("slot {s} not allowed from state {p}"),
                };
                assert_eq!(STATE_TRANS[p as usize][parity] as usize, d);
            }
        }
        // Every (source, slot) pair appears exactly once.
        let mut seen = std::collections::HashSet::new();
        for brs in BRANCHES {
            for b in brs {
                assert!(seen.insert(b));
            }
        }
        assert_eq!(seen.len(), 24);
    }

    #[test]
    fn slot_levels_and_indices_agree_with_the_dq_mapping() {
        for w in [0.0f32, -0.0, 0.3, 1.7, -2.2, 5.5, -9.01, 100.49] {
            let c = Candidates::new(w, 1.0);
            let lev = c.levels();
            for slot in 0..4u8 {
                let r = c.index(slot).unwrap() as i64;
                assert_eq!(r.abs(), c.qi(slot));
                // Slots 0/2 are Q0 (even states), 1/3 are Q1 (odd states).
                let state = (slot & 1) as u32;
                assert_eq!(
                    coded_level(r, state),
                    lev[slot as usize],
                    "w {w} slot {slot}"
                );
                assert_eq!(reconstruction_index(lev[slot as usize], state), r);
            }
            assert_eq!(lev[4], 0);
        }
    }

    /// The search of spec §10.6 written as directly as possible: full copies of the two banks,
    /// `RateModel`s and per-weight vectors.
    fn naive(
        weights: &[f32],
        delta: f32,
        lambda_scale: f32,
        gq: u32,
        imp: Option<&[f32]>,
    ) -> Vec<i32> {
        let lambda = lambda_scale as f64 * 4.0 * (core::f64::consts::LN_2 / 6.0) * 0.7;
        let (ds, rated) = if lambda <= 0.0 {
            (1.0, false)
        } else {
            (32768.0 / lambda, true)
        };
        let qs = 1.0 / delta as f64;
        let fresh: Vec<RateModel> = (0..8).map(|s| RateModel::new(gq, s).unwrap()).collect();
        let mut banks = [fresh.clone(), fresh];
        let mut j = [HUGE; 8];
        j[0] = 0.0;
        let mut rec = vec![];
        for (t, &w) in weights.iter().enumerate() {
            let sg = if w < 0.0 { -1.0 } else { 1.0 };
            let o = (qs * w as f64) * sg;
            let base = ((o.trunc() as i64) - 1).max(1);
            let mut slot = [(0.0, 0i64); 5];
            for qi in base..base + 4 {
                let e = o - qi as f64;
                let dsi = ds * imp.map_or(1.0, |v| v[t] as f64);
                slot[(qi % 4) as usize] = (dsi * (e * e), sg as i64 * ((qi + 1) >> 1));
            }
            slot[4] = (ds * imp.map_or(1.0, |v| v[t] as f64) * (o * o), 0);
            let (pb, cb) = ((t + 1) % 2, t % 2);
            let mut nj = [0.0; 8];
            let mut step = [(0i64, 0usize); 8];
            for d in 0..8 {
                let mut best = f64::MAX;
                for &(p, s) in &BRANCHES[d] {
                    let (dist, level) = slot[s as usize];
                    let rate = if rated {
                        banks[pb][p as usize].cost(level) as f64
                    } else {
                        0.0
                    };
                    let c = (j[p as usize] + dist) + rate;
                    if c < best {
                        best = c;
                        step[d] = (level, p as usize);
                    }
                }
                nj[d] = best;
            }
            if rated {
                for d in 0..8 {
                    let (level, p) = step[d];
                    let src = banks[pb][p].clone();
                    banks[cb][d].copy_contexts_from(&src);
                    banks[cb][d].update(level);
                }
            }
            j = nj;
            rec.push(step);
        }
        let mut d = end_state(&j);
        let mut out = vec![0; weights.len()];
        for k in (0..weights.len()).rev() {
            let (l, p) = rec[k][d];
            out[k] = reconstruction_index(l, p as u32) as i32;
            d = p;
        }
        out
    }

    /// Laplacian weights of scale `scale` (a fixed LCG, so every run sees the same ones).
    pub(crate) fn lap(n: usize, scale: f64, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
                (-scale * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()) as f32
            })
            .collect()
    }

    #[test]
    fn fast_search_equals_the_naive_one() {
        let delta = 0.001_464_843_8f32;
        for (n, scale, seed) in [
            (0, 0.03, 1),
            (1, 0.03, 2),
            (2, 0.03, 3),
            (5, 0.003, 4),
            (700, 0.03, 5),
            (700, 0.3, 6),
            (400, 0.001, 7),
        ] {
            let w = lap(n, scale, seed);
            let imp: Vec<f32> = lap(n, 1.0, seed + 100).iter().map(|x| x.abs()).collect();
            for lam in [0.0f32, 0.5, 1.0, 4.0] {
                for gq in [0u32, 1, 3, 10] {
                    for importance in [None, Some(&imp[..])] {
                        let want = naive(&w, delta, lam, gq, importance);
                        let mut got = vec![0; n];
                        quantize_trellis(&w, delta, lam, gq, importance, &mut got).unwrap();
                        assert_eq!(got, want, "n {n} scale {scale} λ {lam} Gq {gq}");
                        // Levels are valid along the state machine.
                        let mut state = 0;
                        for &r in &got {
                            let l = coded_level(r as i64, state);
                            assert_eq!(reconstruction_index(l, state), r as i64);
                            state = next_state(state, l);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        let mut out = [0; 3];
        let err = quantize_trellis(&[0.0, 1e10, 1.0], 1.0, 1.0, 10, None, &mut out);
        assert!(matches!(err, Err(Error::Overflow(_))));
        // -2^31 fails in the trellis (unlike plain rounding).
        let err = quantize_trellis(&[-2147483648.0], 1.0, 0.0, 10, None, &mut out[..1]);
        assert!(matches!(err, Err(Error::Overflow(_))));
        assert!(quantize_trellis(&[1.0], 0.0, 0.0, 10, None, &mut out[..1]).is_err());
        assert!(quantize_trellis(&[1.0], 1.0, 0.0, 10, None, &mut out[..2]).is_err());
    }
}
