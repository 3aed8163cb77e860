//! Binarization of one integer level and the context of every bin (spec §5).
//!
//! Decoding reads hostile bytes, so indexing that could panic is denied here: a context is
//! fetched with `get_mut`, and a context slice too short for the layout is an error.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::contexts::{neighbour_class, ContextLayout, ContextModel};
use crate::engine::{ArithDecoder, BinModel, DecState};
use crate::error::{Error, Result};

/// Receives the bins of a level: a coder writes them, an estimator prices them.
pub trait BinSink {
    /// A context-coded bin on context `ctx`.
    fn regular(&mut self, ctx: usize, bin: u32);
    /// `n` bypass bins holding the low `n` bits of `value`, MSB first.
    fn bypass(&mut self, value: u32, n: u32);
}

/// Magnitude of the largest codable level (|-2^31|).
pub const MAX_ABS_LEVEL: u64 = 1 << 31;

/// Emits the bins of level `level`.
///
/// `num_gtx` greater-than flags are coded; contexts come from `layout`, which for the coder has
/// the same `G` but for the quantizers' rate model may differ (spec §10.4, `G = 0`).
/// `state` is the dependent-quantization state (0 for `dq_flag = 0`), `prev` the previous level.
#[inline(always)]
pub fn binarize<S: BinSink>(
    sink: &mut S,
    layout: ContextLayout,
    num_gtx: u32,
    level: i64,
    state: u32,
    prev: i64,
) {
    let nb = neighbour_class(prev);
    if level == 0 {
        sink.regular(layout.sig(state, nb), 0);
        return;
    }
    sink.regular(layout.sig(state, nb), 1);
    let negative = level < 0;
    sink.regular(layout.sign(nb), negative as u32);
    binarize_gtx_from(sink, layout, num_gtx, level.unsigned_abs(), negative, 0);
}

/// The bins of a nonzero level of magnitude `abs` from greater-than flag `k0` on: what
/// [`binarize`] emits after the sign when `k0 = 0`, after flag `k0 - 1` (which was 1) otherwise.
#[inline(always)]
pub(crate) fn binarize_gtx_from<S: BinSink>(
    sink: &mut S,
    layout: ContextLayout,
    num_gtx: u32,
    abs: u64,
    negative: bool,
    k0: u32,
) {
    for k in k0..num_gtx {
        let more = abs > k as u64 + 1;
        sink.regular(layout.gtx(k, negative), more as u32);
        if !more {
            return;
        }
    }
    // Order-0 Exp-Golomb remainder with a context-coded unary prefix.
    let rem = abs - num_gtx as u64 - 1;
    let m = 63 - (rem + 1).leading_zeros();
    for j in 0..m {
        sink.regular(layout.prefix(j), 1);
    }
    sink.regular(layout.prefix(m), 0);
    if m > 0 {
        let suffix = rem + 1 - (1u64 << m);
        sink.bypass(suffix as u32, m);
    }
}

/// Number of bins `binarize` emits for `level` (bypass bins included).
pub fn count_bins(num_gtx: u32, level: i64) -> u64 {
    if level == 0 {
        return 1;
    }
    let abs = level.unsigned_abs();
    if abs <= num_gtx as u64 {
        return 2 + abs;
    }
    let rem = abs - num_gtx as u64 - 1;
    let m = 63 - (rem + 1).leading_zeros() as u64;
    2 + num_gtx as u64 + 2 * m + 1
}

/// Decodes one level with contexts `ctx` laid out by `layout` (with `G = layout.num_gtx`).
///
/// Returns the signed level as i64; a magnitude the format cannot produce is an error.
#[inline(always)]
pub fn decode_level<B: AsRef<[u8]>>(
    dec: &mut ArithDecoder<B>,
    ctx: &mut [ContextModel],
    layout: ContextLayout,
    state: u32,
    prev: i64,
) -> Result<i64> {
    if state > 7 {
        return Err(Error::InvalidParameter(format!(
            "dependent-quantization state must be 0..=7, got {state}"
        )));
    }
    let (data, st) = dec.parts();
    decode_level_with(data, st, ctx, layout, state, prev)
}

/// Context `i` of `ctx`. The layer decoder sizes `ctx` to its layout, so the error is only
/// reachable through [`decode_level`] with a slice shorter than `layout.len()`. (The error takes
/// no arguments: passing `i` and the length kept them alive in the bin loop, ~1-2 % slower.)
#[inline(always)]
pub(crate) fn model<M>(ctx: &mut [M], i: usize) -> Result<&mut M> {
    match ctx.get_mut(i) {
        Some(m) => Ok(m),
        None => Err(too_few_contexts()),
    }
}

#[cold]
#[inline(never)]
fn too_few_contexts() -> Error {
    Error::InvalidParameter("the context slice is shorter than the layout".into())
}

/// [`decode_level`] on the decoder's registers (kept in locals by the caller's loop).
#[inline(always)]
pub(crate) fn decode_level_with<M: BinModel>(
    data: &[u8],
    st: &mut DecState,
    ctx: &mut [M],
    layout: ContextLayout,
    state: u32,
    prev: i64,
) -> Result<i64> {
    let nb = neighbour_class(prev);
    let sig = model(ctx, layout.sig(state, nb))?.decode(st, data);
    if sig == 0 {
        return Ok(0);
    }
    decode_nonzero(data, st, ctx, layout, nb)
}

/// The rest of a level whose significance flag was 1: sign, greater-than flags and remainder.
/// `nb` is the neighbour class of the previous level.
#[inline(always)]
pub(crate) fn decode_nonzero<M: BinModel>(
    data: &[u8],
    st: &mut DecState,
    ctx: &mut [M],
    layout: ContextLayout,
    nb: u32,
) -> Result<i64> {
    let negative = model(ctx, layout.sign(nb))?.decode(st, data) != 0;
    // The greater-than contexts of this sign (every other one) and the prefix contexts, as
    // slices fetched once per level: the bin loops then need no index checks.
    let g = layout.num_gtx as usize;
    let gtx = ctx
        .get_mut(layout.gtx(0, false)..layout.gtx(0, false) + 2 * g)
        .ok_or_else(too_few_contexts)?;
    let mut abs: u64 = 1;
    for pair in gtx.chunks_exact_mut(2) {
        let [pos, neg] = pair else { break };
        let m = if negative { neg } else { pos };
        if m.decode_predictable(st, data) == 0 {
            return finish_level(abs, negative);
        }
        abs += 1;
    }
    let prefix = ctx
        .get_mut(layout.prefix(0)..layout.prefix(0) + 31)
        .ok_or_else(too_few_contexts)?;
    for (m, c) in (0u32..).zip(prefix.iter_mut()) {
        if c.decode_predictable(st, data) == 0 {
            let suffix = st.decode_bypass_bits(data, m) as u64;
            abs += (1u64 << m) - 1 + suffix;
            return finish_level(abs, negative);
        }
    }
    Err(Error::Corrupt("remainder prefix longer than 31 bins"))
}

/// The signed level of magnitude `abs`; a magnitude the format cannot produce is an error.
#[inline(always)]
fn finish_level(abs: u64, negative: bool) -> Result<i64> {
    if abs > MAX_ABS_LEVEL || (abs == MAX_ABS_LEVEL && !negative) {
        return Err(Error::Corrupt("level magnitude exceeds int32"));
    }
    Ok(if negative { -(abs as i64) } else { abs as i64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(Option<usize>, u32, u32)>);
    impl BinSink for Recorder {
        fn regular(&mut self, ctx: usize, bin: u32) {
            self.0.push((Some(ctx), bin, 1));
        }
        fn bypass(&mut self, value: u32, n: u32) {
            self.0.push((None, value, n));
        }
    }

    #[test]
    fn spec_example_minus_40_with_g11() {
        let mut r = Recorder::default();
        binarize(&mut r, ContextLayout::new(11), 11, -40, 0, 0);
        let mut want = vec![(Some(0), 1, 1), (Some(48), 1, 1)];
        for k in 0..11 {
            want.push((Some(54 + 2 * k), 1, 1));
        }
        for (j, b) in [1, 1, 1, 1, 0].into_iter().enumerate() {
            want.push((Some(97 + j), b, 1));
        }
        want.push((None, 13, 4));
        assert_eq!(r.0, want);
    }

    #[test]
    fn contexts_follow_state_neighbour_and_sign() {
        let mut r = Recorder::default();
        binarize(&mut r, ContextLayout::new(2), 2, 2, 5, -7);
        assert_eq!(
            r.0,
            vec![
                (Some(16), 1, 1),
                (Some(49), 0, 1),
                (Some(53), 1, 1),
                (Some(55), 0, 1)
            ]
        );
    }

    #[test]
    fn decode_level_rejects_short_contexts_and_bad_states() {
        let bytes = [0xFFu8; 16];
        let layout = ContextLayout::new(11);
        // All-ones data decodes large levels: short slices fail on the sign or a greater-than
        // flag context, and no slice length panics.
        for len in 0..=layout.len() {
            let mut dec = ArithDecoder::new(&bytes[..]).unwrap();
            let mut ctx = vec![ContextModel::new(0); len];
            let got = (0..64)
                .try_for_each(|_| decode_level(&mut dec, &mut ctx, layout, 0, 0).map(|_| ()));
            if [0, 1, 24, 50, 60].contains(&len) {
                assert!(
                    matches!(got, Err(Error::InvalidParameter(_))),
                    "{len}: {got:?}"
                );
            }
        }
        let mut dec = ArithDecoder::new(&bytes[..]).unwrap();
        let mut ctx = vec![ContextModel::new(0); layout.len()];
        assert!(matches!(
            decode_level(&mut dec, &mut ctx, layout, 8, 0),
            Err(Error::InvalidParameter(_))
        ));
        assert!(decode_level(&mut dec, &mut ctx, layout, 7, 0).is_ok());
    }

    #[test]
    fn bin_count_matches_binarization() {
        for g in [1u32, 2, 11, 40] {
            for level in [
                0i64,
                1,
                -1,
                2,
                11,
                12,
                -13,
                100_000,
                i32::MIN as i64,
                i32::MAX as i64,
            ] {
                let mut r = Recorder::default();
                binarize(&mut r, ContextLayout::new(g), g, level, 0, 0);
                let n: u64 = r.0.iter().map(|x| x.2 as u64).sum();
                assert_eq!(n, count_bins(g, level), "g={g} level={level}");
            }
        }
    }
}
